package consumer

import (
	"sync"
	"sync/atomic"

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
	w    *keyed
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
