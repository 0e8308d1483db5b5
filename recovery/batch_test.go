package recovery_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
	"github.com/kconsumer/kconsumer/recovery"
)

func TestCheckpointsOfNamesTheLastRecordOfEachPartition(t *testing.T) {
	recs := []*kgo.Record{
		{Topic: "a", Partition: 1, Offset: 7},
		{Topic: "a", Partition: 0, Offset: 3},
		{Topic: "a", Partition: 1, Offset: 8},
		{Topic: "b", Partition: 1, Offset: 2},
		{Topic: "a", Partition: 0, Offset: 4},
	}
	got := recovery.CheckpointsOf(recs)
	want := []recovery.Checkpoint{{Topic: "a", Partition: 1, Offset: 8}, {Topic: "a", Partition: 0, Offset: 4}, {Topic: "b", Partition: 1, Offset: 2}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("CheckpointsOf = %v, want %v", got, want)
	}
	if got := recovery.CheckpointsOf(nil); len(got) != 0 {
		t.Fatalf("CheckpointsOf(nil) = %v, want none", got)
	}
}

func TestMemoryStoreApplyBatchIsOneStep(t *testing.T) {
	ctx := context.Background()
	store := recovery.NewMemoryStore(0)
	add := func(sum *int, r *kgo.Record) { *sum += int(r.Offset) }
	recs := func(p int32, from, to int64) []*kgo.Record {
		var out []*kgo.Record
		for o := from; o < to; o++ {
			out = append(out, &kgo.Record{Topic: topic, Partition: p, Offset: o})
		}
		return out
	}
	if err := store.ApplyBatch(ctx, append(recs(0, 0, 5), recs(1, 10, 12)...), add); err != nil {
		t.Fatal(err)
	}
	// Replayed records change nothing; the new ones after them count.
	if err := store.ApplyBatch(ctx, append(recs(0, 3, 7), recs(1, 10, 12)...), add); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := store.ApplyBatch(cctx, recs(0, 7, 9), add); !errors.Is(err, context.Canceled) {
		t.Fatalf("ApplyBatch with a done context = %v, want its error", err)
	}
	store.Read(func(sum int) {
		if want := 0 + 1 + 2 + 3 + 4 + 5 + 6 + 10 + 11; sum != want {
			t.Errorf("sum %d, want %d", sum, want)
		}
	})
	cps, err := store.Checkpoints(ctx, topic, []int32{0, 1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[int32]int64{0: 6, 1: 11}; !maps.Equal(cps, want) {
		t.Fatalf("checkpoints %v, want %v", cps, want)
	}
}

// TestCheckpointSkipApplyBatchKeepsTotalsExact crashes batch consumers that
// write each batch's sums and checkpoints in one step (MemoryStore's
// ApplyBatch), before or after the step, and checks the sums against the
// topic once a last process finished: nothing lost, nothing counted twice,
// and no record at or below its checkpoint handed to the handler.
func TestCheckpointSkipApplyBatchKeepsTotalsExact(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts []consumer.Opt
	}{
		{"per-partition", nil},
		{"across-partitions", []consumer.Opt{consumer.BatchAcrossPartitions()}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			cluster := kafkatest.NewCluster(t, suitePartitions, topic)
			produced := cluster.ProduceSeq(t, topic, suiteRecords, suiteKeys)
			truth := sums(produced, 0)
			store := recovery.NewMemoryStore(make(map[string]int64))
			var replays atomic.Int64
			process := func(k *killer) (*recovery.CheckpointSkip, consumer.BatchHandler) {
				s := recovery.NewCheckpointSkip(store, recovery.StartWithoutCheckpoint(kgo.NewOffset().AtStart()), recovery.WithLogger(quiet))
				return s, consumer.BatchHandlerFunc(func(ctx context.Context, recs []*kgo.Record) error {
					return k.run(func() error {
						// The strategy skips what the store has: none of
						// it may reach a live process's handler.
						for _, cp := range recovery.CheckpointsOf(recs) {
							cps, err := store.Checkpoints(ctx, cp.Topic, []int32{cp.Partition})
							if err != nil {
								return err
							}
							if stored, ok := cps[cp.Partition]; ok {
								for _, r := range recs {
									if r.Partition == cp.Partition && r.Offset <= stored {
										replays.Add(1)
									}
								}
							}
						}
						return store.ApplyBatch(ctx, recs, func(sums *map[string]int64, r *kgo.Record) {
							v, _ := strconv.ParseInt(string(r.Value), 10, 64)
							(*sums)[string(r.Key)] += v
						})
					})
				})
			}
			opts := func(s recovery.Strategy) []consumer.Opt {
				return testOpts(cluster, "g", s, append([]consumer.Opt{consumer.BatchMaxRecords(16)}, mode.opts...)...)
			}
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, seed))
			const crashes = 10
			for i := range crashes {
				k := newKiller(rng, suiteRecords/16/(crashes+1))
				s, h := process(k)
				c, err := consumer.NewBatch(h, opts(s)...)
				if err != nil {
					t.Fatal(err)
				}
				stop := kafkatest.Run(t, c)
				wait(t, k.died, 30*time.Second, fmt.Sprintf("crash %d at batch %d", i, k.at))
				crash(cluster, stop)
			}
			s, h := process(nil)
			c, err := consumer.NewBatch(h, opts(s)...)
			if err != nil {
				t.Fatal(err)
			}
			stop := kafkatest.Run(t, c)
			ends := cluster.EndOffsets(t, topic)
			kafkatest.WaitFor(t, 30*time.Second, "every checkpoint at its partition's end", func() bool {
				cps, _ := store.Checkpoints(context.Background(), topic, []int32{0, 1, 2, 3})
				for p, end := range ends {
					if end > 0 && cps[p] != end-1 {
						return false
					}
				}
				return true
			})
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			store.Read(func(got map[string]int64) {
				if !maps.Equal(got, truth) {
					t.Errorf("sums %v, want %v", got, truth)
				}
			})
			if n := replays.Load(); n > 0 {
				t.Errorf("%d records at or below their checkpoint reached the handler", n)
			}
		})
	}
}

// TestFullReplayBatchesPassTransactionMarkers is
// TestFullReplayPassesTransactionMarkers for a batch handler: markers reach
// no batch, and the replay catches up past the last one.
func TestFullReplayBatchesPassTransactionMarkers(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic)
	txn := cluster.Client(t, kgo.TransactionalID("tx"), kgo.ProducerLinger(0))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 3 {
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := txn.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := txn.EndTransaction(ctx, kgo.TryCommit); err != nil {
			t.Fatal(err)
		}
	}
	s := recovery.NewFullReplay(recovery.WithLogger(quiet))
	var mu sync.Mutex
	var values []string
	h := consumer.BatchHandlerFunc(func(_ context.Context, recs []*kgo.Record) error {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range recs {
			if r.Attrs.IsControl() {
				t.Errorf("a batch held a transaction marker at offset %d", r.Offset)
			}
			values = append(values, string(r.Value))
		}
		return nil
	})
	c, err := consumer.NewBatch(h, testOpts(cluster, "", s, consumer.BatchLinger(100*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	kafkatest.Run(t, c)
	wait(t, s.CaughtUp(), 10*time.Second, "caught up")
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(values) != "[0 1 2]" {
		t.Errorf("handled %v, want the three records", values)
	}
}

// A batch that fails at a record stores, and counts towards a FullReplay's
// progress, exactly the records before it.
func TestFullReplayBatchErrorAdvancesThePrefix(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic)
	produceTo(t, cluster, 0, 20)
	s := recovery.NewFullReplay(recovery.WithLogger(quiet))
	var failing atomic.Bool
	failing.Store(true)
	h := consumer.BatchHandlerFunc(func(_ context.Context, recs []*kgo.Record) error {
		for i, r := range recs {
			if r.Offset == 19 && failing.Load() {
				return &consumer.BatchError{Index: i, Err: errors.New("not yet")}
			}
		}
		return nil
	})
	c, err := consumer.NewBatch(h, testOpts(cluster, "", s)...)
	if err != nil {
		t.Fatal(err)
	}
	kafkatest.Run(t, c)
	kafkatest.WaitFor(t, 10*time.Second, "19 of 20 replayed", func() bool {
		err := s.Ready()
		return err != nil && errors.Is(err, recovery.ErrNotReady) && fmt.Sprint(err) == "recovery: not ready: replaying, 1 partitions and 1 offsets to go"
	})
	failing.Store(false)
	wait(t, s.CaughtUp(), 10*time.Second, "caught up")
}
