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
	quit   chan struct{} // closed to stop after the record in hand
	// quitting is set with quit closed; it is cheaper to check per record.
	quitting atomic.Bool
	done     chan struct{} // closed when run returns
	wake     chan struct{}
	// storeDue is set every backlogCheck, so that a handled record waits
	// at most that long before its offset is stored; a flag is much
	// cheaper than reading the clock for every record.
	storeDue atomic.Bool

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
		last  *kgo.Record // handled, its offset not stored yet
		clock time.Time   // when the next handler call starts, with an observer
	)
	timed := w.c.cfg.observer != nil
	if timed {
		clock = time.Now()
	}
	defer func() {
		w.store(last)
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
			w.store(last)
			last = nil
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
				if ok, clock = w.handle(r, last, clock); !ok {
					return
				}
				last = r
				counted++
				due := w.storeDue.Load()
				if counted == countEvery || due {
					w.finished(counted)
					counted = 0
				}
				if due {
					w.storeDue.Store(false)
					w.store(last)
					last = nil
				}
			}
		}
		w.finished(counted)
	}
}

// store marks the offset of r, a handled record, for the next commit,
// unless the partition was abandoned (lost, or revoked past the timeout) and
// is no longer ours.
func (w *worker) store(r *kgo.Record) {
	if r == nil || w.c.cfg.group == "" || w.ctx.Err() != nil {
		return
	}
	w.c.cl.MarkCommitRecords(r)
}

// handle calls the handler until it returns nil, backing off between
// attempts. It returns false if the worker was stopped or abandoned first.
// prev, if not nil, is the handled record before r whose offset is not yet
// stored: it is stored before the first backoff, so that the records before
// a failing one commit while it retries.
//
// With an observer, start is when the first call starts and end when the
// last one ended, so that back-to-back calls read the clock once each.
func (w *worker) handle(r, prev *kgo.Record, start time.Time) (ok bool, end time.Time) {
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
		if attempt == 1 {
			w.store(prev)
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
