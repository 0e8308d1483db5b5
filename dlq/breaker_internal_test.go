package dlq

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/kconsumer/kconsumer/fault"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestBreaker(window int, threshold float64, coolDown time.Duration) (*breaker, *clock, *[]transition) {
	var changes []transition
	b := newBreaker(breakerCfg{window: window, threshold: threshold, coolDown: coolDown},
		slog.New(slog.DiscardHandler), func(from, to fault.BreakerState) {
			changes = append(changes, transition{from: from, to: to})
		})
	c := &clock{t: time.Unix(1000, 0)}
	b.now = c.now
	return b, c, &changes
}

func why() string { return "p/0@1: boom" }

// fail records a failure of an admitted record and returns whether it is
// dead-lettered.
func fail(b *breaker, probe bool, o outcome) bool {
	dl, _ := b.failed(probe, o, why)
	return dl
}

func state(b *breaker) fault.BreakerState {
	s, _, _ := b.stats()
	return s
}

func TestBreakerOpensAtThresholdOverAFullWindow(t *testing.T) {
	b, _, _ := newTestBreaker(4, 0.5, time.Second)
	for range 10 {
		if ok, _ := b.admit(); !ok {
			t.Fatal("closed breaker refused a record")
		}
		b.succeeded(false)
	}
	// One failure in the last four: below the threshold.
	if !fail(b, false, final) {
		t.Fatal("first failure refused dead-lettering")
	}
	// Two in the last four: at the threshold, so the breaker opens and
	// this failure is held.
	dl, held := b.failed(false, final, why)
	if dl || !held {
		t.Fatalf("failure reaching the threshold: dead-lettered %v, held %v; want held", dl, held)
	}
	s, opens, reason := b.stats()
	if s != fault.BreakerOpen || opens != 1 {
		t.Fatalf("state %v after %d opens, want open after 1", s, opens)
	}
	if want := "2 of the last 4 records failed after retries; the last: p/0@1: boom"; reason != want {
		t.Fatalf("reason %q, want %q", reason, want)
	}
}

func TestBreakerNeedsAFullWindow(t *testing.T) {
	b, _, _ := newTestBreaker(4, 0.5, time.Second)
	for i := range 3 {
		if !fail(b, false, final) {
			t.Fatalf("failure %d of a window of 4 was held", i+1)
		}
	}
	if fail(b, false, final) {
		t.Fatal("fourth failure in a row was dead-lettered")
	}
}

func TestBreakerIgnoresFailuresThatAreRetried(t *testing.T) {
	b, _, _ := newTestBreaker(2, 0.5, time.Second)
	for range 10 {
		if dl, held := b.failed(false, retry, why); dl || held {
			t.Fatalf("retried failure: dead-lettered %v, held %v", dl, held)
		}
	}
	if s := state(b); s != fault.BreakerClosed {
		t.Fatalf("state %v after retried failures, want closed", s)
	}
}

// Poison is dead-lettered and never counted, in any state.
func TestBreakerNeverCountsPoison(t *testing.T) {
	b, clk, _ := newTestBreaker(2, 0.5, time.Second)
	for range 1000 {
		if ok, _ := b.admit(); !ok || !fail(b, false, poison) {
			t.Fatal("a poison record was held")
		}
	}
	if s, opens, _ := b.stats(); s != fault.BreakerClosed || opens != 0 {
		t.Fatalf("state %v after %d opens from poison alone, want closed, never opened", s, opens)
	}
	// Open it for real, then probe with poison: no verdict.
	fail(b, false, final)
	fail(b, false, final)
	if s := state(b); s != fault.BreakerOpen {
		t.Fatalf("state %v, want open", s)
	}
	// A record admitted before the breaker opened that turns out poison
	// is dead-lettered all the same.
	if dl, held := b.failed(false, poison, why); !dl || held {
		t.Fatalf("poison in an open breaker: dead-lettered %v, held %v", dl, held)
	}
	clk.t = clk.t.Add(time.Second)
	for i := range 5 {
		ok, probe := b.admit()
		if !ok || !probe {
			t.Fatalf("poison probe %d: admit = %v, %v; want a probe", i, ok, probe)
		}
		if dl, held := b.failed(true, poison, why); !dl || held {
			t.Fatalf("poison probe: dead-lettered %v, held %v", dl, held)
		}
		if s := state(b); s != fault.BreakerHalfOpen {
			t.Fatalf("state %v after a poison probe, want still half-open", s)
		}
	}
	_, probe := b.admit()
	b.succeeded(probe)
	if s, opens, reason := b.stats(); s != fault.BreakerClosed || opens != 1 || reason != "" {
		t.Fatalf("state %v, %d opens, reason %q; want closed after 1, no reason", s, opens, reason)
	}
}

// A retriable record that fails MaxAttempts times in a row counts, but is
// never dead-lettered.
func TestBreakerCountsPersistentRetriableFailures(t *testing.T) {
	b, _, _ := newTestBreaker(2, 1, time.Second)
	if dl, held := b.failed(false, retryCounted, why); dl || held {
		t.Fatalf("counted retry: dead-lettered %v, held %v", dl, held)
	}
	if dl, held := b.failed(false, retryCounted, why); dl || !held {
		t.Fatalf("counted retry opening the breaker: dead-lettered %v, held %v; want held", dl, held)
	}
	if s := state(b); s != fault.BreakerOpen {
		t.Fatalf("state %v, want open", s)
	}
}

func TestBreakerProbesAfterCoolDown(t *testing.T) {
	b, clk, changes := newTestBreaker(1, 1, time.Second)
	fail(b, false, final)
	if ok, _ := b.admit(); ok {
		t.Fatal("open breaker admitted a record")
	}
	clk.t = clk.t.Add(time.Second)
	ok, probe := b.admit()
	if !ok || !probe {
		t.Fatalf("admit after cool-down = %v, %v; want a probe", ok, probe)
	}
	if ok, _ := b.admit(); ok {
		t.Fatal("a second record was admitted while the probe runs")
	}
	// A failed probe opens the breaker for another cool-down; it is
	// held, not dead-lettered, unless its time as an uncertain record is
	// up.
	if dl, held := b.failed(true, final, why); dl || !held {
		t.Fatalf("failed probe: dead-lettered %v, held %v; want held", dl, held)
	}
	if _, _, reason := b.stats(); !strings.HasPrefix(reason, "probe failed: p/0@1") {
		t.Fatalf("reason %q, want the probe's failure", reason)
	}
	if ok, _ := b.admit(); ok {
		t.Fatal("breaker admitted a record right after a failed probe")
	}
	clk.t = clk.t.Add(time.Second)
	if _, probe = b.admit(); !probe || !fail(b, true, finalPass) {
		t.Fatal("a probe whose uncertain time was up was not dead-lettered")
	}
	if ok, _ := b.admit(); ok {
		t.Fatal("breaker admitted a record right after a failed uncertain probe")
	}
	clk.t = clk.t.Add(time.Second)
	// A probe that fails on its first attempt also opens the breaker.
	if _, probe = b.admit(); !probe || fail(b, true, retry) || state(b) != fault.BreakerOpen {
		t.Fatal("a probe with a retriable failure did not open the breaker again")
	}
	clk.t = clk.t.Add(time.Second)
	// An abandoned probe lets another record probe.
	_, probe = b.admit()
	b.abandoned(probe)
	ok, probe = b.admit()
	if !ok || !probe {
		t.Fatal("no probe after an abandoned one")
	}
	b.succeeded(true)
	if s := state(b); s != fault.BreakerClosed {
		t.Fatalf("state %v after a successful probe, want closed", s)
	}
	want := []transition{
		{from: fault.BreakerClosed, to: fault.BreakerOpen}, {from: fault.BreakerOpen, to: fault.BreakerHalfOpen}, {from: fault.BreakerHalfOpen, to: fault.BreakerOpen},
		{from: fault.BreakerOpen, to: fault.BreakerHalfOpen}, {from: fault.BreakerHalfOpen, to: fault.BreakerOpen},
		{from: fault.BreakerOpen, to: fault.BreakerHalfOpen}, {from: fault.BreakerHalfOpen, to: fault.BreakerOpen},
		{from: fault.BreakerOpen, to: fault.BreakerHalfOpen}, {from: fault.BreakerHalfOpen, to: fault.BreakerClosed},
	}
	if len(*changes) != len(want) {
		t.Fatalf("changes %v, want %v", *changes, want)
	}
	for i := range want {
		if (*changes)[i] != want[i] {
			t.Fatalf("changes %v, want %v", *changes, want)
		}
	}
}

func TestBreakerOff(t *testing.T) {
	b := newBreaker(breakerCfg{off: true}, slog.New(slog.DiscardHandler), nil)
	for range 100 {
		if ok, _ := b.admit(); !ok || !fail(b, false, final) || fail(b, false, retryCounted) {
			t.Fatal("a breaker that is off held a record or dead-lettered a retriable one")
		}
	}
}

func TestBreakerClosesWithAFreshWindow(t *testing.T) {
	b, clk, _ := newTestBreaker(4, 0.5, time.Second)
	for range 4 {
		fail(b, false, final)
	}
	clk.t = clk.t.Add(time.Second)
	_, probe := b.admit()
	b.succeeded(probe)
	for i := range 3 {
		if !fail(b, false, final) {
			t.Fatalf("failure %d after closing was held: the window did not start over", i+1)
		}
	}
}
