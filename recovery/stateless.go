package recovery

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"

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

var _ consumer.Strategy = (*Stateless)(nil)

// NewStateless returns a Stateless strategy for one Consumer.
func NewStateless() *Stateless { return &Stateless{} }

// Setup implements consumer.Strategy. It fails with ErrNoGroup without a
// group.
func (s *Stateless) Setup(group string) ([]kgo.Opt, error) {
	if !s.used.CompareAndSwap(false, true) {
		return nil, ErrInUse
	}
	if group == "" {
		return nil, ErrNoGroup
	}
	return nil, nil
}

// Start implements consumer.Strategy.
func (s *Stateless) Start(context.Context, *kgo.Client) error { return nil }

// StartOffsets implements consumer.Strategy: partitions start at the
// committed offsets.
func (s *Stateless) StartOffsets(_ context.Context, committed map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	s.assigned.Store(true)
	return committed, nil
}

// Rebalanced implements consumer.RebalanceWatcher: a member the group
// assigned no partitions is ready too.
func (s *Stateless) Rebalanced(e consumer.Event, _ map[string][]int32) {
	if e == consumer.Assigned {
		s.assigned.Store(true)
	}
}

// Wrap implements consumer.Strategy; it returns h.
func (s *Stateless) Wrap(h consumer.Handler) consumer.Handler { return h }

// Ready returns nil once the member joined its group, and an error wrapping
// ErrNotReady before.
func (s *Stateless) Ready() error {
	if !s.assigned.Load() {
		return fmt.Errorf("%w: no partitions assigned yet", ErrNotReady)
	}
	return nil
}
