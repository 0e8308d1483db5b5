package recovery_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
	"github.com/kconsumer/kconsumer/recovery"
)

// The shared suite runs the same crash and rebalance scenarios against every
// strategy, each paired with the kind of state it is meant for: FullReplay
// with a last-value-per-key map held in memory, CheckpointSkip with sums per
// key kept in a store with the checkpoints, Stateless with an external sink
// that counts deliveries.

// A world is what survives a crash for one strategy: the durable store or
// sink, and the checks of the strategy's guarantee.
type world interface {
	// process returns the strategy and handler of a new process; the
	// handler runs each record's effect through k, which may kill it.
	process(k *killer) (ready, consumer.Handler)
	// done reports whether everything produced was processed, as seen by
	// the process of strategy s.
	done(t testing.TB, s ready) bool
	// check asserts the guarantee, with crashed telling whether any
	// process died along the way.
	check(t testing.TB, s ready, crashed bool)
}

type subject struct {
	name  string
	group string
	world func(c *kafkatest.Cluster, produced []*kgo.Record) world
	order consumer.Ordering
	// batch, if not nil, runs the world's handler inside a batch handler
	// (consumer.NewBatch) with these batch options.
	batch []consumer.Opt
}

var (
	perPartition = []consumer.Opt{consumer.BatchMaxRecords(16)}
	across       = []consumer.Opt{consumer.BatchMaxRecords(16), consumer.BatchAcrossPartitions()}
)

var subjects = []subject{
	{"FullReplay", "", newReplayWorld, consumer.PartitionOrder, nil},
	{"FullReplaySnapshots", "", newSnapshotWorld, consumer.PartitionOrder, nil},
	{"CheckpointSkip", "g", newSkipWorld, consumer.PartitionOrder, nil},
	{"CheckpointSkipKeyOrder", "g", newPrefixSkipWorld, consumer.KeyOrder, nil},
	{"Stateless", "g", newStatelessWorld, consumer.PartitionOrder, nil},
	{"FullReplayBatches", "", newReplayWorld, consumer.PartitionOrder, perPartition},
	{"FullReplaySnapshotsBatches", "", newSnapshotWorld, consumer.PartitionOrder, perPartition},
	{"CheckpointSkipBatches", "g", newSkipWorld, consumer.PartitionOrder, perPartition},
	{"CheckpointSkipBatchesAcross", "g", newSkipWorld, consumer.PartitionOrder, across},
	{"StatelessBatches", "g", newStatelessWorld, consumer.PartitionOrder, perPartition},
	{"StatelessBatchesAcross", "g", newStatelessWorld, consumer.PartitionOrder, across},
}

// opts returns the options of a process of the subject running s.
func (sub subject) opts(c *kafkatest.Cluster, s recovery.Strategy, extra ...consumer.Opt) []consumer.Opt {
	return testOpts(c, sub.group, s, append(append(extra, consumer.Order(sub.order)), sub.batch...)...)
}

// consumer builds a consumer of h for the subject: with batches, h runs
// inside a batch handler that calls it for each record of a batch in turn
// and names the first record that fails.
func (sub subject) consumer(t testing.TB, h consumer.Handler, opts ...consumer.Opt) *consumer.Consumer {
	t.Helper()
	if sub.batch == nil {
		return newConsumer(t, h, opts...)
	}
	c, err := consumer.NewBatch(consumer.BatchHandlerFunc(func(ctx context.Context, recs []*kgo.Record) error {
		for i, r := range recs {
			if err := h.Handle(ctx, r); err != nil {
				return &consumer.BatchError{Index: i, Err: err}
			}
		}
		return nil
	}), opts...)
	if err != nil {
		t.Fatalf("consumer.NewBatch: %v", err)
	}
	return c
}

var errDead = errors.New("process died")

// killer kills a process at its at-th handler call, before that record's
// effect or, with after, once the effect is written and before the handler
// returns. A dead process has no more effects.
type killer struct {
	at    int64
	after bool
	calls atomic.Int64
	dead  atomic.Bool
	died  chan struct{}
	once  sync.Once
}

func newKiller(r *rand.Rand, maxAt int64) *killer {
	return &killer{at: 1 + r.Int64N(maxAt), after: r.IntN(2) == 0, died: make(chan struct{})}
}

func (k *killer) run(effect func() error) error {
	if k == nil {
		return effect()
	}
	if k.dead.Load() {
		return errDead
	}
	n := k.calls.Add(1)
	if n == k.at && !k.after {
		k.die()
		return errDead
	}
	if err := effect(); err != nil {
		return err
	}
	if n == k.at && k.after {
		k.die()
		return errDead
	}
	return nil
}

func (k *killer) die() {
	k.dead.Store(true)
	k.once.Do(func() { close(k.died) })
}

// FullReplay: the last value per key, in memory; a crash loses it all.

type replayWorld struct {
	cluster *kafkatest.Cluster
	truth   map[string]string
	mu      sync.Mutex
	state   map[ready]map[string]string
}

func newReplayWorld(c *kafkatest.Cluster, produced []*kgo.Record) world {
	truth := make(map[string]string)
	last := make(map[string]int64)
	for _, r := range produced {
		if o, ok := last[string(r.Key)]; !ok || r.Offset > o {
			last[string(r.Key)], truth[string(r.Key)] = r.Offset, string(r.Value)
		}
	}
	return &replayWorld{cluster: c, truth: truth, state: make(map[ready]map[string]string)}
}

func (w *replayWorld) process(k *killer) (ready, consumer.Handler) {
	s := recovery.NewFullReplay(recovery.WithLogger(quiet))
	state := make(map[string]string)
	w.mu.Lock()
	w.state[s] = state
	w.mu.Unlock()
	return s, consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
		return k.run(func() error {
			w.mu.Lock()
			defer w.mu.Unlock()
			state[string(r.Key)] = string(r.Value)
			return nil
		})
	})
}

func (w *replayWorld) done(_ testing.TB, s ready) bool {
	select {
	case <-s.(*recovery.FullReplay).CaughtUp():
		return true
	default:
		return false
	}
}

func (w *replayWorld) check(t testing.TB, s ready, _ bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	groups, err := w.cluster.Admin.ListGroups(ctx)
	if err != nil {
		t.Fatalf("listing groups: %v", err)
	}
	if names := groups.Groups(); len(names) > 0 {
		t.Errorf("the broker has consumer groups %v; a replay must not create any", names)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if got := w.state[s]; !maps.Equal(got, w.truth) {
		t.Errorf("state has %d keys, want the %d keys of the whole topic: got %v, want %v", len(got), len(w.truth), got, w.truth)
	}
}

// FullReplay with snapshots: the same map, saved with its offsets every
// millisecond to a store that survives a crash. A process given a killer
// dies at its first snapshot after the killer's call or the end of the
// replay, once an earlier one was saved, so that each crash leaves a
// snapshot behind and loses what came after it; a dead process saves
// nothing. A clean stop saves a last one.

type snapshotWorld struct {
	*replayWorld
	produced int
	saved    map[string]string // guarded by replayWorld.mu, as are the rest
	offsets  recovery.Offsets
	resumes  int          // processes that started from a snapshot with offsets
	below    atomic.Int64 // records handled below the snapshot their process started from
	handled  atomic.Int64
}

func newSnapshotWorld(c *kafkatest.Cluster, produced []*kgo.Record) world {
	return &snapshotWorld{replayWorld: newReplayWorld(c, produced).(*replayWorld), produced: len(produced)}
}

// snapshotter is one process's access to the world's snapshot.
type snapshotter struct {
	w      *snapshotWorld
	k      *killer
	state  map[string]string
	replay *recovery.FullReplay
	loaded atomic.Pointer[recovery.Offsets]
	calls  atomic.Int64
	saves  int // saves with offsets; Save calls are serialized
}

func (s *snapshotter) Load(context.Context) (recovery.Offsets, error) {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	maps.Copy(s.state, s.w.saved)
	offsets := make(recovery.Offsets)
	for topic, ps := range s.w.offsets {
		offsets[topic] = maps.Clone(ps)
	}
	if len(offsets) > 0 {
		s.w.resumes++
	}
	s.loaded.Store(&offsets)
	return offsets, nil
}

func (s *snapshotter) Save(_ context.Context, offsets recovery.Offsets) error {
	if k := s.k; k != nil {
		if !k.dead.Load() && s.saves > 0 && (s.calls.Load() >= k.at || isClosed(s.replay.CaughtUp())) {
			k.die()
		}
		if k.dead.Load() {
			return errDead
		}
	}
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	s.w.saved, s.w.offsets = maps.Clone(s.state), offsets
	if len(offsets) > 0 {
		s.saves++
	}
	return nil
}

func (w *snapshotWorld) process(k *killer) (ready, consumer.Handler) {
	snap := &snapshotter{w: w, k: k, state: make(map[string]string)}
	s := recovery.NewFullReplay(recovery.Snapshots(snap, time.Millisecond), recovery.WithLogger(quiet))
	snap.replay = s
	w.mu.Lock()
	w.state[s] = snap.state
	w.mu.Unlock()
	return s, consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
		if k != nil && k.dead.Load() {
			return errDead
		}
		snap.calls.Add(1)
		if next, ok := (*snap.loaded.Load())[r.Topic][r.Partition]; ok && r.Offset < next {
			w.below.Add(1)
		}
		w.handled.Add(1)
		w.mu.Lock()
		defer w.mu.Unlock()
		snap.state[string(r.Key)] = string(r.Value)
		return nil
	})
}

func (w *snapshotWorld) check(t testing.TB, s ready, crashed bool) {
	t.Helper()
	w.replayWorld.check(t, s, crashed)
	if n := w.below.Load(); n > 0 {
		t.Errorf("%d records handled below the snapshot their process started from", n)
	}
	w.mu.Lock()
	resumes := w.resumes
	w.mu.Unlock()
	if !crashed {
		if resumes == 0 {
			t.Error("no process started from a snapshot after a clean stop")
		}
		if n := w.handled.Load(); n != int64(w.produced) {
			t.Errorf("%d records handled in all, want each of the %d once: a clean stop saves a last snapshot", n, w.produced)
		}
	}
	t.Logf("%d starts from a snapshot, %d records handled in all", resumes, w.handled.Load())
}

// CheckpointSkip: sums per key, written with the checkpoint in one step.

type skipWorld struct {
	cluster *kafkatest.Cluster
	truth   map[string]int64
	store   sumStore
	// gapEvery, for a store kept out of order, makes every gapEvery-th
	// record one the handler finishes without an effect, as a dead-lettered
	// record is: the store's prefix stops there for good.
	gapEvery    int64
	outOfOrder  bool
	replays     atomic.Int64 // records handed to the handler although the store had them
	belowCommit atomic.Int64 // records handed to the handler below the commit their process started from
}

// sumStore keeps per-key sums with the checkpoints.
type sumStore interface {
	recovery.CheckpointStore
	Apply(ctx context.Context, c recovery.Checkpoint, effect func(sums *map[string]int64)) error
	Read(fn func(sums map[string]int64))
}

func newSkipWorld(c *kafkatest.Cluster, produced []*kgo.Record) world {
	return &skipWorld{cluster: c, truth: sums(produced, 0), store: recovery.NewMemoryStore(make(map[string]int64))}
}

// newPrefixSkipWorld is the additive world with a store that records every
// record and reports the contiguous prefix, for KeyOrder, and with gaps.
func newPrefixSkipWorld(c *kafkatest.Cluster, produced []*kgo.Record) world {
	const gapEvery = 40
	return &skipWorld{cluster: c, truth: sums(produced, gapEvery), store: newPrefixStore(), outOfOrder: true, gapEvery: gapEvery}
}

// sums returns the per-key sums of the produced records, leaving out every
// gapEvery-th offset of a partition if gapEvery is not 0.
func sums(produced []*kgo.Record, gapEvery int64) map[string]int64 {
	truth := make(map[string]int64)
	for _, r := range produced {
		if gapEvery > 0 && r.Offset%gapEvery == gapEvery-1 {
			continue
		}
		v, _ := strconv.ParseInt(string(r.Value), 10, 64)
		truth[string(r.Key)] += v
	}
	return truth
}

func (w *skipWorld) process(k *killer) (ready, consumer.Handler) {
	opts := []recovery.SkipOpt{recovery.StartWithoutCheckpoint(kgo.NewOffset().AtStart()), recovery.WithLogger(quiet)}
	if w.outOfOrder {
		opts = append(opts, recovery.OutOfOrderStore())
	}
	s := &commitWatch{CheckpointSkip: recovery.NewCheckpointSkip(w.store, opts...), from: make(map[int32]int64)}
	return s, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		v, err := strconv.ParseInt(string(r.Value), 10, 64)
		if err != nil {
			return err
		}
		return k.run(func() error {
			// Whatever the store, the group's commit covers only finished
			// records: none below it may come again.
			if c, ok := s.committed(r.Partition); ok && r.Offset < c {
				w.belowCommit.Add(1)
			}
			// In order, neither may a record at or below the store's
			// checkpoint. Out of order, records finished beyond a gap come
			// again once the gap closes.
			if !w.outOfOrder {
				cps, err := w.store.Checkpoints(ctx, r.Topic, []int32{r.Partition})
				if err != nil {
					return err
				}
				if cp, ok := cps[r.Partition]; ok && r.Offset <= cp {
					w.replays.Add(1)
				}
			}
			if w.gapEvery > 0 && r.Offset%w.gapEvery == w.gapEvery-1 {
				return nil
			}
			return w.store.Apply(ctx, recovery.CheckpointOf(r), func(sums *map[string]int64) {
				(*sums)[string(r.Key)] += v
			})
		})
	})
}

func (w *skipWorld) done(t testing.TB, _ ready) bool {
	ends := w.cluster.EndOffsets(t, topic)
	var ps []int32
	for p := range ends {
		ps = append(ps, p)
	}
	cps, err := w.store.Checkpoints(context.Background(), topic, ps)
	if err != nil {
		t.Fatal(err)
	}
	// A prefix stopped by a gap is passed by the group's commit.
	committed := w.cluster.Committed(t, "g", topic)
	for p, end := range ends {
		pos := committed[p]
		if cp, ok := cps[p]; ok {
			pos = max(pos, cp+1)
		}
		if end > 0 && pos < end {
			return false
		}
	}
	return true
}

func (w *skipWorld) check(t testing.TB, _ ready, _ bool) {
	t.Helper()
	// The store would ignore them, but the strategy must not even deliver
	// them: each partition starts after its checkpoint.
	if n := w.replays.Load(); n > 0 {
		t.Errorf("%d records at or below their checkpoint reached the handler", n)
	}
	if n := w.belowCommit.Load(); n > 0 {
		t.Errorf("%d records below the group's commit reached the handler", n)
	}
	w.store.Read(func(sums map[string]int64) {
		for key, want := range w.truth {
			if got := sums[key]; got != want {
				t.Errorf("sum of %s = %d, want %d (%+d)", key, got, want, got-want)
			}
		}
		if len(sums) != len(w.truth) {
			t.Errorf("%d keys summed, want %d", len(sums), len(w.truth))
		}
	})
}

// commitWatch notes the group's commits a CheckpointSkip was given when
// partitions were assigned.
type commitWatch struct {
	*recovery.CheckpointSkip
	mu   sync.Mutex
	from map[int32]int64
}

// Attach attaches the CheckpointSkip and watches the offsets the group
// gives it at each assignment.
func (s *commitWatch) Attach(a *consumer.Attachment) error {
	if err := s.CheckpointSkip.Attach(a); err != nil {
		return err
	}
	a.ClientOpts(kgo.OnOffsetsFetched(s.fetched))
	return nil
}

func (s *commitWatch) fetched(_ context.Context, _ *kgo.Client, resp *kmsg.OffsetFetchResponse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	note := func(t string, p int32, code int16, offset int64) {
		switch {
		case t != topic || code != 0:
		case offset >= 0:
			s.from[p] = offset
		default:
			delete(s.from, p)
		}
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			note(t.Topic, p.Partition, p.ErrorCode, p.Offset)
		}
	}
	for _, g := range resp.Groups {
		for _, t := range g.Topics {
			for _, p := range t.Partitions {
				note(t.Topic, p.Partition, p.ErrorCode, p.Offset)
			}
		}
	}
	return nil
}

func (s *commitWatch) committed(p int32) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.from[p]
	return c, ok
}

// prefixStore is a CheckpointStore for records that finish out of order, as
// a database writing each effect under its Checkpoint as a unique ID would
// be: it applies each record once, whenever it comes, and reports as a
// partition's checkpoint the end of the contiguous run of applied offsets
// from 0 (the suite's topic has no gaps).
type prefixStore struct {
	mu      sync.Mutex
	sums    map[string]int64
	applied map[recovery.Checkpoint]bool
	next    map[int32]int64 // the first offset not applied, by partition
}

func newPrefixStore() *prefixStore {
	return &prefixStore{sums: make(map[string]int64), applied: make(map[recovery.Checkpoint]bool), next: make(map[int32]int64)}
}

func (s *prefixStore) Apply(ctx context.Context, c recovery.Checkpoint, effect func(sums *map[string]int64)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.applied[c] {
		return nil
	}
	effect(&s.sums)
	s.applied[c] = true
	for s.applied[recovery.Checkpoint{Topic: c.Topic, Partition: c.Partition, Offset: s.next[c.Partition]}] {
		s.next[c.Partition]++
	}
	return nil
}

func (s *prefixStore) Read(fn func(sums map[string]int64)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s.sums)
}

func (s *prefixStore) Checkpoints(ctx context.Context, _ string, partitions []int32) (map[int32]int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int32]int64)
	for _, p := range partitions {
		if n := s.next[p]; n > 0 {
			out[p] = n - 1
		}
	}
	return out, nil
}

// Stateless: an external sink counting deliveries of each record.

type statelessWorld struct {
	produced []*kgo.Record
	mu       sync.Mutex
	seen     map[recovery.Checkpoint]int
}

func newStatelessWorld(_ *kafkatest.Cluster, produced []*kgo.Record) world {
	return &statelessWorld{produced: produced, seen: make(map[recovery.Checkpoint]int)}
}

func (w *statelessWorld) process(k *killer) (ready, consumer.Handler) {
	return recovery.NewStateless(), consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
		return k.run(func() error {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.seen[recovery.CheckpointOf(r)]++
			return nil
		})
	})
}

func (w *statelessWorld) done(testing.TB, ready) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.produced {
		if w.seen[recovery.CheckpointOf(r)] == 0 {
			return false
		}
	}
	return true
}

func (w *statelessWorld) check(t testing.TB, _ ready, crashed bool) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	var missing, dup int
	for _, r := range w.produced {
		switch n := w.seen[recovery.CheckpointOf(r)]; {
		case n == 0:
			missing++
		case n > 1:
			dup++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d records never delivered", missing, len(w.produced))
	}
	if !crashed && dup > 0 {
		t.Errorf("%d records delivered twice without a crash", dup)
	}
	t.Logf("%d records, %d delivered more than once", len(w.produced), dup)
}

// TestStrategies runs every scenario against every strategy.
func TestStrategies(t *testing.T) {
	scenarios := []struct {
		name string
		run  func(t *testing.T, sub subject)
	}{
		{"CrashRestart", scenarioCrashRestart},
		{"RebalanceAndCrash", scenarioRebalanceAndCrash},
		{"GracefulRestart", scenarioGracefulRestart},
		{"Readiness", scenarioReadiness},
	}
	for _, sub := range subjects {
		t.Run(sub.name, func(t *testing.T) {
			for _, sc := range scenarios {
				t.Run(sc.name, func(t *testing.T) { sc.run(t, sub) })
			}
		})
	}
}

const (
	suitePartitions = 4
	suiteRecords    = 1200
	suiteKeys       = 40
)

func suiteSetup(t *testing.T, sub subject) (*kafkatest.Cluster, world) {
	cluster := kafkatest.NewCluster(t, suitePartitions, topic)
	produced := cluster.ProduceSeq(t, topic, suiteRecords, suiteKeys)
	return cluster, sub.world(cluster, produced)
}

// finish runs a process to the end and checks the guarantee.
func finish(t *testing.T, cluster *kafkatest.Cluster, sub subject, w world, crashed bool) {
	t.Helper()
	s, h := w.process(nil)
	stop := kafkatest.Run(t, sub.consumer(t, h, sub.opts(cluster, s)...))
	kafkatest.WaitFor(t, 30*time.Second, "everything processed", func() bool { return w.done(t, s) })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	w.check(t, s, crashed)
}

// scenarioCrashRestart kills processes at random records, before or after an
// effect, with no commit reaching the broker, and restarts each time. Each
// process dies before it could finish: the crashes add up to fewer calls
// than there are records.
func scenarioCrashRestart(t *testing.T, sub subject) {
	cluster, w := suiteSetup(t, sub)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	const crashes = 20
	for i := range crashes {
		k := newKiller(rng, suiteRecords/(crashes+1))
		s, h := w.process(k)
		stop := kafkatest.Run(t, sub.consumer(t, h, sub.opts(cluster, s)...))
		wait(t, k.died, 30*time.Second, fmt.Sprintf("crash %d at call %d", i, k.at))
		crash(cluster, stop)
	}
	finish(t, cluster, sub, w, true)
}

var errHeld = errors.New("held until the second process is ready")

// scenarioRebalanceAndCrash runs two processes of one application: the second
// starts once the first has handled some records and holds them until the
// second is ready (for a group, it owns partitions); then the first dies at a
// random record and the second finishes alone.
func scenarioRebalanceAndCrash(t *testing.T, sub subject) {
	cluster, w := suiteSetup(t, sub)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	const head = 100
	k := newKiller(rand.New(rand.NewPCG(seed, seed)), 200)
	k.at += head
	s1, h1 := w.process(k)
	s2, h2 := w.process(nil)
	// A group member is ready once assigned, even with no partitions, which
	// is what the first cooperative round gives it.
	var owns2 atomic.Bool
	ready2 := func() bool { return s2.Ready() == nil && (sub.group == "" || owns2.Load()) }
	var calls atomic.Int64
	reachedHead := make(chan struct{})
	held := consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		if calls.Load() >= head && !ready2() {
			return errHeld
		}
		if calls.Add(1) == head {
			close(reachedHead)
		}
		return h1.Handle(ctx, r)
	})
	stop1 := kafkatest.Run(t, sub.consumer(t, held, sub.opts(cluster, s1)...))
	wait(t, reachedHead, 30*time.Second, "the first process to handle some records")
	stop2 := kafkatest.Run(t, sub.consumer(t, h2, sub.opts(cluster, s2, consumer.OnAssigned(func(_ context.Context, ps map[string][]int32) {
		if len(ps[topic]) > 0 {
			owns2.Store(true)
		}
	}))...))
	kafkatest.WaitFor(t, 30*time.Second, "the second process to be ready", ready2)
	wait(t, k.died, 30*time.Second, fmt.Sprintf("the first process to die at call %d", k.at))
	crash(cluster, stop1)
	kafkatest.WaitFor(t, 30*time.Second, "everything processed", func() bool { return w.done(t, s2) })
	if err := stop2(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	w.check(t, s2, true)
}

// scenarioGracefulRestart stops a process cleanly halfway and restarts it.
func scenarioGracefulRestart(t *testing.T, sub subject) {
	cluster, w := suiteSetup(t, sub)
	var calls atomic.Int64
	halfway := make(chan struct{})
	s, h := w.process(nil)
	counted := consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		if calls.Add(1) == suiteRecords/2 {
			close(halfway)
		}
		return h.Handle(ctx, r)
	})
	stop := kafkatest.Run(t, sub.consumer(t, counted, sub.opts(cluster, s)...))
	wait(t, halfway, 30*time.Second, "half the records")
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	finish(t, cluster, sub, w, false)
}

// scenarioReadiness checks that a strategy is not ready before it runs and
// becomes ready while running.
func scenarioReadiness(t *testing.T, sub subject) {
	cluster, w := suiteSetup(t, sub)
	s, h := w.process(nil)
	c := sub.consumer(t, h, sub.opts(cluster, s)...)
	if err := s.Ready(); !errors.Is(err, recovery.ErrNotReady) {
		t.Fatalf("Ready before Run = %v, want ErrNotReady", err)
	}
	stop := kafkatest.Run(t, c)
	kafkatest.WaitFor(t, 30*time.Second, "ready", func() bool { return s.Ready() == nil })
	kafkatest.WaitFor(t, 30*time.Second, "everything processed", func() bool { return w.done(t, s) })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := s.Ready(); err != nil {
		t.Errorf("Ready after processing = %v", err)
	}
}
