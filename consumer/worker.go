package consumer

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	// countEvery is how many handled records a worker counts locally
	// before it updates the shared in-flight counts; fast handlers would
	// otherwise contend on them for every record.
	countEvery = 32
)

// A worker handles the records of one partition: in order on its own
// goroutine with PartitionOrder, or through the Consumer's pool otherwise.
type worker struct {
	c *Consumer
	tp

	ctx    context.Context // the handlers' context; cancelled when abandoned
	cancel context.CancelFunc
	smu    sync.Mutex    // makes a store and an abandon exclusive
	quit   chan struct{} // closed to stop after the record in hand
	// quitting is set with quit closed; it is cheaper to check per record.
	quitting atomic.Bool
	done     chan struct{} // closed when run returns
	wake     chan struct{}
	// handled is the last record run handled. Every backlogCheck the
	// Consumer stores its offset, so that a handled record waits at most
	// that long, even behind a handler call that hangs; publishing it is
	// much cheaper per record than reading the clock or marking.
	handled atomic.Pointer[kgo.Record]

	// With KeyOrder and Unordered, under tmu:
	tmu     sync.Mutex
	window  []*slot // dispatched records not yet stored, in offset order
	running int     // records of the partition being handled
	stopped bool
	endOnce sync.Once

	mu      sync.Mutex
	queue   [][]*kgo.Record // the records of each poll, as kgo returned them
	pending int             // queued plus in hand
	paused  bool
	behind  bool // pending was at the per-partition bound at the last check
}

func newWorker(c *Consumer, key tp) *worker {
	ctx, cancel := context.WithCancel(context.Background())
	return &worker{
		c:      c,
		tp:     key,
		ctx:    ctx,
		cancel: cancel,
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
		wake:   make(chan struct{}, 1),
	}
}

// push queues records for the worker.
func (w *worker) push(recs []*kgo.Record) {
	w.mu.Lock()
	w.pending += len(recs)
	if w.c.pool != nil {
		w.mu.Unlock()
		w.enqueue(recs)
		return
	}
	w.queue = append(w.queue, recs) // kgo does not reuse the slice: no copy
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// finished takes n records off the partition's count and resumes fetching
// once half of the per-partition bound is free.
func (w *worker) finished(n int) {
	w.mu.Lock()
	w.pending -= n
	if w.paused && w.pending <= w.c.cfg.maxPerPartition/2 {
		w.paused = false
		w.setPaused(false)
	}
	w.mu.Unlock()
	w.c.release(n)
}

// checkBehind pauses fetching of the partition if its handler was at the
// per-partition bound at this check and the previous one. A handler that
// works off a large fetch quickly is not paused: pausing drops the client's
// buffered records of the partition and resuming waits for a new fetch.
func (w *worker) checkBehind() {
	w.mu.Lock()
	defer w.mu.Unlock()
	behind := w.pending >= w.c.cfg.maxPerPartition
	if behind && w.behind && !w.paused {
		w.paused = true
		w.setPaused(true)
	}
	w.behind = behind
}

// setPaused pauses or resumes fetching; the caller holds w.mu so that a pause
// and a resume cannot cross.
func (w *worker) setPaused(paused bool) {
	m := map[string][]int32{w.topic: {w.partition}}
	if paused {
		w.c.cl.PauseFetchPartitions(m)
		w.c.paused.Add(1)
	} else {
		w.c.cl.ResumeFetchPartitions(m)
		w.c.paused.Add(-1)
	}
	if o := w.c.cfg.observer; o != nil {
		o.Paused(w.topic, w.partition, paused)
	}
}

func (w *worker) run() {
	defer close(w.done)
	var (
		batch [][]*kgo.Record
		clock time.Time // when the next handler call starts, with an observer
	)
	timed := w.c.cfg.observer != nil
	if timed {
		clock = time.Now()
	}
	defer func() {
		w.storeHandled()
		// The backlog ticker may still hold this worker; once its
		// partition is revoked and committed, a late store would bring
		// the partition back into the next commit.
		w.abandon()
		w.mu.Lock()
		n := w.pending
		w.queue = nil
		if w.paused {
			w.paused = false
			w.setPaused(false)
		}
		w.mu.Unlock()
		w.finished(n)
	}()
	for {
		w.mu.Lock()
		clear(batch)
		batch, w.queue = w.queue, batch[:0]
		w.mu.Unlock()
		if len(batch) == 0 {
			// Idle: store now rather than at the next tick, and let go
			// of the last record, which pins the buffer of its fetch.
			w.storeHandled()
			select {
			case <-w.wake:
				if timed {
					clock = time.Now()
				}
				continue
			case <-w.quit:
				return
			}
		}
		counted := 0 // handled records not yet taken off the in-flight counts
		for _, recs := range batch {
			for _, r := range recs {
				if w.quitting.Load() {
					return
				}
				var ok bool
				if ok, clock = w.handle(r, clock); !ok {
					return
				}
				w.handled.Store(r)
				if counted++; counted == countEvery {
					w.finished(counted)
					counted = 0
				}
			}
		}
		w.finished(counted)
	}
}

// storeHandled stores the offset of the last record run handled, if it is
// not stored yet, and lets go of the record, which pins the buffer of the
// whole fetch it came in.
func (w *worker) storeHandled() {
	w.smu.Lock()
	defer w.smu.Unlock()
	w.mark(w.handled.Swap(nil))
}

// store marks the offset of r, a handled record, for the next commit,
// unless the partition was abandoned (lost, or revoked past the timeout) and
// is no longer ours.
func (w *worker) store(r *kgo.Record) {
	w.smu.Lock()
	defer w.smu.Unlock()
	w.mark(r)
}

// mark marks r for the next commit unless the worker was abandoned; the
// caller holds w.smu.
func (w *worker) mark(r *kgo.Record) {
	if r != nil && w.c.cfg.group != "" && w.ctx.Err() == nil {
		w.c.cl.MarkCommitRecords(r)
	}
}

// abandon cancels the handlers' context and stops the worker storing
// offsets. kgo forgets a lost or revoked partition's marks after the
// rebalance callback returns; a mark made after that would bring the
// partition back into the next commit, under a generation that no longer
// owns it, and move the group's position back.
func (w *worker) abandon() {
	w.smu.Lock()
	w.cancel()
	w.smu.Unlock()
}

// handle calls the handler until it returns nil, backing off between
// attempts. It returns false if the worker was stopped or abandoned first.
//
// With an observer, start is when the first call starts and end when the
// last one ended, so that back-to-back calls read the clock once each.
func (w *worker) handle(r *kgo.Record, start time.Time) (ok bool, end time.Time) {
	obs := w.c.cfg.observer
	for attempt := 1; ; attempt++ {
		err := safeHandle(w.ctx, w.c.handler, r)
		if obs != nil {
			end = time.Now()
			obs.Handled(r, end.Sub(start), err)
		}
		if err == nil {
			return true, end
		}
		if w.ctx.Err() != nil {
			return false, end
		}
		wait := backoff(w.c.cfg.retryMin, w.c.cfg.retryMax, attempt)
		// A record that keeps failing logs at attempts 1, 2, 4, 8, ... so
		// that a long outage does not flood the log.
		level := slog.LevelDebug
		if attempt&(attempt-1) == 0 {
			level = slog.LevelWarn
		}
		w.c.cfg.logger.Log(w.ctx, level, "handler failed; retrying the record",
			"topic", r.Topic, "partition", r.Partition, "offset", r.Offset,
			"attempt", attempt, "backoff", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-w.quit:
			t.Stop()
			return false, end
		case <-w.ctx.Done():
			t.Stop()
			return false, end
		}
		if obs != nil {
			start = time.Now()
		}
	}
}

// backoff returns a capped exponential delay with jitter in [d/2, d).
func backoff(min, max time.Duration, attempt int) time.Duration {
	d := max
	if attempt < 32 {
		if e := min << (attempt - 1); e > 0 && e < max {
			d = e
		}
	}
	return d/2 + rand.N(d/2+1)
}
