package fault

// BreakerState is the state of a dead-letter router's circuit breaker.
type BreakerState int

const (
	// BreakerClosed lets records through; records that fail for good are
	// dead-lettered.
	BreakerClosed BreakerState = iota
	// BreakerOpen holds every record: nothing is handled or dead-lettered
	// until the cool-down passes.
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

// RouterStats is a snapshot of a dead-letter router's counters, for
// metrics.
type RouterStats struct {
	DeadLettered  int64        // dead letters written and acknowledged
	WriteFailures int64        // dead-letter writes that failed and are retried
	Breaker       BreakerState // the circuit breaker's state
	BreakerOpens  int64        // times the circuit breaker opened
}

// A StatsReporter reports a dead-letter router's counters; *dlq.Router is
// one. A lag monitor exports those of the router attached to the same
// Consumer.
type StatsReporter interface {
	RouterStats() RouterStats
}
