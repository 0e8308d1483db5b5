package recovery

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
)

// A ReplayOpt configures a FullReplay.
type ReplayOpt interface{ applyReplay(*FullReplay) }

// A SkipOpt configures a CheckpointSkip.
type SkipOpt interface{ applySkip(*CheckpointSkip) }

// An Opt configures both FullReplay and CheckpointSkip.
type Opt interface {
	ReplayOpt
	SkipOpt
}

// common is the configuration and state FullReplay and CheckpointSkip share.
type common struct {
	logger     *slog.Logger
	onDataLoss func(context.Context, *DataLossError) error
	used       atomic.Bool
}

func newCommon() common {
	return common{logger: slog.Default()}
}

// claim marks the strategy as taken by the Consumer it attaches to; a
// second claim fails. If New fails after the claim, it is let go.
func (c *common) claim(a *consumer.Attachment) error {
	if !c.used.CompareAndSwap(false, true) {
		return ErrInUse
	}
	a.OnAbort(func() { c.used.Store(false) })
	return nil
}

// dataLoss hands e to the OnDataLoss function, or logs it and carries on.
func (c *common) dataLoss(ctx context.Context, e *DataLossError) error {
	if c.onDataLoss != nil {
		return c.onDataLoss(ctx, e)
	}
	c.logger.Error("resuming at the log start after data loss",
		"topic", e.Topic, "partition", e.Partition, "lost", e.Lost(), "next", e.Next, "log_start", e.LogStart)
	return nil
}

type sharedOpt func(*common)

func (o sharedOpt) applyReplay(r *FullReplay)   { o(&r.common) }
func (o sharedOpt) applySkip(s *CheckpointSkip) { o(&s.common) }

type replayOpt func(*FullReplay)

func (o replayOpt) applyReplay(r *FullReplay) { o(r) }

type skipOpt func(*CheckpointSkip)

func (o skipOpt) applySkip(s *CheckpointSkip) { o(s) }

// WithLogger sets the logger for data loss, refused partitions and failed
// snapshots; the default is slog.Default().
func WithLogger(l *slog.Logger) Opt {
	return sharedOpt(func(c *common) { c.logger = l })
}

// OnDataLoss sets the function told when a stored position (a checkpoint or
// a snapshot's offset) is below the start of its partition, meaning records
// were deleted before they were processed. If fn returns nil, the partition
// resumes at its log start; if it returns an error, a CheckpointSkip leaves
// the partition unconsumed and Ready reports the error, and a FullReplay's
// Consumer.Run fails with it. The default logs the loss at error level and
// resumes at the log start: the records are gone either way.
func OnDataLoss(fn func(ctx context.Context, e *DataLossError) error) Opt {
	return sharedOpt(func(c *common) { c.onDataLoss = fn })
}

// Snapshots makes a FullReplay resume from the newest snapshot s holds
// instead of the start of every partition, save a new one every interval
// while it runs, and a last one when the Consumer stops cleanly. Without it,
// a FullReplay replays everything on each start.
func Snapshots(s Snapshotter, every time.Duration) ReplayOpt {
	return replayOpt(func(r *FullReplay) { r.snap, r.every = s, every })
}

// StartWithoutCheckpoint sets where a CheckpointSkip starts a partition for
// which the store holds no checkpoint, whatever offset the group committed
// (with OutOfOrderStore, only if the group committed none), on the group's
// first start on the partition's topic; the default is
// kgo.NewOffset().AtEnd(), "latest" (Java: auto.offset.reset). Use
// kgo.NewOffset().AtStart() to process a topic's whole history on the
// first start.
//
// The first start lasts while the store holds no checkpoint and the group
// no commit for any partition of the topic; until then, each start
// resolves this offset again, so with "latest" records produced while no
// process ran are skipped. Afterwards, a partition with neither a
// checkpoint nor a commit is taken for one added to the topic since: it
// starts at its log start, whatever this option says, and the start is
// logged at info level. So "latest" skips a topic's history once, never the
// records produced to a new partition before a Consumer noticed it. A
// partition that existed on the first start and has had no record handled
// since looks the same, and is read from its log start too, including
// records produced before the first start. AtCommitted ("none": leave
// partitions without a checkpoint unconsumed) applies to new partitions
// as well.
func StartWithoutCheckpoint(o kgo.Offset) SkipOpt {
	return skipOpt(func(s *CheckpointSkip) { s.noCheckpoint = o })
}

// OutOfOrderStore declares that the CheckpointStore records every finished
// record (for example under effect IDs from Checkpoint.String) and reports
// the contiguous prefix of finished offsets as a partition's checkpoint. Only
// such a store lets CheckpointSkip run with consumer.KeyOrder or Unordered,
// where a later record of a partition can finish before an earlier one;
// without this option consumer.New refuses those orderings with
// ErrNeedsPartitionOrder. Where the prefix begins (the partition's log
// start, or the offset a "latest" start found) is for the store to know.
//
// The store sees only the offsets its handler finishes, so an offset that
// never reaches the handler (a transaction marker, a record removed by
// compaction, one sent to a dead-letter topic) ends its prefix for good.
// With this option a partition therefore starts at the group's commit when
// that is past the store's checkpoint, or the store has none: the commit
// covers only records the Consumer finished, and steps over such gaps. This
// trusts every commit of the group to come from Consumers writing this
// store. To rebuild the store from the topic, or after restoring a backup
// of it, reset the group's offsets too (kadm, kafka-consumer-groups
// --reset-offsets); otherwise nothing before the commit is handled again.
func OutOfOrderStore() SkipOpt {
	return skipOpt(func(s *CheckpointSkip) { s.outOfOrder = true })
}
