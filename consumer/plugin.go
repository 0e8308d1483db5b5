package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A Plugin is a component that attaches to a Consumer: a recovery strategy
// (package recovery), a dead-letter router (package dlq), a lag monitor
// (package lag), or one of your own. New calls Attach once, after every
// option is applied, so the Plugin learns the Consumer's group, topics and
// logger from the Attachment and contributes what it needs through it.
// Attach returns an error, wrapped by New with ErrInvalidOption, when the
// Plugin cannot serve that Consumer (for example a plugin that needs a
// group, given a Consumer without one).
type Plugin interface {
	Attach(a *Attachment) error
}

// PluginFunc adapts a function to a Plugin.
type PluginFunc func(a *Attachment) error

// Attach calls f(a).
func (f PluginFunc) Attach(a *Attachment) error { return f(a) }

// With attaches plugins to the Consumer, in the order given. Middleware
// they contribute wraps the handler in that order, the first outermost,
// outside the middleware of Use: give a recovery strategy first and a
// dead-letter router next, so that the router sees every error of the
// handler and its middleware, and records a strategy skips never reach it.
func With(plugins ...Plugin) Opt {
	return opt(func(c *cfg) { c.plugins = append(c.plugins, plugins...) })
}

// StartOffsetsFunc returns where the assigned partitions start, given the
// offsets the group committed for them (kgo.AdjustFetchOffsetsFn).
type StartOffsetsFunc func(ctx context.Context, committed map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error)

// An Attachment is what a Plugin sees of the Consumer it attaches to, and
// where it contributes. It is valid only during Attach; the functions a
// Plugin registers are called for the life of the Consumer.
type Attachment struct {
	c      *Consumer
	plugin Plugin
}

// Group returns the Consumer's group, "" for a Consumer without one.
func (a *Attachment) Group() string { return a.c.cfg.group }

// Topics returns the topics given to Topics, without those plugins add
// with Consume.
func (a *Attachment) Topics() []string { return slices.Clone(a.c.cfg.topics) }

// Consume adds topics for the Consumer to read beside its own, such as a
// dead-letter router's redrive topic. Their records go through the same
// handler, strategy and middleware. A topic that does not exist yet is read
// once it does, from the Consumer's next metadata refresh.
func (a *Attachment) Consume(topics ...string) {
	for _, t := range topics {
		if !slices.Contains(a.c.cfg.topics, t) && !slices.Contains(a.c.pluginTopics, t) {
			a.c.pluginTopics = append(a.c.pluginTopics, t)
		}
	}
}

// Logger returns the Consumer's logger.
func (a *Attachment) Logger() *slog.Logger { return a.c.cfg.logger }

// Ordering returns the Consumer's Ordering.
func (a *Attachment) Ordering() Ordering { return a.c.cfg.ordering }

// Consumer returns the Consumer being built. Its methods may be called
// once New has returned, for example Stats from a metrics scrape.
func (a *Attachment) Consumer() *Consumer { return a.c }

// ConnectOpts returns the options that say how to reach and authenticate
// to the Consumer's cluster: its seed brokers and every option given to
// ClientOpts, hooks included. A plugin that needs a client of its own, such
// as a producer, can build it from them; a hook that must see one client
// only (plugin/kprom's metrics register once) belongs then in the
// plugin's own options rather than in ClientOpts.
func (a *Attachment) ConnectOpts() []kgo.Opt {
	var opts []kgo.Opt
	if len(a.c.cfg.brokers) > 0 {
		opts = append(opts, kgo.SeedBrokers(a.c.cfg.brokers...))
	}
	return append(opts, a.c.cfg.clientOpts...)
}

// ClientOpts adds options to the Consumer's client. They apply after the
// user's ClientOpts and before the options the Consumer owns.
func (a *Attachment) ClientOpts(opts ...kgo.Opt) {
	a.c.pluginOpts = append(a.c.pluginOpts, opts...)
}

// Use wraps the handler with middleware; see With for the order. With a
// BatchHandler (NewBatch), the middleware wraps the records handled on
// their own, not the batches: see UseBatch and Skip.
func (a *Attachment) Use(mw ...Middleware) {
	a.c.pluginMW = append(a.c.pluginMW, mw...)
}

// Batched reports whether the Consumer hands records to a BatchHandler
// (NewBatch). Its batches pass no per-record middleware: a plugin that
// must act on every record does so through Skip or UseBatch as well.
func (a *Attachment) Batched() bool { return a.c.bh != nil }

// UseBatch wraps the batch handler with middleware, in the order of With,
// outside the middleware of the UseBatch option. It has no effect on a
// Consumer of a Handler.
func (a *Attachment) UseBatch(mw ...BatchMiddleware) {
	a.c.pluginBMW = append(a.c.pluginBMW, mw...)
}

// Skip adds a filter: a record for which skip returns true reaches no
// handler and no middleware; it counts as handled (observers see it
// handled in no time) and its offset is stored once the records before it
// are done. With a BatchHandler it is left out of the batch, and a batch of
// skipped records only is not handed over. skip is called from the
// partitions' goroutines, concurrently, possibly more than once per
// record, and must return quickly.
func (a *Attachment) Skip(skip func(r *kgo.Record) bool) {
	a.c.skips = append(a.c.skips, skip)
}

// Observe adds an Observer.
func (a *Attachment) Observe(o Observer) {
	a.c.observers = append(a.c.observers, o)
}

// StartOffsets sets where assigned partitions start, in place of the
// group's commits. One plugin per Consumer may set it; a second gets an
// error, which its Attach should return.
func (a *Attachment) StartOffsets(fn StartOffsetsFunc) error {
	if a.c.startOffsets != nil {
		return fmt.Errorf("%T and %T both position partitions; attach one", a.c.positioner, a.plugin)
	}
	a.c.startOffsets, a.c.positioner = fn, a.plugin
	return nil
}

// Ready adds a readiness condition: Consumer.Ready returns nil only while
// check returns nil for every plugin that added one.
func (a *Attachment) Ready(check func() error) {
	a.c.ready = append(a.c.ready, check)
}

// OnRebalance adds a function called after partitions were assigned
// (also when the group assigned this member none), revoked or lost.
func (a *Attachment) OnRebalance(fn func(e Event, partitions map[string][]int32)) {
	a.c.onRebalance = append(a.c.onRebalance, fn)
}

// OnStart adds a function that Run calls once the client exists, before
// the first poll, in attachment order. An error ends Run before it
// consumes anything.
func (a *Attachment) OnStart(fn func(ctx context.Context, cl *kgo.Client) error) {
	a.c.onStart = append(a.c.onStart, startHook{fn, a.plugin})
}

// OnDrained adds a function that Run calls at shutdown once handlers
// finished every record in hand, before the last commit, such as saving a
// last snapshot; not when the drain timed out, since handlers still run
// then. Run returns its error.
func (a *Attachment) OnDrained(fn func(ctx context.Context) error) {
	a.c.onDrained = append(a.c.onDrained, fn)
}

// OnStop adds a function that Run calls last, after the client closed,
// with the error Run is about to return; also when Run fails to start.
func (a *Attachment) OnStop(fn func(err error)) {
	a.c.onStop = append(a.c.onStop, fn)
}

// OnAbort adds a function that New calls if it fails after this Attach
// returned nil, so that the Plugin can let go of what it claimed and be
// attached again.
func (a *Attachment) OnAbort(fn func()) {
	a.c.onAbort = append(a.c.onAbort, fn)
}

// attach attaches the configured plugins in order. If one fails, those
// attached before it are told to let go.
func (c *Consumer) attach() error {
	for _, p := range c.cfg.plugins {
		if p == nil {
			return c.abort(fmt.Errorf("%w: nil plugin", ErrInvalidOption))
		}
		if err := p.Attach(&Attachment{c: c, plugin: p}); err != nil {
			return c.abort(fmt.Errorf("%w: attaching %T: %w", ErrInvalidOption, p, err))
		}
	}
	switch len(c.observers) {
	case 0:
	case 1:
		c.observer = c.observers[0]
	default:
		c.observer = observers(c.observers)
	}
	var bos batchObservers
	for _, o := range c.observers {
		if bo, ok := o.(BatchObserver); ok {
			bos = append(bos, bo)
		}
	}
	switch len(bos) {
	case 0:
	case 1:
		c.batchObs = bos[0]
	default:
		c.batchObs = bos
	}
	return nil
}

func (c *Consumer) abort(err error) error {
	for i := len(c.onAbort) - 1; i >= 0; i-- {
		c.onAbort[i]()
	}
	return err
}

// Plugins returns the plugins attached to the Consumer, in order.
func (c *Consumer) Plugins() []Plugin { return slices.Clone(c.cfg.plugins) }

// Ready returns nil when every readiness condition of the attached plugins
// holds (a FullReplay, for example, is ready once it has caught up), and
// the first condition's error otherwise.
func (c *Consumer) Ready() error {
	if !c.built.Load() {
		return errors.New("consumer: not built yet")
	}
	for _, check := range c.ready {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// A startHook is a plugin's OnStart function.
type startHook struct {
	fn     func(context.Context, *kgo.Client) error
	plugin Plugin
}

// observers tells each of several Observers.
type observers []Observer

func (os observers) Polled(p kgo.FetchTopicPartition) {
	for _, o := range os {
		o.Polled(p)
	}
}

func (os observers) Handled(r *kgo.Record, took time.Duration, err error) {
	for _, o := range os {
		o.Handled(r, took, err)
	}
}

func (os observers) Committed(offsets map[string]map[int32]int64, err error) {
	for _, o := range os {
		o.Committed(offsets, err)
	}
}

func (os observers) Rebalanced(e Event, partitions map[string][]int32) {
	for _, o := range os {
		o.Rebalanced(e, partitions)
	}
}

func (os observers) Paused(topic string, partition int32, paused bool) {
	for _, o := range os {
		o.Paused(topic, partition, paused)
	}
}

// batchObservers tells each of several BatchObservers of a batch.
type batchObservers []BatchObserver

func (bs batchObservers) HandledBatch(recs []*kgo.Record, took time.Duration, err error) {
	for _, b := range bs {
		b.HandledBatch(recs, took, err)
	}
}
