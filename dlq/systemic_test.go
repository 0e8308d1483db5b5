package dlq_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/dlq"
	"github.com/kconsumer/kconsumer/fault"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
)

// watcher is an Observer that counts what a monitor would: calls held by
// the breaker apart from the others.
type watcher struct {
	held, calls atomic.Int64
}

func (w *watcher) Attach(a *consumer.Attachment) error { a.Observe(w); return nil }

func (w *watcher) Handled(_ *kgo.Record, _ time.Duration, err error) {
	if errors.Is(err, fault.ErrHeld) {
		w.held.Add(1)
		return
	}
	w.calls.Add(1)
}
func (*watcher) Polled(kgo.FetchTopicPartition)                {}
func (*watcher) Committed(map[string]map[int32]int64, error)   {}
func (*watcher) Rebalanced(consumer.Event, map[string][]int32) {}
func (*watcher) Paused(string, int32, bool)                    {}

// breakerLines counts the Router's log lines about its breaker.
type breakerLines struct {
	slog.Handler
	n *atomic.Int64
}

func (h breakerLines) Enabled(context.Context, slog.Level) bool { return true }

func (h breakerLines) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "dlq: circuit breaker") {
		h.n.Add(1)
	}
	return nil
}

// A sink outage (retriable errors that persist past MaxAttempts on every
// partition) opens the breaker although no record is ever dead-lettered;
// while it is open, the Router reports which partitions it holds and why,
// observers can tell the holds from handler failures, and consumption
// resumes once the sink is back.
func TestSinkOutageOpensTheBreaker(t *testing.T) {
	const partitions, n = 3, 30
	cluster := kafkatest.NewCluster(t, partitions, topic, dlqTopic)
	recs := cluster.ProduceSeq(t, topic, n, 10)
	var failing atomic.Bool
	failing.Store(true)
	var calls atomic.Int64
	h := newHandler(func(*kgo.Record, int) error {
		calls.Add(1)
		if failing.Load() {
			return fault.MarkRetriable(errors.New("sink down: connection refused"))
		}
		return nil
	})
	var lines atomic.Int64
	var mu sync.Mutex
	var changes []string
	router := newRouter(t, cluster,
		dlq.WithLogger(slog.New(breakerLines{slog.DiscardHandler, &lines})),
		dlq.MaxAttempts(2),
		dlq.Breaker(4, 0.5, 100*time.Millisecond),
		dlq.OnBreakerChange(func(from, to fault.BreakerState) {
			mu.Lock()
			changes = append(changes, from.String()+">"+to.String())
			mu.Unlock()
		}),
	)
	w := new(watcher)
	stop := start(t, cluster, router, h, consumer.With(w))
	kafkatest.WaitFor(t, 20*time.Second, "the breaker open, holding partitions, with a reason", func() bool {
		s := router.RouterStats()
		return s.Breaker == fault.BreakerOpen && s.Held > 0 && s.Held <= partitions &&
			strings.Contains(s.Reason, "failed after retries; the last: events/") &&
			strings.Contains(s.Reason, ": retriable error after ") &&
			strings.HasSuffix(s.Reason, " attempts: retriable: sink down: connection refused")
	})
	kafkatest.WaitFor(t, 20*time.Second, "two probes failed", func() bool { return router.RouterStats().BreakerOpens >= 3 })
	// Consumption paused: at most the record in hand on each partition
	// was tried.
	if tried := h.tried(); tried > partitions {
		t.Errorf("%d records tried during the outage, want at most one per partition (%d)", tried, partitions)
	}

	failing.Store(false)
	ends := cluster.EndOffsets(t, topic)
	kafkatest.WaitFor(t, 20*time.Second, "offsets committed to the end once the sink is back", func() bool {
		c := cluster.Committed(t, group, topic)
		for p, end := range ends {
			if c[p] != end {
				return false
			}
		}
		return true
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	s := router.RouterStats()
	if s.Breaker != fault.BreakerClosed || s.Held != 0 || s.Reason != "" || s.DeadLettered != 0 {
		t.Errorf("Stats = %+v, want closed, nothing held, no reason, no dead letter", s)
	}
	if d := total(cluster.EndOffsets(t, dlqTopic)); d != 0 {
		t.Errorf("%d dead letters of retriable failures, want none", d)
	}
	if got := len(h.handled()); got != len(recs) {
		t.Errorf("%d records handled, want each of the %d once", got, len(recs))
	}
	// Ground truth for observers: every result that is not a hold is a
	// handler call, and holds were seen.
	if w.held.Load() == 0 || w.calls.Load() != calls.Load() {
		t.Errorf("observer saw %d holds and %d other results; the handler was called %d times", w.held.Load(), w.calls.Load(), calls.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	if int64(len(changes)) != lines.Load() {
		t.Errorf("%d breaker log lines for %d state changes %v, want one each", lines.Load(), len(changes), changes)
	}
	if len(changes) < 5 || changes[0] != "closed>open" || changes[len(changes)-1] != "half-open>closed" {
		t.Errorf("breaker changes %v, want closed>open, ..., half-open>closed", changes)
	}
}

// Records that fail uncertain (a schema ID the registry does not know yet)
// are retried for UncertainFor and then dead-lettered as poison; the
// records after them in the same run wait no longer, and a good record
// ends the run.
func TestUncertainRecordsAreRetriedForABoundedTime(t *testing.T) {
	const uncertainFor = 300 * time.Millisecond
	cluster := kafkatest.NewCluster(t, 1, topic, dlqTopic)
	recs := produceValues(t, cluster, "a", "unknown", "unknown", "unknown", "b", "late", "c")
	var lateCalls atomic.Int64
	var mu sync.Mutex
	var callTimes = make(map[int64][]time.Time)
	h := newHandler(func(r *kgo.Record, _ int) error {
		mu.Lock()
		callTimes[r.Offset] = append(callTimes[r.Offset], time.Now())
		mu.Unlock()
		switch string(r.Value) {
		case "unknown":
			return fault.MarkUncertain(errors.New("schema ID 42 not found in the registry"))
		case "late": // a registry replica that catches up after two tries
			if lateCalls.Add(1) <= 2 {
				return fault.MarkUncertain(errors.New("schema ID 43 not found in the registry"))
			}
		}
		return nil
	})
	router := newRouter(t, cluster, dlq.UncertainFor(uncertainFor))
	stop := start(t, cluster, router, h)
	kafkatest.WaitFor(t, 20*time.Second, "the partition committed to its end", func() bool {
		return cluster.Committed(t, group, topic)[0] == int64(len(recs))
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	mu.Lock()
	first := callTimes[1]
	mu.Unlock()
	if len(first) < 2 {
		t.Fatalf("the first uncertain record was called %d times, want retries", len(first))
	}
	if d := first[len(first)-1].Sub(first[0]); d < uncertainFor {
		t.Errorf("the first uncertain record was retried for %v, want at least %v", d, uncertainFor)
	}
	for _, o := range []int64{2, 3} {
		if n := h.callsOf(recs[o]); n != 1 {
			t.Errorf("record %d of the run was called %d times, want 1: the run's time was up", o, n)
		}
	}
	if n := h.callsOf(recs[5]); n != 3 {
		t.Errorf("the record that decodes on the third try was called %d times, want 3", n)
	}
	want := []string{"0/0", "0/4", "0/5", "0/6"}
	if got := h.handled(); !slices.Equal(got, want) {
		t.Errorf("handled %v, want %v", got, want)
	}
	letters := cluster.ReadAll(t, dlqTopic)
	if len(letters) != 3 {
		t.Fatalf("%d dead letters, want the 3 unknown records", len(letters))
	}
	for i, rec := range letters {
		l, err := dlq.Parse(rec)
		if err != nil {
			t.Fatal(err)
		}
		if l.Offset != int64(i+1) || l.Class != fault.Poison || !strings.Contains(l.Error, "uncertain: schema ID 42") {
			t.Errorf("dead letter %d: offset %d class %v error %q; want offset %d, poison, the uncertain error", i, l.Offset, l.Class, l.Error, i+1)
		}
	}
	if s := router.RouterStats(); s.DeadLetteredByClass[fault.Uncertain] != 3 || s.DeadLettered != 3 || s.BreakerOpens != 0 {
		t.Errorf("Stats = %+v, want 3 uncertain dead letters, breaker never opened", s)
	}
}
