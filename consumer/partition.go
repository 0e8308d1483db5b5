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

// countEvery is how many handled records a runner counts locally before it
// updates the shared in-flight counts; fast handlers would otherwise
// contend on them for every record.
const countEvery = 32

// A runner handles the records of one partition: an ordered runner in
// offset order on its own goroutine (PartitionOrder), a keyed runner
// through the Consumer's pool (KeyOrder and Unordered).
type runner interface {
	part() *partition
	// push queues records of the partition, in offset order.
	push(recs []*kgo.Record)
	// tick is called every backlogCheck, to store what was handled.
	tick()
	// stop stops the runner after the records in hand; part().done is
	// closed once they are finished.
	stop()
}

// A partition is what both runners keep of their partition: the handlers'
// context, the stored offset and the backpressure counts.
type partition struct {
	c *Consumer
	tp

	ctx    context.Context // the handlers' context; cancelled when abandoned
	cancel context.CancelFunc
	smu    sync.Mutex    // makes a store and an abandon exclusive
	quit   chan struct{} // closed to stop after the record in hand
	// quitting is set with quit closed; it is cheaper to check per record.
	quitting atomic.Bool
	done     chan struct{} // closed once the runner stopped

	mu      sync.Mutex
	pending int // records queued plus in hand
	paused  bool
	behind  bool // pending was at the per-partition bound at the last check
}

func newPartition(c *Consumer, key tp) *partition {
	ctx, cancel := context.WithCancel(c.base)
	return &partition{
		c:      c,
		tp:     key,
		ctx:    ctx,
		cancel: cancel,
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
	}
}

func (p *partition) part() *partition { return p }

// added counts n records pushed to the partition.
func (p *partition) added(n int) {
	p.mu.Lock()
	p.pending += n
	p.mu.Unlock()
}

// quitNow makes the runner stop after the record in hand.
func (p *partition) quitNow() {
	p.quitting.Store(true)
	close(p.quit)
}

// finished takes n records off the partition's count and resumes fetching
// once half of the per-partition bound is free.
func (p *partition) finished(n int) {
	p.mu.Lock()
	p.pending -= n
	if p.paused && p.pending <= p.c.cfg.maxPerPartition/2 {
		p.paused = false
		p.setPaused(false)
	}
	p.mu.Unlock()
	p.c.release(n)
}

// checkBehind pauses fetching of the partition if its handler was at the
// per-partition bound at this check and the previous one. A handler that
// works off a large fetch quickly is not paused: pausing drops the client's
// buffered records of the partition and resuming waits for a new fetch.
func (p *partition) checkBehind() {
	p.mu.Lock()
	defer p.mu.Unlock()
	behind := p.pending >= p.c.cfg.maxPerPartition
	if behind && p.behind && !p.paused {
		p.paused = true
		p.setPaused(true)
	}
	p.behind = behind
}

// resume resumes fetching if the partition is paused, once its runner
// stopped.
func (p *partition) resume() {
	p.mu.Lock()
	if p.paused {
		p.paused = false
		p.setPaused(false)
	}
	p.mu.Unlock()
}

// setPaused pauses or resumes fetching; the caller holds p.mu so that a
// pause and a resume cannot cross.
func (p *partition) setPaused(paused bool) {
	m := map[string][]int32{p.topic: {p.partition}}
	if paused {
		p.c.cl.PauseFetchPartitions(m)
		p.c.paused.Add(1)
	} else {
		p.c.cl.ResumeFetchPartitions(m)
		p.c.paused.Add(-1)
	}
	if o := p.c.observer; o != nil {
		o.Paused(p.topic, p.partition, paused)
	}
}

// store marks the offset of r, a handled record, for the next commit,
// unless the partition was abandoned (lost, or revoked past the timeout) and
// is no longer ours.
func (p *partition) store(r *kgo.Record) {
	p.smu.Lock()
	defer p.smu.Unlock()
	p.mark(r)
}

// mark marks r for the next commit unless the partition was abandoned; the
// caller holds p.smu.
func (p *partition) mark(r *kgo.Record) {
	if r != nil && p.c.cfg.group != "" && p.ctx.Err() == nil {
		p.c.cl.MarkCommitRecords(r)
	}
}

// abandon cancels the handlers' context and stops the partition storing
// offsets. kgo forgets a lost or revoked partition's marks after the
// rebalance callback returns; a mark made after that would bring the
// partition back into the next commit, under a generation that no longer
// owns it, and move the group's position back.
func (p *partition) abandon() {
	p.smu.Lock()
	p.cancel()
	p.smu.Unlock()
}

// handle calls the handler until it returns nil, backing off between
// attempts. It returns false if the runner was stopped or abandoned first.
//
// With an observer, start is when the first call starts and end when the
// last one ended, so that back-to-back calls read the clock once each.
func (p *partition) handle(r *kgo.Record, start time.Time) (ok bool, end time.Time) {
	return p.retry(r, start, nil)
}

// retry is handle, except that when first is not nil, the first call's
// record arrives at the innermost handler of a batch Consumer with first as
// its error (see BatchHandler). A record a plugin's filter skips counts as
// handled at once.
func (p *partition) retry(r *kgo.Record, start time.Time, first error) (ok bool, end time.Time) {
	obs := p.c.observer
	if len(p.c.skips) > 0 && p.c.skip(r) {
		if obs != nil {
			obs.Handled(r, 0, nil)
		}
		return true, start
	}
	for attempt := 1; ; attempt++ {
		ctx := p.ctx
		if first != nil && attempt == 1 {
			ctx = context.WithValue(ctx, replayKey{}, &replay{r: r, err: first})
		}
		err := safeHandle(ctx, p.c.handler, r)
		if obs != nil {
			end = time.Now()
			obs.Handled(r, end.Sub(start), err)
		}
		if err == nil {
			return true, end
		}
		if p.ctx.Err() != nil {
			return false, end
		}
		wait := backoff(p.c.cfg.retryMin, p.c.cfg.retryMax, attempt)
		// A record that keeps failing logs at attempts 1, 2, 4, 8, ... so
		// that a long outage does not flood the log.
		level := slog.LevelDebug
		if attempt&(attempt-1) == 0 {
			level = slog.LevelWarn
		}
		p.c.cfg.logger.Log(p.ctx, level, "handler failed; retrying the record",
			"topic", r.Topic, "partition", r.Partition, "offset", r.Offset,
			"attempt", attempt, "backoff", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-p.quit:
			t.Stop()
			return false, end
		case <-p.ctx.Done():
			t.Stop()
			return false, end
		}
		if obs != nil {
			start = time.Now()
		}
	}
}

// backoff returns a capped exponential delay d with jitter, in [d/2, d].
func backoff(min, max time.Duration, attempt int) time.Duration {
	d := max
	if attempt < 32 {
		if e := min << (attempt - 1); e > 0 && e < max {
			d = e
		}
	}
	return d/2 + rand.N(d/2+1)
}
