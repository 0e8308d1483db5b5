package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A Consumer reads records from Kafka and hands them to a Handler, one
// goroutine per partition, storing a record's offset only after the handler
// returned nil and committing stored offsets in the background, on revoke and
// on shutdown.
type Consumer struct {
	cfg     cfg
	handler Handler
	kopts   []kgo.Opt

	ran     atomic.Bool
	running chan struct{}
	cl      *kgo.Client
	closing atomic.Bool

	mu       sync.Mutex
	workers  map[tp]*worker
	draining map[tp]*worker // taken by a revoke or the shutdown, still running

	// Under ownMu, kept by the rebalance callbacks: the partitions the
	// group gave this member and the member ID it gave them to.
	ownMu  sync.Mutex
	owned  map[tp]struct{}
	member string

	pool *pool // runs handlers with KeyOrder and Unordered

	inFlight atomic.Int64
	peak     atomic.Int64
	paused   atomic.Int64
	space    chan struct{}
}

type tp struct {
	topic     string
	partition int32
}

// Stats is a snapshot of a Consumer's buffers.
type Stats struct {
	InFlight     int64 // records fetched and not yet handled or dropped
	PeakInFlight int64 // the largest InFlight seen since Run started
	Paused       int64 // partitions whose fetching is paused by backpressure
	Partitions   int   // partitions with a running worker
	MaxKeyQueue  int64 // the most records one key had waiting, with KeyOrder
}

// New returns a Consumer that hands records to h. It checks the options and
// returns an error wrapping ErrInvalidOption when they are incomplete or
// conflict; it does not connect to Kafka until Run.
func New(h Handler, opts ...Opt) (*Consumer, error) {
	if h == nil {
		return nil, fmt.Errorf("%w: nil handler", ErrInvalidOption)
	}
	cfg := defaultCfg()
	for _, o := range opts {
		o.apply(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Consumer{
		cfg:      cfg,
		handler:  chain(h, cfg.middleware),
		running:  make(chan struct{}),
		workers:  make(map[tp]*worker),
		draining: make(map[tp]*worker),
		owned:    make(map[tp]struct{}),
		space:    make(chan struct{}, 1),
	}
	var strategyOpts []kgo.Opt
	if s := cfg.strategy; s != nil {
		var err error
		if strategyOpts, err = s.Setup(cfg.group); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
		}
		if oc, ok := s.(OrderChecker); ok {
			if err := oc.CheckOrder(cfg.ordering); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrInvalidOption, err)
			}
		}
		c.handler = s.Wrap(c.handler)
	}
	c.kopts = c.clientOpts(strategyOpts)
	if cfg.ordering != PartitionOrder {
		c.pool = newPool(cfg.ordering == Unordered)
	}
	return c, nil
}

// clientOpts returns the kgo options in the order that lets the user's
// override the defaults and keeps the ones the Consumer owns last.
func (c *Consumer) clientOpts(strategyOpts []kgo.Opt) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SessionTimeout(45 * time.Second),
		kgo.HeartbeatInterval(3 * time.Second),
		kgo.RebalanceTimeout(5 * time.Minute),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
	}
	if len(c.cfg.brokers) > 0 {
		opts = append(opts, kgo.SeedBrokers(c.cfg.brokers...))
	}
	opts = append(opts, c.cfg.clientOpts...)
	opts = append(opts, strategyOpts...)
	opts = append(opts, kgo.ConsumeTopics(c.cfg.topics...))
	if c.cfg.group == "" {
		return opts
	}
	opts = append(opts,
		kgo.ConsumerGroup(c.cfg.group),
		kgo.BlockRebalanceOnPoll(),
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(c.cfg.commitInterval),
		kgo.AutoCommitCallback(func(cl *kgo.Client, req *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			c.onCommit(cl, req, resp, err)
		}),
		kgo.OnPartitionsAssigned(c.onAssigned),
		kgo.OnPartitionsRevoked(c.onRevoked),
		kgo.OnPartitionsLost(c.onLost),
	)
	if s := c.cfg.strategy; s != nil {
		opts = append(opts, kgo.AdjustFetchOffsetsFn(s.StartOffsets))
	}
	return opts
}

// Running returns a channel that is closed once Run has created the client
// and the strategy has started.
func (c *Consumer) Running() <-chan struct{} { return c.running }

// Client returns the underlying client once Running is closed, nil before.
func (c *Consumer) Client() *kgo.Client {
	select {
	case <-c.running:
		return c.cl
	default:
		return nil
	}
}

// Stats returns a snapshot of the Consumer's buffers.
func (c *Consumer) Stats() Stats {
	c.mu.Lock()
	n := len(c.workers)
	c.mu.Unlock()
	s := Stats{InFlight: c.inFlight.Load(), PeakInFlight: c.peak.Load(), Paused: c.paused.Load(), Partitions: n}
	if c.pool != nil {
		s.MaxKeyQueue = c.pool.maxDepth.Load()
	}
	return s
}

// Run consumes until ctx is done, then shuts down: it stops fetching, waits
// up to the shutdown timeout for the records in hand, commits, leaves the
// group and closes the client. It returns nil after a clean shutdown, an
// error wrapping ErrDrainTimeout if handlers did not finish in time, the
// commit's error if the last commit failed, the error of a Stopper strategy,
// and ErrRunTwice if called again.
func (c *Consumer) Run(ctx context.Context) error {
	if !c.ran.CompareAndSwap(false, true) {
		return ErrRunTwice
	}
	cl, err := kgo.NewClient(c.kopts...)
	if err != nil {
		return fmt.Errorf("consumer: creating client: %w", err)
	}
	c.cl = cl
	if s := c.cfg.strategy; s != nil {
		if err := s.Start(ctx, cl); err != nil {
			cl.Close()
			return fmt.Errorf("consumer: starting %T: %w", s, err)
		}
	}
	if c.pool != nil {
		c.pool.start(c.cfg.workers)
	}
	close(c.running)
	done := make(chan struct{})
	go c.watchBacklog(done)
	c.poll(ctx)
	close(done)
	return c.shutdown()
}

// backlogCheck is how often partitions are checked for a handler that stays
// behind (one is paused after two checks in a row find it at its bound) and
// how long a handled record's offset may wait before it is stored.
const backlogCheck = 50 * time.Millisecond

func (c *Consumer) watchBacklog(done <-chan struct{}) {
	t := time.NewTicker(backlogCheck)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		c.mu.Lock()
		ws := make([]*worker, 0, len(c.workers))
		for _, w := range c.workers {
			ws = append(ws, w)
		}
		c.mu.Unlock()
		for _, w := range ws {
			w.checkBehind()
			if c.pool == nil {
				w.storeHandled()
			}
		}
	}
}

func (c *Consumer) poll(ctx context.Context) {
	for {
		free := int64(c.cfg.maxInFlight) - c.inFlight.Load()
		if free <= 0 {
			select {
			case <-c.space:
				continue
			case <-ctx.Done():
				return
			}
		}
		fetches := c.cl.PollRecords(ctx, int(free))
		if fetches.IsClientClosed() || ctx.Err() != nil {
			c.cl.AllowRebalance()
			return
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			c.cfg.logger.Warn("fetch error", "topic", topic, "partition", partition, "err", err)
		})
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if o := c.cfg.observer; o != nil {
				o.Polled(p)
			}
			if len(p.Records) > 0 {
				c.dispatch(p.Topic, p.Partition, p.Records)
			}
		})
		c.cl.AllowRebalance()
	}
}

func (c *Consumer) dispatch(topic string, partition int32, recs []*kgo.Record) {
	key := tp{topic, partition}
	c.mu.Lock()
	w := c.workers[key]
	if w == nil {
		w = newWorker(c, key)
		c.workers[key] = w
		if c.pool == nil {
			go w.run()
		}
	}
	c.mu.Unlock()
	n := c.inFlight.Add(int64(len(recs)))
	for {
		p := c.peak.Load()
		if n <= p || c.peak.CompareAndSwap(p, n) {
			break
		}
	}
	w.push(recs)
}

// release takes n records off the in-flight count and wakes the poll loop if
// that made room.
func (c *Consumer) release(n int) {
	if n == 0 {
		return
	}
	if c.inFlight.Add(-int64(n))+int64(n) >= int64(c.cfg.maxInFlight) {
		select {
		case c.space <- struct{}{}:
		default:
		}
	}
}

// takeWorkers removes the workers of the given partitions, or all if
// partitions is nil, and returns them. They count as draining until
// stopWorkers is done with them.
func (c *Consumer) takeWorkers(partitions map[string][]int32) []*worker {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ws []*worker
	take := func(k tp, w *worker) {
		ws = append(ws, w)
		delete(c.workers, k)
		c.draining[k] = w
	}
	if partitions == nil {
		for k, w := range c.workers {
			take(k, w)
		}
		return ws
	}
	for topic, ps := range partitions {
		for _, p := range ps {
			k := tp{topic, p}
			if w := c.workers[k]; w != nil {
				take(k, w)
			}
		}
	}
	return ws
}

// abandonDraining abandons the workers of the given partitions that a
// revoke or the shutdown is still waiting for: the partitions were lost
// meanwhile, and the records in hand must not be stored.
func (c *Consumer) abandonDraining(partitions map[string][]int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for topic, ps := range partitions {
		for _, p := range ps {
			if w := c.draining[tp{topic, p}]; w != nil {
				w.abandon()
			}
		}
	}
}

// stopWorkers stops ws after the record in hand and waits up to timeout for
// them; abandon cancels the handlers' contexts at once. Workers still running
// at the deadline are cancelled and no longer store offsets. It reports
// whether all stopped in time.
func (c *Consumer) stopWorkers(ws []*worker, timeout time.Duration, abandon bool) bool {
	defer func() {
		c.mu.Lock()
		for _, w := range ws {
			if c.draining[w.tp] == w {
				delete(c.draining, w.tp)
			}
		}
		c.mu.Unlock()
	}()
	for _, w := range ws {
		if abandon {
			w.abandon()
		}
		w.quitting.Store(true)
		close(w.quit)
		if c.pool != nil {
			w.stopKeyed()
		}
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for i, w := range ws {
		select {
		case <-w.done:
		case <-deadline.C:
			for _, w := range ws[i:] {
				w.abandon()
				c.cfg.logger.Warn("handler did not finish in time; its offset is not stored",
					"topic", w.topic, "partition", w.partition)
			}
			return false
		}
	}
	return true
}

func (c *Consumer) onAssigned(ctx context.Context, cl *kgo.Client, assigned map[string][]int32) {
	if stale := c.forgetOldMembership(ctx, cl); stale != nil {
		c.reposition(ctx, cl, stale)
		assigned = union(assigned, stale)
	}
	c.own(assigned, true)
	c.cfg.logger.Info("partitions assigned", "partitions", assigned)
	c.rebalanced(Assigned, assigned)
	if c.cfg.onAssigned != nil {
		c.cfg.onAssigned(ctx, assigned)
	}
}

func (c *Consumer) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	var stale map[string][]int32
	if stale = c.forgetOldMembership(ctx, cl); stale != nil {
		// What the new membership takes was lost already; what it keeps
		// starts again at the group's commits.
		if kept := minus(stale, revoked); len(kept) > 0 {
			c.reposition(ctx, cl, kept)
			c.onAssigned(ctx, cl, kept)
		}
		revoked = minus(revoked, stale)
	}
	c.own(revoked, false)
	c.stopWorkers(c.takeWorkers(revoked), c.cfg.revokeTimeout, false)
	if !c.closing.Load() {
		cctx, cancel := context.WithTimeout(ctx, c.cfg.revokeTimeout)
		if err := c.commit(cctx, stale); err != nil {
			c.cfg.logger.Error("commit on revoke failed", "err", err)
		}
		cancel()
	}
	c.cfg.logger.Info("partitions revoked", "partitions", revoked)
	c.rebalanced(Revoked, revoked)
	if c.cfg.onRevoked != nil {
		c.cfg.onRevoked(ctx, revoked)
	}
}

func (c *Consumer) onLost(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
	c.own(lost, false)
	c.abandonDraining(lost)
	c.stopWorkers(c.takeWorkers(lost), c.cfg.revokeTimeout, true)
	c.cfg.logger.Warn("partitions lost; their offsets are not committed", "partitions", lost)
	c.rebalanced(Lost, lost)
	if c.cfg.onLost != nil {
		c.cfg.onLost(ctx, lost)
	}
}

// own adds partitions to the owned set, or removes them.
func (c *Consumer) own(partitions map[string][]int32, add bool) {
	c.ownMu.Lock()
	defer c.ownMu.Unlock()
	for topic, ps := range partitions {
		for _, p := range ps {
			if add {
				c.owned[tp{topic, p}] = struct{}{}
			} else {
				delete(c.owned, tp{topic, p})
			}
		}
	}
}

// forgetOldMembership handles a rebalance callback made under a member ID
// other than the one the held partitions were assigned to. kgo answers a
// JoinGroup refused with UNKNOWN_MEMBER_ID (the group expired the member) by
// joining as a new member that still claims its old partitions, with their
// positions and marks, and without calling OnPartitionsLost; meanwhile the
// group gave them to others. Those partitions are reported lost and
// returned, so that none of their marks is committed and the ones the
// group lets the member keep start again at the group's commits.
func (c *Consumer) forgetOldMembership(ctx context.Context, cl *kgo.Client) map[string][]int32 {
	stale := c.rejoined(cl)
	if stale != nil {
		c.cfg.logger.Warn("rejoined the group as a new member; partitions kept from the old membership are lost", "partitions", stale)
		c.onLost(ctx, cl, stale)
	}
	return stale
}

// rejoined returns the partitions still owned from before, if the callback
// runs under a member ID other than the last one seen; nil otherwise.
func (c *Consumer) rejoined(cl *kgo.Client) map[string][]int32 {
	member, _ := cl.GroupMetadata()
	c.ownMu.Lock()
	defer c.ownMu.Unlock()
	last := c.member
	c.member = member
	if last == "" || member == last || len(c.owned) == 0 {
		return nil
	}
	stale := make(map[string][]int32)
	for k := range c.owned {
		stale[k.topic] = append(stale[k.topic], k.partition)
	}
	return stale
}

// reposition moves partitions to where a fresh assignment would start them:
// the group's commits, through the strategy if there is one. Failing that,
// they go on from where they are, which may handle records again but skips
// none.
func (c *Consumer) reposition(ctx context.Context, cl *kgo.Client, partitions map[string][]int32) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.revokeTimeout)
	defer cancel()
	fetched, err := kadm.NewClient(cl).FetchOffsets(ctx, c.cfg.group)
	if err == nil {
		err = fetched.Error()
	}
	if err != nil {
		c.cfg.logger.Error("reading the group's commits to reposition partitions failed; they go on from their positions", "partitions", partitions, "err", err)
		return
	}
	// Where kgo starts a partition without a commit: a fresh assignment
	// would pass the strategy the same.
	first, _ := cl.OptValue(kgo.ConsumeStartOffset).(kgo.Offset)
	start := make(map[string]map[int32]kgo.Offset, len(partitions))
	for topic, ps := range partitions {
		start[topic] = make(map[int32]kgo.Offset, len(ps))
		for _, p := range ps {
			start[topic][p] = first
			if o, ok := fetched.Lookup(topic, p); ok && o.At >= 0 {
				start[topic][p] = kgo.NewOffset().At(o.At).WithEpoch(o.LeaderEpoch)
			}
		}
	}
	if s := c.cfg.strategy; s != nil {
		if start, err = s.StartOffsets(ctx, start); err != nil {
			c.cfg.logger.Error("positioning partitions after rejoining failed; they go on from their positions", "partitions", partitions, "err", err)
			return
		}
	}
	set := make(map[string]map[int32]kgo.EpochOffset, len(start))
	for topic, ps := range start {
		set[topic] = make(map[int32]kgo.EpochOffset, len(ps))
		for p, o := range ps {
			set[topic][p] = o.EpochOffset()
		}
	}
	cl.SetOffsets(set)
}

// minus returns the partitions of a that are not in b.
func minus(a, b map[string][]int32) map[string][]int32 {
	out := make(map[string][]int32)
	for topic, ps := range a {
		for _, p := range ps {
			if !slices.Contains(b[topic], p) {
				out[topic] = append(out[topic], p)
			}
		}
	}
	return out
}

// union returns the partitions in a or b.
func union(a, b map[string][]int32) map[string][]int32 {
	out := make(map[string][]int32, len(a)+len(b))
	for _, m := range []map[string][]int32{a, b} {
		for topic, ps := range m {
			for _, p := range ps {
				if !slices.Contains(out[topic], p) {
					out[topic] = append(out[topic], p)
				}
			}
		}
	}
	return out
}

// rebalanced tells the observer and the strategy of a rebalance.
func (c *Consumer) rebalanced(e Event, partitions map[string][]int32) {
	if o := c.cfg.observer; o != nil {
		o.Rebalanced(e, partitions)
	}
	if w, ok := c.cfg.strategy.(RebalanceWatcher); ok {
		w.Rebalanced(e, partitions)
	}
}

// commit commits the stored offsets synchronously, except those of skip.
func (c *Consumer) commit(ctx context.Context, skip map[string][]int32) error {
	marked := c.cl.MarkedOffsets()
	for topic, ps := range skip {
		for _, p := range ps {
			delete(marked[topic], p)
		}
		if len(marked[topic]) == 0 {
			delete(marked, topic)
		}
	}
	if len(marked) == 0 {
		return nil
	}
	var rerr error
	c.cl.CommitOffsetsSync(ctx, marked, func(cl *kgo.Client, req *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		rerr = c.onCommit(cl, req, resp, err)
	})
	return rerr
}

// onCommit reports a commit's outcome, for background and synchronous
// commits alike, and returns its first error.
func (c *Consumer) onCommit(_ *kgo.Client, req *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) error {
	if err == nil {
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if perr := kerr.ErrorForCode(p.ErrorCode); perr != nil {
					err = fmt.Errorf("committing %s/%d: %w", t.Topic, p.Partition, perr)
					break
				}
			}
		}
	}
	if err != nil {
		c.cfg.logger.Warn("commit failed", "err", err)
	}
	if o := c.cfg.observer; o != nil {
		o.Committed(acceptedOffsets(req, resp), err)
	}
	return err
}

// acceptedOffsets returns the offsets of req whose partitions resp accepted.
func acceptedOffsets(req *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse) map[string]map[int32]int64 {
	if req == nil || resp == nil {
		return nil
	}
	ok := make(map[tp]bool)
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode == 0 {
				ok[tp{t.Topic, p.Partition}] = true
			}
		}
	}
	out := make(map[string]map[int32]int64)
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			if !ok[tp{t.Topic, p.Partition}] {
				continue
			}
			if out[t.Topic] == nil {
				out[t.Topic] = make(map[int32]int64)
			}
			out[t.Topic][p.Partition] = p.Offset
		}
	}
	return out
}

func (c *Consumer) shutdown() error {
	var errs []error
	if !c.stopWorkers(c.takeWorkers(nil), c.cfg.shutdownTimeout, false) {
		errs = append(errs, fmt.Errorf("%w after %v", ErrDrainTimeout, c.cfg.shutdownTimeout))
	} else if s, ok := c.cfg.strategy.(Stopper); ok {
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.shutdownTimeout)
		if err := s.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("consumer: stopping %T: %w", s, err))
		}
		cancel()
	}
	if c.cfg.group != "" {
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.revokeTimeout)
		if err := c.commit(ctx, nil); err != nil {
			errs = append(errs, fmt.Errorf("consumer: final commit: %w", err))
		}
		cancel()
	}
	if c.pool != nil {
		c.pool.close()
	}
	c.closing.Store(true)
	c.cl.Close()
	return errors.Join(errs...)
}
