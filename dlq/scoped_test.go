package dlq_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/dlq"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
)

// TestRedriveReachesOnlyTheGroupThatDeadLettered runs two groups over one
// topic. Group a's sink refuses some records, which a dead-letters; group
// b adds every value to a total. Re-driving a's dead letters, twice, must
// give a each of them exactly once and leave b's total exact: b never sees
// a re-driven record, and nothing multiplies.
func TestRedriveReachesOnlyTheGroupThatDeadLettered(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 2, topic, dlqTopic)
	const n = 200
	var recs []*kgo.Record
	truth := 0
	for i := range n {
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(strconv.Itoa(i % 7)), Value: []byte(strconv.Itoa(i))})
		truth += i
	}
	refused := func(v int) bool { return v%10 == 3 }

	var (
		sinkDown atomic.Bool
		mu       sync.Mutex
		aSeen    = make(map[int]int) // value → times a applied it
		bTotal   int
		bHandled int
	)
	sinkDown.Store(true)
	a := consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
		v, _ := strconv.Atoi(string(r.Value))
		if refused(v) && sinkDown.Load() {
			return errors.New("sink refused the record")
		}
		mu.Lock()
		aSeen[v]++
		mu.Unlock()
		return nil
	})
	b := consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
		v, _ := strconv.Atoi(string(r.Value))
		mu.Lock()
		bTotal += v
		bHandled++
		mu.Unlock()
		return nil
	})
	run := func(name string, h consumer.Handler) {
		router, err := dlq.New(dlq.MaxAttempts(1), dlq.NoBreaker())
		if err != nil {
			t.Fatal(err)
		}
		c, err := consumer.New(h, cluster.ConsumerOpts(topic,
			consumer.Group(name), consumer.With(router), consumer.CommitInterval(100*time.Millisecond))...)
		if err != nil {
			t.Fatal(err)
		}
		kafkatest.Run(t, c)
	}
	run("a", a)
	run("b", b)
	cluster.Produce(t, recs...)

	deadLettered := 0
	for i := range n {
		if refused(i) {
			deadLettered++
		}
	}
	kafkatest.WaitFor(t, 30*time.Second, "both groups through the topic", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return bHandled == n && len(aSeen) == n-deadLettered
	})
	kafkatest.WaitFor(t, 30*time.Second, "a's dead letters written", func() bool {
		return total(cluster.EndOffsets(t, dlqTopic)) == int64(deadLettered)
	})

	sinkDown.Store(false)
	for range 2 {
		s := redrive(t, cluster)
		t.Logf("redrive: %+v", s)
	}
	kafkatest.WaitFor(t, 30*time.Second, "a's re-driven records applied", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(aSeen) == n
	})
	// Records still in flight would show up now as more calls.
	kafkatest.WaitFor(t, 30*time.Second, "a's redrive topic committed", func() bool {
		return total(cluster.Committed(t, "a", dlq.RedriveTopic(topic, "a"))) == int64(deadLettered)
	})
	mu.Lock()
	defer mu.Unlock()
	for v, times := range aSeen {
		if times != 1 {
			t.Errorf("group a applied %d %d times, want once", v, times)
		}
	}
	if bTotal != truth || bHandled != n {
		t.Errorf("group b: total %d over %d records, want %d over %d: it saw re-driven records", bTotal, bHandled, truth, n)
	}
	if got := total(cluster.EndOffsets(t, dlq.RedriveTopic(topic, "b"))); got != 0 {
		t.Errorf("%d records on b's redrive topic, want none", got)
	}
}
