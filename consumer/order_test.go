package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
)

// keyLog records, per key, the values a handler saw, and how many handlers
// ran at once at most.
type keyLog struct {
	mu      sync.Mutex
	values  map[string][]int
	n       int
	running atomic.Int64
	maxRun  atomic.Int64
}

func newKeyLog() *keyLog { return &keyLog{values: make(map[string][]int)} }

func (l *keyLog) Handle(_ context.Context, r *kgo.Record) error {
	cur := l.running.Add(1)
	defer l.running.Add(-1)
	for {
		m := l.maxRun.Load()
		if cur <= m || l.maxRun.CompareAndSwap(m, cur) {
			break
		}
	}
	time.Sleep(time.Duration(rand.IntN(1000)) * time.Microsecond) // uneven work per record
	v, err := strconv.Atoi(string(r.Value))
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.values[string(r.Key)] = append(l.values[string(r.Key)], v)
	l.n++
	l.mu.Unlock()
	return nil
}

func (l *keyLog) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

func TestKeyOrderKeepsPerKeyOrder(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 2, topic)
	const records, keys = 3000, 40
	produced := cluster.ProduceSeq(t, topic, records, keys)
	log := newKeyLog()
	c, err := consumer.New(log, testOpts(cluster, "g", consumer.Order(consumer.KeyOrder), consumer.Workers(16))...)
	if err != nil {
		t.Fatal(err)
	}
	stop := kafkatest.Run(t, c)
	kafkatest.WaitFor(t, 60*time.Second, "every record handled", func() bool { return log.total() >= records })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := make(map[string][]int)
	for i, r := range produced {
		want[string(r.Key)] = append(want[string(r.Key)], i)
	}
	for k, vs := range want {
		if fmt.Sprint(log.values[k]) != fmt.Sprint(vs) {
			t.Fatalf("key %s: handled %v, produced %v", k, log.values[k], vs)
		}
	}
	if m := log.maxRun.Load(); m <= 2 {
		t.Fatalf("at most %d handlers ran at once on 2 partitions: keys did not run in parallel", m)
	}
	if got := cluster.Committed(t, "g", topic); got[0]+got[1] != records {
		t.Fatalf("committed %v, want the end of both partitions", got)
	}
}

func TestKeyOrderCrashLosesNothing(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			cluster := kafkatest.NewCluster(t, 3, topic)
			const records, maxInFlight = 3000, 300
			produced := cluster.ProduceSeq(t, topic, records, 60)
			requests := cluster.WatchCommits()
			rng := rand.New(rand.NewPCG(seed, seed))

			first := newRecorder()
			h := consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
				time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
				return first.Handle(ctx, r)
			})
			c1, err := consumer.New(h, testOpts(cluster, "g",
				consumer.Order(consumer.KeyOrder), consumer.Workers(16),
				consumer.MaxInFlight(maxInFlight), consumer.MaxInFlightPerPartition(maxInFlight/3),
				consumer.CommitInterval(100*time.Millisecond))...)
			if err != nil {
				t.Fatal(err)
			}
			stop1 := kafkatest.Run(t, c1)
			crashAt := 300 + rng.IntN(records-600)
			kafkatest.WaitFor(t, 60*time.Second, "records handled before the crash", func() bool { return first.total() >= crashAt })
			restore := cluster.RejectCommits()
			_ = stop1() // the final commit is rejected: a crash
			restore()
			committed := cluster.Committed(t, "g", topic)
			stored := requests.Last(t, topic) // what the crashed consumer tried to commit last

			finished := make(map[int32]map[int64]bool)
			for p := range int32(3) {
				finished[p] = make(map[int64]bool)
			}
			for p, offs := range first.offsets() {
				for _, o := range offs {
					finished[p][o] = true
				}
			}
			// Neither the committed nor the last stored offset passes a
			// record that did not finish.
			dups, beyondStored := 0, 0
			for p, offs := range expectedOffsets(produced) {
				for _, o := range offs {
					if (o < committed[p] || o < stored[p]) && !finished[p][o] {
						t.Fatalf("partition %d: committed %d, stored %d, but offset %d never finished", p, committed[p], stored[p], o)
					}
					if o >= committed[p] && finished[p][o] {
						dups++
					}
					if o >= stored[p] && finished[p][o] {
						beyondStored++
					}
				}
			}
			// Records finished beyond the first unfinished one count as
			// in flight until the stored offset passes them, so the
			// limit bounds them.
			if beyondStored > maxInFlight {
				t.Fatalf("%d records finished beyond the stored offsets, more than MaxInFlight %d", beyondStored, maxInFlight)
			}

			second := newRecorder()
			c2, err := consumer.New(second, testOpts(cluster, "g", consumer.Order(consumer.KeyOrder))...)
			if err != nil {
				t.Fatal(err)
			}
			stop2 := kafkatest.Run(t, c2)
			remaining := 0
			for p, offs := range expectedOffsets(produced) {
				remaining += int(offs[len(offs)-1] + 1 - committed[p])
			}
			kafkatest.WaitFor(t, 60*time.Second, "the rest handled", func() bool { return second.total() >= remaining })
			if err := stop2(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			for p, offs := range second.offsets() {
				for _, o := range offs {
					finished[p][o] = true
				}
			}
			for p, offs := range expectedOffsets(produced) {
				for _, o := range offs {
					if !finished[p][o] {
						t.Fatalf("partition %d offset %d lost across the crash", p, o)
					}
				}
			}
			t.Logf("crash after %d records; %d handled twice, %d of them beyond the stored offsets", crashAt, dups, beyondStored)
		})
	}
}

func TestParkedKeyHoldsOnlyItself(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic)
	const records, keys = 500, 10
	produced := cluster.ProduceSeq(t, topic, records, keys)
	const parkedOffset = 33 // key k3
	parkedKey := string(produced[parkedOffset].Key)
	var release atomic.Bool
	var attempts atomic.Int64
	rec := newRecorder()
	var afterPark atomic.Int64 // records of other keys handled after the parked offset
	h := consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		if r.Offset == parkedOffset && !release.Load() {
			attempts.Add(1)
			return errors.New("sink down for this key")
		}
		if string(r.Key) == parkedKey && r.Offset > parkedOffset && !release.Load() {
			t.Errorf("offset %d of the parked key ran before the parked record", r.Offset)
		}
		if string(r.Key) != parkedKey && r.Offset > parkedOffset {
			afterPark.Add(1)
		}
		return rec.Handle(ctx, r)
	})
	c, err := consumer.New(h, testOpts(cluster, "g",
		consumer.Order(consumer.KeyOrder), consumer.Workers(8),
		consumer.CommitInterval(100*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	stop := kafkatest.Run(t, c)
	otherKeys := 0
	for _, r := range produced[parkedOffset+1:] {
		if string(r.Key) != parkedKey {
			otherKeys++
		}
	}
	kafkatest.WaitFor(t, 30*time.Second, "the other keys to run past the parked record", func() bool {
		return afterPark.Load() == int64(otherKeys)
	})
	kafkatest.WaitFor(t, 30*time.Second, "the offsets before the parked record committed", func() bool {
		return cluster.Committed(t, "g", topic)[0] == parkedOffset
	})
	if attempts.Load() < 2 {
		t.Fatalf("the parked record was tried %d times", attempts.Load())
	}
	if got := cluster.Committed(t, "g", topic)[0]; got != parkedOffset {
		t.Fatalf("committed %d past the parked record at %d", got, parkedOffset)
	}
	release.Store(true)
	kafkatest.WaitFor(t, 30*time.Second, "every record handled", func() bool { return rec.total() >= records })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := cluster.Committed(t, "g", topic)[0]; got != records {
		t.Fatalf("committed %d after release, want %d", got, records)
	}
}
