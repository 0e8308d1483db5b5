package recovery_test

import (
	"context"
	"maps"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/recovery"
)

func TestCheckpointOf(t *testing.T) {
	c := recovery.CheckpointOf(&kgo.Record{Topic: "sensor-data", Partition: 3, Offset: 1042})
	if c != (recovery.Checkpoint{Topic: "sensor-data", Partition: 3, Offset: 1042}) {
		t.Errorf("CheckpointOf = %+v", c)
	}
	if s := c.String(); s != "sensor-data/3/1042" {
		t.Errorf("String = %q", s)
	}
}

func TestMemoryStoreAppliesEachRecordOnce(t *testing.T) {
	ctx := context.Background()
	store := recovery.NewMemoryStore(map[string]int{})
	add := func(n int) func(*map[string]int) {
		return func(s *map[string]int) { (*s)["sum"] += n }
	}
	apply := func(p int32, offset int64, n int) {
		t.Helper()
		if err := store.Apply(ctx, recovery.Checkpoint{Topic: "t", Partition: p, Offset: offset}, add(n)); err != nil {
			t.Fatal(err)
		}
	}
	apply(0, 0, 1)
	apply(0, 1, 10)
	apply(0, 1, 100) // the same record again: no effect
	apply(0, 0, 1000)
	apply(1, 0, 5) // another partition has its own checkpoint

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := store.Apply(cancelled, recovery.Checkpoint{Topic: "t", Partition: 0, Offset: 2}, add(10000)); err == nil {
		t.Error("Apply with a cancelled context succeeded")
	}

	store.Read(func(s map[string]int) {
		if s["sum"] != 16 {
			t.Errorf("sum = %d, want 16", s["sum"])
		}
	})
	cps, err := store.Checkpoints(ctx, "t", []int32{0, 1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[int32]int64{0: 1, 1: 0}; !maps.Equal(cps, want) {
		t.Errorf("Checkpoints = %v, want %v", cps, want)
	}
}
