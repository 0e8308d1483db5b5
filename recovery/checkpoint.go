package recovery

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A Checkpoint names one record by topic, partition and offset. Stored next
// to a partition's effects, it says that the effects of every record of the
// partition up to and including Offset are written. As the ID of one record's
// effect (see String), it makes writing that effect twice a no-op.
type Checkpoint struct {
	Topic     string
	Partition int32
	Offset    int64
}

// CheckpointOf returns the checkpoint of r: its topic, partition and offset.
// A handler stores it with r's effect, in one transaction or one document.
func CheckpointOf(r *kgo.Record) Checkpoint {
	return Checkpoint{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
}

// CheckpointsOf returns the checkpoints of a batch (consumer.NewBatch): for
// each partition with records in recs, the checkpoint of its last record, in
// the order the partitions first appear. A batch handler writes them with
// the batch's effects in one step, in one transaction or one document, so
// that each partition's checkpoint moves to the batch's last offset exactly
// when the effects of its records are written.
func CheckpointsOf(recs []*kgo.Record) []Checkpoint {
	var out []Checkpoint
	for _, r := range recs {
		i := slices.IndexFunc(out, func(c Checkpoint) bool { return c.Partition == r.Partition && c.Topic == r.Topic })
		switch {
		case i < 0:
			out = append(out, CheckpointOf(r))
		case r.Offset > out[i].Offset:
			out[i].Offset = r.Offset
		}
	}
	return out
}

// String returns "topic/partition/offset", unique per record of a cluster
// and stable across replays: a deterministic ID for the record's effect.
// Kafka topic names cannot contain '/', so the form is unambiguous.
func (c Checkpoint) String() string {
	return fmt.Sprintf("%s/%d/%d", c.Topic, c.Partition, c.Offset)
}

// A CheckpointStore holds, for each partition, the offset of the last record
// whose effects are written. CheckpointSkip reads it when partitions are
// assigned and starts each at the record after its checkpoint.
//
// The store is the truth, so it must change a record's effect and its
// partition's checkpoint together: in one transaction, or in one document, or
// by writing each effect under the record's Checkpoint as a unique ID (a
// replay then writes nothing new) and raising the checkpoint afterwards.
// A batch handler (consumer.NewBatch) writes a batch's effects with the
// checkpoints of CheckpointsOf, the batch's last offset per partition, in
// one step; MemoryStore.ApplyBatch shows the shape.
//
// Writers must also ignore a record at or below the stored checkpoint: after
// a crash between writing and returning, or when a partition moves to
// another member while its old owner still finishes a record, the same
// record is handled twice, and the second time must change nothing.
type CheckpointStore interface {
	// Checkpoints returns the checkpoint offset of each of the given
	// partitions of topic that has one; partitions without a checkpoint
	// are absent from the map.
	Checkpoints(ctx context.Context, topic string, partitions []int32) (map[int32]int64, error)
}

type topicPartition struct {
	topic     string
	partition int32
}

// MemoryStore is a CheckpointStore in memory, for tests and examples. It keeps
// a state of type S next to the checkpoints and changes both in one step, the
// way a database transaction would.
type MemoryStore[S any] struct {
	mu          sync.Mutex
	state       S
	checkpoints map[topicPartition]int64
}

// NewMemoryStore returns a store holding state and no checkpoints.
func NewMemoryStore[S any](state S) *MemoryStore[S] {
	return &MemoryStore[S]{state: state, checkpoints: make(map[topicPartition]int64)}
}

// Apply runs effect on the state and sets c as its partition's checkpoint,
// atomically. If c is at or below the partition's checkpoint, the record's
// effect is already in the state and Apply changes nothing. It returns ctx's
// error, changing nothing, if ctx is done.
func (m *MemoryStore[S]) Apply(ctx context.Context, c Checkpoint, effect func(state *S)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	key := topicPartition{c.Topic, c.Partition}
	if cp, ok := m.checkpoints[key]; ok && c.Offset <= cp {
		return nil
	}
	effect(&m.state)
	m.checkpoints[key] = c.Offset
	return nil
}

// ApplyBatch runs effect on the state for each record of recs above its
// partition's checkpoint, in order, and sets each partition's checkpoint to
// its last record in recs (see CheckpointsOf), all in one step, as a
// database transaction would. Records at or below their partition's
// checkpoint are in the state already and change nothing. It returns ctx's
// error, changing nothing, if ctx is done.
func (m *MemoryStore[S]) ApplyBatch(ctx context.Context, recs []*kgo.Record, effect func(state *S, r *kgo.Record)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range recs {
		key := topicPartition{r.Topic, r.Partition}
		if cp, ok := m.checkpoints[key]; ok && r.Offset <= cp {
			continue
		}
		effect(&m.state, r)
		m.checkpoints[key] = r.Offset
	}
	return nil
}

// Read calls fn with the state, which fn must not change or keep.
func (m *MemoryStore[S]) Read(fn func(state S)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fn(m.state)
}

// SetCheckpoint sets c as its partition's checkpoint without an effect, up
// or down, as an operator repairing a store would.
func (m *MemoryStore[S]) SetCheckpoint(c Checkpoint) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.checkpoints[topicPartition{c.Topic, c.Partition}] = c.Offset
}

// Checkpoints implements CheckpointStore.
func (m *MemoryStore[S]) Checkpoints(ctx context.Context, topic string, partitions []int32) (map[int32]int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[int32]int64)
	for _, p := range partitions {
		if cp, ok := m.checkpoints[topicPartition{topic, p}]; ok {
			out[p] = cp
		}
	}
	return out, nil
}
