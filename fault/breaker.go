package fault

import "errors"

// BreakerState is the state of a dead-letter router's circuit breaker.
type BreakerState int

const (
	// BreakerClosed lets records through; records that fail for good are
	// dead-lettered.
	BreakerClosed BreakerState = iota
	// BreakerOpen holds every record: nothing is handled until the
	// cool-down passes.
	BreakerOpen
	// BreakerHalfOpen lets one record through as a probe; the others wait.
	BreakerHalfOpen
)

func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half-open"
	}
	return "unknown"
}

// ErrHeld matches, with errors.Is, the error a dead-letter router returns
// for a record its open (or half-open) circuit breaker holds: the handler
// was not called, the record is neither handled nor failed, and the
// Consumer offers it again after its retry backoff. An observer counts
// such an error apart from handler failures, and may count the record's
// partition as paused until it is offered and let through.
var ErrHeld = errors.New("held by an open circuit breaker")

// RouterStats is a snapshot of a dead-letter router's counters, for
// metrics.
type RouterStats struct {
	DeadLettered  int64        // dead letters written and acknowledged
	WriteFailures int64        // dead-letter writes that failed and are retried
	Breaker       BreakerState // the circuit breaker's state
	BreakerOpens  int64        // times the circuit breaker opened

	// DeadLetteredByClass counts the dead letters of DeadLettered by the
	// class of the error that sent them there, indexed by Class: Poison
	// (marked or classified poison, and handler panics that used up their
	// attempts), Unclassified (errors that used up their attempts) and
	// Uncertain (errors still failing when their time ran out; their dead
	// letters say poison). Retriable stays 0: retriable records are never
	// dead-lettered. Its elements add up to DeadLettered.
	DeadLetteredByClass [classes]int64

	// Held is how many partitions have a record the circuit breaker holds
	// (a record refused while it is open or half-open, or whose failure
	// opened it); consumption of those partitions is paused. It is 0
	// whenever the breaker is closed.
	Held int

	// Reason says why the circuit breaker is open or half-open: how many
	// of the recent records failed after retries and the last failure, or
	// the failure of the last probe. It is "" while the breaker is closed.
	Reason string
}

// A StatsReporter reports a dead-letter router's counters; *dlq.Router is
// one. A lag monitor exports those of the router attached to the same
// Consumer.
type StatsReporter interface {
	RouterStats() RouterStats
}
