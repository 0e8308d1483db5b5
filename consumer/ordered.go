package consumer

import (
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// An ordered runner handles the records of its partition one at a time,
// in offset order, on a goroutine of its own.
type ordered struct {
	*partition

	wake chan struct{}
	// handled is the last record run handled. Every backlogCheck the
	// Consumer stores its offset, so that a handled record waits at most
	// that long, even behind a handler call that hangs; publishing it is
	// much cheaper per record than reading the clock or marking.
	handled atomic.Pointer[kgo.Record]

	queue [][]*kgo.Record // under mu: the records of each poll, as kgo returned them
}

func newOrdered(c *Consumer, key tp) *ordered {
	return &ordered{partition: newPartition(c, key), wake: make(chan struct{}, 1)}
}

func (o *ordered) push(recs []*kgo.Record) {
	o.mu.Lock()
	o.pending += len(recs)
	o.queue = append(o.queue, recs) // kgo does not reuse the slice: no copy
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func (o *ordered) tick() { o.storeHandled() }

func (o *ordered) stop() { o.quitNow() }

func (o *ordered) run() {
	defer close(o.done)
	var (
		batch [][]*kgo.Record
		clock time.Time // when the next handler call starts, with an observer
	)
	timed := o.c.observer != nil
	if timed {
		clock = time.Now()
	}
	defer func() {
		o.storeHandled()
		// The backlog ticker may still hold this runner; once its
		// partition is revoked and committed, a late store would bring
		// the partition back into the next commit.
		o.abandon()
		o.mu.Lock()
		n := o.pending
		o.queue = nil
		o.mu.Unlock()
		o.resume()
		o.finished(n)
	}()
	if o.c.batch != nil {
		o.runBatches()
		return
	}
	for {
		o.mu.Lock()
		clear(batch)
		batch, o.queue = o.queue, batch[:0]
		o.mu.Unlock()
		if len(batch) == 0 {
			// Idle: store now rather than at the next tick, and let go
			// of the last record, which pins the buffer of its fetch.
			o.storeHandled()
			select {
			case <-o.wake:
				if timed {
					clock = time.Now()
				}
				continue
			case <-o.quit:
				return
			}
		}
		counted := 0 // handled records not yet taken off the in-flight counts
		for _, recs := range batch {
			for _, r := range recs {
				if o.quitting.Load() {
					return
				}
				var ok bool
				if ok, clock = o.handle(r, clock); !ok {
					return
				}
				o.handled.Store(r)
				if counted++; counted == countEvery {
					o.finished(counted)
					counted = 0
				}
			}
		}
		o.finished(counted)
	}
}

// storeHandled stores the offset of the last record run handled, if it is
// not stored yet, and lets go of the record, which pins the buffer of the
// whole fetch it came in.
func (o *ordered) storeHandled() {
	o.smu.Lock()
	defer o.smu.Unlock()
	o.mark(o.handled.Swap(nil))
}
