package dlq

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/fault"
)

// ErrBreakerOpen is returned by the Router's middleware, wrapped, while the
// circuit breaker holds a record: the Consumer keeps the record and offers it
// again after its retry backoff.
var ErrBreakerOpen = errors.New("dlq: circuit breaker open")

// A Router routes the errors of a Consumer's handler. It is consumer
// middleware: it calls the handler and, on an error, decides by the error's
// fault.Class whether the record is tried again or written to its dead-letter
// topic, and a circuit breaker stops dead-lettering when failures are
// systemic.
//
// The Router never skips a record it has not dead-lettered. Between attempts
// it returns the error to the Consumer, which keeps the record, leaves its
// offset where it is and holds the partition's later records back, and
// offers it again after its RetryBackoff; a shutdown or revoke during that
// backoff therefore returns at once. A dead letter is written synchronously
// with acks=all; only once it is acknowledged does the middleware return nil,
// so that the Consumer stores the source offset. A failed write is retried
// the same way, without calling the handler again.
//
// One Router serves one Consumer: it keeps the state of the records that
// are failing, one per partition or, with consumer.KeyOrder, one per key.
type Router struct {
	cfg       routerCfg
	cl        *kgo.Client
	ownsCl    bool
	closeOnce sync.Once
	breaker   *breaker
	attached  atomic.Bool
	group     string // the Consumer's, learnt when attached

	mu      sync.Mutex
	failing map[recordID]*failure
	nfail   atomic.Int64  // len(failing), read without mu on the success path
	writing int           // dead-letter writes in progress
	idle    chan struct{} // closed when writing drops to 0

	deadLettered  atomic.Int64
	writeFailures atomic.Int64
}

type recordID struct {
	topic  string
	p      int32
	offset int64
}

// failure is what the Router knows of a record that is failing.
type failure struct {
	attempts int
	letter   *kgo.Record // the dead letter once decided, until acknowledged
	last     time.Time   // the last attempt
}

// Records whose partition was revoked while they were failing are never
// offered again; their state is dropped once that many are kept and they
// have not been tried for staleAfter.
const (
	pruneAbove = 1024
	staleAfter = time.Hour
)

// New returns a Router; attach it to its Consumer with consumer.With, after
// a recovery strategy. It writes dead letters with the client given to
// WithClient, or with a producer of its own, idempotent with acks=all: from
// SeedBrokers and ClientOpts when given, otherwise from the Consumer's seed
// brokers and ClientOpts, created when the Router attaches. It returns an
// error wrapping ErrInvalidOption when the options are invalid or the client
// would not produce idempotently with acks=all.
//
// The Router learns the Consumer's group (written to each dead letter) and
// logger (unless WithLogger is given) when it attaches. When the Consumer's
// Run returns, the Router waits up to WriteTimeout for dead-letter writes
// in progress and closes the producer it created; Close does that for a
// Router that never ran.
func New(opts ...RouterOpt) (*Router, error) {
	cfg := defaultRouterCfg()
	for _, o := range opts {
		o.applyRouter(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &Router{cfg: cfg, cl: cfg.client, failing: make(map[recordID]*failure)}
	if r.cl == nil && (len(cfg.brokers) > 0 || len(cfg.clientOpts) > 0) {
		var kopts []kgo.Opt
		if len(cfg.brokers) > 0 {
			kopts = []kgo.Opt{kgo.SeedBrokers(cfg.brokers...)}
		}
		if err := r.connect(append(kopts, cfg.clientOpts...)); err != nil {
			return nil, err
		}
	} else if r.cl != nil {
		if err := checkProducer(r.cl); err != nil {
			return nil, err
		}
	}
	r.breaker = newBreaker(cfg.breaker, cfg.logger, cfg.onState)
	return r, nil
}

// connect creates the Router's own producer.
func (r *Router) connect(opts []kgo.Opt) error {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("%w: creating client: %w", ErrInvalidOption, err)
	}
	if err := checkProducer(cl); err != nil {
		cl.Close()
		return err
	}
	r.cl, r.ownsCl = cl, true
	return nil
}

// Attach implements consumer.Plugin: the Router becomes the Consumer's
// error-routing middleware. It fails when the Router is attached already.
func (r *Router) Attach(a *consumer.Attachment) error {
	if !r.attached.CompareAndSwap(false, true) {
		return errors.New("dlq: the Router serves another Consumer already")
	}
	a.OnAbort(func() { r.attached.Store(false) })
	r.group = a.Group()
	if !r.cfg.loggerSet {
		r.cfg.logger = a.Logger()
		r.breaker = newBreaker(r.cfg.breaker, r.cfg.logger, r.cfg.onState)
	}
	if r.cl == nil {
		if err := r.connect(a.ConnectOpts()); err != nil {
			return err
		}
		a.OnAbort(r.Close)
	}
	a.Use(r.middleware)
	a.OnStop(func(error) {
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.writeTimeout)
		defer cancel()
		if err := r.Flush(ctx); err != nil {
			r.cfg.logger.Warn("dlq: dead-letter writes still in progress at stop", "err", err)
		}
		r.Close()
	})
	return nil
}

// checkProducer refuses a client that could lose or duplicate dead letters.
func checkProducer(cl *kgo.Client) error {
	if v, _ := cl.OptValue(kgo.DisableIdempotentWrite).(bool); v {
		return fmt.Errorf("%w: the client must produce idempotently", ErrInvalidOption)
	}
	if acks, _ := cl.OptValue(kgo.RequiredAcks).(kgo.Acks); acks != kgo.AllISRAcks() {
		return fmt.Errorf("%w: the client must produce with acks=all", ErrInvalidOption)
	}
	return nil
}

// middleware routes the errors of next.
func (r *Router) middleware(next consumer.Handler) consumer.Handler {
	return consumer.HandlerFunc(func(ctx context.Context, rec *kgo.Record) error {
		return r.handle(ctx, next, rec)
	})
}

// RouterStats returns a snapshot of the Router's counters; it implements
// fault.StatsReporter, so a lag monitor attached to the same Consumer
// exports them.
func (r *Router) RouterStats() fault.RouterStats {
	state, opens := r.breaker.stats()
	return fault.RouterStats{
		DeadLettered:  r.deadLettered.Load(),
		WriteFailures: r.writeFailures.Load(),
		Breaker:       state,
		BreakerOpens:  opens,
	}
}

// Flush waits for dead-letter writes in progress, up to ctx. Call it after
// the Consumer's Run returned: Run waits for its handlers, but a handler
// abandoned at the drain deadline may still be writing.
func (r *Router) Flush(ctx context.Context) error {
	r.mu.Lock()
	idle := r.idle
	if r.writing == 0 {
		idle = nil
	}
	r.mu.Unlock()
	if idle == nil {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("dlq: flush: %w", ctx.Err())
	}
}

// Close closes the client the Router created; a client given with WithClient
// stays open. The Consumer's Run closes it on its way out, after a Flush;
// Close is for a Router whose Consumer never ran. It may be called more than
// once.
func (r *Router) Close() {
	r.closeOnce.Do(func() {
		if r.ownsCl {
			r.cl.Close()
		}
	})
}

func (r *Router) handle(ctx context.Context, next consumer.Handler, rec *kgo.Record) error {
	if l := r.pendingLetter(rec); l != nil {
		return r.write(ctx, rec, l)
	}
	ok, probe := r.breaker.admit()
	if !ok {
		return fmt.Errorf("%w: holding %s/%d@%d", ErrBreakerOpen, rec.Topic, rec.Partition, rec.Offset)
	}
	err := call(ctx, next, rec)
	if err == nil {
		r.breaker.succeeded(probe)
		r.forget(rec)
		return nil
	}
	if ctx.Err() != nil {
		r.breaker.abandoned(probe)
		return err
	}
	attempts := r.attempted(rec)
	class, final := r.decide(err, attempts)
	var topic string
	if final {
		if topic = r.cfg.topicFor(rec.Topic); topic == "" {
			r.breaker.abandoned(probe)
			return fmt.Errorf("dlq: no dead-letter topic for %s: %w", rec.Topic, err)
		}
	}
	if !r.breaker.failed(probe, final, fault.ClassOf(err) == fault.Poison) {
		if final {
			return fmt.Errorf("%w: holding %s/%d@%d: %w", ErrBreakerOpen, rec.Topic, rec.Partition, rec.Offset, err)
		}
		return err
	}
	l := letter(rec, topic, r.group, class, err, attempts, time.Now())
	r.setLetter(rec, l)
	return r.write(ctx, rec, l)
}

// decide returns the class of err after the record's attempts so far, and
// whether the record is to be dead-lettered.
func (r *Router) decide(err error, attempts int) (fault.Class, bool) {
	class := fault.ClassOf(err)
	_, panicked := errors.AsType[*consumer.PanicError](err)
	if class == fault.Unclassified && !panicked {
		class = r.cfg.classify(err)
	}
	switch {
	case class == fault.Poison:
		return fault.Poison, true
	case class == fault.Retriable || attempts < r.cfg.maxAttempts:
		return class, false
	case panicked:
		return fault.Poison, true
	}
	return fault.Unclassified, true
}

// write writes the dead letter l of rec and waits for its acknowledgement.
// On failure it returns an error, so that the Consumer keeps rec and calls
// again later.
func (r *Router) write(ctx context.Context, rec *kgo.Record, l *kgo.Record) error {
	r.mu.Lock()
	if r.writing == 0 {
		r.idle = make(chan struct{})
	}
	r.writing++
	r.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, r.cfg.writeTimeout)
	defer cancel()
	// kgo fills in a produced record, so each attempt sends a fresh copy.
	out := *l
	// kgo waits for the answer to a produce request it has sent, however
	// long the broker takes, so the write is waited for here: a timeout
	// returns at once and the record is retried, while the produce runs
	// on and counts as writing until it ends.
	done := make(chan error, 1)
	r.cl.Produce(wctx, &out, func(_ *kgo.Record, err error) {
		done <- err
		r.mu.Lock()
		if r.writing--; r.writing == 0 {
			close(r.idle)
		}
		r.mu.Unlock()
	})
	var err error
	select {
	case err = <-done:
	case <-wctx.Done():
		err = wctx.Err()
	}
	if err != nil {
		r.writeFailures.Add(1)
		r.cfg.logger.Error("dlq: dead-letter write failed; keeping the record and retrying",
			"topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "dlq_topic", l.Topic, "err", err)
		return fmt.Errorf("dlq: writing %s/%d@%d to %s: %w", rec.Topic, rec.Partition, rec.Offset, l.Topic, err)
	}
	r.deadLettered.Add(1)
	r.forget(rec)
	r.cfg.logger.Warn("dlq: record dead-lettered",
		"topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset,
		"dlq_topic", out.Topic, "dlq_partition", out.Partition, "dlq_offset", out.Offset,
		"class", header(l, HeaderClass), "attempts", header(l, HeaderAttempts), "err", header(l, HeaderError))
	return nil
}

func header(r *kgo.Record, key string) string {
	for i := len(r.Headers) - 1; i >= 0; i-- {
		if r.Headers[i].Key == key {
			return string(r.Headers[i].Value)
		}
	}
	return ""
}

// failure returns the state of rec, creating it on its first failure;
// r.mu is held.
func (r *Router) failure(rec *kgo.Record) *failure {
	k := recordID{rec.Topic, rec.Partition, rec.Offset}
	f := r.failing[k]
	if f == nil {
		if len(r.failing) >= pruneAbove {
			r.prune()
		}
		f = &failure{}
		r.failing[k] = f
		r.nfail.Store(int64(len(r.failing)))
	}
	f.last = time.Now()
	return f
}

// prune drops the state of records not tried for staleAfter; r.mu is held.
func (r *Router) prune() {
	for k, f := range r.failing {
		if time.Since(f.last) > staleAfter {
			delete(r.failing, k)
		}
	}
}

func (r *Router) pendingLetter(rec *kgo.Record) *kgo.Record {
	if r.nfail.Load() == 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if f := r.failing[recordID{rec.Topic, rec.Partition, rec.Offset}]; f != nil {
		return f.letter
	}
	return nil
}

// attempted counts a failed attempt of rec and returns the attempts so far.
func (r *Router) attempted(rec *kgo.Record) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.failure(rec)
	f.attempts++
	return f.attempts
}

func (r *Router) setLetter(rec *kgo.Record, l *kgo.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failure(rec).letter = l
}

// forget drops the state of rec once it is done.
func (r *Router) forget(rec *kgo.Record) {
	if r.nfail.Load() == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.failing, recordID{rec.Topic, rec.Partition, rec.Offset})
	r.nfail.Store(int64(len(r.failing)))
}

// call calls h and turns a panic into a *consumer.PanicError, so that a
// panic is classified and counted like an error.
func call(ctx context.Context, h consumer.Handler, rec *kgo.Record) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &consumer.PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return h.Handle(ctx, rec)
}
