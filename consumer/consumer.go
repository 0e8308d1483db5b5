package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// A Consumer reads records from Kafka and hands them to a Handler, one
// goroutine per partition, storing a record's offset only after the handler
// returned nil and committing stored offsets in the background, on revoke and
// on shutdown. A Consumer made with NewBatch hands them to a BatchHandler.
type Consumer struct {
	cfg     cfg
	handler Handler // with a BatchHandler: for records handled on their own
	kopts   []kgo.Opt

	// With a BatchHandler (NewBatch): the user's, and the one batches are
	// handed to, wrapped in the batch middleware.
	bh    BatchHandler
	batch BatchHandler
	span  *spanner // with BatchAcrossPartitions

	// What the attached plugins contribute; set by New, read-only after.
	pluginOpts   []kgo.Opt
	pluginTopics []string // topics plugins read beside the Consumer's own
	pluginMW     []Middleware
	pluginBMW    []BatchMiddleware
	skips        []func(*kgo.Record) bool
	observers    []Observer
	observer     Observer    // nil, the only one, or all of them
	batchObs     batchTeller // nil, or the observers that are BatchObservers
	startOffsets StartOffsetsFunc
	positioner   Plugin // the plugin that set startOffsets
	ready        []func() error
	onRebalance  []func(Event, map[string][]int32)
	onStart      []startHook
	onDrained    []func(context.Context) error
	onStop       []func(error)
	onAbort      []func()

	// built is set once New attached every plugin: Ready and Stats, which
	// probes may call at any time, read what the plugins contributed.
	built   atomic.Bool
	ran     atomic.Bool
	running chan struct{}
	cl      *kgo.Client
	closing atomic.Bool
	// base is Run's context without its cancellation: handler contexts
	// carry its values.
	base context.Context
	// cancelClient cancels the client's context, which ends requests in
	// flight such as a JoinGroup the broker holds.
	cancelClient context.CancelFunc

	mu       sync.Mutex
	workers  map[tp]runner
	draining map[tp]runner // taken by a revoke or the shutdown, still running

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

// New returns a Consumer that hands records to h. It checks the options,
// attaches the plugins given to With, and returns an error wrapping
// ErrInvalidOption when the options are incomplete or conflict or a plugin
// refuses to attach; then no plugin stays attached. It does not connect to
// Kafka until Run.
func New(h Handler, opts ...Opt) (*Consumer, error) {
	if h == nil {
		return nil, fmt.Errorf("%w: nil handler", ErrInvalidOption)
	}
	return newConsumer(h, nil, opts)
}

// newConsumer builds a Consumer of h, or of bh in batches.
func newConsumer(h Handler, bh BatchHandler, opts []Opt) (*Consumer, error) {
	cfg := defaultCfg()
	for _, o := range opts {
		o.apply(&cfg)
	}
	if err := errors.Join(cfg.validate(), cfg.batch.validate(bh != nil, cfg.ordering)); err != nil {
		return nil, err
	}
	c := &Consumer{
		cfg:      cfg,
		bh:       bh,
		running:  make(chan struct{}),
		base:     context.Background(),
		workers:  make(map[tp]runner),
		draining: make(map[tp]runner),
		owned:    make(map[tp]struct{}),
		space:    make(chan struct{}, 1),
	}
	if err := c.attach(); err != nil {
		return nil, err
	}
	if bh != nil {
		c.batch = chainBatch(bh, append(slices.Clip(c.pluginBMW), cfg.batch.middleware...))
		h = HandlerFunc(c.alone)
		if cfg.batch.across {
			c.span = newSpanner(c)
		}
	}
	c.handler = chain(h, append(slices.Clip(c.pluginMW), cfg.middleware...))
	c.kopts = c.clientOpts()
	if cfg.ordering != PartitionOrder {
		c.pool = newPool(cfg.ordering == Unordered)
	}
	c.built.Store(true)
	return c, nil
}

// clientOpts returns the kgo options in order of precedence, the last
// winning: the Consumer's defaults, the user's ClientOpts, the plugins',
// and the options the Consumer owns.
func (c *Consumer) clientOpts() []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SessionTimeout(defaultSessionTimeout),
		kgo.HeartbeatInterval(3 * time.Second),
		kgo.RebalanceTimeout(defaultRebalanceTimeout),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.FetchMaxWait(defaultFetchMaxWait),
	}
	if c.cfg.instanceID != "" {
		// A static member restarted in its session rejoins at once, but
		// the group may rebalance to take it back (kfake does; Kafka does
		// when its protocol metadata changes), and the others learn of it
		// at their next heartbeat.
		opts = append(opts, kgo.HeartbeatInterval(staticHeartbeat))
	}
	if len(c.cfg.brokers) > 0 {
		opts = append(opts, kgo.SeedBrokers(c.cfg.brokers...))
	}
	opts = append(opts, c.cfg.clientOpts...)
	opts = append(opts, c.pluginOpts...)
	opts = append(opts, kgo.ConsumeTopics(slices.Concat(c.cfg.topics, c.pluginTopics)...))
	if c.cfg.group == "" {
		return opts
	}
	if c.cfg.instanceID != "" {
		opts = append(opts, kgo.InstanceID(c.cfg.instanceID))
	}
	if c.cfg.serverSide {
		opts = append(opts, kgo.ServerSideBalancer(), kgo.Balancers(kgo.StickyBalancer()))
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
	if c.startOffsets != nil {
		opts = append(opts, kgo.AdjustFetchOffsetsFn(c.startOffsets))
	}
	return opts
}

// Running returns a channel that is closed once Run has created the client
// and the plugins have started, or once Run failed before that; Client
// tells which.
func (c *Consumer) Running() <-chan struct{} { return c.running }

// Client returns the underlying client once Running is closed, nil before
// and nil if Run failed to start.
func (c *Consumer) Client() *kgo.Client {
	select {
	case <-c.running:
		return c.cl
	default:
		return nil
	}
}

// Group returns the Consumer's group, "" for none.
func (c *Consumer) Group() string { return c.cfg.group }

// Stats returns a snapshot of the Consumer's buffers.
func (c *Consumer) Stats() Stats {
	if !c.built.Load() {
		return Stats{}
	}
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
// group and closes the client. Handler contexts carry ctx's values but not
// its cancellation. Run returns nil after a clean shutdown, an error
// wrapping ErrDrainTimeout if handlers did not finish in time, the commit's
// error if the last commit failed, the error of a plugin's OnStart (before
// anything is consumed) or OnDrained, an error wrapping ErrInvalidOption if
// the client's options conflict with the Consumer's own, and ErrRunTwice if
// called again.
func (c *Consumer) Run(ctx context.Context) (err error) {
	if !c.ran.CompareAndSwap(false, true) {
		return ErrRunTwice
	}
	defer func() {
		for _, fn := range c.onStop {
			fn(err)
		}
	}()
	c.base = context.WithoutCancel(ctx)
	cl, err := c.start(ctx)
	if err != nil {
		close(c.running)
		return err
	}
	c.cl = cl
	if c.pool != nil {
		c.pool.start(c.cfg.workers)
	}
	if c.span != nil {
		go c.span.run()
	}
	close(c.running)
	done := make(chan struct{})
	go c.watchBacklog(done)
	c.poll(ctx)
	close(done)
	return c.shutdown()
}

// start creates the client and starts the plugins.
func (c *Consumer) start(ctx context.Context) (*kgo.Client, error) {
	cctx, cancel := context.WithCancel(c.base)
	c.cancelClient = cancel
	cl, err := kgo.NewClient(append(c.kopts, kgo.WithContext(cctx))...)
	if err != nil {
		cancel()
		// NewClient connects to nothing: its errors are about options.
		return nil, fmt.Errorf("%w: creating client: %w", ErrInvalidOption, err)
	}
	if err := checkClient(cl); err != nil {
		c.close(cl)
		return nil, err
	}
	for _, h := range c.onStart {
		if err := h.fn(ctx, cl); err != nil {
			c.close(cl)
			return nil, fmt.Errorf("consumer: starting %T: %w", h.plugin, err)
		}
	}
	return cl, nil
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
		rs := make([]runner, 0, len(c.workers))
		for _, r := range c.workers {
			rs = append(rs, r)
		}
		c.mu.Unlock()
		for _, r := range rs {
			r.part().checkBehind()
			r.tick()
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
			if gs, ok := errors.AsType[*kgo.ErrGroupSession](err); ok {
				c.cfg.logger.Warn("group session failed; joining again", "err", gs.Err)
				return
			}
			c.cfg.logger.Warn("fetch error", "topic", topic, "partition", partition, "err", err)
		})
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if p.Topic == "" {
				// kgo reports errors of the group or the client as a
				// partition of no topic; it is not one we own.
				return
			}
			if o := c.observer; o != nil {
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
		switch {
		case c.span != nil:
			w = newSpanPart(c.span, key)
		case c.pool != nil:
			w = newKeyed(c, key)
		default:
			o := newOrdered(c, key)
			go o.run()
			w = o
		}
		c.workers[key] = w
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
func (c *Consumer) takeWorkers(partitions map[string][]int32) []runner {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ws []runner
	take := func(k tp, w runner) {
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
	for _, w := range c.drainingOf(partitions) {
		w.part().abandon()
	}
}

// drainingOf returns the runners of the given partitions that a revoke or
// the shutdown took and still drains.
func (c *Consumer) drainingOf(partitions map[string][]int32) []runner {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ws []runner
	for topic, ps := range partitions {
		for _, p := range ps {
			if w := c.draining[tp{topic, p}]; w != nil {
				ws = append(ws, w)
			}
		}
	}
	return ws
}

// stopWorkers stops ws after the record in hand and waits up to timeout for
// them; abandon cancels the handlers' contexts at once. Workers still running
// at the deadline are cancelled and no longer store offsets. It reports
// whether all stopped in time.
func (c *Consumer) stopWorkers(ws []runner, timeout time.Duration, abandon bool) bool {
	defer func() {
		c.mu.Lock()
		for _, w := range ws {
			if k := w.part().tp; c.draining[k] == w {
				delete(c.draining, k)
			}
		}
		c.mu.Unlock()
	}()
	for _, w := range ws {
		if abandon {
			w.part().abandon()
		}
		w.stop()
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for i, w := range ws {
		select {
		case <-w.part().done:
		case <-deadline.C:
			for _, w := range ws[i:] {
				p := w.part()
				p.abandon()
				c.cfg.logger.Warn("handler did not finish in time; its offset is not stored",
					"topic", p.topic, "partition", p.partition)
			}
			return false
		}
	}
	return true
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
	if o := c.observer; o != nil {
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

// Bounds of the last steps of a shutdown, after the drain: Run returns at
// most ShutdownTimeout plus their sum after its context is done.
const (
	finalCommitTimeout = 5 * time.Second
	leaveTimeout       = 2 * time.Second // kgo's leave, then our own LeaveGroup
)

func (c *Consumer) shutdown() error {
	var errs []error
	deadline := time.Now().Add(c.cfg.shutdownTimeout)
	if !c.stopWorkers(c.takeWorkers(nil), c.cfg.shutdownTimeout, false) {
		errs = append(errs, fmt.Errorf("%w after %v", ErrDrainTimeout, c.cfg.shutdownTimeout))
	} else if len(c.onDrained) > 0 {
		ctx, cancel := context.WithDeadline(c.base, deadline)
		for _, fn := range c.onDrained {
			if err := fn(ctx); err != nil {
				errs = append(errs, fmt.Errorf("consumer: stopping: %w", err))
			}
		}
		cancel()
	}
	if c.cfg.group != "" {
		ctx, cancel := context.WithTimeout(context.Background(), finalCommitTimeout)
		if err := c.commit(ctx, nil); err != nil {
			errs = append(errs, fmt.Errorf("consumer: final commit: %w", err))
		}
		cancel()
	}
	if c.pool != nil {
		c.pool.close()
	}
	if c.span != nil {
		c.span.close()
	}
	c.closing.Store(true)
	c.close(c.cl)
	return errors.Join(errs...)
}

// close leaves the group within twice leaveTimeout and closes cl. kgo's
// leave waits for a JoinGroup in flight, which the broker may hold up to the
// rebalance timeout (and a broker that lost the member, for good); Close
// would wait as long. Past leaveTimeout, the Consumer sends the LeaveGroup
// itself, so that the group does not wait out the session timeout for this
// member, and cancels the client's context, which ends the join at once.
func (c *Consumer) close(cl *kgo.Client) {
	c.leave(cl)
	cl.Close()
}

func (c *Consumer) leave(cl *kgo.Client) {
	if c.cfg.group == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
	err := cl.LeaveGroupContext(ctx)
	cancel()
	if err == nil {
		return
	}
	member, _ := cl.GroupMetadata()
	if v := cl.OptValues(kgo.InstanceID); len(v) == 2 && v[1] == true || c.cfg.serverSide {
		// A static member keeps its partitions across a restart; leaving
		// would hand them out. A next-generation member leaves by
		// heartbeat, which only kgo sends.
		member = ""
	}
	if member != "" {
		req := kmsg.NewPtrLeaveGroupRequest()
		req.Group = c.cfg.group
		req.MemberID = member
		m := kmsg.NewLeaveGroupRequestMember()
		m.MemberID = member
		req.Members = append(req.Members, m)
		ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
		_, lerr := req.RequestWith(ctx, cl)
		cancel()
		if lerr == nil {
			c.cfg.logger.Info("left the group with a LeaveGroup of our own; the client's leave did not finish in time", "err", err)
			c.cancelClient()
			return
		}
		c.cfg.logger.Warn("leaving the group failed; it waits for this member's session to expire", "err", lerr)
	}
	c.cfg.logger.Warn("the group leave did not finish in time; closing without it", "err", err)
	c.cancelClient()
}
