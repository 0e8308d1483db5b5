package lag

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrInvalidOption is returned by NewMonitor, wrapped, for a missing or
// conflicting option, and by Attach for GroupLabel on a Consumer with a
// group.
var ErrInvalidOption = errors.New("lag: invalid option")

// Opt configures a Monitor.
type Opt interface{ apply(*cfg) }

type opt func(*cfg)

func (o opt) apply(c *cfg) { o(c) }

type cfg struct {
	label    string // the group label of a Consumer without a group
	labelSet bool
	grouped  bool // the Consumer commits to a group; set when attached
	reg      prometheus.Registerer
	window   int
	stuck    time.Duration
	now      func() time.Time
	errs     []error
}

func defaultCfg() cfg {
	return cfg{window: 10, stuck: time.Minute, now: time.Now}
}

// GroupLabel sets the value of every metric's group label for a Consumer
// without a group (a FullReplay, for example), so that dashboards can tell
// such consumers apart; the default is empty. A Consumer with a group
// labels its metrics with the group, and refuses GroupLabel.
func GroupLabel(label string) Opt {
	return opt(func(c *cfg) { c.label, c.labelSet = label, true })
}

// Registerer sets where the Monitor registers its metrics: its own
// collector when it attaches to its Consumer, and franz-go's client metrics
// when the Consumer creates its client. The default is none: the Monitor
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
