package recovery

import (
	"fmt"
	"sync/atomic"

	"github.com/kconsumer/kconsumer/consumer"
)

// Stateless is the Strategy for handlers that keep no state of their own:
// they forward, notify or write idempotently elsewhere. It needs a group,
// starts each partition at the offset the group committed (where the client
// is configured to start without one: the earliest offset unless
// kgo.ConsumeStartOffset says otherwise) and relies on the Consumer's
// store-then-commit: at least once, across crashes and rebalances.
type Stateless struct {
	used     atomic.Bool
	assigned atomic.Bool
}

var _ Strategy = (*Stateless)(nil)

// NewStateless returns a Stateless strategy for one Consumer.
func NewStateless() *Stateless { return &Stateless{} }

// Attach implements consumer.Plugin. It fails with ErrNoGroup for a
// Consumer without a group, and with ErrInUse when the strategy belongs to
// another Consumer.
func (s *Stateless) Attach(a *consumer.Attachment) error {
	if a.Group() == "" {
		return ErrNoGroup
	}
	if !s.used.CompareAndSwap(false, true) {
		return ErrInUse
	}
	a.OnAbort(func() { s.used.Store(false) })
	a.Ready(s.Ready)
	// A member the group assigned no partitions is ready too.
	a.OnRebalance(func(e consumer.Event, _ map[string][]int32) {
		if e == consumer.Assigned {
			s.assigned.Store(true)
		}
	})
	return nil
}

// Ready returns nil once the member joined its group, and an error wrapping
// ErrNotReady before.
func (s *Stateless) Ready() error {
	if !s.assigned.Load() {
		return fmt.Errorf("%w: no partitions assigned yet", ErrNotReady)
	}
	return nil
}
