package consumer

import (
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A keyed runner hands the records of its partition to the Consumer's pool
// (KeyOrder and Unordered) and stores the partition's offset up to its
// first record not yet finished.
type keyed struct {
	*partition

	tmu     sync.Mutex
	window  []*slot // dispatched records not yet stored, in offset order
	running int     // records of the partition being handled
	stopped bool
	endOnce sync.Once
}

func newKeyed(c *Consumer, key tp) *keyed {
	return &keyed{partition: newPartition(c, key)}
}

// push records the records in the partition's window and hands them to
// the pool.
func (k *keyed) push(recs []*kgo.Record) {
	k.added(len(recs))
	slots := make([]*slot, len(recs))
	k.tmu.Lock()
	for i, r := range recs {
		slots[i] = &slot{w: k, r: r}
	}
	k.window = append(k.window, slots...)
	k.tmu.Unlock()
	k.c.pool.submit(slots)
}

// tick does nothing: a keyed runner stores as its window advances.
func (k *keyed) tick() {}

// stop stops the partition: records not started are dropped, and done is
// closed once the records running now are finished.
func (k *keyed) stop() {
	k.quitNow()
	k.tmu.Lock()
	k.stopped = true
	idle := k.running == 0
	k.tmu.Unlock()
	if idle {
		k.end()
	}
}

// handleSlot handles one record of the pool, or drops it if its partition
// was stopped. A handled record stays counted as in flight until the stored
// offset passes it, so records finished beyond a slow one are bounded by the
// in-flight limits like the ones waiting.
func (k *keyed) handleSlot(s *slot) {
	k.tmu.Lock()
	if k.stopped {
		k.tmu.Unlock()
		k.finished(1)
		return
	}
	k.running++
	k.tmu.Unlock()
	var start time.Time
	if k.c.observer != nil {
		start = time.Now()
	}
	ok, _ := k.handle(s.r, start)
	k.tmu.Lock()
	k.running--
	n := 1 // an abandoned record is no longer in flight
	if ok {
		s.done = true
		n = k.advance()
	}
	idle := k.stopped && k.running == 0
	k.tmu.Unlock()
	k.finished(n)
	if idle {
		k.end()
	}
}

// advance stores the offset of the last record of the finished prefix of
// the window, takes the prefix off the window and returns its length. The
// caller holds k.tmu.
func (k *keyed) advance() int {
	n := 0
	for n < len(k.window) && k.window[n].done {
		n++
	}
	if n == 0 {
		return 0
	}
	k.store(k.window[n-1].r)
	clear(k.window[:n])
	k.window = k.window[n:]
	return n
}

// end closes done and takes the finished records that the stored offset
// could not pass off the in-flight counts.
func (k *keyed) end() {
	k.endOnce.Do(func() {
		k.abandon() // every record of the partition is stored or dropped
		k.tmu.Lock()
		n := 0
		for _, s := range k.window {
			if s.done {
				n++
			}
		}
		k.window = nil
		k.tmu.Unlock()
		k.finished(n)
		k.resume()
		close(k.done)
	})
}
