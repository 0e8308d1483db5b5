package dlq

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kconsumer/kconsumer/fault"
)

type breakerCfg struct {
	window    int
	threshold float64
	coolDown  time.Duration
	off       bool
}

// An outcome is what a failed call of an admitted record means to the
// breaker; see the decision table in the package documentation.
type outcome int

const (
	// retry: the record is tried again; it has no outcome yet.
	retry outcome = iota
	// retryCounted: the record is tried again, and it has failed another
	// MaxAttempts times in a row (a retriable error that persists): a
	// failure in the window.
	retryCounted
	// poison: the record is dead-lettered at once. It counts for nothing,
	// not even as a probe's verdict.
	poison
	// final: the record failed after retries and is dead-lettered unless
	// the breaker is open or this failure opens it: a failure in the
	// window. As a probe it is held.
	final
	// finalPass: as final, but as a failed probe it is dead-lettered all
	// the same, so that a record that fails every probe cannot hold the
	// breaker open for good.
	finalPass
)

// counts reports whether o is a failure in the window.
func (o outcome) counts() bool { return o == retryCounted || o == final || o == finalPass }

// deadLetters reports whether o dead-letters the record when nothing holds
// it.
func (o outcome) deadLetters() bool { return o == poison || o == final || o == finalPass }

// maxReason bounds the breaker's Reason.
const maxReason = 1024

// A breaker counts the outcomes of the last window records, across
// partitions, and opens when too many failed after retries.
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
	reason   string // why it is not closed
}

func newBreaker(cfg breakerCfg, logger *slog.Logger, notify func(from, to fault.BreakerState)) *breaker {
	b := &breaker{cfg: cfg, now: time.Now, logger: logger, notify: notify}
	if !cfg.off {
		b.ring = make([]bool, cfg.window)
	}
	return b
}

type transition struct {
	from, to fault.BreakerState
	reason   string
}

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
		t = b.set(fault.BreakerHalfOpen, b.reason)
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
		t = b.set(fault.BreakerClosed, "")
	case b.state == fault.BreakerClosed:
		b.push(false)
	}
	b.mu.Unlock()
	b.report(t)
}

// failed records a failed call of an admitted record, whose meaning is o.
// It reports whether the record is to be dead-lettered: poison always;
// final and finalPass unless the breaker is open or half-open, or this
// failure opens it; a failed probe also when o is finalPass. Any failed
// probe but a poison one opens the breaker again; a poison one leaves it
// half-open, and the next record admitted probes. It also reports whether
// the breaker holds the record: it is not dead-lettered and the breaker is
// not closed. why describes the failure, for Reason; it is called only when
// the breaker opens.
func (b *breaker) failed(probe bool, o outcome, why func() string) (deadLetter, held bool) {
	if b.cfg.off {
		return o.deadLetters(), false
	}
	b.mu.Lock()
	var t transition
	switch {
	case o == poison:
		if probe {
			b.probing = false
		}
		deadLetter = true
	case probe:
		b.probing = false
		t = b.set(fault.BreakerOpen, "probe failed: "+why())
		deadLetter = o == finalPass
	case b.state != fault.BreakerClosed || !o.counts():
		// Admitted before the breaker opened, so held now; or not an
		// outcome yet.
	default:
		b.push(true)
		if b.n == len(b.ring) && float64(b.failures) >= b.cfg.threshold*float64(b.n) {
			t = b.set(fault.BreakerOpen, fmt.Sprintf("%d of the last %d records failed after retries; the last: %s",
				b.failures, b.n, why()))
		} else {
			deadLetter = o.deadLetters()
		}
	}
	held = !deadLetter && b.state != fault.BreakerClosed
	b.mu.Unlock()
	b.report(t)
	return deadLetter, held
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

// set moves to state s for reason; b.mu is held.
func (b *breaker) set(s fault.BreakerState, reason string) transition {
	t := transition{from: b.state, to: s, reason: truncate(reason, maxReason)}
	b.state, b.reason = s, t.reason
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

// report logs and announces a transition, one log line each; b.mu is not
// held.
func (b *breaker) report(t transition) {
	if t.from == t.to {
		return
	}
	switch t.to {
	case fault.BreakerOpen:
		b.logger.Error("dlq: circuit breaker open: failures look systemic; holding records and pausing consumption",
			"from", t.from, "cool_down", b.cfg.coolDown, "reason", t.reason)
	case fault.BreakerHalfOpen:
		b.logger.Info("dlq: circuit breaker half-open: probing with one record")
	case fault.BreakerClosed:
		b.logger.Info("dlq: circuit breaker closed: probe succeeded; resuming")
	}
	if b.notify != nil {
		b.notify(t.from, t.to)
	}
}

// stats returns the state, how often the breaker opened, and why it is not
// closed.
func (b *breaker) stats() (fault.BreakerState, int64, string) {
	if b.cfg.off {
		return fault.BreakerClosed, 0, ""
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state, b.opens, b.reason
}
