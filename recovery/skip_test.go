package recovery_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
	"github.com/kconsumer/kconsumer/recovery"
)

func TestCheckpointSkipMisuse(t *testing.T) {
	_, err := consumer.New(newOffsetLog().handler(), consumer.Topics(topic), consumer.Group("g"),
		consumer.With(recovery.NewCheckpointSkip(nil)))
	if !errors.Is(err, recovery.ErrNoStore) || !errors.Is(err, consumer.ErrInvalidOption) {
		t.Errorf("New without a store = %v, want ErrNoStore wrapped in ErrInvalidOption", err)
	}
	_, err = consumer.New(newOffsetLog().handler(), consumer.Topics(topic),
		consumer.With(recovery.NewCheckpointSkip(recovery.NewMemoryStore(0))))
	if !errors.Is(err, recovery.ErrNoGroup) {
		t.Errorf("New without a group = %v, want ErrNoGroup", err)
	}
	for _, o := range []consumer.Ordering{consumer.KeyOrder, consumer.Unordered} {
		_, err = consumer.New(newOffsetLog().handler(), consumer.Topics(topic), consumer.Group("g"), consumer.Order(o),
			consumer.With(recovery.NewCheckpointSkip(recovery.NewMemoryStore(0))))
		if !errors.Is(err, recovery.ErrNeedsPartitionOrder) || !errors.Is(err, consumer.ErrInvalidOption) {
			t.Errorf("New with %v = %v, want ErrNeedsPartitionOrder wrapped in ErrInvalidOption", o, err)
		}
		_, err = consumer.New(newOffsetLog().handler(), consumer.Topics(topic), consumer.Group("g"), consumer.Order(o),
			consumer.With(recovery.NewCheckpointSkip(recovery.NewMemoryStore(0), recovery.OutOfOrderStore())))
		if err != nil {
			t.Errorf("New with %v and OutOfOrderStore = %v, want nil", o, err)
		}
	}
	_, err = consumer.New(newOffsetLog().handler(), consumer.Topics(topic),
		consumer.With(recovery.NewStateless()))
	if !errors.Is(err, recovery.ErrNoGroup) {
		t.Errorf("Stateless without a group = %v, want ErrNoGroup", err)
	}
}

// TestCheckpointSkipResumesFromStoreNotKafka makes the group's committed
// offsets disagree with the store, behind on one partition and ahead on the
// other, and checks that both start right after the store's checkpoint and
// that the commits then catch up for lag tools.
func TestCheckpointSkipResumesFromStoreNotKafka(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 2, topic)
	produceTo(t, cluster, 0, 100)
	produceTo(t, cluster, 1, 100)
	store := recovery.NewMemoryStore(0)
	store.SetCheckpoint(recovery.Checkpoint{Topic: topic, Partition: 0, Offset: 59})
	store.SetCheckpoint(recovery.Checkpoint{Topic: topic, Partition: 1, Offset: 29})
	var committed kadm.Offsets
	committed.AddOffset(topic, 0, 10, -1) // Kafka behind the store
	committed.AddOffset(topic, 1, 90, -1) // Kafka ahead of the store
	if err := cluster.Admin.CommitAllOffsets(context.Background(), "g", committed); err != nil {
		t.Fatal(err)
	}

	log := newOffsetLog()
	s := recovery.NewCheckpointSkip(store, recovery.WithLogger(quiet))
	stop := kafkatest.Run(t, newConsumer(t, log.handler(), testOpts(cluster, "g", s)...))
	kafkatest.WaitFor(t, 10*time.Second, "the records after the checkpoints", func() bool { return log.count() == 40+70 })
	kafkatest.WaitFor(t, 10*time.Second, "commits to reach the end", func() bool {
		c := cluster.Committed(t, "g", topic)
		return c[0] == 100 && c[1] == 100
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := log.of(0); !slices.Equal(got, span(60, 100)) {
		t.Errorf("partition 0 handled %v, want 60 to 99 (store at 59, Kafka at 10)", got)
	}
	if got := log.of(1); !slices.Equal(got, span(30, 100)) {
		t.Errorf("partition 1 handled %v, want 30 to 99 (store at 29, Kafka at 90)", got)
	}
}

// TestCheckpointSkipCommitCatchesUpWithTheStore checks that a partition
// whose effects are all in the store but whose commit is behind, as a crash
// between writing and committing leaves it, gets its commit moved to the
// store's checkpoint without any new record and without handling again.
func TestCheckpointSkipCommitCatchesUpWithTheStore(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic)
	produceTo(t, cluster, 0, 60)
	store := recovery.NewMemoryStore(0)
	store.SetCheckpoint(recovery.Checkpoint{Topic: topic, Partition: 0, Offset: 59})
	var committed kadm.Offsets
	committed.AddOffset(topic, 0, 40, -1)
	if err := cluster.Admin.CommitAllOffsets(context.Background(), "g", committed); err != nil {
		t.Fatal(err)
	}
	log := newOffsetLog()
	s := recovery.NewCheckpointSkip(store, recovery.WithLogger(quiet))
	stop := kafkatest.Run(t, newConsumer(t, log.handler(), testOpts(cluster, "g", s)...))
	kafkatest.WaitFor(t, 10*time.Second, "the commit to reach the checkpoint", func() bool {
		return cluster.Committed(t, "g", topic)[0] == 60
	})
	produceTo(t, cluster, 0, 5)
	kafkatest.WaitFor(t, 10*time.Second, "the new records", func() bool { return log.count() == 5 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := log.of(0); !slices.Equal(got, span(60, 65)) {
		t.Errorf("handled %v, want only the new records 60 to 64", got)
	}
}

func TestCheckpointSkipWithoutCheckpointStartsAtLatest(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic)
	produceTo(t, cluster, 0, 50)
	log := newOffsetLog()
	s := recovery.NewCheckpointSkip(recovery.NewMemoryStore(0), recovery.WithLogger(quiet))
	kafkatest.Run(t, newConsumer(t, log.handler(), testOpts(cluster, "g", s)...))
	kafkatest.WaitFor(t, 10*time.Second, "ready", func() bool { return s.Ready() == nil })
	// The client resolves "latest" after the assignment: produce until a
	// record arrives.
	kafkatest.WaitFor(t, 10*time.Second, "a new record", func() bool {
		if log.count() > 0 {
			return true
		}
		produceTo(t, cluster, 0, 1)
		return false
	})
	if got := log.of(0); got[0] < 50 {
		t.Errorf("handled offsets %v; nothing produced before the start may be handled", got)
	}
}

func TestCheckpointSkipCheckpointAheadOfHighWatermark(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 2, topic)
	produceTo(t, cluster, 0, 100)
	produceTo(t, cluster, 1, 100)
	store := recovery.NewMemoryStore(0)
	store.SetCheckpoint(recovery.Checkpoint{Topic: topic, Partition: 0, Offset: 499})
	store.SetCheckpoint(recovery.Checkpoint{Topic: topic, Partition: 1, Offset: 49})
	log := newOffsetLog()
	s := recovery.NewCheckpointSkip(store, recovery.WithLogger(quiet))
	kafkatest.Run(t, newConsumer(t, log.handler(), testOpts(cluster, "g", s)...))
	kafkatest.WaitFor(t, 10*time.Second, "partition 1", func() bool { return len(log.of(1)) == 50 })

	err := s.Ready()
	var ahead *recovery.AheadError
	if !errors.Is(err, recovery.ErrNotReady) || !errors.As(err, &ahead) {
		t.Fatalf("Ready = %v, want ErrNotReady with an *AheadError", err)
	}
	if *ahead != (recovery.AheadError{Topic: topic, Partition: 0, Next: 500, HighWatermark: 100}) {
		t.Errorf("AheadError = %+v", *ahead)
	}
	// Records produced now would sit at offsets the checkpoint claims;
	// they must not be consumed and skipped.
	produceTo(t, cluster, 0, 10)
	produceTo(t, cluster, 1, 10)
	kafkatest.WaitFor(t, 10*time.Second, "new records of partition 1", func() bool { return len(log.of(1)) == 60 })
	if got := log.of(0); len(got) > 0 {
		t.Errorf("partition 0 handled %v; it must not be consumed", got)
	}
}

func TestCheckpointSkipCheckpointBelowLogStart(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic)
	produceTo(t, cluster, 0, 100)
	deleteBefore(t, cluster, 0, 60)

	t.Run("reported, then resumed at the log start", func(t *testing.T) {
		store := recovery.NewMemoryStore(0)
		store.SetCheckpoint(recovery.Checkpoint{Topic: topic, Partition: 0, Offset: 19})
		var mu sync.Mutex
		var losses []recovery.DataLossError
		s := recovery.NewCheckpointSkip(store, recovery.WithLogger(quiet),
			recovery.OnDataLoss(func(_ context.Context, e *recovery.DataLossError) error {
				mu.Lock()
				losses = append(losses, *e)
				mu.Unlock()
				return nil
			}))
		log := newOffsetLog()
		kafkatest.Run(t, newConsumer(t, log.handler(), testOpts(cluster, "resume", s)...))
		kafkatest.WaitFor(t, 10*time.Second, "the records left", func() bool { return log.count() == 40 })
		if got := log.of(0); !slices.Equal(got, span(60, 100)) {
			t.Errorf("handled %v, want 60 to 99", got)
		}
		mu.Lock()
		defer mu.Unlock()
		want := []recovery.DataLossError{{Topic: topic, Partition: 0, Next: 20, LogStart: 60}}
		if !slices.Equal(losses, want) || losses[0].Lost() != 40 {
			t.Errorf("data loss reported %+v, want %+v with 40 lost", losses, want)
		}
		if err := s.Ready(); err != nil {
			t.Errorf("Ready = %v", err)
		}
	})
	t.Run("refused", func(t *testing.T) {
		store := recovery.NewMemoryStore(0)
		store.SetCheckpoint(recovery.Checkpoint{Topic: topic, Partition: 0, Offset: 19})
		errStop := errors.New("stop on data loss")
		s := recovery.NewCheckpointSkip(store, recovery.WithLogger(quiet),
			recovery.OnDataLoss(func(context.Context, *recovery.DataLossError) error { return errStop }))
		log := newOffsetLog()
		kafkatest.Run(t, newConsumer(t, log.handler(), testOpts(cluster, "refuse", s)...))
		kafkatest.WaitFor(t, 10*time.Second, "the refusal", func() bool { return errors.Is(s.Ready(), errStop) })
		if !errors.Is(s.Ready(), recovery.ErrNotReady) {
			t.Errorf("Ready = %v, want ErrNotReady", s.Ready())
		}
		if log.count() > 0 {
			t.Errorf("handled %d records of a refused partition", log.count())
		}
	})
}

// TestCheckpointSkipOutOfOrderStoreStepsOverGaps: a store that records
// every record cannot close its prefix over an offset its handler never
// finished, here a dead-lettered record; the group's commit, which covers
// it, is where the partition starts, so nothing is handled again and no
// data loss is reported when retention passes the stuck prefix.
func TestCheckpointSkipOutOfOrderStoreStepsOverGaps(t *testing.T) {
	for _, tc := range []struct {
		name   string
		gap    int64 // the offset never applied; 0 leaves the store without a checkpoint
		commit int64 // -1 for none
		trim   int64 // records deleted below this offset
		want   []int64
		opts   []consumer.Opt
	}{
		{name: "gap at 10", gap: 10, commit: 100, want: span(100, 105)},
		{name: "gap at 0, no checkpoint", gap: 0, commit: 100, want: span(100, 105)},
		{name: "prefix below the log start", gap: 10, commit: 100, trim: 60, want: span(100, 105)},
		// A start offset that looks like a commit is not one: without a
		// commit, the store's prefix decides (here: none, so from the start).
		{name: "no commit, exact reset offset", gap: 0, commit: -1, want: span(0, 105),
			opts: []consumer.Opt{consumer.ClientOpts(kgo.ConsumeResetOffset(kgo.NewOffset().At(50)))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cluster := kafkatest.NewCluster(t, 1, topic)
			produceTo(t, cluster, 0, 100)
			store := newPrefixStore()
			for o := range int64(100) {
				if o == tc.gap || tc.commit < 0 {
					continue // dead-lettered: no effect, no entry
				}
				if err := store.Apply(context.Background(), recovery.Checkpoint{Topic: topic, Partition: 0, Offset: o}, func(*map[string]int64) {}); err != nil {
					t.Fatal(err)
				}
			}
			if tc.commit >= 0 {
				var committed kadm.Offsets
				committed.AddOffset(topic, 0, tc.commit, -1)
				if err := cluster.Admin.CommitAllOffsets(context.Background(), "g", committed); err != nil {
					t.Fatal(err)
				}
			}
			if tc.trim > 0 {
				deleteBefore(t, cluster, 0, tc.trim)
			}
			var mu sync.Mutex
			var losses []recovery.DataLossError
			log := newOffsetLog()
			s := recovery.NewCheckpointSkip(store, recovery.OutOfOrderStore(),
				recovery.StartWithoutCheckpoint(kgo.NewOffset().AtStart()), recovery.WithLogger(quiet),
				recovery.OnDataLoss(func(_ context.Context, e *recovery.DataLossError) error {
					mu.Lock()
					losses = append(losses, *e)
					mu.Unlock()
					return e
				}))
			opts := append([]consumer.Opt{consumer.Order(consumer.KeyOrder)}, tc.opts...)
			stop := kafkatest.Run(t, newConsumer(t, log.handler(), testOpts(cluster, "g", s, opts...)...))
			produceTo(t, cluster, 0, 5)
			kafkatest.WaitFor(t, 10*time.Second, "the records", func() bool { return log.count() >= len(tc.want) })
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			got := log.of(0)
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("handled %v, want %v", got, tc.want)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(losses) > 0 {
				t.Errorf("data loss reported: %+v", losses)
			}
		})
	}
}
