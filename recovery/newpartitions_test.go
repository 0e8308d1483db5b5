package recovery_test

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
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

// totals are what the handlers of these tests accumulate, by key: how many
// records and the sum of their values.
type totals map[string][2]int64

func (t totals) add(r *kgo.Record) {
	v, err := strconv.ParseInt(string(r.Value), 10, 64)
	if err != nil {
		panic(fmt.Sprintf("record value %q: %v", r.Value, err))
	}
	x := t[string(r.Key)]
	x[0]++
	x[1] += v
	t[string(r.Key)] = x
}

func (t totals) records() (n int64) {
	for _, x := range t {
		n += x[0]
	}
	return n
}

// warmKey marks the records that only get a consumer's positions resolved;
// they move checkpoints but count in no total.
var warmKey = []byte("warm")

// keyedLoad produces records keyed "k<i mod 64>" with the value "<i>",
// spread over the partitions by the default (key hash) partitioner, and
// keeps the totals of those the broker acknowledged: the ground truth.
type keyedLoad struct {
	next atomic.Int64
	mu   sync.Mutex
	sent totals
}

func (l *keyedLoad) produce(cl *kgo.Client, n int) error {
	recs := make([]*kgo.Record, n)
	for i := range recs {
		v := l.next.Add(1)
		recs[i] = &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", v%64), Value: fmt.Appendf(nil, "%d", v)}
	}
	// Not the test's context: a record canceled in flight may still be
	// written, and the ground truth would miss it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range recs {
		l.sent.add(r)
	}
	return nil
}

// TestPartitionsAddedWhileRunningLoseNothing adds partitions to a topic
// while a group consumes it under load from a keyed producer, and checks
// that the totals count every record produced after the consumer started,
// exactly once: a partition created after the group started has no
// checkpoint and no commit, and starting it at "latest" would skip the
// records produced to it before the consumer noticed it. Right after each
// addition, a producer that knows the new partitions at once writes a burst,
// so that the new partitions hold records before the consumer notices them.
func TestPartitionsAddedWhileRunningLoseNothing(t *testing.T) {
	// Both the producers and the consumer see new partitions within 200ms.
	metadata := []kgo.Opt{kgo.MetadataMinAge(10 * time.Millisecond), kgo.MetadataMaxAge(200 * time.Millisecond)}
	for _, tc := range []struct {
		name     string
		strategy func(*recovery.MemoryStore[totals]) recovery.Strategy
		opts     []consumer.Opt
	}{
		{
			name: "CheckpointSkip, latest without checkpoint",
			strategy: func(store *recovery.MemoryStore[totals]) recovery.Strategy {
				return recovery.NewCheckpointSkip(store, recovery.WithLogger(quiet))
			},
		},
		{
			// The store only tallies here; Stateless starts from commits.
			name:     "Stateless, ConsumeStartOffset latest",
			strategy: func(*recovery.MemoryStore[totals]) recovery.Strategy { return recovery.NewStateless() },
			opts:     []consumer.Opt{consumer.ClientOpts(kgo.ConsumeStartOffset(kgo.NewOffset().AtEnd()))},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cluster := kafkatest.NewCluster(t, 2, topic)
			partitions := int32(2)
			store := recovery.NewMemoryStore(totals{})
			checkpoints := func() map[int32]int64 {
				cps, err := store.Checkpoints(context.Background(), topic, span32(partitions))
				if err != nil {
					t.Fatal(err)
				}
				return cps
			}
			h := consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
				return store.Apply(ctx, recovery.CheckpointOf(r), func(s *totals) {
					if !bytes.Equal(r.Key, warmKey) {
						s.add(r)
					}
				})
			})
			opts := append(slices.Clone(tc.opts), consumer.ClientOpts(metadata...))
			stop := kafkatest.Run(t, newConsumer(t, h, testOpts(cluster, "g", tc.strategy(store), opts...)...))

			// "latest" is resolved after the assignment: write to each
			// partition until the consumer handled a record of it, so that
			// everything produced from now on is after its start.
			warm := cluster.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
			kafkatest.WaitFor(t, 10*time.Second, "a record handled on each partition", func() bool {
				cps := checkpoints()
				for p := range partitions {
					if _, ok := cps[p]; !ok {
						if err := warm.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Partition: p, Key: warmKey, Value: []byte("0")}).FirstErr(); err != nil {
							t.Fatal(err)
						}
					}
				}
				return len(cps) == int(partitions)
			})

			var load keyedLoad
			load.sent = totals{}
			prod := cluster.Client(t, append(slices.Clone(metadata), kgo.ProducerLinger(0))...)
			var stopped atomic.Bool
			done := make(chan error, 1)
			go func() {
				for !stopped.Load() {
					if err := load.produce(prod, 10); err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			handled := func() int64 {
				var n int64
				store.Read(func(s totals) { n = s.records() })
				return n
			}
			kafkatest.WaitFor(t, 10*time.Second, "load records handled", func() bool { return handled() > 0 })

			for _, add := range []int{2, 3} {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				resp, err := cluster.Admin.CreatePartitions(ctx, add, topic)
				cancel()
				if err == nil {
					err = resp.Error()
				}
				if err != nil {
					t.Fatalf("adding %d partitions: %v", add, err)
				}
				old := partitions
				partitions += int32(add)
				// A new client reads the metadata now, so it writes to
				// the new partitions before the consumer can notice them.
				burst := cluster.Client(t, kgo.ProducerLinger(0))
				if err := load.produce(burst, 200); err != nil {
					t.Fatal(err)
				}
				ends := cluster.EndOffsets(t, topic)
				for p := old; p < partitions; p++ {
					if ends[p] == 0 {
						t.Fatalf("the burst wrote nothing to new partition %d (ends %v)", p, ends)
					}
				}
				kafkatest.WaitFor(t, 10*time.Second, fmt.Sprintf("a record handled on each of %d partitions", partitions), func() bool {
					return len(checkpoints()) == int(partitions)
				})
			}
			stopped.Store(true)
			if err := <-done; err != nil {
				t.Fatalf("producing: %v", err)
			}

			ends := cluster.EndOffsets(t, topic)
			kafkatest.WaitFor(t, 10*time.Second, "every record handled", func() bool {
				cps := checkpoints()
				for p, end := range ends {
					if cp, ok := cps[p]; end > 0 && (!ok || cp != end-1) {
						return false
					}
				}
				return true
			})
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			var got totals
			store.Read(func(s totals) { got = maps.Clone(s) })
			if !maps.Equal(got, load.sent) {
				t.Errorf("handled %d of the %d records produced after the start; totals by key:\n got %v\nwant %v",
					got.records(), load.sent.records(), got, load.sent)
			}
			t.Logf("%d records over %d partitions (ends %v)", load.sent.records(), partitions, ends)
		})
	}
}

// span32 returns the partitions 0..n-1.
func span32(n int32) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(i)
	}
	return out
}
