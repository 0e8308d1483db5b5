package recovery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
)

// A Snapshotter saves and restores the state of a FullReplay's handler
// together with the offsets it covers, so that a restart replays only what
// came after the snapshot.
type Snapshotter interface {
	// Load restores the handler's state from the newest snapshot and
	// returns its offsets: the next offset to read of each partition the
	// state covers. With no snapshot, it returns no offsets and no error.
	Load(ctx context.Context) (Offsets, error)
	// Save writes the handler's state with offsets, the next offset to
	// read of each partition the state covers, replacing the previous
	// snapshot atomically. Handlers are paused while Save runs, so the
	// state matches offsets exactly; to keep the pause short, Save can copy
	// the state and write the copy after returning.
	Save(ctx context.Context, offsets Offsets) error
}

// FullReplay is the Strategy for handlers whose state is overwritten, so
// that handling a record twice does no harm: the last value per sensor, a
// cache, a materialized view. The state lives in memory and is rebuilt on
// every start by reading every partition from its beginning, without a
// consumer group and without commits.
//
// At start, FullReplay records each partition's high watermark (its last
// stable offset for a read-committed client); the replay has caught up once
// the handler returned for every record below those marks. Records
// produced later do not delay it.
//
// With Snapshots, the replay starts from the newest snapshot's offsets
// instead, and saves new snapshots as it runs. While restoring a snapshot,
// the Consumer reads exactly the partitions the topics have at start;
// partitions added later are read after the next restart.
//
// FullReplay asks the client to keep transaction markers so it can see a
// partition's position pass them; they never reach the handler, nor a batch
// handler (consumer.NewBatch), whose batches FullReplay tracks the same way.
type FullReplay struct {
	common
	snap  Snapshotter
	every time.Duration

	started  chan struct{} // closed when Start has filled parts
	saver    chan struct{} // closed when the periodic saves ended
	caughtUp chan struct{}
	parts    map[topicPartition]*replayPartition
	behind   atomic.Int64 // partitions not caught up

	// pause is held for reading by each handler call and for writing
	// while a snapshot is saved, so a snapshot never sees half a record.
	pause sync.RWMutex
}

type replayPartition struct {
	start  int64        // where the replay of the partition began
	target int64        // the end recorded at start
	next   atomic.Int64 // the offset after the last handled record; -1 if none and no snapshot
	done   atomic.Bool
	_      [32]byte // own cache line: partitions' goroutines store next for every record
}

var _ Strategy = (*FullReplay)(nil)

// NewFullReplay returns a FullReplay strategy for one Consumer.
func NewFullReplay(opts ...ReplayOpt) *FullReplay {
	r := &FullReplay{
		common:   newCommon(),
		started:  make(chan struct{}),
		saver:    make(chan struct{}),
		caughtUp: make(chan struct{}),
	}
	for _, o := range opts {
		o.applyReplay(r)
	}
	return r
}

// Attach implements consumer.Plugin. It fails with ErrReplayGroup for a
// Consumer with a group, and with ErrInUse when the strategy belongs to
// another Consumer.
func (r *FullReplay) Attach(a *consumer.Attachment) error {
	if g := a.Group(); g != "" {
		return fmt.Errorf("%w (got group %q)", ErrReplayGroup, g)
	}
	if r.logger == nil {
		return errors.New("recovery: nil logger")
	}
	if r.snap == nil && r.every != 0 || r.snap != nil && r.every <= 0 {
		return fmt.Errorf("recovery: Snapshots needs a Snapshotter and a positive interval (got %v)", r.every)
	}
	if err := r.claim(a); err != nil {
		return err
	}
	start := kgo.NewOffset().AtStart()
	first := start
	if r.snap != nil {
		// Start moves partitions to the snapshot's offsets with SetOffsets,
		// which skips a partition still listing where AtStart is. An exact
		// offset needs no listing; below the log start it resets to it.
		first = kgo.NewOffset().At(0)
	}
	a.ClientOpts(
		kgo.ConsumeStartOffset(first),
		// Where the client cannot tell what the broker lost, read it all
		// again: replaying is harmless for overwritten state.
		kgo.ConsumeResetOffset(start),
		kgo.KeepControlRecords(),
	)
	a.Use(r.wrap)
	a.UseBatch(r.wrapBatch)
	a.Ready(r.Ready)
	a.OnStart(r.start)
	a.OnDrained(r.stop)
	return nil
}

// start restores the snapshot, if any,
// records the end of every partition and positions the client.
func (r *FullReplay) start(ctx context.Context, cl *kgo.Client) error {
	topics, err := consumedTopics(cl)
	if err != nil {
		return err
	}
	var resume Offsets
	if r.snap != nil {
		if resume, err = r.snap.Load(ctx); err != nil {
			return fmt.Errorf("recovery: loading snapshot: %w", err)
		}
	}
	b, err := listBounds(ctx, cl, topics, readCommitted(cl))
	if err != nil {
		return err
	}
	if resume, err = r.checkResume(ctx, resume, b); err != nil {
		return err
	}

	r.parts = make(map[topicPartition]*replayPartition)
	var behind int64
	for topic, ps := range b.end {
		for p, end := range ps {
			rp := &replayPartition{target: end}
			rp.start, _ = b.start.lookup(topic, p)
			rp.next.Store(-1)
			if next, ok := resume.lookup(topic, p); ok {
				rp.start = next
				rp.next.Store(next)
			}
			if rp.start >= end {
				rp.done.Store(true)
			} else {
				behind++
			}
			r.parts[topicPartition{topic, p}] = rp
		}
	}
	r.behind.Store(behind)
	if behind == 0 {
		close(r.caughtUp)
	}
	if len(resume) > 0 {
		r.position(cl, b, resume)
	}
	close(r.started)
	if r.snap != nil {
		go r.saveEvery(ctx)
	}
	return nil
}

// checkResume checks a snapshot's offsets against the partitions' bounds and
// returns them with data loss resolved to the log start.
func (r *FullReplay) checkResume(ctx context.Context, resume Offsets, b bounds) (Offsets, error) {
	out := make(Offsets)
	var errs []error
	for topic, ps := range resume {
		for p, next := range ps {
			start, ok := b.start.lookup(topic, p)
			end, _ := b.end.lookup(topic, p)
			switch {
			case !ok:
				errs = append(errs, fmt.Errorf("recovery: the snapshot has %s/%d, which the consumed topics do not", topic, p))
				continue
			case next > end:
				errs = append(errs, &AheadError{Topic: topic, Partition: p, Next: next, HighWatermark: end})
				continue
			case next < start:
				if err := r.dataLoss(ctx, &DataLossError{Topic: topic, Partition: p, Next: next, LogStart: start}); err != nil {
					errs = append(errs, err)
					continue
				}
				next = start
			}
			out.set(topic, p, next)
		}
	}
	return out, errors.Join(errs...)
}

// position makes the client read every partition from resume's offset or,
// for partitions the snapshot does not cover, from the start. Pinning every
// partition covers those the client has not loaded yet; SetOffsets moves
// those it has.
func (r *FullReplay) position(cl *kgo.Client, b bounds, resume Offsets) {
	pins := make(map[string]map[int32]kgo.Offset)
	set := make(map[string]map[int32]kgo.EpochOffset)
	for topic, ps := range b.end {
		pins[topic] = make(map[int32]kgo.Offset)
		set[topic] = make(map[int32]kgo.EpochOffset)
		for p := range ps {
			next, ok := resume.lookup(topic, p)
			if !ok {
				pins[topic][p] = kgo.NewOffset().AtStart()
				continue
			}
			pins[topic][p] = kgo.NewOffset().At(next)
			set[topic][p] = kgo.EpochOffset{Epoch: -1, Offset: next}
		}
	}
	cl.AddConsumePartitions(pins)
	cl.SetOffsets(set)
}

// wrap tracks each partition's progress towards the end recorded at start
// and keeps transaction markers from h.
func (r *FullReplay) wrap(h consumer.Handler) consumer.Handler {
	return consumer.HandlerFunc(func(ctx context.Context, rec *kgo.Record) error {
		if r.snap != nil {
			r.pause.RLock()
			defer r.pause.RUnlock()
		}
		if !rec.Attrs.IsControl() {
			if err := h.Handle(ctx, rec); err != nil {
				return err
			}
		}
		r.advance(rec)
		return nil
	})
}

// wrapBatch is wrap for a batch Consumer: it holds the snapshot pause for
// the call, keeps transaction markers from h and tracks the progress of the
// records done, those before a *consumer.BatchError's Index or all.
func (r *FullReplay) wrapBatch(h consumer.BatchHandler) consumer.BatchHandler {
	return consumer.BatchHandlerFunc(func(ctx context.Context, recs []*kgo.Record) error {
		if r.snap != nil {
			r.pause.RLock()
			defer r.pause.RUnlock()
		}
		data := recs
		if slices.ContainsFunc(recs, isControl) {
			data = slices.DeleteFunc(slices.Clone(recs), isControl)
		}
		var err error
		if len(data) > 0 {
			err = h.HandleBatch(ctx, data)
		}
		done := len(recs)
		if err != nil {
			be, ok := errors.AsType[*consumer.BatchError](err)
			if !ok || be.Index < 0 || be.Index >= len(data) {
				return err
			}
			done = slices.Index(recs, data[be.Index])
			if len(data) != len(recs) {
				err = &consumer.BatchError{Index: done, Err: be.Err}
			}
		}
		for _, rec := range recs[:done] {
			r.advance(rec)
		}
		return err
	})
}

func isControl(r *kgo.Record) bool { return r.Attrs.IsControl() }

func (r *FullReplay) advance(rec *kgo.Record) {
	rp := r.parts[topicPartition{rec.Topic, rec.Partition}]
	if rp == nil {
		return // a partition created after start
	}
	next := rec.Offset + 1
	rp.next.Store(next)
	if next >= rp.target && rp.done.CompareAndSwap(false, true) && r.behind.Add(-1) == 0 {
		close(r.caughtUp)
	}
}

// CaughtUp returns a channel closed once the handler returned for every
// record below the ends recorded at start.
func (r *FullReplay) CaughtUp() <-chan struct{} { return r.caughtUp }

// Ready returns nil once the replay has caught up, and before that an error
// wrapping ErrNotReady that says how far behind it is.
func (r *FullReplay) Ready() error {
	select {
	case <-r.caughtUp:
		return nil
	default:
	}
	select {
	case <-r.started:
	default:
		return fmt.Errorf("%w: replay not started", ErrNotReady)
	}
	var parts, records int64
	for _, rp := range r.parts {
		if rp.done.Load() {
			continue
		}
		parts++
		records += rp.target - max(rp.next.Load(), rp.start)
	}
	return fmt.Errorf("%w: replaying, %d partitions and %d offsets to go", ErrNotReady, parts, records)
}

// HighWatermarks returns the end of each partition recorded at start: the
// replay's target. It returns nil before Start.
func (r *FullReplay) HighWatermarks() Offsets {
	select {
	case <-r.started:
	default:
		return nil
	}
	out := make(Offsets)
	for k, rp := range r.parts {
		out.set(k.topic, k.partition, rp.target)
	}
	return out
}

// SaveSnapshot pauses the handlers and saves a snapshot now. Call it after
// Consumer.Run returned to save the final state of a clean stop.
func (r *FullReplay) SaveSnapshot(ctx context.Context) error {
	if r.snap == nil {
		return errors.New("recovery: SaveSnapshot without Snapshots")
	}
	select {
	case <-r.started:
	default:
		return fmt.Errorf("%w: replay not started", ErrNotReady)
	}
	r.pause.Lock()
	defer r.pause.Unlock()
	offsets := make(Offsets)
	for k, rp := range r.parts {
		if next := rp.next.Load(); next >= 0 {
			offsets.set(k.topic, k.partition, next)
		}
	}
	if err := r.snap.Save(ctx, offsets); err != nil {
		return fmt.Errorf("recovery: saving snapshot: %w", err)
	}
	return nil
}

// stop runs once the Consumer drained: with Snapshots, it saves a last
// snapshot once the periodic saves ended, so that a restart after a clean
// stop replays nothing.
func (r *FullReplay) stop(ctx context.Context) error {
	if r.snap == nil {
		return nil
	}
	select {
	case <-r.saver:
	case <-ctx.Done():
		return fmt.Errorf("recovery: waiting for the periodic snapshot: %w", ctx.Err())
	}
	return r.SaveSnapshot(ctx)
}

func (r *FullReplay) saveEvery(ctx context.Context) {
	defer close(r.saver)
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.SaveSnapshot(ctx); err != nil && ctx.Err() == nil {
				r.logger.Warn("snapshot failed; retrying at the next interval", "err", err)
			}
		}
	}
}
