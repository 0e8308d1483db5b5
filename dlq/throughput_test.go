package dlq_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
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

// segments is a run of one partition made of segments of n records each,
// good or poison, and one good record after them that marks the end. It
// times each segment from the first call of its first record to the first
// call of the next segment's, so a poison segment includes the
// acknowledgement of its last dead letter.
type segments struct {
	router  *dlq.Router
	took    []time.Duration
	calls   map[int64]int // by offset
	changes int           // breaker state changes
}

func runSegments(tb testing.TB, n int, poison ...bool) *segments {
	tb.Helper()
	cluster := kafkatest.NewCluster(tb, 1, topic, dlqTopic)
	var recs []*kgo.Record
	for i, p := range poison {
		for j := range n {
			v := fmt.Appendf(nil, "%d", i*n+j)
			if p {
				v = append([]byte("poison "), v...)
			}
			recs = append(recs, &kgo.Record{Topic: topic, Key: []byte("k"), Value: v})
		}
	}
	recs = append(recs, &kgo.Record{Topic: topic, Key: []byte("k"), Value: []byte("end")})
	cluster.Produce(tb, recs...)

	var mu sync.Mutex
	s := &segments{calls: make(map[int64]int)}
	starts := make([]time.Time, len(poison)+1)
	errBad := errors.New("bad magic byte")
	h := consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
		if r.Offset%int64(n) == 0 {
			if i := int(r.Offset) / n; starts[i].IsZero() { // the partition's goroutine only
				starts[i] = time.Now()
			}
		}
		mu.Lock()
		s.calls[r.Offset]++
		mu.Unlock()
		if bytes.HasPrefix(r.Value, []byte("poison")) {
			return fault.MarkPoison(errBad)
		}
		return nil
	})
	var changes atomic.Int64
	s.router = newRouter(tb, cluster, dlq.OnBreakerChange(func(_, _ fault.BreakerState) { changes.Add(1) }))
	stop := start(tb, cluster, s.router, h)
	kafkatest.WaitFor(tb, 2*time.Minute, "the partition committed to its end", func() bool {
		return cluster.Committed(tb, group, topic)[0] == int64(len(recs))
	})
	if err := stop(); err != nil {
		tb.Fatalf("Run: %v", err)
	}
	for i := range poison {
		s.took = append(s.took, starts[i+1].Sub(starts[i]))
	}
	s.changes = int(changes.Load())
	return s
}

// TestPoisonRunIsDeadLetteredAtFullSpeed: 1,000 poison records in a row,
// with no good record between them, are all dead-lettered, each after one
// call, in order, and the breaker, with its defaults, never opens. Before
// poison stopped counting, the tenth of them opened it and the rest passed
// one per 30 s cool-down.
func TestPoisonRunIsDeadLetteredAtFullSpeed(t *testing.T) {
	const n = 1000
	s := runSegments(t, n, false, true)
	for o := int64(0); o <= 2*n; o++ {
		if c := s.calls[o]; c != 1 {
			t.Fatalf("record %d called %d times, want 1", o, c)
		}
	}
	st := s.router.RouterStats()
	if st.BreakerOpens != 0 || s.changes != 0 || st.Breaker != fault.BreakerClosed {
		t.Errorf("breaker opened %d times (%d changes), now %v; want it closed throughout", st.BreakerOpens, s.changes, st.Breaker)
	}
	if st.DeadLettered != n || st.DeadLetteredByClass[fault.Poison] != n || st.WriteFailures != 0 {
		t.Errorf("Stats = %+v, want %d poison dead letters", st, n)
	}
	t.Logf("1,000 good records in %v, 1,000 poison records in %v: poison/good throughput %.3f",
		s.took[0], s.took[1], s.took[0].Seconds()/s.took[1].Seconds())
}

// TestPoisonRunDeadLettersInOrder reads the dead letters back.
func TestPoisonRunDeadLettersInOrder(t *testing.T) {
	const n = 200
	cluster := kafkatest.NewCluster(t, 1, topic, dlqTopic)
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, "poison %d", i)}
	}
	cluster.Produce(t, recs...)
	h := newHandler(func(*kgo.Record, int) error { return fault.MarkPoison(errors.New("payload truncated")) })
	router := newRouter(t, cluster, dlq.Breaker(2, 0.5, time.Hour))
	stop := start(t, cluster, router, h)
	kafkatest.WaitFor(t, time.Minute, "the partition committed to its end", func() bool {
		return cluster.Committed(t, group, topic)[0] == n
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	letters := cluster.ReadAll(t, dlqTopic)
	if len(letters) != n {
		t.Fatalf("%d dead letters, want %d", len(letters), n)
	}
	for i, rec := range letters {
		l, err := dlq.Parse(rec)
		if err != nil {
			t.Fatal(err)
		}
		if l.Offset != int64(i) || l.Class != fault.Poison || l.Attempts != 1 || string(rec.Value) != "poison "+strconv.Itoa(i) {
			t.Fatalf("dead letter %d: %+v value %q", i, l, rec.Value)
		}
	}
	if s := router.RouterStats(); s.BreakerOpens != 0 {
		t.Errorf("a window of 2 opened %d times on poison alone", s.BreakerOpens)
	}
}

// BenchmarkDeadLetterThroughput compares records/s through the Router of
// runs of 1,000 poison records, each dead-lettered (written with acks=all
// and waited for before the next), with runs of 1,000 good records (a
// no-op handler), alternating on one partition, four of each per consumer
// run. It reports the median run of each kind as records/s, and
// poison/good, the ratio of the two: the medians keep out the runs that
// happen to wait for a fetch.
func BenchmarkDeadLetterThroughput(b *testing.B) {
	const n = 1000
	var good, bad []time.Duration
	for b.Loop() {
		s := runSegments(b, n, false, true, false, true, false, true, false, true)
		for i, d := range s.took {
			if i%2 == 0 {
				good = append(good, d)
			} else {
				bad = append(bad, d)
			}
		}
		if st := s.router.RouterStats(); st.BreakerOpens != 0 || st.DeadLettered != 4*n {
			b.Fatalf("Stats = %+v, want %d dead letters and a closed breaker", st, 4*n)
		}
	}
	median := func(ds []time.Duration) float64 {
		slices.Sort(ds)
		return ds[len(ds)/2].Seconds()
	}
	goodRate, badRate := n/median(good), n/median(bad)
	b.ReportMetric(goodRate, "good-rec/s")
	b.ReportMetric(badRate, "poison-rec/s")
	b.ReportMetric(badRate/goodRate, "poison/good")
}
