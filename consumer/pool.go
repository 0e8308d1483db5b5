package consumer

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A pool runs handlers for KeyOrder and Unordered: a fixed number of
// goroutines take the next record of any key that is not running, so a slow
// or failing key holds back only itself.
type pool struct {
	mu     sync.Mutex
	cond   sync.Cond
	keys   map[keyRef]*keyQueue
	ready  fifo[*keyQueue] // keys with records waiting and none running
	closed bool

	unordered bool
	seq       uint64 // gives records without an order a key of their own
	maxDepth  atomic.Int64
}

type keyRef struct {
	tp
	key string
	seq uint64
}

// A keyQueue holds the waiting records of one key, in offset order.
type keyQueue struct {
	ref     keyRef
	items   fifo[*slot]
	running bool
}

// A slot is a record dispatched to the pool and its place in its
// partition's window of unstored offsets.
type slot struct {
	w    *worker
	r    *kgo.Record
	done bool
}

func newPool(unordered bool) *pool {
	p := &pool{keys: make(map[keyRef]*keyQueue), unordered: unordered}
	p.cond.L = &p.mu
	return p
}

// start starts n goroutines.
func (p *pool) start(n int) {
	for range n {
		go p.run()
	}
}

// submit queues the slots of one partition, in offset order.
func (p *pool) submit(slots []*slot) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range slots {
		ref := keyRef{tp: s.w.tp}
		if p.unordered || len(s.r.Key) == 0 {
			p.seq++
			ref.seq = p.seq
		} else {
			ref.key = string(s.r.Key)
		}
		kq := p.keys[ref]
		if kq == nil {
			kq = &keyQueue{ref: ref}
			p.keys[ref] = kq
		}
		kq.items.push(s)
		if d := int64(kq.items.len()); d > p.maxDepth.Load() {
			p.maxDepth.Store(d)
		}
		if !kq.running && kq.items.len() == 1 {
			p.ready.push(kq)
			p.cond.Signal()
		}
	}
}

func (p *pool) run() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		for p.ready.len() == 0 && !p.closed {
			p.cond.Wait()
		}
		if p.closed {
			return
		}
		kq := p.ready.pop()
		s := kq.items.pop()
		kq.running = true
		p.mu.Unlock()
		s.w.handleSlot(s)
		p.mu.Lock()
		kq.running = false
		if kq.items.len() > 0 {
			p.ready.push(kq)
		} else {
			delete(p.keys, kq.ref)
		}
	}
}

// close makes the pool's goroutines exit once their records in hand are
// done, without waiting for them: shutdown already waited as long as it
// may. Records still queued are dropped.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	p.mu.Unlock()
}

// handleSlot handles one record of the pool, or drops it if its partition
// was stopped. A handled record stays counted as in flight until the stored
// offset passes it, so records finished beyond a slow one are bounded by the
// in-flight limits like the ones waiting.
func (w *worker) handleSlot(s *slot) {
	w.tmu.Lock()
	if w.stopped {
		w.tmu.Unlock()
		w.finished(1)
		return
	}
	w.running++
	w.tmu.Unlock()
	var start time.Time
	if w.c.cfg.observer != nil {
		start = time.Now()
	}
	ok, _ := w.handle(s.r, start)
	w.tmu.Lock()
	w.running--
	n := 1 // an abandoned record is no longer in flight
	if ok {
		s.done = true
		n = w.advance()
	}
	idle := w.stopped && w.running == 0
	w.tmu.Unlock()
	w.finished(n)
	if idle {
		w.endKeyed()
	}
}

// enqueue records the records of a push in the partition's window and hands
// them to the pool.
func (w *worker) enqueue(recs []*kgo.Record) {
	slots := make([]*slot, len(recs))
	w.tmu.Lock()
	for i, r := range recs {
		slots[i] = &slot{w: w, r: r}
	}
	w.window = append(w.window, slots...)
	w.tmu.Unlock()
	w.c.pool.submit(slots)
}

// advance stores the offset of the last record of the finished prefix of
// the window, takes the prefix off the window and returns its length. The
// caller holds w.tmu.
func (w *worker) advance() int {
	n := 0
	for n < len(w.window) && w.window[n].done {
		n++
	}
	if n == 0 {
		return 0
	}
	w.store(w.window[n-1].r)
	clear(w.window[:n])
	w.window = w.window[n:]
	return n
}

// stopKeyed stops the partition: records not started are dropped, and done
// is closed once the records running now are finished.
func (w *worker) stopKeyed() {
	w.tmu.Lock()
	w.stopped = true
	idle := w.running == 0
	w.tmu.Unlock()
	if idle {
		w.endKeyed()
	}
}

// endKeyed closes done and takes the finished records that the stored
// offset could not pass off the in-flight counts.
func (w *worker) endKeyed() {
	w.endOnce.Do(func() {
		w.abandon() // every record of the partition is stored or dropped
		w.tmu.Lock()
		n := 0
		for _, s := range w.window {
			if s.done {
				n++
			}
		}
		w.window = nil
		w.tmu.Unlock()
		w.finished(n)
		w.mu.Lock()
		if w.paused {
			w.paused = false
			w.setPaused(false)
		}
		w.mu.Unlock()
		close(w.done)
	})
}

// fifo is a queue on a slice that reuses its space.
type fifo[T any] struct {
	items []T
	head  int
}

func (q *fifo[T]) len() int { return len(q.items) - q.head }

func (q *fifo[T]) push(v T) {
	if q.head > 0 && q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	q.items = append(q.items, v)
}

func (q *fifo[T]) pop() T {
	var zero T
	v := q.items[q.head]
	q.items[q.head] = zero
	q.head++
	return v
}
