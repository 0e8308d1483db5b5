package dlq

import (
	"github.com/kconsumer/kconsumer/fault"

	"log/slog"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestBreaker(window int, threshold float64, coolDown time.Duration) (*breaker, *clock, *[]transition) {
	var changes []transition
	b := newBreaker(breakerCfg{window: window, threshold: threshold, coolDown: coolDown},
		slog.New(slog.DiscardHandler), func(from, to fault.BreakerState) { changes = append(changes, transition{from, to}) })
	c := &clock{t: time.Unix(1000, 0)}
	b.now = c.now
	return b, c, &changes
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
	if !b.failed(false, true, false) {
		t.Fatal("first failure refused dead-lettering")
	}
	// Two in the last four: at the threshold, so the breaker opens and
	// this failure is held.
	if b.failed(false, true, false) {
		t.Fatal("failure reaching the threshold was dead-lettered")
	}
	if s, opens := b.stats(); s != fault.BreakerOpen || opens != 1 {
		t.Fatalf("state %v after %d opens, want open after 1", s, opens)
	}
}

func TestBreakerNeedsAFullWindow(t *testing.T) {
	b, _, _ := newTestBreaker(4, 0.5, time.Second)
	for i := range 3 {
		if !b.failed(false, true, false) {
			t.Fatalf("failure %d of a window of 4 was held", i+1)
		}
	}
	if b.failed(false, true, false) {
		t.Fatal("fourth failure in a row was dead-lettered")
	}
}

func TestBreakerIgnoresFailuresThatAreRetried(t *testing.T) {
	b, _, _ := newTestBreaker(2, 0.5, time.Second)
	for range 10 {
		b.failed(false, false, false)
	}
	if s, _ := b.stats(); s != fault.BreakerClosed {
		t.Fatalf("state %v after retried failures, want closed", s)
	}
}

func TestBreakerProbesAfterCoolDown(t *testing.T) {
	b, clk, changes := newTestBreaker(1, 1, time.Second)
	b.failed(false, true, false)
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
	// A failed probe opens the breaker for another cool-down; it is not
	// dead-lettered unless its error marks it poison.
	if b.failed(true, true, false) {
		t.Fatal("failed probe was dead-lettered")
	}
	if ok, _ := b.admit(); ok {
		t.Fatal("breaker admitted a record right after a failed probe")
	}
	clk.t = clk.t.Add(time.Second)
	if _, probe = b.admit(); !probe || !b.failed(true, true, true) {
		t.Fatal("a probe that failed with a poison mark was not dead-lettered")
	}
	if ok, _ := b.admit(); ok {
		t.Fatal("breaker admitted a record right after a failed poison probe")
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
	if s, _ := b.stats(); s != fault.BreakerClosed {
		t.Fatalf("state %v after a successful probe, want closed", s)
	}
	want := []transition{
		{fault.BreakerClosed, fault.BreakerOpen}, {fault.BreakerOpen, fault.BreakerHalfOpen}, {fault.BreakerHalfOpen, fault.BreakerOpen},
		{fault.BreakerOpen, fault.BreakerHalfOpen}, {fault.BreakerHalfOpen, fault.BreakerOpen},
		{fault.BreakerOpen, fault.BreakerHalfOpen}, {fault.BreakerHalfOpen, fault.BreakerClosed},
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
		if ok, _ := b.admit(); !ok || !b.failed(false, true, false) {
			t.Fatal("a breaker that is off held a record")
		}
	}
}

func TestBreakerClosesWithAFreshWindow(t *testing.T) {
	b, clk, _ := newTestBreaker(4, 0.5, time.Second)
	for range 4 {
		b.failed(false, true, false)
	}
	clk.t = clk.t.Add(time.Second)
	_, probe := b.admit()
	b.succeeded(probe)
	for i := range 3 {
		if !b.failed(false, true, false) {
			t.Fatalf("failure %d after closing was held: the window did not start over", i+1)
		}
	}
}
