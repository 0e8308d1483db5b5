package dlq

import (
	"github.com/kconsumer/kconsumer/fault"

	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

type breakerCfg struct {
	window    int
	threshold float64
	coolDown  time.Duration
	off       bool
}

// A breaker counts the outcomes of the last window records, across
// partitions, and opens when too many failed for good.
type breaker struct {
	cfg    breakerCfg
	now    func() time.Time
	logger *slog.Logger
	notify func(from, to fault.BreakerState)

	// healthy is set while the breaker is closed with a full window free
	// of failures: a success then changes nothing, and skips the lock.
	healthy atomic.Bool

	mu       sync.Mutex
	state    fault.BreakerState
	ring     []bool // outcomes, true for a failure
	next     int    // where the next outcome goes in ring
	n        int    // outcomes in ring
	failures int    // failures in ring
	until    time.Time
	probing  bool
	opens    int64
}

func newBreaker(cfg breakerCfg, logger *slog.Logger, notify func(from, to fault.BreakerState)) *breaker {
	b := &breaker{cfg: cfg, now: time.Now, logger: logger, notify: notify}
	if !cfg.off {
		b.ring = make([]bool, cfg.window)
	}
	return b
}

type transition struct{ from, to fault.BreakerState }

// admit reports whether a record may be handled now and whether it is the
// probe of a half-open breaker. A probe must be followed by succeeded,
// failed or abandoned.
func (b *breaker) admit() (ok, probe bool) {
	if b.cfg.off || b.healthy.Load() {
		return true, false
	}
	b.mu.Lock()
	var t transition
	switch b.state {
	case fault.BreakerClosed:
		ok = true
	case fault.BreakerOpen:
		if b.now().Before(b.until) {
			break
		}
		t = b.set(fault.BreakerHalfOpen)
		fallthrough
	case fault.BreakerHalfOpen:
		if !b.probing {
			b.probing = true
			ok, probe = true, true
		}
	}
	b.mu.Unlock()
	b.report(t)
	return ok, probe
}

// succeeded records a record handled successfully.
func (b *breaker) succeeded(probe bool) {
	if b.cfg.off || !probe && b.healthy.Load() {
		return
	}
	b.mu.Lock()
	var t transition
	switch {
	case probe:
		b.probing = false
		t = b.set(fault.BreakerClosed)
	case b.state == fault.BreakerClosed:
		b.push(false)
	}
	b.mu.Unlock()
	b.report(t)
}

// failed records a handler error; final says the record is to be
// dead-lettered, marked that its error is marked poison. It reports whether
// it may be: not while the breaker is open or half-open, nor when this
// failure opens it. A failed probe opens the breaker again, whatever the
// error; if the error marks the record poison, the record is dead-lettered
// all the same, since it would fail every probe.
func (b *breaker) failed(probe, final, marked bool) (deadLetter bool) {
	if b.cfg.off {
		return final
	}
	b.mu.Lock()
	var t transition
	switch {
	case probe:
		b.probing = false
		t = b.set(fault.BreakerOpen)
		deadLetter = final && marked
	case b.state != fault.BreakerClosed || !final:
	default:
		b.push(true)
		if b.n == len(b.ring) && float64(b.failures) >= b.cfg.threshold*float64(b.n) {
			t = b.set(fault.BreakerOpen)
		} else {
			deadLetter = true
		}
	}
	b.mu.Unlock()
	b.report(t)
	return deadLetter
}

// abandoned gives up a probe that reached no verdict, so another record can
// probe.
func (b *breaker) abandoned(probe bool) {
	if !probe {
		return
	}
	b.mu.Lock()
	b.probing = false
	b.mu.Unlock()
}

// push adds an outcome to the window; b.mu is held.
func (b *breaker) push(failure bool) {
	if b.n == len(b.ring) {
		if b.ring[b.next] {
			b.failures--
		}
	} else {
		b.n++
	}
	b.ring[b.next] = failure
	if failure {
		b.failures++
	}
	b.next = (b.next + 1) % len(b.ring)
	b.healthy.Store(b.state == fault.BreakerClosed && b.n == len(b.ring) && b.failures == 0)
}

// set moves to state s; b.mu is held.
func (b *breaker) set(s fault.BreakerState) transition {
	t := transition{b.state, s}
	b.state = s
	b.healthy.Store(false)
	switch s {
	case fault.BreakerOpen:
		b.until = b.now().Add(b.cfg.coolDown)
		b.opens++
	case fault.BreakerClosed:
		clear(b.ring)
		b.next, b.n, b.failures = 0, 0, 0
	}
	return t
}

// report logs and announces a transition; b.mu is not held.
func (b *breaker) report(t transition) {
	if t.from == t.to {
		return
	}
	switch t.to {
	case fault.BreakerOpen:
		b.logger.Error("dlq: circuit breaker open: failures look systemic; holding records and pausing consumption",
			"from", t.from, "cool_down", b.cfg.coolDown)
	case fault.BreakerHalfOpen:
		b.logger.Info("dlq: circuit breaker half-open: probing with one record")
	case fault.BreakerClosed:
		b.logger.Info("dlq: circuit breaker closed: probe succeeded; resuming")
	}
	if b.notify != nil {
		b.notify(t.from, t.to)
	}
}

// stats returns the state and how often the breaker opened.
func (b *breaker) stats() (fault.BreakerState, int64) {
	if b.cfg.off {
		return fault.BreakerClosed, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state, b.opens
}
