package recovery

import (
	"errors"
	"fmt"
)

var (
	// ErrNoStore is returned by consumer.New, wrapped, for a CheckpointSkip
	// without a CheckpointStore.
	ErrNoStore = errors.New("recovery: CheckpointSkip needs a CheckpointStore")

	// ErrReplayGroup is returned by consumer.New, wrapped, for a FullReplay
	// given a consumer group: a replay reads every partition itself and
	// commits nothing, so a group would only leak.
	ErrReplayGroup = errors.New("recovery: FullReplay reads every partition and takes no consumer group")

	// ErrNoGroup is returned by consumer.New, wrapped, for a CheckpointSkip
	// or Stateless without a consumer group, which they need to share
	// partitions and commit progress.
	ErrNoGroup = errors.New("recovery: strategy needs a consumer group")

	// ErrInUse is returned by consumer.New, wrapped, when a strategy is
	// given to a second Consumer: a strategy tracks the partitions of one.
	ErrInUse = errors.New("recovery: strategy already belongs to a consumer")

	// ErrNeedsPartitionOrder is returned by consumer.New, wrapped, for a
	// CheckpointSkip with consumer.KeyOrder or Unordered whose store was
	// not declared able to take records out of order (OutOfOrderStore).
	ErrNeedsPartitionOrder = errors.New("recovery: CheckpointSkip with one checkpoint per partition needs consumer.PartitionOrder")

	// ErrNotReady is wrapped by the error Ready returns until the strategy
	// is ready; the rest of the message says why.
	ErrNotReady = errors.New("recovery: not ready")
)

// AheadError reports a stored position beyond the end of its partition: the
// store says the records up to Next-1 were processed, but the partition ends
// at HighWatermark. The store and the topic disagree (the topic was
// recreated, the store belongs to another cluster, or the broker lost
// records), and records produced from now on would be skipped as seen, so the
// partition is not consumed.
type AheadError struct {
	Topic         string
	Partition     int32
	Next          int64 // the offset the store says to read next
	HighWatermark int64 // the partition's end when it was checked
}

func (e *AheadError) Error() string {
	return fmt.Sprintf("recovery: %s/%d: stored position %d is beyond the high watermark %d (%d offsets ahead); the store does not belong to this topic, so the partition is not consumed",
		e.Topic, e.Partition, e.Next, e.HighWatermark, e.Next-e.HighWatermark)
}

// DataLossError reports records deleted from a partition, by retention or
// DeleteRecords, before they were processed: the store says to read Next, but
// the partition now starts at LogStart.
type DataLossError struct {
	Topic     string
	Partition int32
	Next      int64 // the offset the store says to read next
	LogStart  int64 // the partition's first offset when it was checked
}

// Lost returns how many offsets were deleted unprocessed.
func (e *DataLossError) Lost() int64 { return e.LogStart - e.Next }

func (e *DataLossError) Error() string {
	return fmt.Sprintf("recovery: %s/%d: data loss: %d records (offsets %d to %d) were deleted before they were processed; the partition now starts at %d",
		e.Topic, e.Partition, e.Lost(), e.Next, e.LogStart-1, e.LogStart)
}
