package consumer

import (
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A recQueue holds records waiting to be gathered, in order: the slices of
// the polls they came in, the first read from head.
type recQueue struct {
	chunks [][]*kgo.Record
	head   int
}

func (q *recQueue) empty() bool { return len(q.chunks) == 0 }

// pushFront puts a copy of recs before the records waiting.
func (q *recQueue) pushFront(recs []*kgo.Record) {
	if len(recs) == 0 {
		return
	}
	if len(q.chunks) > 0 {
		q.chunks[0] = q.chunks[0][q.head:]
	}
	q.chunks = append([][]*kgo.Record{slices.Clone(recs)}, q.chunks...)
	q.head = 0
}

// fill moves records into g until g is full or q empty.
func (q *recQueue) fill(c *Consumer, g *gathered) {
	for len(q.chunks) > 0 {
		chunk := q.chunks[0]
		if len(c.skips) == 0 {
			q.head += g.addRun(chunk[q.head:])
		}
		for q.head < len(chunk) {
			if !g.add(c, chunk[q.head]) {
				return
			}
			q.head++
		}
		q.chunks[0] = nil
		q.chunks = q.chunks[1:]
		q.head = 0
	}
}

// reset drops the waiting records.
func (q *recQueue) reset() {
	clear(q.chunks)
	q.chunks, q.head = q.chunks[:0], 0
}

// runBatches is the loop of an ordered runner of a batch Consumer: it
// gathers the partition's records into batches and hands them over, one at
// a time. A batch gathered before a stop is handled; records not gathered
// yet are dropped, as the records not started of a Handler's partition are.
func (o *ordered) runBatches() {
	var (
		q recQueue
		g gathered
		b = &o.c.cfg.batch
	)
	defer q.reset()
	for {
		if o.quitting.Load() {
			return
		}
		o.take(&q)
		g.reset(b)
		q.fill(o.c, &g)
		if g.empty() {
			select {
			case <-o.wake:
				continue
			case <-o.quit:
				return
			}
		}
		if b.linger > 0 && !g.full() {
			o.linger(&g, &q)
		}
		if !o.handleBatch(g) {
			return
		}
	}
}

// take moves the records pushed to the runner to q.
func (o *ordered) take(q *recQueue) {
	o.mu.Lock()
	q.chunks = append(q.chunks, o.queue...)
	clear(o.queue)
	o.queue = o.queue[:0]
	o.mu.Unlock()
}

// linger adds records to g as they arrive, until g is full, BatchLinger
// passed, the runner is stopped, or no record can arrive because the
// Consumer holds MaxInFlight records.
func (o *ordered) linger(g *gathered, q *recQueue) {
	t := time.NewTimer(o.c.cfg.batch.linger)
	defer t.Stop()
	for !g.full() && o.c.inFlight.Load() < int64(o.c.cfg.maxInFlight) {
		select {
		case <-o.wake:
			o.take(q)
			q.fill(o.c, g)
		case <-t.C:
			return
		case <-o.quit:
			return
		}
	}
}

// handleBatch hands g to the batch handler and settles its records: it
// stores the offset of the last one done and handles a failing record on
// its own. The records after a failing record named by the handler go on as
// a batch of their own. It returns false if the runner must stop: it was
// stopped while a record was being retried, or the partition abandoned.
func (o *ordered) handleBatch(g gathered) bool {
	for {
		out, took := o.c.call(o.ctx, &g)
		if out.err != nil && o.ctx.Err() != nil {
			return false // abandoned: nothing more may be stored
		}
		o.c.observeDone(&g, 0, out.done, took)
		if out.done > 0 {
			o.store(g.all[out.done-1])
			o.finished(out.done)
		}
		switch {
		case out.err == nil:
			return true
		case out.failed == nil:
			// The handler did not say which record failed: each is
			// handled on its own, so that the failing one is found and
			// routed, and the others are done.
			return o.settle(g.all[out.done:], nil)
		}
		if !o.settle(g.all[out.done:out.done+1], out.failed) {
			return false
		}
		if g = g.tail(out.done, out.k); g.empty() {
			return true
		}
	}
}

// settle handles recs one at a time through the per-record middleware and
// the Consumer's retries, storing each record's offset once it is done;
// first, if not nil, is the error of recs[0] in its batch. It returns false
// if the partition's runner was stopped during a retry or the partition
// abandoned.
func (p *partition) settle(recs []*kgo.Record, first error) bool {
	for i, r := range recs {
		var start time.Time
		if p.c.observer != nil {
			start = time.Now()
		}
		err := first
		if i > 0 {
			err = nil
		}
		if ok, _ := p.retry(r, start, err); !ok {
			return false
		}
		p.store(r)
		p.finished(1)
	}
	return true
}
