package recovery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
)

// CheckpointSkip is the Strategy for handlers whose state accumulates, so
// that handling a record twice counts it twice: sums, counters, appended
// deltas. The handler writes each record's effect together with its
// Checkpoint in the user's CheckpointStore, which is the truth about what
// was processed; Kafka's committed offsets are kept up to date for lag
// tools (and, with OutOfOrderStore, step over gaps the store cannot close).
//
// A checkpoint per partition assumes the partition's records finish in
// offset order, as they do with the default consumer.PartitionOrder. With
// consumer.KeyOrder or Unordered a later record can finish first, and a
// store that moves the checkpoint to it, as MemoryStore does, would skip
// the earlier one: such a store must record every finished offset (effect
// IDs from Checkpoint.String) and report the contiguous prefix as its
// checkpoint, and say so with OutOfOrderStore; consumer.New refuses those
// orderings otherwise.
//
// When partitions are assigned, each resumes at the record after its
// checkpoint, whatever the group committed (except with OutOfOrderStore,
// below), and records at or below the checkpoint are skipped. (A partition
// whose commit is at most 10,000 records behind its checkpoint is read from
// the commit, skipping up to the checkpoint, so that the commit catches up
// with the store.) Starting from the store rather than from Kafka is what
// replays the records a restored backup of the store is missing; the price
// is that records handled after the last checkpoint without changing it,
// such as dead-lettered ones, are handled again after a rebalance (a
// dead-lettered record gets a second dead letter with the same source
// headers). With
// OutOfOrderStore, a partition starts at the group's commit when that is
// past the checkpoint or there is none (see there). A partition with
// neither starts where StartWithoutCheckpoint says, "latest" by default,
// while the group has no checkpoint or commit for any partition of its
// topic (its first start), and at its log start afterwards: it was added
// to the topic since (see StartWithoutCheckpoint). A checkpoint beyond the
// end of its partition leaves the partition unconsumed with an
// *AheadError; one below the start of its partition is a *DataLossError
// (see OnDataLoss).
type CheckpointSkip struct {
	common
	store        CheckpointStore
	noCheckpoint kgo.Offset
	outOfOrder   bool // the store takes records finished out of order

	group   string   // the Consumer's group, set by Attach
	topics  []string // the Consumer's own topics, set by Attach
	cl      *kgo.Client
	started chan struct{} // closed when Start has set cl

	mu sync.RWMutex
	// checkpoints, as loaded at assignment, for skipping: replaced on each
	// assignment so that the per-record check takes no lock.
	checkpoints atomic.Pointer[map[topicPartition]int64]
	refused     map[topicPartition]error
	assigned    bool
}

var _ Strategy = (*CheckpointSkip)(nil)

// NewCheckpointSkip returns a CheckpointSkip strategy for one Consumer that
// resumes from the checkpoints in store.
func NewCheckpointSkip(store CheckpointStore, opts ...SkipOpt) *CheckpointSkip {
	s := &CheckpointSkip{
		common:       newCommon(),
		store:        store,
		noCheckpoint: kgo.NewOffset().AtEnd(),
		started:      make(chan struct{}),
		refused:      make(map[topicPartition]error),
	}
	for _, o := range opts {
		o.applySkip(s)
	}
	s.checkpoints.Store(&map[topicPartition]int64{})
	return s
}

// Attach implements consumer.Plugin. It fails with ErrNoStore without a
// store, with ErrNoGroup for a Consumer without a group, with
// ErrNeedsPartitionOrder for an ordering other than consumer.PartitionOrder
// unless the store is OutOfOrderStore, and with ErrInUse when the strategy
// belongs to another Consumer.
func (s *CheckpointSkip) Attach(a *consumer.Attachment) error {
	var errs []error
	if s.store == nil {
		errs = append(errs, ErrNoStore)
	}
	if a.Group() == "" {
		errs = append(errs, ErrNoGroup)
	}
	if s.logger == nil {
		errs = append(errs, errors.New("recovery: nil logger"))
	}
	if o := a.Ordering(); o != consumer.PartitionOrder && !s.outOfOrder {
		errs = append(errs, fmt.Errorf("%w (got %v; see OutOfOrderStore)", ErrNeedsPartitionOrder, o))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := a.StartOffsets(s.startOffsets); err != nil {
		return err
	}
	if err := s.claim(a); err != nil {
		return err
	}
	s.group, s.topics = a.Group(), a.Topics()
	// startOffsets places every partition itself. A negative start
	// offset for partitions without a commit (AtEnd) lets it tell them from
	// committed ones, whatever kgo.ConsumeResetOffset the user set, which
	// kgo would otherwise also use as the start offset.
	a.ClientOpts(kgo.ConsumeStartOffset(kgo.NewOffset().AtEnd()))
	a.Use(s.wrap)
	if a.Batched() {
		a.Skip(s.skipped) // batches pass no per-record middleware
	}
	a.Ready(s.Ready)
	a.OnRebalance(s.rebalanced)
	a.OnStart(s.start)
	return nil
}

func (s *CheckpointSkip) start(_ context.Context, cl *kgo.Client) error {
	s.cl = cl
	close(s.started)
	return nil
}

// startOffsets reads the checkpoints of the
// assigned partitions from the store and starts each after its checkpoint;
// committed offsets only move the start with OutOfOrderStore, or for the
// commit to catch up with the store. A partition with neither a checkpoint
// nor a commit starts at its log start if the group consumed its topic
// before (see consumedBefore), and where StartWithoutCheckpoint says
// otherwise. An error (the store or the broker unreachable) fails the
// assignment, and the client joins the group again.
func (s *CheckpointSkip) startOffsets(ctx context.Context, committed map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	select {
	case <-s.started:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	topics := slices.Sorted(maps.Keys(committed))
	b, err := listBounds(ctx, s.cl, topics, false)
	if err != nil {
		return nil, err
	}
	loaded := make(map[string]map[int32]int64, len(topics))
	for _, topic := range topics {
		ps := slices.Sorted(maps.Keys(committed[topic]))
		if loaded[topic], err = s.store.Checkpoints(ctx, topic, ps); err != nil {
			return nil, fmt.Errorf("recovery: reading checkpoints of %s: %w", topic, err)
		}
	}
	before, err := s.consumedBefore(ctx, committed, loaded, b)
	if err != nil {
		return nil, err
	}

	out := make(map[string]map[int32]kgo.Offset, len(topics))
	s.mu.Lock()
	defer s.mu.Unlock()
	checkpoints := maps.Clone(*s.checkpoints.Load())
	for _, topic := range topics {
		out[topic] = make(map[int32]kgo.Offset)
		for p := range committed[topic] {
			key := topicPartition{topic, p}
			delete(s.refused, key)
			delete(checkpoints, key)
			start, _ := b.start.lookup(topic, p)
			end, ok := b.end.lookup(topic, p)
			if !ok {
				return nil, fmt.Errorf("recovery: no offsets listed for assigned partition %s/%d", topic, p)
			}
			// A commit is at 0 or above; Attach made a partition without
			// one show a negative start offset.
			c := committed[topic][p].EpochOffset().Offset
			cp, ok := loaded[topic][p]
			next := cp + 1
			switch {
			case ok:
			case s.outOfOrder && c >= 0 && c <= end:
				next, cp = c, -1 // no checkpoint: the commit steps over gaps, see below
			case c >= 0 && c <= end && !slices.Contains(s.topics, topic):
				// A plugin's topic, such as a redrive topic, has no
				// checkpoint when its records were all dead-lettered
				// again; its commit is where the group is.
				out[topic][p] = kgo.NewOffset().At(c)
				continue
			case c < 0 && before[topic]:
				// Neither a checkpoint nor a commit, in a topic the group
				// consumed before: a partition added since, whose every
				// record is one the group has not handled.
				s.logger.Info("starting a partition new to the group at its log start",
					"topic", topic, "partition", p, "group", s.group)
				out[topic][p] = kgo.NewOffset().AtStart()
				continue
			default:
				out[topic][p] = s.noCheckpoint
				continue
			}
			if next > end {
				s.refuse(key, &AheadError{Topic: topic, Partition: p, Next: next, HighWatermark: end})
				continue
			}
			if s.outOfOrder && c > next && c <= end {
				// The store's prefix cannot pass an offset its handler
				// never finished (a marker, a record compacted away or
				// dead-lettered); the group's commit, which covers only
				// records the Consumer finished, steps over them.
				s.logger.Info("starting at the group's commit, past the store's checkpoint",
					"topic", topic, "partition", p, "checkpoint", cp, "commit", c)
				next = c
			}
			if next < start {
				if err := s.dataLoss(ctx, &DataLossError{Topic: topic, Partition: p, Next: next, LogStart: start}); err != nil {
					s.refuse(key, err)
					continue
				}
			}
			// Below the log start, the client starts at the log start.
			out[topic][p] = kgo.NewOffset().At(catchUp(committed[topic][p], next, start))
			if cp >= 0 {
				checkpoints[key] = cp
			}
		}
	}
	s.checkpoints.Store(&checkpoints)
	s.assigned = true
	return out, nil
}

// consumedBefore reports, for each topic with an assigned partition that has
// neither a checkpoint in loaded nor a commit in committed, whether the group
// consumed that topic before: whether the store holds a checkpoint, or the
// group a commit, for any partition of the topic. Such a partition was added
// to the topic after the group started on it (or has never had a record
// handled; see StartWithoutCheckpoint). It asks the store about the topic's
// other partitions (those in b, which lists them all) and the broker about
// the group's commits only when the assigned partitions do not already tell.
// With StartWithoutCheckpoint at the log start, or at AtCommitted (then the
// user positions partitions without one), the answer would change nothing
// and it reports no topic.
func (s *CheckpointSkip) consumedBefore(ctx context.Context, committed map[string]map[int32]kgo.Offset, loaded map[string]map[int32]int64, b bounds) (map[string]bool, error) {
	if !startsNewAtLogStart(s.noCheckpoint) {
		return nil, nil
	}
	consumed := make(map[string]bool)
	var fetched kadm.OffsetResponses // the group's commits, fetched once if needed
	for _, topic := range slices.Sorted(maps.Keys(committed)) {
		if !slices.Contains(s.topics, topic) {
			// A plugin's topic, such as a dead-letter router's redrive
			// topic: every record on it is one for this group.
			consumed[topic] = true
			continue
		}
		fresh, known := false, false
		for p, o := range committed[topic] {
			_, cp := loaded[topic][p]
			if cp || o.EpochOffset().Offset >= 0 {
				known = true
			} else {
				fresh = true
			}
		}
		if !fresh {
			continue // nothing to decide
		}
		if known {
			consumed[topic] = true
			continue
		}
		var others []int32
		for _, p := range slices.Sorted(maps.Keys(b.end[topic])) {
			if _, ok := committed[topic][p]; !ok {
				others = append(others, p)
			}
		}
		if len(others) == 0 {
			continue // the whole topic is assigned, and none of it consumed
		}
		cps, err := s.store.Checkpoints(ctx, topic, others)
		if err != nil {
			return nil, fmt.Errorf("recovery: reading checkpoints of %s: %w", topic, err)
		}
		if len(cps) > 0 {
			consumed[topic] = true
			continue
		}
		if fetched == nil {
			if fetched, err = groupCommits(ctx, s.cl, s.group); err != nil {
				return nil, err
			}
		}
		consumed[topic] = hasCommit(fetched, topic)
	}
	return consumed, nil
}

// startsNewAtLogStart reports whether a partition added to a topic the group
// consumed before should start at its log start rather than at o, where
// partitions without a position start otherwise: always, except when o is
// the log start already, or AtCommitted ("none": the user positions
// partitions without a commit).
func startsNewAtLogStart(o kgo.Offset) bool {
	return o != kgo.NewOffset().AtStart() && o != kgo.NewOffset().AtCommitted()
}

// groupCommits fetches every offset group committed.
func groupCommits(ctx context.Context, cl *kgo.Client, group string) (kadm.OffsetResponses, error) {
	fetched, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return make(kadm.OffsetResponses), nil
	}
	if err == nil {
		err = fetched.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("recovery: fetching the commits of group %s: %w", group, err)
	}
	if fetched == nil {
		fetched = make(kadm.OffsetResponses)
	}
	return fetched, nil
}

// hasCommit reports whether fetched holds a commit for any partition of topic.
func hasCommit(fetched kadm.OffsetResponses, topic string) bool {
	for _, o := range fetched[topic] {
		if o.Err == nil && o.At >= 0 {
			return true
		}
	}
	return false
}

// maxCatchUp is how far the group's commit may be behind the checkpoint for
// a partition to start at the commit rather than after the checkpoint.
const maxCatchUp = 10_000

// catchUp returns where a partition whose checkpoint says next starts. A
// member that crashed after writing effects and before committing them
// leaves the group's commit behind the store; if it is a little behind, the
// partition starts there and Wrap skips the records up to the checkpoint,
// so that their commits bring the position lag tools read up to the store
// even if no new record arrives. Otherwise it starts at next.
func catchUp(committed kgo.Offset, next, logStart int64) int64 {
	c := committed.EpochOffset().Offset
	if c < 0 || c >= next || next-c > maxCatchUp || c < logStart {
		return next
	}
	return c
}

// rebalanced notes that a member the group assigned no partitions has
// nothing to position and is ready. Assigned partitions are positioned by
// startOffsets, which runs after this.
func (s *CheckpointSkip) rebalanced(e consumer.Event, partitions map[string][]int32) {
	if e != consumer.Assigned {
		return
	}
	for _, ps := range partitions {
		if len(ps) > 0 {
			return
		}
	}
	s.mu.Lock()
	s.assigned = true
	s.mu.Unlock()
}

// refuse leaves a partition unconsumed and reports err through Ready.
func (s *CheckpointSkip) refuse(key topicPartition, err error) {
	s.refused[key] = err
	s.logger.Error("not consuming partition", "topic", key.topic, "partition", key.partition, "err", err)
}

// wrap skips records at or below the checkpoint loaded when their
// partition was assigned.
func (s *CheckpointSkip) wrap(h consumer.Handler) consumer.Handler {
	return consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		cp, ok := (*s.checkpoints.Load())[topicPartition{r.Topic, r.Partition}]
		if ok && r.Offset <= cp {
			return nil
		}
		return h.Handle(ctx, r)
	})
}

// skipped reports whether r is at or below the checkpoint loaded when its
// partition was assigned: what wrap skips, for a batch Consumer.
func (s *CheckpointSkip) skipped(r *kgo.Record) bool {
	cp, ok := (*s.checkpoints.Load())[topicPartition{r.Topic, r.Partition}]
	return ok && r.Offset <= cp
}

// Ready returns nil once partitions were assigned and positioned from the
// store, and an error wrapping ErrNotReady before that. Afterwards, it
// returns an error wrapping ErrNotReady and each partition's *AheadError or
// refusal while any assigned partition is left unconsumed; a later
// assignment of that partition clears it.
func (s *CheckpointSkip) Ready() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.assigned {
		return fmt.Errorf("%w: no partitions assigned yet", ErrNotReady)
	}
	if len(s.refused) == 0 {
		return nil
	}
	keys := slices.SortedFunc(maps.Keys(s.refused), func(a, b topicPartition) int {
		return cmp.Or(cmp.Compare(a.topic, b.topic), cmp.Compare(a.partition, b.partition))
	})
	errs := make([]error, len(keys))
	for i, k := range keys {
		errs[i] = s.refused[k]
	}
	return fmt.Errorf("%w: %d partitions not consumed: %w", ErrNotReady, len(keys), errors.Join(errs...))
}
