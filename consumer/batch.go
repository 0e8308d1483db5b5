package consumer

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A BatchHandler processes many records in one call, for sinks that write
// faster in bulk. A Consumer made with NewBatch gathers up to BatchMaxRecords
// records, and at most BatchMaxBytes, waiting up to BatchLinger for more,
// and hands them to HandleBatch.
//
// By default a batch holds records of one partition, in offset order, and
// HandleBatch is never called concurrently for the same partition; batches of
// different partitions may be handled at the same time. With
// BatchAcrossPartitions, a batch holds the records waiting in every
// partition, each partition's in offset order, and batches are handed over
// one at a time.
//
// Returning nil means the effects of every record of the batch are done:
// only then are their offsets stored. Returning a *BatchError (wrapped or
// not) says which record failed: the records before it are done and their
// offsets stored, the failing record is handled again on its own (see
// below), and no offset at or after it is stored until it is settled; the
// records after it come again in the next batch. Any other error, and a
// *BatchError whose Index is outside the batch, fails the whole batch: its
// records are handled again one at a time.
//
// A record handled on its own goes through the per-record middleware (that
// of Use and of the plugins, such as a dead-letter router) around a call of
// HandleBatch with that record alone, and through the Consumer's retry and
// backoff, exactly as a Handler's record: it is retried, dead-lettered or
// skipped there, and the records behind it wait. The first time a record
// named by a BatchError passes the middleware, it carries the error of the
// batch without calling HandleBatch again, so that a poison record is routed
// on the error it caused; retries call HandleBatch with the record alone.
//
// The context and panic contract is that of Handler: the context is
// cancelled when the partition of a record of the batch is lost, or revoked
// and the revoke timeout passes, or when shutdown's drain deadline passes;
// a panic becomes a *PanicError that fails the whole batch.
//
// HandleBatch must not retain recs or the slice after returning.
type BatchHandler interface {
	HandleBatch(ctx context.Context, recs []*kgo.Record) error
}

// BatchHandlerFunc adapts an ordinary function to a BatchHandler.
type BatchHandlerFunc func(ctx context.Context, recs []*kgo.Record) error

// HandleBatch calls f(ctx, recs).
func (f BatchHandlerFunc) HandleBatch(ctx context.Context, recs []*kgo.Record) error {
	return f(ctx, recs)
}

// BatchMiddleware wraps a BatchHandler, as Middleware wraps a Handler. It
// sees every call of the handler with a gathered batch; a record handled on
// its own passes the per-record Middleware instead.
type BatchMiddleware func(BatchHandler) BatchHandler

// chainBatch wraps h so that mw[0] is the outermost layer.
func chainBatch(h BatchHandler, mw []BatchMiddleware) BatchHandler {
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h
}

// BatchError is returned by a BatchHandler to say that the record at Index
// of the batch failed with Err, and that the records before it are done.
type BatchError struct {
	Index int   // the failing record's index in the batch
	Err   error // why it failed; it decides the record's retry or dead letter
}

func (e *BatchError) Error() string {
	return fmt.Sprintf("consumer: batch record %d: %v", e.Index, e.Err)
}

// Unwrap returns Err, so errors.Is and errors.As, and fault.ClassOf, see
// the failing record's error.
func (e *BatchError) Unwrap() error { return e.Err }

// recordErr returns the error the failing record is routed on: Err, or the
// BatchError itself if Err is nil, which must not read as a success.
func (e *BatchError) recordErr() error {
	if e.Err == nil {
		return e
	}
	return e.Err
}

// A BatchObserver is an Observer that is also told of every call of a batch
// handler with a gathered batch. The Consumer calls Observer.Handled for each
// record as well, so that per-record measures such as lag stay exact.
type BatchObserver interface {
	Observer
	// HandledBatch is called after every call of the batch handler with
	// a gathered batch (not for a record handled on its own), with the
	// records handed over, which it must not retain.
	HandledBatch(recs []*kgo.Record, took time.Duration, err error)
}

// batchTeller is what the Consumer tells its BatchObservers.
type batchTeller interface {
	HandledBatch(recs []*kgo.Record, took time.Duration, err error)
}

// NewBatch returns a Consumer that hands records to h in batches; the
// batch options (BatchMaxRecords, BatchMaxBytes, BatchLinger,
// BatchAcrossPartitions, UseBatch) shape them, and every other option means
// what it means for New. Offsets are stored only for records whose batch
// succeeded, or that were settled on their own (see BatchHandler); the
// guarantees of store-then-commit, rebalances, backpressure and shutdown
// are New's, with "the record in hand" meaning the batch in hand: a revoke
// or a shutdown waits for it (up to RevokeTimeout or ShutdownTimeout) and
// stores nothing past what it settled. It returns an error wrapping
// ErrInvalidOption as New does, and for Order(KeyOrder) or Order(Unordered):
// a batch keeps its partition's order.
func NewBatch(h BatchHandler, opts ...Opt) (*Consumer, error) {
	if h == nil {
		return nil, fmt.Errorf("%w: nil batch handler", ErrInvalidOption)
	}
	return newConsumer(nil, h, opts)
}

// batchCfg is the configuration of batches.
type batchCfg struct {
	maxRecords int
	maxBytes   int
	linger     time.Duration
	across     bool
	middleware []BatchMiddleware
	set        []string // the batch options given, for New to refuse
}

// Defaults of the batch options.
const (
	defaultBatchMaxRecords = 500
	defaultBatchMaxBytes   = 1 << 20
)

func batchOpt(name string, fn func(*batchCfg)) Opt {
	return opt(func(c *cfg) {
		c.batch.set = append(c.batch.set, name)
		fn(&c.batch)
	})
}

// BatchMaxRecords sets the most records a batch holds; the default is 500
// (Java: max.poll.records). A batch also holds no more than the records in
// flight, MaxInFlight. It applies to NewBatch only.
func BatchMaxRecords(n int) Opt {
	return batchOpt("BatchMaxRecords", func(b *batchCfg) { b.maxRecords = n })
}

// BatchMaxBytes sets the most bytes of keys, values and headers a batch
// holds; the default is 1 MiB. A record larger than that makes a batch on
// its own. It applies to NewBatch only.
func BatchMaxBytes(n int) Opt {
	return batchOpt("BatchMaxBytes", func(b *batchCfg) { b.maxBytes = n })
}

// BatchLinger sets how long a batch that is not full waits for more records
// before it is handed over; the default is 0: a batch is what is waiting
// when the handler is free, so batches grow with the backlog and cost no
// latency when there is none. A linger makes fewer, fuller batches when
// records trickle in, for sinks that pay per write. A revoke or a shutdown
// ends the wait at once, and the batch is handled. It applies to NewBatch
// only.
func BatchLinger(d time.Duration) Opt {
	return batchOpt("BatchLinger", func(b *batchCfg) { b.linger = d })
}

// BatchAcrossPartitions makes a batch gather the records waiting in every
// partition the Consumer owns, each partition's records in offset order,
// for sinks that want one write for everything waiting.
// One goroutine gathers and hands over batches, one at a time. A record that
// fails on its own holds back its own partition only: the other partitions
// go on in later batches. The default is a batch per partition, handled on
// the partition's goroutine. It applies to NewBatch only.
func BatchAcrossPartitions() Opt {
	return batchOpt("BatchAcrossPartitions", func(b *batchCfg) { b.across = true })
}

// UseBatch wraps the batch handler with middleware; the first is the
// outermost, inside the batch middleware of plugins. It applies to NewBatch
// only; records handled on their own pass the middleware of Use instead.
func UseBatch(mw ...BatchMiddleware) Opt {
	return batchOpt("UseBatch", func(b *batchCfg) { b.middleware = append(b.middleware, mw...) })
}

func (b *batchCfg) validate(batched bool, ordering Ordering) error {
	if !batched {
		if len(b.set) > 0 {
			return fmt.Errorf("%w: %v apply to NewBatch only", ErrInvalidOption, b.set)
		}
		return nil
	}
	var errs []error
	if b.maxRecords < 1 {
		errs = append(errs, fmt.Errorf("%w: BatchMaxRecords(%d) must be at least 1", ErrInvalidOption, b.maxRecords))
	}
	if b.maxBytes < 1 {
		errs = append(errs, fmt.Errorf("%w: BatchMaxBytes(%d) must be at least 1", ErrInvalidOption, b.maxBytes))
	}
	if b.linger < 0 {
		errs = append(errs, fmt.Errorf("%w: BatchLinger(%v) must not be negative", ErrInvalidOption, b.linger))
	}
	if ordering != PartitionOrder {
		errs = append(errs, fmt.Errorf("%w: NewBatch needs PartitionOrder (got %v): a batch keeps its partition's order", ErrInvalidOption, ordering))
	}
	return errors.Join(errs...)
}

// safeHandleBatch calls h and turns a panic into a *PanicError.
func safeHandleBatch(ctx context.Context, h BatchHandler, recs []*kgo.Record) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return h.HandleBatch(ctx, recs)
}

// replayKey is the context key under which a record named by a BatchError
// carries the batch's error into its first pass through the middleware.
type replayKey struct{}

type replay struct {
	r    *kgo.Record
	err  error
	used bool
}

// alone is the innermost per-record handler of a batch Consumer: the batch
// handler with one record, or the batch's error for a record named by a
// BatchError, the first time it arrives.
func (c *Consumer) alone(ctx context.Context, r *kgo.Record) error {
	if v, ok := ctx.Value(replayKey{}).(*replay); ok && v.r == r && !v.used {
		v.used = true
		return v.err
	}
	return c.bh.HandleBatch(ctx, []*kgo.Record{r})
}

// skip reports whether a plugin's filter skips r.
func (c *Consumer) skip(r *kgo.Record) bool {
	for _, fn := range c.skips {
		if fn(r) {
			return true
		}
	}
	return false
}

// recordBytes is what a record counts against BatchMaxBytes.
func recordBytes(r *kgo.Record) int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// A gathered batch: every record taken, in order, and the ones handed to the
// handler, which are all of them unless a plugin's filter skipped some.
type gathered struct {
	all     []*kgo.Record
	skipped []bool        // nil while nothing is skipped; else parallel to all
	recs    []*kgo.Record // aliases all while nothing is skipped
	bytes   int
	closed  bool // a record did not fit: the batch is full
	max     int
	maxB    int
}

func (g *gathered) reset(b *batchCfg) {
	clear(g.all)
	g.all = g.all[:0]
	g.skipped = nil
	g.recs = g.all
	g.bytes, g.closed = 0, false
	g.max, g.maxB = b.maxRecords, b.maxBytes
}

func (g *gathered) empty() bool { return len(g.all) == 0 }

func (g *gathered) full() bool { return g.closed || len(g.recs) >= g.max }

// add takes r unless the batch is full or r does not fit; it reports
// whether it took r.
func (g *gathered) add(c *Consumer, r *kgo.Record) bool {
	if g.full() {
		return false
	}
	if len(c.skips) > 0 && c.skip(r) {
		if g.skipped == nil {
			g.skipped = make([]bool, len(g.all), cap(g.all))
			g.recs = append([]*kgo.Record(nil), g.all...)
		}
		g.all = append(g.all, r)
		g.skipped = append(g.skipped, true)
		return true
	}
	n := recordBytes(r)
	if len(g.recs) > 0 && g.bytes+n > g.maxB {
		g.closed = true
		return false
	}
	g.bytes += n
	g.all = append(g.all, r)
	if g.skipped == nil {
		g.recs = g.all
	} else {
		g.skipped = append(g.skipped, false)
		g.recs = append(g.recs, r)
	}
	return true
}

// addRun takes the leading records of recs that fit, for a Consumer
// without skip filters, and returns how many it took.
func (g *gathered) addRun(recs []*kgo.Record) int {
	if g.full() {
		return 0
	}
	n := min(len(recs), g.max-len(g.recs))
	for i, r := range recs[:n] {
		b := recordBytes(r)
		if len(g.recs)+i > 0 && g.bytes+b > g.maxB {
			g.closed = true
			n = i
			break
		}
		g.bytes += b
	}
	g.all = append(g.all, recs[:n]...)
	g.recs = g.all
	return n
}

// prefix returns how many records of all are done when the handler did
// the first k of recs: those before recs[k], skipped ones included.
func (g *gathered) prefix(k int) int {
	if k >= len(g.recs) {
		return len(g.all)
	}
	if g.skipped == nil {
		return k
	}
	for i, s := range g.skipped {
		if !s {
			if k == 0 {
				return i
			}
			k--
		}
	}
	return len(g.all)
}

// tail returns the records after all[i], which is recs[k].
func (g *gathered) tail(i, k int) gathered {
	t := *g
	t.all, t.recs = g.all[i+1:], g.recs[k+1:]
	if g.skipped != nil {
		t.skipped = g.skipped[i+1:]
	}
	return t
}

// isSkipped reports whether all[i] was skipped.
func (g *gathered) isSkipped(i int) bool { return g.skipped != nil && g.skipped[i] }

// outcome is what a call of the batch handler says about its records.
type outcome struct {
	done   int   // records of all that are done
	k      int   // with failed: the index in recs of all[done]
	failed error // the error of all[done], if the handler named it
	err    error // the call's error
}

// call hands g.recs to the batch handler under ctx and tells the batch
// observers.
func (c *Consumer) call(ctx context.Context, g *gathered) (out outcome, took time.Duration) {
	if len(g.recs) == 0 {
		return outcome{done: len(g.all)}, 0
	}
	var start time.Time
	if c.observer != nil {
		start = time.Now()
	}
	err := safeHandleBatch(ctx, c.batch, g.recs)
	if c.observer != nil {
		took = time.Since(start)
		if bo := c.batchObs; bo != nil {
			bo.HandledBatch(g.recs, took, err)
		}
	}
	if err == nil {
		return outcome{done: len(g.all)}, took
	}
	out.err = err
	if be, ok := errors.AsType[*BatchError](err); ok && be.Index >= 0 && be.Index < len(g.recs) {
		out.done, out.k, out.failed = g.prefix(be.Index), be.Index, be.recordErr()
		return out, took
	}
	out.done = g.prefix(0)
	return out, took
}

// observeDone tells the observers that all[from:to] were handled, each
// with its share of the call's time; skipped records took none.
func (c *Consumer) observeDone(g *gathered, from, to int, took time.Duration) {
	obs := c.observer
	if obs == nil || from >= to {
		return
	}
	share := took / time.Duration(max(1, len(g.recs)))
	for i := from; i < to; i++ {
		d := share
		if g.isSkipped(i) {
			d = 0
		}
		obs.Handled(g.all[i], d, nil)
	}
}
