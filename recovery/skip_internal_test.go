package recovery

import (
	"context"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
)

// TestCheckpointSkipSkipsRecordsAtOrBelowCheckpoint hands the wrapped handler
// records directly, as a client that starts a partition early would.
func TestCheckpointSkipSkipsRecordsAtOrBelowCheckpoint(t *testing.T) {
	s := NewCheckpointSkip(NewMemoryStore(0))
	s.checkpoints.Store(&map[topicPartition]int64{{"t", 0}: 4})
	var handled []int64
	wrapped := s.wrap(consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
		handled = append(handled, r.Offset)
		return nil
	}))
	for _, o := range []int64{3, 4, 5, 6} {
		if err := wrapped.Handle(context.Background(), &kgo.Record{Topic: "t", Partition: 0, Offset: o}); err != nil {
			t.Fatal(err)
		}
	}
	if err := wrapped.Handle(context.Background(), &kgo.Record{Topic: "t", Partition: 1, Offset: 0}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(handled, []int64{5, 6, 0}) {
		t.Errorf("handled %v: offsets 3 and 4 are at or below partition 0's checkpoint and must be skipped; partition 1 has none", handled)
	}
}
