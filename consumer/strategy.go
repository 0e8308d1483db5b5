package consumer

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A Strategy decides where a Consumer starts reading after a restart and how
// it treats records it has already seen. Package recovery holds the
// implementations: FullReplay, CheckpointSkip and Stateless.
type Strategy interface {
	// Setup is called once by New with the configured group ("" for none).
	// It returns an error if the strategy cannot run that way, and any
	// kgo options it needs.
	Setup(group string) ([]kgo.Opt, error)
	// Start is called by Run once the client exists, before the first poll.
	Start(ctx context.Context, cl *kgo.Client) error
	// StartOffsets is called, in a group, each time partitions are
	// assigned, with the offsets the group committed; it returns where
	// each partition starts.
	StartOffsets(ctx context.Context, committed map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error)
	// Wrap wraps the handler, middleware included.
	Wrap(h Handler) Handler
}

// A RebalanceWatcher is a Strategy that wants to know of rebalances, for
// example to report readiness. The Consumer calls Rebalanced after every
// assignment, also one that adds no partitions, so that a member the group
// gave nothing to still learns it has joined; and after every revoke and
// loss.
type RebalanceWatcher interface {
	Rebalanced(e Event, partitions map[string][]int32)
}

// An OrderChecker is a Strategy that holds only with some orderings. New
// calls CheckOrder with the configured Ordering and refuses the options if
// it returns an error.
type OrderChecker interface {
	CheckOrder(o Ordering) error
}

// A Stopper is a Strategy with work to do when the Consumer stops, such as
// saving a last snapshot. Run calls Stop once handlers finished every record
// in hand, before the last commit; not when the drain timed out, since
// handlers are still running then. Run returns Stop's error.
type Stopper interface {
	Stop(ctx context.Context) error
}
