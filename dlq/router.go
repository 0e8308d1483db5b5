package dlq

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/fault"
)

// ErrBreakerOpen is returned by the Router's middleware, wrapped, while the
// circuit breaker holds a record without calling the handler: the Consumer
// keeps the record and offers it again after its retry backoff. It matches
// fault.ErrHeld with errors.Is, so that an observer that does not import
// dlq, such as a lag monitor, tells holds from handler failures.
var ErrBreakerOpen error = breakerOpen{}

type breakerOpen struct{}

func (breakerOpen) Error() string { return "dlq: circuit breaker open" }

// Is makes ErrBreakerOpen match fault.ErrHeld.
func (breakerOpen) Is(target error) bool { return target == fault.ErrHeld }

// A Router routes the errors of a Consumer's handler. It is consumer
// middleware: it calls the handler and, on an error, decides by the error's
// fault.Class whether the record is tried again or written to its dead-letter
// topic, and a circuit breaker pauses consumption when failures that
// outlive their retries look systemic (see the decision table in the
// package documentation).
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
// are failing or held, one per partition or, with consumer.KeyOrder, one
// per key, and lets go of those of partitions revoked or lost.
type Router struct {
	cfg       routerCfg
	cl        *kgo.Client
	ownsCl    bool
	closeOnce sync.Once
	breaker   *breaker
	attached  atomic.Bool
	group     string // the Consumer's, learnt when attached

	now func() time.Time

	mu      sync.Mutex
	failing map[recordID]*failure
	nfail   atomic.Int64 // len(failing), read without mu on the success path
	held    map[recordID]struct{}
	nheld   atomic.Int64 // len(held), read without mu on the success path
	runs    map[partitionID]*run
	nruns   atomic.Int64  // len(runs), read without mu on the success path
	writing int           // dead-letter writes in progress
	idle    chan struct{} // closed when writing drops to 0

	// byClass counts dead letters by fault.Class, as
	// fault.RouterStats.DeadLetteredByClass.
	byClass       [len(fault.RouterStats{}.DeadLetteredByClass)]atomic.Int64
	writeFailures atomic.Int64
}

type recordID struct {
	topic  string
	p      int32
	offset int64
}

type partitionID struct {
	topic string
	p     int32
}

// failure is what the Router knows of a record that is failing.
type failure struct {
	attempts  int
	uncertain time.Time   // its first uncertain failure, if any
	letter    *kgo.Record // the dead letter once decided, until acknowledged
	class     fault.Class // why it is dead-lettered, for byClass
	last      time.Time   // the last attempt
}

// A run is a partition's records failing uncertain in a row: from the
// first failure, without a record of the partition handled successfully
// in between, and without a pause of UncertainFor between failures. The
// records of a run share its time, so that a run of records that fail
// alike waits UncertainFor once, not once per record.
type run struct {
	start, last time.Time
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
// Router that never ran. That wait is part of Run: it adds up to
// WriteTimeout to the bound of consumer.ShutdownTimeout on how long Run
// takes to return.
func New(opts ...RouterOpt) (*Router, error) {
	cfg := defaultRouterCfg()
	for _, o := range opts {
		o.applyRouter(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &Router{
		cfg: cfg, cl: cfg.client, now: time.Now,
		failing: make(map[recordID]*failure),
		held:    make(map[recordID]struct{}),
		runs:    make(map[partitionID]*run),
	}
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
	r.breaker = newBreaker(cfg.breaker, cfg.logger, r.breakerChanged)
	return r, nil
}

// connect creates the Router's own producer. It does not linger: the
// Router writes one dead letter at a time per partition and waits for it,
// so kgo's default linger of 10 ms would only cap each partition at 100
// dead letters a second. opts may set a linger all the same.
func (r *Router) connect(opts []kgo.Opt) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.ProducerLinger(0)}, opts...)...)
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
// When New fails after Attach, the Router lets go of what Attach set up
// (the producer it created, the group and logger it learnt), so that it
// can be attached to another Consumer.
func (r *Router) Attach(a *consumer.Attachment) error {
	if !r.attached.CompareAndSwap(false, true) {
		return errors.New("dlq: the Router serves another Consumer already")
	}
	// The abort hook undoes exactly what this Attach did.
	group, logger, brk := r.group, r.cfg.logger, r.breaker
	connected := false
	a.OnAbort(func() {
		if connected {
			r.cl.Close()
			r.cl, r.ownsCl = nil, false
			r.closeOnce = sync.Once{}
		}
		r.group, r.cfg.logger, r.breaker = group, logger, brk
		r.attached.Store(false)
	})
	r.group = a.Group()
	if !r.cfg.loggerSet {
		r.cfg.logger = a.Logger()
		r.breaker = newBreaker(r.cfg.breaker, r.cfg.logger, r.breakerChanged)
	}
	if r.cl == nil {
		if err := r.connect(a.ConnectOpts()); err != nil {
			return err
		}
		connected = true
	}
	a.Use(r.middleware)
	if r.group != "" {
		// The group's dead letters come back on topics of its own, so
		// that no other group reads them again. The Attachment is valid
		// only during Attach: the topics are taken now.
		topics := a.Topics()
		var redrive []string
		for _, t := range topics {
			redrive = append(redrive, RedriveTopic(t, r.group))
		}
		a.Consume(redrive...)
		a.OnStart(func(ctx context.Context, cl *kgo.Client) error {
			r.createRedriveTopics(ctx, cl, topics)
			return nil
		})
	}
	a.OnRebalance(func(e consumer.Event, partitions map[string][]int32) {
		if e != consumer.Assigned {
			r.let(partitions)
		}
	})
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

// createRedriveTopics creates the group's redrive topic of each source
// topic that lacks one, with the source's partition count, so that the
// Consumer reads it from its first assignment, and adds partitions to one
// that has fewer than its source. It only logs a failure (no
// rights to create topics, say): Redrive creates the topic too, and the
// Consumer picks it up at its next metadata refresh.
func (r *Router) createRedriveTopics(ctx context.Context, cl *kgo.Client, sources []string) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.writeTimeout)
	defer cancel()
	for _, src := range sources {
		if err := createRedriveTopic(ctx, kadm.NewClient(cl), src, RedriveTopic(src, r.group)); err != nil {
			r.cfg.logger.Warn("dlq: creating the redrive topic failed; Redrive creates it when needed", "topic", RedriveTopic(src, r.group), "err", err)
		}
	}
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
	state, opens, reason := r.breaker.stats()
	s := fault.RouterStats{
		WriteFailures: r.writeFailures.Load(),
		Breaker:       state,
		BreakerOpens:  opens,
		Reason:        reason,
	}
	for c := range r.byClass {
		n := r.byClass[c].Load()
		s.DeadLetteredByClass[c] = n
		s.DeadLettered += n
	}
	if state != fault.BreakerClosed && r.nheld.Load() > 0 {
		s.Held = r.heldPartitions()
	}
	return s
}

// breakerChanged is told each change of the breaker's state.
func (r *Router) breakerChanged(from, to fault.BreakerState) {
	if to == fault.BreakerClosed {
		r.releaseAll()
	}
	if r.cfg.onState != nil {
		r.cfg.onState(from, to)
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
	if l, class := r.pendingLetter(rec); l != nil {
		return r.write(ctx, rec, l, class)
	}
	ok, probe := r.breaker.admit()
	if !ok {
		r.hold(rec)
		return fmt.Errorf("%w: holding %s/%d@%d", ErrBreakerOpen, rec.Topic, rec.Partition, rec.Offset)
	}
	r.release(rec)
	err := call(ctx, next, rec)
	if err == nil {
		r.breaker.succeeded(probe)
		r.succeeded(rec)
		return nil
	}
	if ctx.Err() != nil {
		r.breaker.abandoned(probe)
		return err
	}
	d := r.decide(rec, err)
	var topic string
	if d.outcome.deadLetters() {
		if topic = r.cfg.topicFor(SourceTopic(rec.Topic, r.group)); topic == "" {
			r.breaker.abandoned(probe)
			return fmt.Errorf("dlq: no dead-letter topic for %s: %w", rec.Topic, err)
		}
	}
	deadLetter, held := r.breaker.failed(probe, d.outcome, func() string { return d.describe(rec, err) })
	if !deadLetter {
		if held {
			r.hold(rec)
		}
		return err
	}
	l := letter(rec, topic, r.group, d.header, err, d.attempts, r.now())
	r.setLetter(rec, l, d.class)
	return r.write(ctx, rec, l, d.class)
}

// A decision is what a failed call of a record means.
type decision struct {
	outcome      outcome
	class        fault.Class // the error's class, after Classify; for byClass
	header       fault.Class // the dead letter's HeaderClass
	attempts     int
	uncertainFor time.Duration // how long it has failed uncertain, for describe
}

// decide counts a failed call of rec and says what it means; see the
// decision table in the package documentation.
func (r *Router) decide(rec *kgo.Record, err error) decision {
	class := fault.ClassOf(err)
	_, panicked := errors.AsType[*consumer.PanicError](err)
	if class == fault.Unclassified && !panicked {
		class = r.cfg.classify(err)
	}
	now := r.now()
	attempts, since := r.attempted(rec, class == fault.Uncertain, now)
	d := decision{outcome: retry, class: class, header: class, attempts: attempts}
	switch {
	case class == fault.Poison:
		d.outcome = poison
	case class == fault.Retriable:
		if attempts%r.cfg.maxAttempts == 0 {
			d.outcome = retryCounted
		}
	case class == fault.Uncertain:
		if d.uncertainFor = now.Sub(since); d.uncertainFor >= r.cfg.uncertainFor {
			d.outcome, d.header = finalPass, fault.Poison
		}
	case attempts < r.cfg.maxAttempts:
	case panicked:
		d.outcome, d.class, d.header = final, fault.Poison, fault.Poison
	default:
		d.outcome, d.class, d.header = final, fault.Unclassified, fault.Unclassified
	}
	return d
}

// describe says what happened to rec, for the breaker's Reason.
func (d decision) describe(rec *kgo.Record, err error) string {
	what := fmt.Sprintf("%s error after %d attempts", d.class, d.attempts)
	if d.class == fault.Uncertain {
		what = fmt.Sprintf("uncertain error for %v", d.uncertainFor.Round(time.Millisecond))
	}
	return fmt.Sprintf("%s/%d@%d: %s: %v", rec.Topic, rec.Partition, rec.Offset, what, err)
}

// write writes the dead letter l of rec, sent there by an error of class
// class, and waits for its acknowledgement. On failure it returns an error,
// so that the Consumer keeps rec and calls again later.
func (r *Router) write(ctx context.Context, rec *kgo.Record, l *kgo.Record, class fault.Class) error {
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
	if int(class) < 0 || int(class) >= len(r.byClass) {
		class = fault.Unclassified
	}
	r.byClass[class].Add(1)
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
func (r *Router) failure(rec *kgo.Record, now time.Time) *failure {
	k := recordID{rec.Topic, rec.Partition, rec.Offset}
	f := r.failing[k]
	if f == nil {
		if len(r.failing) >= pruneAbove {
			r.prune(now)
		}
		f = &failure{}
		r.failing[k] = f
		r.nfail.Store(int64(len(r.failing)))
	}
	f.last = now
	return f
}

// prune drops the state of records not tried for staleAfter; r.mu is held.
func (r *Router) prune(now time.Time) {
	for k, f := range r.failing {
		if now.Sub(f.last) > staleAfter {
			delete(r.failing, k)
		}
	}
}

// pendingLetter returns the dead letter of rec, and the class that sent it
// there, if it was decided and not yet acknowledged.
func (r *Router) pendingLetter(rec *kgo.Record) (*kgo.Record, fault.Class) {
	if r.nfail.Load() == 0 {
		return nil, 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if f := r.failing[recordID{rec.Topic, rec.Partition, rec.Offset}]; f != nil {
		return f.letter, f.class
	}
	return nil, 0
}

// attempted counts a failed attempt of rec and returns the attempts so far
// and, for an uncertain failure, since when the record or its run has
// failed uncertain: the earlier of the two.
func (r *Router) attempted(rec *kgo.Record, uncertain bool, now time.Time) (attempts int, since time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.failure(rec, now)
	f.attempts++
	if !uncertain {
		return f.attempts, time.Time{}
	}
	if f.uncertain.IsZero() {
		f.uncertain = now
	}
	p := partitionID{rec.Topic, rec.Partition}
	ru := r.runs[p]
	if ru == nil || now.Sub(ru.last) > r.cfg.uncertainFor {
		ru = &run{start: now}
		r.runs[p] = ru
		r.nruns.Store(int64(len(r.runs)))
	}
	ru.last = now
	since = f.uncertain
	if ru.start.Before(since) {
		since = ru.start
	}
	return f.attempts, since
}

func (r *Router) setLetter(rec *kgo.Record, l *kgo.Record, class fault.Class) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.failure(rec, r.now())
	f.letter, f.class = l, class
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

// succeeded drops the state of rec, handled successfully, and ends the
// uncertain run of its partition.
func (r *Router) succeeded(rec *kgo.Record) {
	r.forget(rec)
	if r.nruns.Load() == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.runs, partitionID{rec.Topic, rec.Partition})
	r.nruns.Store(int64(len(r.runs)))
}

// hold notes that the breaker holds rec.
func (r *Router) hold(rec *kgo.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.held[recordID{rec.Topic, rec.Partition, rec.Offset}] = struct{}{}
	r.nheld.Store(int64(len(r.held)))
}

// release notes that the breaker let rec through.
func (r *Router) release(rec *kgo.Record) {
	if r.nheld.Load() == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.held, recordID{rec.Topic, rec.Partition, rec.Offset})
	r.nheld.Store(int64(len(r.held)))
}

// releaseAll notes that the breaker closed: it holds nothing.
func (r *Router) releaseAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.held)
	r.nheld.Store(0)
}

// heldPartitions returns how many partitions have a record held.
func (r *Router) heldPartitions() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	ps := make(map[partitionID]struct{}, len(r.held))
	for k := range r.held {
		ps[partitionID{k.topic, k.p}] = struct{}{}
	}
	return len(ps)
}

// let drops what is held, and the uncertain runs, of partitions revoked or
// lost: their records are not offered again.
func (r *Router) let(partitions map[string][]int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	gone := func(topic string, p int32) bool { return slices.Contains(partitions[topic], p) }
	for k := range r.held {
		if gone(k.topic, k.p) {
			delete(r.held, k)
		}
	}
	for k := range r.runs {
		if gone(k.topic, k.p) {
			delete(r.runs, k)
		}
	}
	r.nheld.Store(int64(len(r.held)))
	r.nruns.Store(int64(len(r.runs)))
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
