package recovery

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
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
//
// A partition without a commit, in a topic for which the group committed
// an offset of another partition, was added to the topic after the group
// started on it: it starts at its log start whatever
// kgo.ConsumeStartOffset says, so that "latest" skips a topic's history on
// the group's first start but no record of a partition added later (see
// the package documentation). A start offset of AtCommitted ("none") is
// left alone.
type Stateless struct {
	used     atomic.Bool
	assigned atomic.Bool

	// Set by Attach and start.
	group   string
	topics  []string // the Consumer's own topics
	logger  *slog.Logger
	cl      *kgo.Client
	first   kgo.Offset    // where the client starts a partition without a commit
	started chan struct{} // closed when start has set cl and first
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
	if err := a.StartOffsets(s.startOffsets); err != nil {
		return err
	}
	s.group, s.topics, s.logger, s.started = a.Group(), a.Topics(), a.Logger(), make(chan struct{})
	a.OnStart(s.start)
	a.Ready(s.Ready)
	// A member the group assigned no partitions is ready too.
	a.OnRebalance(func(e consumer.Event, _ map[string][]int32) {
		if e == consumer.Assigned {
			s.assigned.Store(true)
		}
	})
	return nil
}

func (s *Stateless) start(_ context.Context, cl *kgo.Client) error {
	s.cl = cl
	s.first, _ = cl.OptValue(kgo.ConsumeStartOffset).(kgo.Offset)
	close(s.started)
	return nil
}

// startOffsets leaves the group's commits as they are and starts a
// partition without one at its log start if the group committed another
// partition of its topic. It asks the broker for the group's commits only
// when the client would start such a partition elsewhere than at its log
// start.
func (s *Stateless) startOffsets(ctx context.Context, committed map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	select {
	case <-s.started:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if !startsNewAtLogStart(s.first) {
		return committed, nil
	}
	// kgo passes the start offset for a partition without a commit; an
	// exact one may also be a commit, which the fetch below tells apart.
	fresh := false
	for _, ps := range committed {
		for _, o := range ps {
			fresh = fresh || o == s.first
		}
	}
	if !fresh {
		return committed, nil
	}
	fetched, err := groupCommits(ctx, s.cl, s.group)
	if err != nil {
		return nil, err
	}
	out := make(map[string]map[int32]kgo.Offset, len(committed))
	for topic, ps := range committed {
		out[topic] = maps.Clone(ps)
		// A plugin's topic, such as a dead-letter router's redrive
		// topic, holds only records for this group, from its start.
		if !hasCommit(fetched, topic) && slices.Contains(s.topics, topic) {
			continue // the group's first start on topic
		}
		for p, o := range ps {
			if o != s.first {
				continue // committed
			}
			if c, ok := fetched.Lookup(topic, p); ok && c.Err == nil && c.At >= 0 {
				continue // committed at exactly the start offset
			}
			s.logger.Info("starting a partition new to the group at its log start",
				"topic", topic, "partition", p, "group", s.group)
			out[topic][p] = kgo.NewOffset().AtStart()
		}
	}
	return out, nil
}

// Ready returns nil once the member joined its group, and an error wrapping
// ErrNotReady before.
func (s *Stateless) Ready() error {
	if !s.assigned.Load() {
		return fmt.Errorf("%w: no partitions assigned yet", ErrNotReady)
	}
	return nil
}
