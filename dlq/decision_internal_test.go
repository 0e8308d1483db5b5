package dlq

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/fault"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
)

// table drives a Router's middleware directly, one call at a time, on a
// clock of its own, and checks each row of the decision table.
type table struct {
	t      *testing.T
	r      *Router
	clk    *clock
	cl     *kgo.Client
	calls  map[int64]int
	result map[int64]error // what the handler returns, by offset
}

func newTable(t *testing.T, opts ...RouterOpt) *table {
	t.Helper()
	cluster := kafkatest.NewCluster(t, 2, "t", "t.dlq")
	cl := cluster.Client(t)
	r, err := New(append([]RouterOpt{WithClient(cl), WithLogger(discard)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Unix(1000, 0)}
	r.now, r.breaker.now = clk.now, clk.now
	return &table{t: t, r: r, clk: clk, cl: cl, calls: make(map[int64]int), result: make(map[int64]error)}
}

type verdictKind int

const (
	handled verdictKind = iota // nil: handled or dead-lettered
	failedV                    // the handler's error, not a hold
	heldV                      // held without calling the handler
)

// call offers the record at offset o of partition p and checks the
// verdict.
func (tb *table) call(p int32, o int64, want verdictKind) {
	tb.t.Helper()
	before := tb.calls[o]
	h := tb.r.middleware(consumer.HandlerFunc(func(context.Context, *kgo.Record) error {
		tb.calls[o]++
		if err := tb.result[o]; err != nil {
			if err.Error() == "panic" {
				panic("nil map")
			}
			return err
		}
		return nil
	}))
	err := h.Handle(context.Background(), &kgo.Record{Topic: "t", Partition: p, Offset: o, Value: fmt.Appendf(nil, "%d", o)})
	called := tb.calls[o] > before
	switch {
	case want == handled && err != nil:
		tb.t.Fatalf("%d@%d: Handle = %v, want nil", p, o, err)
	case want == failedV && (err == nil || errors.Is(err, fault.ErrHeld) || !called):
		tb.t.Fatalf("%d@%d: Handle = %v (handler called %v), want the handler's error", p, o, err, called)
	case want == heldV && (!errors.Is(err, fault.ErrHeld) || !errors.Is(err, ErrBreakerOpen) || called):
		tb.t.Fatalf("%d@%d: Handle = %v (handler called %v), want a hold without a call", p, o, err, called)
	}
}

func (tb *table) letters() []Letter {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(tb.cl.OptValue(kgo.SeedBrokers).([]string)...),
		kgo.ConsumeTopics("t.dlq"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		tb.t.Fatal(err)
	}
	defer cl.Close()
	want := tb.r.RouterStats().DeadLettered
	var out []Letter
	for int64(len(out)) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			tb.t.Fatalf("read %d of %d dead letters", len(out), want)
		}
		for _, rec := range fs.Records() {
			l, err := Parse(rec)
			if err != nil {
				tb.t.Fatal(err)
			}
			out = append(out, l)
		}
	}
	return out
}

func TestDecisionTable(t *testing.T) {
	tb := newTable(t, MaxAttempts(3), UncertainFor(time.Minute), Breaker(100, 0.5, time.Second))
	poison := fault.MarkPoison(errors.New("bad magic byte"))
	unclassified := errors.New("mystery")
	retriable := fault.MarkRetriable(errors.New("sink down"))
	uncertain := fault.MarkUncertain(errors.New("schema ID 7 not found"))

	// Poison: dead-lettered at the first call.
	tb.result[0] = poison
	tb.call(0, 0, handled)
	// Unclassified: MaxAttempts calls, then dead-lettered.
	tb.result[1] = unclassified
	tb.call(0, 1, failedV)
	tb.call(0, 1, failedV)
	tb.call(0, 1, handled)
	// A panic: the same, as poison.
	tb.result[2] = errors.New("panic")
	tb.call(0, 2, failedV)
	tb.call(0, 2, failedV)
	tb.call(0, 2, handled)
	// Retriable: never dead-lettered; a failure for the breaker every
	// MaxAttempts calls.
	tb.result[3] = retriable
	for range 10 {
		tb.call(0, 3, failedV)
	}
	if n := tb.r.breaker.failures; n != 1+1+3 { // the unclassified, the panic, 3 budgets
		t.Fatalf("%d failures in the window, want 5", n)
	}
	delete(tb.result, 3)
	tb.call(0, 3, handled)

	// Uncertain: retried for UncertainFor, then dead-lettered as poison.
	tb.result[4] = uncertain
	tb.call(0, 4, failedV)
	tb.clk.t = tb.clk.t.Add(59 * time.Second)
	tb.call(0, 4, failedV)
	tb.clk.t = tb.clk.t.Add(time.Second)
	tb.call(0, 4, handled)
	// The next record of the run is dead-lettered at its first failure,
	// poison or not between them.
	tb.result[5] = poison
	tb.call(0, 5, handled)
	tb.result[6] = uncertain
	tb.call(0, 6, handled)
	// Another partition has a run of its own.
	tb.result[7] = uncertain
	tb.call(1, 7, failedV)
	// A success ends the run: the next uncertain record waits again.
	tb.call(0, 8, handled)
	tb.result[9] = uncertain
	tb.call(0, 9, failedV)
	tb.clk.t = tb.clk.t.Add(time.Minute)
	tb.call(0, 9, handled)
	// So does a pause of UncertainFor without an uncertain failure.
	tb.clk.t = tb.clk.t.Add(time.Minute + time.Millisecond)
	tb.result[10] = uncertain
	tb.call(0, 10, failedV)
	// A record that was uncertain and then succeeds is not dead-lettered.
	delete(tb.result, 10)
	tb.call(0, 10, handled)

	s := tb.r.RouterStats()
	want := [len(s.DeadLetteredByClass)]int64{}
	want[fault.Poison], want[fault.Unclassified], want[fault.Uncertain] = 3, 1, 3
	if s.DeadLetteredByClass != want || s.DeadLettered != 7 || s.BreakerOpens != 0 || s.Held != 0 || s.Reason != "" {
		t.Fatalf("Stats = %+v, want dead letters by class %v, 7 in all, breaker never opened", s, want)
	}
	type row struct {
		offset   int64
		class    fault.Class
		attempts int
		err      string
	}
	var got []row
	for _, l := range tb.letters() {
		got = append(got, row{l.Offset, l.Class, l.Attempts, l.Error})
	}
	wantRows := []row{
		{0, fault.Poison, 1, "poison: bad magic byte"},
		{1, fault.Unclassified, 3, "mystery"},
		{2, fault.Poison, 3, "panic: nil map"},
		{4, fault.Poison, 3, "uncertain: schema ID 7 not found"},
		{5, fault.Poison, 1, "poison: bad magic byte"},
		{6, fault.Poison, 1, "uncertain: schema ID 7 not found"},
		{9, fault.Poison, 2, "uncertain: schema ID 7 not found"},
	}
	if len(got) != len(wantRows) {
		t.Fatalf("dead letters %+v, want %+v", got, wantRows)
	}
	for i, w := range wantRows {
		g := got[i]
		if g.offset != w.offset || g.class != w.class || g.attempts != w.attempts || !strings.Contains(g.err, w.err) {
			t.Errorf("dead letter %d = %+v, want %+v", i, g, w)
		}
	}
}

func TestUncertainForZeroDeadLettersAtOnce(t *testing.T) {
	tb := newTable(t, UncertainFor(0))
	tb.result[0] = fault.MarkUncertain(errors.New("schema ID 7 not found"))
	tb.call(0, 0, handled)
	if s := tb.r.RouterStats(); s.DeadLetteredByClass[fault.Uncertain] != 1 {
		t.Fatalf("Stats = %+v, want one uncertain dead letter", s)
	}
}

func TestHeldRecordsAreReportedAndReleased(t *testing.T) {
	tb := newTable(t, MaxAttempts(1), Breaker(2, 1, time.Second))
	boom := errors.New("database unreachable")
	tb.result[0], tb.result[1] = boom, boom
	tb.call(0, 0, handled) // dead-lettered: the window is not full
	tb.call(1, 1, failedV) // opens the breaker: held, not dead-lettered
	s := tb.r.RouterStats()
	if s.Breaker != fault.BreakerOpen || s.Held != 1 || !strings.Contains(s.Reason, "2 of the last 2 records failed after retries; the last: t/1@1: unclassified error after 1 attempts: database unreachable") {
		t.Fatalf("Stats = %+v, want open, 1 partition held, and the failure as the reason", s)
	}
	// Records offered while it is open are held without a call, per
	// partition.
	tb.call(1, 1, heldV)
	tb.call(0, 2, heldV)
	tb.call(0, 3, heldV) // another key of partition 0
	if s := tb.r.RouterStats(); s.Held != 2 {
		t.Fatalf("Held = %d, want 2 partitions", s.Held)
	}
	// A partition revoked is no longer held.
	tb.r.let(map[string][]int32{"t": {0}})
	if s := tb.r.RouterStats(); s.Held != 1 {
		t.Fatalf("Held = %d after partition 0 was revoked, want 1", s.Held)
	}
	// A failed probe opens it again with its own reason; the probe is
	// held again.
	tb.clk.t = tb.clk.t.Add(time.Second)
	tb.call(1, 1, failedV)
	if s := tb.r.RouterStats(); s.Breaker != fault.BreakerOpen || s.Held != 1 || !strings.HasPrefix(s.Reason, "probe failed: t/1@1") {
		t.Fatalf("Stats = %+v, want open again, 1 held, the probe's failure as the reason", s)
	}
	// A successful probe closes it: nothing held, no reason.
	tb.clk.t = tb.clk.t.Add(time.Second)
	tb.call(0, 2, handled)
	if s := tb.r.RouterStats(); s.Breaker != fault.BreakerClosed || s.Held != 0 || s.Reason != "" || s.BreakerOpens != 2 {
		t.Fatalf("Stats = %+v, want closed after 2 opens, nothing held, no reason", s)
	}
	if n := tb.r.nheld.Load(); n != 0 {
		t.Fatalf("%d records still noted as held", n)
	}
}
