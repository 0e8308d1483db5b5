package dlq

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/fault"
)

// ErrInvalidOption is returned by New and Redrive, wrapped, for a missing or
// conflicting option.
var ErrInvalidOption = errors.New("dlq: invalid option")

// A RouterOpt configures a Router (New).
type RouterOpt interface{ applyRouter(*routerCfg) }

// A RedriveOpt configures Redrive.
type RedriveOpt interface{ applyRedrive(*redriveCfg) }

// An Opt configures both a Router and Redrive: how to reach the cluster and
// where to log.
type Opt interface {
	RouterOpt
	RedriveOpt
}

// common is the configuration shared by a Router and Redrive.
type common struct {
	brokers    []string
	clientOpts []kgo.Opt
	logger     *slog.Logger
	loggerSet  bool
	errs       []error
}

type commonOpt func(*common)

func (o commonOpt) applyRouter(c *routerCfg)   { o(&c.common) }
func (o commonOpt) applyRedrive(c *redriveCfg) { o(&c.common) }

type routerOpt func(*routerCfg)

func (o routerOpt) applyRouter(c *routerCfg) { o(c) }

type redriveOpt func(*redriveCfg)

func (o redriveOpt) applyRedrive(c *redriveCfg) { o(c) }

// SeedBrokers sets the brokers to bootstrap from, as host:port; the default
// is kgo's, 127.0.0.1:9092 (Java: bootstrap.servers).
func SeedBrokers(addrs ...string) Opt {
	return commonOpt(func(c *common) { c.brokers = append(c.brokers, addrs...) })
}

// ClientOpts passes options through to the kgo.Client the Router or Redrive
// creates, for TLS, SASL, timeouts and the like. The producer must stay
// idempotent with acks=all: New and Redrive refuse a client configured
// otherwise (kgo.DisableIdempotentWrite, kgo.RequiredAcks other than
// kgo.AllISRAcks). Redrive sets the partitions it consumes and the
// partitioner itself.
func ClientOpts(opts ...kgo.Opt) Opt {
	return commonOpt(func(c *common) { c.clientOpts = append(c.clientOpts, opts...) })
}

// WithLogger sets the logger; the default is the Consumer's logger for a
// Router, slog.Default() for Redrive.
func WithLogger(l *slog.Logger) Opt {
	return commonOpt(func(c *common) {
		if l == nil {
			c.errs = append(c.errs, fmt.Errorf("%w: nil logger", ErrInvalidOption))
			return
		}
		c.logger, c.loggerSet = l, true
	})
}

type routerCfg struct {
	common
	client       *kgo.Client
	topicFor     func(topic string) string
	classify     func(error) fault.Class
	maxAttempts  int
	uncertainFor time.Duration
	writeTimeout time.Duration
	breaker      breakerCfg
	onState      func(from, to fault.BreakerState)
}

func defaultRouterCfg() routerCfg {
	return routerCfg{
		common:       common{logger: slog.Default()},
		topicFor:     func(topic string) string { return topic + ".dlq" },
		classify:     func(error) fault.Class { return fault.Unclassified },
		maxAttempts:  5,
		uncertainFor: time.Minute,
		writeTimeout: 10 * time.Second,
		breaker:      breakerCfg{window: 20, threshold: 0.5, coolDown: 30 * time.Second},
	}
}

// WithClient makes the Router write dead letters with cl instead of a client
// of its own; Close then leaves cl open. cl must produce idempotently with
// acks=all, as kgo does by default. It excludes SeedBrokers and ClientOpts.
func WithClient(cl *kgo.Client) RouterOpt {
	return routerOpt(func(c *routerCfg) { c.client = cl })
}

// DeadLetterTopic sets the dead-letter topic for each source topic; the
// default appends ".dlq" (sensor-data goes to sensor-data.dlq). The topics
// must exist, or writes fail and are retried.
func DeadLetterTopic(fn func(topic string) string) RouterOpt {
	return routerOpt(func(c *routerCfg) { c.topicFor = fn })
}

// Classify sets how errors that carry no mark (fault.MarkPoison,
// fault.MarkRetriable, fault.MarkUncertain) are classified; the classes
// then mean what they mean for marked errors (see the decision table in the
// package documentation): fault.Poison goes to the dead-letter topic at
// once, fault.Retriable is retried until it succeeds, fault.Uncertain is
// retried for UncertainFor and then dead-lettered, fault.Unclassified is
// retried up to MaxAttempts times and then dead-lettered. The default
// classifies every unmarked error as fault.Unclassified. Handler panics
// skip the classifier: they are retried up to MaxAttempts times and then
// dead-lettered as fault.Poison.
func Classify(fn func(err error) fault.Class) RouterOpt {
	return routerOpt(func(c *routerCfg) { c.classify = fn })
}

// MaxAttempts sets how many times a record whose handler fails with a
// fault.Unclassified error or a panic is handled before it is
// dead-lettered, and how many failed attempts in a row of a fault.Retriable
// error count as one failure for the circuit breaker (the record is still
// retried; it is never dead-lettered); the default is 5. The Consumer's
// RetryBackoff spaces the attempts.
func MaxAttempts(n int) RouterOpt {
	return routerOpt(func(c *routerCfg) { c.maxAttempts = n })
}

// UncertainFor sets how long a record whose handler fails with a
// fault.Uncertain error (fault.MarkUncertain: a schema ID the registry does
// not know yet, say) is retried before it is dead-lettered, with
// HeaderClass poison; the default is 1 minute, and 0 dead-letters such a
// record at its first failure. The Consumer's RetryBackoff spaces the
// attempts. The time is shared by a partition's run of records that fail
// uncertain one after another (no record of the partition handled
// successfully in between, no pause as long as d between failures): the
// first record of the run waits d, those after it are dead-lettered as soon
// as they fail once the run is d old. Each such dead letter counts as a
// failure for the circuit breaker: when every record is uncertain (a
// registry pointed at the wrong cluster), the breaker stops the flood.
//
// A minute is far more than a registry replica normally lags behind (well
// under a second) and covers a registry restart or failover, while it
// bounds how long a partition stalls on a run of records that will never
// decode; with the default RetryBackoff it is about a dozen attempts.
func UncertainFor(d time.Duration) RouterOpt {
	return routerOpt(func(c *routerCfg) { c.uncertainFor = d })
}

// WriteTimeout bounds one attempt to write a dead letter; the default is
// 10 s. A failed or timed-out write keeps the record and is tried again after
// the Consumer's retry backoff, so this also bounds how long a write holds up
// a shutdown or a revoke, even when the broker never answers. A write that
// timed out may still land later; the retry then writes a second dead letter
// of the same record, with the same source headers.
//
// When the Consumer's Run ends, the Router waits up to d once more for
// writes still in progress, those of handlers abandoned at the drain
// deadline: that adds up to d to the bound of consumer.ShutdownTimeout on
// how long Run takes to return.
func WriteTimeout(d time.Duration) RouterOpt {
	return routerOpt(func(c *routerCfg) { c.writeTimeout = d })
}

// Breaker configures the circuit breaker. It keeps the outcomes of the
// last window records, across partitions, one per record: a success, or a
// failure that outlived its retries (an unclassified error or a panic that
// used up MaxAttempts; a retriable error each time it has failed
// MaxAttempts times in a row; an uncertain error still failing after
// UncertainFor). When at least threshold (0 < t <= 1) of a full window are
// failures, the breaker opens: no record is handled, so nothing more is
// dead-lettered, and every partition holds its record, which pauses
// consumption. After coolDown, the first record offered again (the
// Consumer's RetryBackoff spaces the offers) is let through as a probe:
// success closes the breaker, failure opens it for another coolDown.
//
// Poison never counts: a record whose error is marked or classified
// fault.Poison is dead-lettered at once, and as a probe it gives no
// verdict, so that the next record probes. A run of poison records
// therefore never opens the breaker. A systemic failure that marks records
// poison is not caught either: mark an error poison only when the record
// alone is at fault, and fault.MarkUncertain when it may be systemic.
//
// A probe that fails with an uncertain error whose time is up is
// dead-lettered all the same, as it would fail every probe and, on a
// partition with nothing else in hand, hold the breaker open for good: a
// systemic failure that marks records uncertain sends one record per
// coolDown to the dead-letter topic. Unmarked errors, retriable errors and
// panics send none; the probe is held. The defaults are a window of 20, a
// threshold of 0.5 and a cool-down of 30 s. See the decision table in the
// package documentation.
//
// With KeyOrder or Unordered, records that fail fast finish before slower
// ones in flight, so at the start of a backlog a window not much larger
// than Workers can fill with them; size it to a few times Workers.
func Breaker(window int, threshold float64, coolDown time.Duration) RouterOpt {
	return routerOpt(func(c *routerCfg) {
		c.breaker = breakerCfg{window: window, threshold: threshold, coolDown: coolDown}
	})
}

// NoBreaker turns the circuit breaker off: every record that fails for good
// is dead-lettered, however many fail.
func NoBreaker() RouterOpt {
	return routerOpt(func(c *routerCfg) { c.breaker = breakerCfg{off: true} })
}

// OnBreakerChange sets a function called after each change of the circuit
// breaker's state, for metrics or alerts. It must return quickly. Changes
// are also logged.
func OnBreakerChange(fn func(from, to fault.BreakerState)) RouterOpt {
	return routerOpt(func(c *routerCfg) { c.onState = fn })
}

func (c *routerCfg) validate() error {
	errs := c.errs
	if c.client != nil && (len(c.brokers) > 0 || len(c.clientOpts) > 0) {
		errs = append(errs, fmt.Errorf("%w: WithClient excludes SeedBrokers and ClientOpts", ErrInvalidOption))
	}
	if c.topicFor == nil {
		errs = append(errs, fmt.Errorf("%w: nil DeadLetterTopic function", ErrInvalidOption))
	}
	if c.classify == nil {
		errs = append(errs, fmt.Errorf("%w: nil Classify function", ErrInvalidOption))
	}
	if c.maxAttempts < 1 {
		errs = append(errs, fmt.Errorf("%w: MaxAttempts(%d) must be at least 1", ErrInvalidOption, c.maxAttempts))
	}
	if c.uncertainFor < 0 {
		errs = append(errs, fmt.Errorf("%w: UncertainFor(%v) must not be negative", ErrInvalidOption, c.uncertainFor))
	}
	if c.writeTimeout <= 0 {
		errs = append(errs, fmt.Errorf("%w: WriteTimeout(%v) must be positive", ErrInvalidOption, c.writeTimeout))
	}
	if b := c.breaker; !b.off && (b.window < 1 || !(b.threshold > 0 && b.threshold <= 1) || b.coolDown <= 0) {
		errs = append(errs, fmt.Errorf("%w: Breaker(%d, %v, %v) needs window >= 1, 0 < threshold <= 1, cool-down > 0",
			ErrInvalidOption, b.window, b.threshold, b.coolDown))
	}
	return errors.Join(errs...)
}

type redriveCfg struct {
	common
	group      string
	classes    []fault.Class
	groups     []string
	from, to   int64
	partitions []int32
	batch      int
	since      time.Time // zero: no lower bound
	until      time.Time // zero: no upper bound
}

func defaultRedriveCfg(topic string) redriveCfg {
	return redriveCfg{
		common: common{logger: slog.Default()},
		group:  topic + ".redrive",
		to:     -1,
		batch:  500,
	}
}

// ProgressGroup names the consumer group whose committed offsets on the
// dead-letter topic record how far re-driving got; the default is the
// dead-letter topic's name followed by ".redrive". Runs that share a group
// never copy the same dead letter twice; a run with another group starts
// over.
func ProgressGroup(id string) RedriveOpt {
	return redriveOpt(func(c *redriveCfg) { c.group = id })
}

// Groups copies only the dead letters the given consumer groups wrote, by
// HeaderGroup; the default copies those of every group.
func Groups(groups ...string) RedriveOpt {
	return redriveOpt(func(c *redriveCfg) { c.groups = append(c.groups, groups...) })
}

// Classes copies only the dead letters of the given error classes, by
// HeaderClass; the default copies all.
func Classes(cs ...fault.Class) RedriveOpt {
	return redriveOpt(func(c *redriveCfg) { c.classes = append(c.classes, cs...) })
}

// Offsets copies only the dead letters at offsets from (inclusive) to to
// (exclusive) of the dead-letter topic's partitions; to < 0 means through the
// end. The default is all offsets.
func Offsets(from, to int64) RedriveOpt {
	return redriveOpt(func(c *redriveCfg) { c.from, c.to = from, to })
}

// Partitions reads only the given partitions of the dead-letter topic; the
// default is all.
func Partitions(ps ...int32) RedriveOpt {
	return redriveOpt(func(c *redriveCfg) { c.partitions = append(c.partitions, ps...) })
}

// FailedBetween copies only the dead letters that failed at or after since
// and before until, by HeaderFailedAt; a zero time leaves that side open.
// The default copies all. The letters outside the window count as Skipped
// and, like those of the other filters, as done for the ProgressGroup.
func FailedBetween(since, until time.Time) RedriveOpt {
	return redriveOpt(func(c *redriveCfg) { c.since, c.until = since, until })
}

// failedIn reports whether t is in the FailedBetween window.
func (c *redriveCfg) failedIn(t time.Time) bool {
	return (c.since.IsZero() || !t.Before(c.since)) && (c.until.IsZero() || t.Before(c.until))
}

// BatchSize sets how many dead letters are copied before progress is
// committed; the default is 500. A crash re-copies at most one batch.
func BatchSize(n int) RedriveOpt {
	return redriveOpt(func(c *redriveCfg) { c.batch = n })
}

func (c *redriveCfg) validate() error {
	errs := c.errs
	if c.group == "" {
		errs = append(errs, fmt.Errorf("%w: empty ProgressGroup", ErrInvalidOption))
	}
	if c.from < 0 || (c.to >= 0 && c.to <= c.from) {
		errs = append(errs, fmt.Errorf("%w: Offsets(%d, %d) needs 0 <= from < to, or to < 0", ErrInvalidOption, c.from, c.to))
	}
	for _, cl := range c.classes {
		switch {
		case cl == fault.Uncertain:
			errs = append(errs, fmt.Errorf("%w: no dead letter has class %v: a Router writes uncertain records as poison", ErrInvalidOption, cl))
		case cl < fault.Unclassified || cl > fault.Uncertain:
			errs = append(errs, fmt.Errorf("%w: unknown class %d", ErrInvalidOption, int(cl)))
		}
	}
	if c.batch < 1 {
		errs = append(errs, fmt.Errorf("%w: BatchSize(%d) must be at least 1", ErrInvalidOption, c.batch))
	}
	if !c.since.IsZero() && !c.until.IsZero() && !c.since.Before(c.until) {
		errs = append(errs, fmt.Errorf("%w: FailedBetween(%v, %v) needs since before until", ErrInvalidOption, c.since, c.until))
	}
	return errors.Join(errs...)
}
