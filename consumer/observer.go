package consumer

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Event names a change of the partitions a Consumer owns.
type Event int

const (
	Assigned Event = iota // partitions were assigned
	Revoked               // partitions were revoked, their offsets committed
	Lost                  // partitions were lost, nothing committed
)

func (e Event) String() string {
	switch e {
	case Assigned:
		return "assigned"
	case Revoked:
		return "revoked"
	case Lost:
		return "lost"
	}
	return "unknown"
}

// An Observer is told what a Consumer does, for metrics and health checks
// (package lag implements one). Its methods are called from the Consumer's
// goroutines, concurrently, and must return quickly.
type Observer interface {
	// Polled is called for every partition of every poll, with the
	// partition's high watermark and the records handed to its worker.
	Polled(p kgo.FetchTopicPartition)
	// Handled is called after every call of the handler. With a
	// BatchHandler (NewBatch), it is called for each record a call of
	// the batch handler did, with its share of the call's time, and after
	// every call with a record on its own; a record a plugin skips is
	// handled in no time.
	Handled(r *kgo.Record, took time.Duration, err error)
	// Committed is called after every commit with the offsets the broker
	// accepted (the next offset to read, by topic and partition) or the
	// error of the attempt.
	Committed(offsets map[string]map[int32]int64, err error)
	// Rebalanced is called after partitions were assigned, revoked or lost.
	Rebalanced(e Event, partitions map[string][]int32)
	// Paused is called when fetching of a partition is paused or resumed.
	Paused(topic string, partition int32, paused bool)
}
