package consumer

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A spanner gathers the batches of a Consumer with BatchAcrossPartitions
// from the records waiting in every partition and hands them over one at a
// time, on a goroutine of its own. A partition whose records are in the
// batch in hand, or whose failing record is being settled on its own, is
// busy: none of its other records are gathered until it is free again, so
// that each partition's records are done in offset order.
type spanner struct {
	c    *Consumer
	wake chan struct{}
	done chan struct{} // closed when run returned

	mu     sync.Mutex
	ready  []*spanPart // partitions with records waiting and none busy, longest waiting first
	closed bool

	byTP map[tp]*spanPart // the partitions of the batch in hand; used by run only
}

func newSpanner(c *Consumer) *spanner {
	return &spanner{c: c, wake: make(chan struct{}, 1), done: make(chan struct{}), byTP: make(map[tp]*spanPart)}
}

// A spanPart is the runner of one partition of a Consumer with
// BatchAcrossPartitions: it holds the partition's waiting records for the
// spanner.
type spanPart struct {
	*partition
	s *spanner

	// Under s.mu.
	q       recQueue
	listed  bool // in s.ready
	busy    bool
	stopped bool

	endOnce sync.Once

	// Used by the spanner's goroutine only: the partition's last record
	// done in the batch in hand, and how many.
	last  *kgo.Record
	count int
}

func newSpanPart(s *spanner, key tp) *spanPart {
	return &spanPart{partition: newPartition(s.c, key), s: s}
}

func (s *spanner) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// list makes sp ready if it has records waiting and is neither busy nor
// stopped; the caller holds s.mu.
func (s *spanner) list(sp *spanPart) {
	if !sp.listed && !sp.busy && !sp.stopped && !sp.q.empty() {
		s.ready = append(s.ready, sp)
		sp.listed = true
	}
}

func (sp *spanPart) push(recs []*kgo.Record) {
	sp.added(len(recs))
	s := sp.s
	s.mu.Lock()
	sp.q.chunks = append(sp.q.chunks, recs) // kgo does not reuse the slice: no copy
	s.list(sp)
	s.mu.Unlock()
	s.signal()
}

// tick does nothing: the spanner stores as batches succeed.
func (sp *spanPart) tick() {}

// stop stops the partition: its records not gathered are dropped, and done
// is closed once its records in hand are settled or abandoned. A batch
// lingering with records of the partition is handed over at once.
func (sp *spanPart) stop() {
	sp.quitNow()
	s := sp.s
	s.mu.Lock()
	sp.stopped = true
	idle := !sp.busy
	s.mu.Unlock()
	if idle {
		sp.end()
	}
	s.signal()
}

// end closes done once the partition is stopped and not busy, and takes
// its records still counted off the in-flight counts.
func (sp *spanPart) end() {
	sp.endOnce.Do(func() {
		sp.abandon() // every record of the partition is stored or dropped
		sp.s.mu.Lock()
		sp.q.reset()
		sp.s.mu.Unlock()
		sp.mu.Lock()
		n := sp.pending
		sp.mu.Unlock()
		sp.resume()
		sp.finished(n)
		close(sp.done)
	})
}

// release makes sp free again once its records in hand are settled.
func (s *spanner) release(sp *spanPart) {
	s.mu.Lock()
	sp.busy = false
	stopped := sp.stopped
	s.list(sp)
	s.mu.Unlock()
	if stopped {
		sp.end()
		return
	}
	s.signal()
}

// close makes run return once the batch in hand, if any, is settled.
func (s *spanner) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.signal()
}

func (s *spanner) run() {
	defer close(s.done)
	var (
		g     gathered
		parts []*spanPart
		b     = &s.c.cfg.batch
	)
	for {
		g.reset(b)
		clear(parts)
		parts = s.gather(&g, parts[:0])
		if g.empty() {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return
			}
			<-s.wake
			continue
		}
		if b.linger > 0 && !g.full() {
			parts = s.linger(&g, parts)
		}
		s.handle(&g, parts)
	}
}

// gather adds to g the records waiting in the partitions already in it,
// then those of the ready partitions, longest waiting first, until g is
// full. It returns the partitions of g, each now busy.
func (s *spanner) gather(g *gathered, parts []*spanPart) []*spanPart {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sp := range parts {
		if !sp.stopped {
			sp.q.fill(s.c, g)
		}
	}
	n := 0
	for n < len(s.ready) && !g.full() {
		sp := s.ready[n]
		n++
		sp.listed = false
		if sp.stopped || sp.busy {
			continue
		}
		before := len(g.all)
		sp.q.fill(s.c, g)
		if len(g.all) > before {
			sp.busy = true
			parts = append(parts, sp)
		} else if !sp.q.empty() {
			// Full before its first record: it stays first in line.
			n--
			sp.listed = true
			break
		}
	}
	s.ready = slices.Delete(s.ready, 0, n)
	return parts
}

// linger adds records to g as they arrive, until g is full, BatchLinger
// passed, a partition of g is stopped, or no record can arrive because the
// Consumer holds MaxInFlight records.
func (s *spanner) linger(g *gathered, parts []*spanPart) []*spanPart {
	t := time.NewTimer(s.c.cfg.batch.linger)
	defer t.Stop()
	for !g.full() && s.c.inFlight.Load() < int64(s.c.cfg.maxInFlight) && !s.anyStopped(parts) {
		select {
		case <-s.wake:
			parts = s.gather(g, parts)
		case <-t.C:
			return parts
		}
	}
	return parts
}

func (s *spanner) anyStopped(parts []*spanPart) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return true
	}
	for _, sp := range parts {
		if sp.stopped {
			return true
		}
	}
	return false
}

// handle hands g to the batch handler and settles its records. Its context
// is cancelled when any partition of the batch is abandoned: a lost
// partition's records must not be worked on, and the batch is one call.
func (s *spanner) handle(g *gathered, parts []*spanPart) {
	c := s.c
	clear(s.byTP)
	for _, sp := range parts {
		s.byTP[sp.tp] = sp
	}
	ctx, cancel := context.WithCancel(c.base)
	stops := make([]func() bool, len(parts))
	for i, sp := range parts {
		stops[i] = context.AfterFunc(sp.ctx, cancel)
	}
	out, took := c.call(ctx, g)
	for _, stop := range stops {
		stop()
	}
	abandoned := ctx.Err() != nil
	cancel()

	// The records done are stored, except those of an abandoned
	// partition (partition.store refuses them).
	c.observeDone(g, 0, out.done, took)
	s.storeDone(g.all[:out.done], parts)
	switch {
	case out.err != nil && abandoned:
		// The call failed because a partition was abandoned: the other
		// partitions' records after the ones done wait again.
		s.putBack(g.all[out.done:])
		s.releaseAll(parts, nil)
	case out.err == nil:
		s.releaseAll(parts, nil)
	case out.failed == nil:
		// The handler did not say which record failed: each partition
		// handles its records of the batch one at a time, on a goroutine
		// of its own, so that a failing one holds back only itself.
		rest := g.all[out.done:]
		settling := make(map[*spanPart][]*kgo.Record)
		for _, r := range rest {
			sp := s.byTP[tp{r.Topic, r.Partition}]
			settling[sp] = append(settling[sp], r)
		}
		s.releaseAll(parts, settling)
		for sp, recs := range settling {
			go func() {
				sp.settle(recs, nil)
				s.release(sp)
			}()
		}
	default:
		// The failing record is settled on its own by its partition; the
		// records after it wait again, and the other partitions go on.
		r := g.all[out.done]
		sp := s.byTP[tp{r.Topic, r.Partition}]
		s.putBack(g.all[out.done+1:])
		s.releaseAll(parts, map[*spanPart][]*kgo.Record{sp: nil})
		go func() {
			sp.settle([]*kgo.Record{r}, out.failed)
			s.release(sp)
		}()
	}
}

// storeDone stores, for each partition of parts, the offset of its last
// record in done, and takes done off the in-flight counts. A partition's
// records come in runs, so it looks up a partition once per run.
func (s *spanner) storeDone(done []*kgo.Record, parts []*spanPart) {
	for i := 0; i < len(done); {
		r := done[i]
		j := i + 1
		for j < len(done) && done[j].Partition == r.Partition && done[j].Topic == r.Topic {
			j++
		}
		sp := s.byTP[tp{r.Topic, r.Partition}]
		sp.last, sp.count = done[j-1], sp.count+j-i
		i = j
	}
	for _, sp := range parts {
		if sp.count > 0 {
			sp.store(sp.last)
			sp.finished(sp.count)
			sp.last, sp.count = nil, 0
		}
	}
}

// putBack puts recs, in order, before the waiting records of their
// partitions, unless a partition was abandoned.
func (s *spanner) putBack(recs []*kgo.Record) {
	if len(recs) == 0 {
		return
	}
	byPart := make(map[*spanPart][]*kgo.Record)
	for _, r := range recs {
		sp := s.byTP[tp{r.Topic, r.Partition}]
		byPart[sp] = append(byPart[sp], r)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for sp, rs := range byPart {
		if sp.ctx.Err() == nil {
			sp.q.pushFront(rs)
		}
	}
}

// releaseAll releases the partitions of a batch except those in keep,
// which stay busy while they settle records on their own.
func (s *spanner) releaseAll(parts []*spanPart, keep map[*spanPart][]*kgo.Record) {
	for _, sp := range parts {
		if _, ok := keep[sp]; !ok {
			s.release(sp)
		}
	}
}
