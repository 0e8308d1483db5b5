package lag

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kconsumer/kconsumer/dlq"
)

// ErrInvalidOption is returned by NewMonitor, wrapped, for a missing or
// conflicting option.
var ErrInvalidOption = errors.New("lag: invalid option")

// Opt configures a Monitor.
type Opt interface{ apply(*cfg) }

type opt func(*cfg)

func (o opt) apply(c *cfg) { o(c) }

// A Readiness says whether the Consumer's position is ready to serve: nil
// when it is, an error saying why not otherwise. The strategies of package
// recovery implement it (a FullReplay is ready once it has caught up).
type Readiness interface {
	Ready() error
}

// ReadyFunc adapts a function to a Readiness.
type ReadyFunc func() error

// Ready returns f().
func (f ReadyFunc) Ready() error { return f() }

// DeadLetters is read at every scrape for the dead-letter metrics; a
// *dlq.Router implements it.
type DeadLetters interface {
	Stats() dlq.Stats
}

type cfg struct {
	group     string
	grouped   bool // the Consumer commits to group
	groupOpts int  // how many of Group and NoGroup were given
	reg       prometheus.Registerer
	ready     Readiness
	dead      DeadLetters
	window    int
	stuck     time.Duration
	now       func() time.Time
	errs      []error
}

func defaultCfg() cfg {
	return cfg{window: 10, stuck: time.Minute, now: time.Now}
}

// Group names the consumer group of the observed Consumer, as given to
// consumer.Group. It is the value of every metric's group label, and lag in
// records counts from the offsets the group committed. Without Group (or
// NoGroup), the Monitor observes a Consumer without a group and the group
// label is empty.
func Group(id string) Opt {
	return opt(func(c *cfg) {
		c.group, c.grouped = id, true
		c.groupOpts++
		if id == "" {
			c.errs = append(c.errs, fmt.Errorf("%w: empty Group; use NoGroup for a consumer without one", ErrInvalidOption))
		}
	})
}

// NoGroup says the observed Consumer has no group: it reads every partition
// itself and commits nothing (a FullReplay, for example). Lag in records
// counts from the processed offsets, and label is the value of the group
// label so that dashboards can tell such consumers apart. This is the
// default, with an empty label.
func NoGroup(label string) Opt {
	return opt(func(c *cfg) {
		c.group, c.grouped = label, false
		c.groupOpts++
	})
}

// Registerer sets where the Monitor registers its metrics: its own
// collector when NewMonitor runs, and the franz-go client metrics of
// ClientHooks when the client is created. The default is none: the Monitor
// still evaluates lag, status and health, but exports nothing. The
// registry is the caller's; nothing is registered globally.
func Registerer(reg prometheus.Registerer) Opt {
	return opt(func(c *cfg) {
		if reg == nil {
			c.errs = append(c.errs, fmt.Errorf("%w: nil Registerer", ErrInvalidOption))
		}
		c.reg = reg
	})
}

// WithReadiness makes /readyz (and Ready) also wait for r, typically the
// Consumer's recovery strategy; the default is no such condition.
func WithReadiness(r Readiness) Opt {
	return opt(func(c *cfg) {
		if r == nil {
			c.errs = append(c.errs, fmt.Errorf("%w: nil Readiness", ErrInvalidOption))
		}
		c.ready = r
	})
}

// WithDeadLetters exports the counters of d, typically the Consumer's
// *dlq.Router, as the kconsumer_dlq_* metrics; the default exports none.
func WithDeadLetters(d DeadLetters) Opt {
	return opt(func(c *cfg) {
		if d == nil {
			c.errs = append(c.errs, fmt.Errorf("%w: nil DeadLetters", ErrInvalidOption))
		}
		c.dead = d
	})
}

// Window sets how many offset samples per partition the status evaluator
// keeps: one per accepted commit of the partition (without a group, one
// per second of polling). WARN needs a full window of growing lag. The
// default is 10, as Burrow's intervals; the minimum is 2.
func Window(n int) Opt {
	return opt(func(c *cfg) { c.window = n })
}

// StuckAfter sets how long a partition may hold records that are not
// handled without making progress: with handler calls still returning or
// commits still accepted, its status is then STALL; with neither, STOP, and
// /healthz fails. The default is 1 minute. Keep it above the slowest
// handler call you expect.
//
// To keep the clock off the per-record path, a handler call is dated when
// an evaluation (a scrape, a probe, Snapshot) first sees it, so STALL and
// STOP come at most one evaluation interval late, and never early.
func StuckAfter(d time.Duration) Opt {
	return opt(func(c *cfg) { c.stuck = d })
}

// Clock sets the Monitor's clock; the default is time.Now. Status and lag
// in seconds are computed against it, so tests can run without sleeping.
func Clock(now func() time.Time) Opt {
	return opt(func(c *cfg) { c.now = now })
}

func (c *cfg) validate() error {
	errs := c.errs
	if c.groupOpts > 1 {
		errs = append(errs, fmt.Errorf("%w: Group and NoGroup given %d times in all; give one", ErrInvalidOption, c.groupOpts))
	}
	if c.window < 2 {
		errs = append(errs, fmt.Errorf("%w: Window(%d) must be at least 2", ErrInvalidOption, c.window))
	}
	if c.stuck <= 0 {
		errs = append(errs, fmt.Errorf("%w: StuckAfter(%v) must be positive", ErrInvalidOption, c.stuck))
	}
	if c.now == nil {
		errs = append(errs, fmt.Errorf("%w: nil Clock", ErrInvalidOption))
	}
	return errors.Join(errs...)
}
