//go:build unix

package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/dlq"
	"github.com/kconsumer/kconsumer/internal/brokerfix"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
)

// Scenario describes one run.
type Scenario struct {
	Name       string
	Faults     Fault
	Duration   time.Duration // how long faults are injected while records are produced
	Rate       int           // records produced per second
	Partitions int32
	Groups     []string // GroupStateless, GroupAdditive
	Children   int      // member processes per group at the start (Kill needs some)
	Members    int      // members in the test process per group at the start
	Order      consumer.Ordering
	Seed       uint64
	Timing     Timing
	// LibraryDefaults runs the members with the library's own default
	// timeouts: they pass none of Timing's options, and Timing is set to
	// LibraryTiming, what those defaults are, for the recovery bound.
	LibraryDefaults bool
	// RecoveryBound, unless 0, bounds the time from the end of the last
	// fault until the members that survived the faults, left running,
	// brought every group's position to the end of every partition; a run
	// that takes longer fails, naming the bound. The members are stopped
	// after that, or after DrainTimeout.
	RecoveryBound time.Duration
	// RecoveryReason says what RecoveryBound is made of, for its failure.
	RecoveryReason string
	// SlowEvery makes every SlowEvery-th offset of a partition take 300 ms
	// to handle, longer than the commit interval, as a sink's tail latency
	// would; 0 for none.
	SlowEvery int
	// Pace stretches the pauses between faults: 1 (or 0) for the tempo of
	// the short scenarios, more for a soak that must keep making progress.
	Pace float64
	// HugeEvery is how often a huge record may be produced with BadInput;
	// 0 means once per run.
	HugeEvery time.Duration
	// DrainTimeout bounds the drain after the faults; 0 means 2 minutes.
	DrainTimeout time.Duration
	// Log receives progress lines; nil for none.
	Log io.Writer
	// ProgressEvery is how often the lag is logged while faults run; 0
	// for never.
	ProgressEvery time.Duration
}

// Summary is what a run did and found.
type Summary struct {
	Scenario Scenario
	Report   *Report
	MaxLag   int64 // the largest lag of a group, in records, sampled during the faults
	Took     time.Duration
	// Recovery is the time from the end of the last fault until the
	// surviving members drained every group, with RecoveryBound; 0 if not
	// measured. GroupRecovery is the same by group.
	Recovery      time.Duration
	GroupRecovery map[string]time.Duration
}

const (
	topic    = "chaos"
	dlqTopic = "chaos.dlq"
)

// run is the state of one Run.
type run struct {
	t        testing.TB
	sc       Scenario
	dir      string
	cluster  *kafkatest.Cluster
	registry *kafkatest.Registry
	hist     *History
	members  *memberSet
	log      *slog.Logger // the in-process members' log

	topic, dlqTopic string
	dlqTopicID      [16]byte
	groups          []string
	maxLag          atomic.Int64
	lastFault       atomic.Int64 // when the last fault ended, in Unix ns; see faultEnded
	recovered       time.Time    // when the surviving members drained every group
	groupRecovery   map[string]time.Duration

	sleptMu sync.Mutex
	slept   map[kmsg.Request]time.Time
}

// Run runs a scenario: it starts a broker and a registry, the members, the
// workload and the faults; after Duration it stops the faults and the
// producer, stops the members gracefully, drains each group with a fresh
// member, and checks the history. Violations fail t. It returns the summary.
func Run(t testing.TB, sc Scenario) *Summary {
	t.Helper()
	began := time.Now()
	if sc.LibraryDefaults {
		sc.Timing = LibraryTiming
	}
	if sc.Timing == (Timing{}) {
		sc.Timing = DefaultTiming
	}
	if sc.DrainTimeout == 0 {
		sc.DrainTimeout = 2 * time.Minute
	}
	dir, err := os.MkdirTemp("", "chaos-"+sc.Name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("member logs and the store kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	logf, err := os.Create(filepath.Join(dir, "members.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })

	r := &run{
		t: t, sc: sc, dir: dir,
		cluster:  kafkatest.NewCluster(t, sc.Partitions, topic, dlqTopic),
		registry: kafkatest.NewRegistry(t, srfake.WithGlobalCompat(sr.CompatNone)),
		hist:     NewHistory(),
		log:      slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelWarn})),
		topic:    topic, dlqTopic: dlqTopic,
		groups: sc.Groups,
		slept:  make(map[kmsg.Request]time.Time),
	}
	r.members = &memberSet{r: r}
	// kfake keeps a member whose join answer was lost (a member killed
	// while it joined) in the group with no session timer, holding its
	// partitions for good, so a group may never drain; the janitor removes
	// such members as a real broker would (see internal/brokerfix). It must
	// see the group requests before the faults' control functions, which
	// hold and answer some, so it starts first.
	stopJanitor, err := brokerfix.Start(context.Background(), r.cluster.Cluster,
		brokerfix.WithLogger(slog.New(slog.NewTextHandler(logf, nil)).With("component", "brokerfix")),
		brokerfix.WithOnKick(func(k brokerfix.Kick) {
			r.logf("janitor: removed member %s of %s, silent since %v", k.MemberID, k.Group, k.LastAlive.Format("15:04:05.000"))
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopJanitor)
	mctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	md, err := r.cluster.Admin.Metadata(mctx, dlqTopic)
	cancel()
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	r.dlqTopicID = md.Topics[dlqTopic].ID
	r.logf("scenario %s: faults %v, seed %d, dir %s", sc.Name, sc.Faults, sc.Seed, dir)

	producer := r.cluster.Client(t, kgo.ProducerLinger(5*time.Millisecond))
	wl, err := newWorkload(producer, r.registry, r.registry.URL(), topic, sc.Seed, r.hist)
	if err != nil {
		t.Fatal(err)
	}
	if sc.Faults&BadInput != 0 {
		wl.badEvery = 15
		wl.hugeEvery = sc.HugeEvery
		if wl.hugeEvery == 0 {
			wl.hugeEvery = 24 * time.Hour
		}
	}
	if sc.Faults&RegistryErrors != 0 || sc.Faults&(Kill|Storm) != 0 {
		wl.schemaEvery = 700 * time.Millisecond
	}

	for _, g := range sc.Groups {
		for range sc.Children {
			if _, err := r.members.startChild(g); err != nil {
				t.Fatal(err)
			}
		}
		for range sc.Members {
			r.members.startInproc(g)
		}
	}

	r.chaos(wl)
	if sc.RecoveryBound > 0 {
		r.logf("faults stopped after %v; waiting for the members to drain the groups", time.Since(began).Round(time.Millisecond))
		r.awaitRecovery()
	}
	r.logf("faults stopped after %v; stopping members", time.Since(began).Round(time.Millisecond))
	if err := r.members.stopAll(); err != nil {
		r.hist.problem("%v", err)
	}
	final := r.drain()
	rep := Check(r.hist, final, CheckOpts{Topic: topic, Order: sc.Order, Faults: sc.Faults})
	s := &Summary{Scenario: sc, Report: rep, MaxLag: r.maxLag.Load(), Took: time.Since(began)}
	if last := r.lastFault.Load(); last != 0 && !r.recovered.IsZero() {
		s.Recovery = r.recovered.Sub(time.Unix(0, last))
	}
	s.GroupRecovery = r.groupRecovery
	vs := rep.Violations()
	for _, v := range vs {
		t.Error(v)
	}
	if sc.RecoveryBound > 0 {
		switch {
		case r.lastFault.Load() == 0:
			t.Errorf("scenario %s: no fault recorded its end, so the recovery bound %v cannot be checked", sc.Name, sc.RecoveryBound)
		case r.recovered.IsZero():
			t.Errorf("scenario %s: the members did not drain the groups within %v of the last fault, beyond the recovery bound %v (%s)",
				sc.Name, sc.DrainTimeout, sc.RecoveryBound, sc.RecoveryReason)
		case s.Recovery > sc.RecoveryBound:
			t.Errorf("scenario %s: the members drained the groups %v after the last fault, beyond the recovery bound %v (%s)",
				sc.Name, s.Recovery.Round(time.Millisecond), sc.RecoveryBound, sc.RecoveryReason)
		}
	}
	if len(vs) > 0 {
		t.Errorf("scenario %s (faults %v) failed with seed %d", sc.Name, sc.Faults, sc.Seed)
	}
	if t.Failed() {
		if err := r.hist.dump(filepath.Join(dir, "history.txt")); err != nil {
			t.Logf("writing the history: %v", err)
		}
	}
	return s
}

func (r *run) logf(format string, args ...any) {
	if r.sc.Log != nil {
		fmt.Fprintf(r.sc.Log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
}

// rand returns a generator for the i-th user of the scenario's seed.
func (r *run) rand(i uint64) *rand.Rand {
	return rand.New(rand.NewPCG(r.sc.Seed, i))
}

// chaos produces records and injects the faults for the scenario's
// duration, then stops both and removes every fault.
func (r *run) chaos(wl *workload) {
	ctx, cancel := context.WithTimeout(context.Background(), r.sc.Duration)
	defer cancel()
	var wg sync.WaitGroup
	inject := func(f Fault, fn func(context.Context, *rand.Rand)) {
		if r.sc.Faults&f == 0 {
			return
		}
		rng := r.rand(uint64(f))
		wg.Go(func() { fn(ctx, rng) })
	}
	if r.sc.Faults&(ProcessFaults&^Kill) != 0 {
		// Kill is one beat of the process faults' rhythm.
		inject(ProcessFaults, r.injectProcessFaults)
	} else {
		inject(Kill, r.injectKills)
	}
	inject(Storm, r.injectStorm)
	inject(FetchErrors, func(ctx context.Context, rng *rand.Rand) {
		r.injectBrokerErrors(ctx, rng, FetchErrors, 0.3, []brokerError{{key: kmsg.Fetch, topic: r.topic,
			errs: []*kerr.Error{kerr.NotLeaderForPartition, kerr.KafkaStorageError, kerr.UnknownServerError, kerr.RequestTimedOut}}})
	})
	inject(CommitErrors, func(ctx context.Context, rng *rand.Rand) {
		r.injectBrokerErrors(ctx, rng, CommitErrors, 0.4, []brokerError{{key: kmsg.OffsetCommit,
			errs: []*kerr.Error{kerr.NotCoordinator, kerr.RebalanceInProgress, kerr.CoordinatorNotAvailable, kerr.CoordinatorLoadInProgress}}})
	})
	inject(GroupErrors, func(ctx context.Context, rng *rand.Rand) {
		r.injectBrokerErrors(ctx, rng, GroupErrors, 0.3, []brokerError{
			{key: kmsg.JoinGroup, errs: []*kerr.Error{kerr.NotCoordinator, kerr.CoordinatorNotAvailable, kerr.CoordinatorLoadInProgress}},
			{key: kmsg.SyncGroup, errs: []*kerr.Error{kerr.NotCoordinator, kerr.RebalanceInProgress}},
			{key: kmsg.Heartbeat, errs: []*kerr.Error{kerr.NotCoordinator, kerr.RebalanceInProgress}},
		})
	})
	inject(DLQErrors, func(ctx context.Context, rng *rand.Rand) {
		r.injectBrokerErrors(ctx, rng, DLQErrors, 0.5, []brokerError{{key: kmsg.Produce, topic: r.dlqTopic,
			errs: []*kerr.Error{kerr.NotLeaderForPartition, kerr.NotEnoughReplicas, kerr.RequestTimedOut}}})
	})
	inject(SlowResponses, r.injectSlow)
	inject(Timeouts, r.injectTimeouts)
	inject(RegistryErrors, r.injectRegistry)
	inject(SinkFaults, r.injectSink)
	inject(SessionExpiry, r.injectExpiry)
	wg.Go(func() { r.sampleLag(ctx) })

	if err := wl.produce(ctx, r.sc.Rate); err != nil {
		r.hist.problem("%v", err)
	}
	wg.Wait()
}

// sampleLag records the largest lag of any group every 250 ms, and logs
// the progress every ProgressEvery.
func (r *run) sampleLag(ctx context.Context) {
	began, logged := time.Now(), time.Now()
	for sleep(ctx, 250*time.Millisecond) {
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		lags := make(map[string]int64)
		ends, err := r.cluster.Admin.ListEndOffsets(lctx, r.topic)
		for _, g := range r.groups {
			if err != nil {
				break
			}
			offs, ferr := r.cluster.Admin.FetchOffsets(lctx, g)
			if ferr != nil {
				continue
			}
			var lag int64
			ends.Each(func(o kadm.ListedOffset) {
				c := int64(0)
				if co, ok := offs.Lookup(r.topic, o.Partition); ok && co.At >= 0 {
					c = co.At
				}
				lag += max(0, o.Offset-c)
			})
			lags[g] = lag
			for {
				m := r.maxLag.Load()
				if lag <= m || r.maxLag.CompareAndSwap(m, lag) {
					break
				}
			}
		}
		cancel()
		if r.sc.ProgressEvery > 0 && time.Since(logged) >= r.sc.ProgressEvery {
			logged = time.Now()
			records, _, faults, _ := r.hist.counts()
			r.logf("%v: %d records produced, %d faults injected, lag %s", time.Since(began).Round(time.Second), records, faults, formatCounts(lags))
		}
	}
}

// drain runs one member per group until the group's commits reach the end
// of every partition, then reads the final state.
func (r *run) drain() Final {
	t := r.t
	end := r.cluster.EndOffsets(t, r.topic)
	final := Final{End: end, Committed: make(map[string]map[int32]int64)}
	var drainers []*inprocMember
	for _, g := range r.groups {
		drainers = append(drainers, r.members.startInproc(g))
	}
	deadline := time.Now().Add(r.sc.DrainTimeout)
	for _, g := range r.groups {
		for !r.drained(g, end) {
			if time.Now().After(deadline) {
				r.hist.problem("group %s not drained after %v", g, r.sc.DrainTimeout)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, d := range drainers {
		d.stop()
	}
	for _, g := range r.groups {
		final.Committed[g] = r.cluster.Committed(t, g, r.topic)
	}
	r.logf("drained")
	final.Letters = r.readLetters()
	if slices.Contains(r.groups, GroupAdditive) {
		final.Store = make(map[int32][]Entry)
		for p := range end {
			es, err := ReadLog(filepath.Join(r.dir, "store"), r.topic, p)
			final.StoreErr = errors.Join(final.StoreErr, err)
			final.Store[p] = es
		}
	}
	return final
}

// awaitRecovery waits, with the faults over and the members that survived
// them running, until every group's position reached the end of the
// topic, and records when in r.recovered; it gives up DrainTimeout after
// the last fault.
func (r *run) awaitRecovery() {
	end := r.cluster.EndOffsets(r.t, r.topic)
	from := time.Now()
	if last := r.lastFault.Load(); last != 0 {
		from = time.Unix(0, last)
	}
	deadline := from.Add(r.sc.DrainTimeout)
	pending := slices.Clone(r.groups)
	r.groupRecovery = make(map[string]time.Duration)
	for len(pending) > 0 {
		pending = slices.DeleteFunc(pending, func(g string) bool {
			if !r.drained(g, end) {
				return false
			}
			r.groupRecovery[g] = time.Since(from)
			r.logf("group %s drained by its members %v after the last fault", g, time.Since(from).Round(time.Millisecond))
			return true
		})
		if len(pending) == 0 {
			r.recovered = time.Now()
			return
		}
		if time.Now().After(deadline) {
			r.logf("groups %v not drained by their members %v after the last fault", pending, r.sc.DrainTimeout)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// drained reports whether group's position reached end in every
// partition: its commit, or for the additive group its store's checkpoint,
// from which CheckpointSkip resumes.
func (r *run) drained(group string, end map[int32]int64) bool {
	pos := r.cluster.Committed(r.t, group, r.topic)
	if group == GroupAdditive {
		store, err := openStore(filepath.Join(r.dir, "store"), r.sc.Order)
		if err != nil {
			r.t.Fatal(err)
		}
		defer store.Close()
		cps, err := store.Checkpoints(context.Background(), r.topic, slices.Collect(maps.Keys(end)))
		if err != nil {
			r.t.Fatal(err)
		}
		for p, cp := range cps {
			pos[p] = max(pos[p], cp+1)
		}
	}
	for p, e := range end {
		if pos[p] != e {
			return false
		}
	}
	return true
}

// readLetters reads the whole dead-letter topic.
func (r *run) readLetters() []Letter {
	t := r.t
	end := r.cluster.EndOffsets(t, r.dlqTopic)
	want := int64(0)
	for _, o := range end {
		want += o
	}
	if want == 0 {
		return nil
	}
	cl := r.cluster.Client(t, kgo.ConsumeTopics(r.dlqTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxPartitionBytes(4<<20))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var letters []Letter
	for int64(len(letters)) < want {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			r.hist.problem("read %d of %d dead letters: %v", len(letters), want, err)
			return letters
		}
		fs.EachError(func(_ string, _ int32, err error) { r.hist.problem("reading dead letters: %v", err) })
		fs.EachRecord(func(rec *kgo.Record) {
			l, err := dlq.Parse(rec)
			if err != nil {
				r.hist.problem("%v", err)
			}
			letters = append(letters, Letter{Letter: l, Key: string(rec.Key), NullKey: rec.Key == nil,
				ValueSum: valueSum(rec.Value), NullValue: rec.Value == nil})
		})
	}
	return letters
}

// memberSet is the members of a run.
type memberSet struct {
	r *run

	mu       sync.Mutex
	next     int
	children []*child
	inproc   []*inprocMember
	stopping []*inprocMember // leaving in the background
}

// inprocMember is a member running in the test process.
type inprocMember struct {
	log    *memberLog
	cancel context.CancelFunc
	done   chan struct{}
}

func (s *memberSet) config(group, kind string) memberConfig {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	return memberConfig{
		Name:      fmt.Sprintf("%s-%s%d", group, kind, s.next),
		Group:     group,
		Topic:     s.r.topic,
		Brokers:   s.r.cluster.Addrs,
		Registry:  s.r.registry.URL(),
		Dir:       s.r.dir,
		Order:     s.r.sc.Order,
		Timing:    s.r.sc.Timing,
		Defaults:  s.r.sc.LibraryDefaults,
		SlowEvery: s.r.sc.SlowEvery,
	}
}

func (s *memberSet) startChild(group string) (*child, error) {
	cfg := s.config(group, "p")
	c, err := startChild(cfg, s.r.hist.member(cfg.Name, group), s.r.dir)
	if err != nil {
		return nil, err
	}
	s.add(c)
	return c, nil
}

// add puts c in the set.
func (s *memberSet) add(c *child) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.children = append(s.children, c)
}

// remove takes c out of the set.
func (s *memberSet) remove(c *child) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.children = slices.DeleteFunc(s.children, func(x *child) bool { return x == c })
}

// randomChild takes a random child of group out of the set.
func (s *memberSet) randomChild(group string, rng *rand.Rand) *child {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, _ := takeRandom(&s.children, rng, func(c *child) bool { return c.log.group == group })
	return c
}

// takeRandom removes a random element of *list for which match holds and
// returns it; false if there is none.
func takeRandom[T any](list *[]T, rng *rand.Rand, match func(T) bool) (T, bool) {
	var idx []int
	for i, v := range *list {
		if match(v) {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		var zero T
		return zero, false
	}
	i := idx[rng.IntN(len(idx))]
	v := (*list)[i]
	*list = slices.Delete(*list, i, i+1)
	return v, true
}

func (s *memberSet) startInproc(group string) *inprocMember {
	cfg := s.config(group, "g")
	m := &inprocMember{log: s.r.hist.member(cfg.Name, group), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		defer close(m.done)
		err := runMember(ctx, cfg, m.log.add, s.r.log.With("member", cfg.Name))
		text := ""
		if err != nil {
			text = err.Error()
		}
		m.log.add(Event{Kind: Stopped, Time: time.Now().UnixNano(), Text: text})
		m.log.ended(stopped)
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inproc = append(s.inproc, m)
	return m
}

func (m *inprocMember) stop() {
	m.cancel()
	<-m.done
}

func (s *memberSet) inprocCount(group string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.inproc {
		if m.log.group == group {
			n++
		}
	}
	return n
}

// stopRandomInproc stops a random in-process member of group in the
// background; false if the group has none.
func (s *memberSet) stopRandomInproc(group string, rng *rand.Rand) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := takeRandom(&s.inproc, rng, func(m *inprocMember) bool { return m.log.group == group })
	if !ok {
		return false
	}
	s.stopping = append(s.stopping, m)
	go m.cancel()
	return true
}

// stopAll stops every member gracefully and waits for them.
func (s *memberSet) stopAll() error {
	s.mu.Lock()
	children, inproc := s.children, append(s.inproc, s.stopping...)
	s.children, s.inproc, s.stopping = nil, nil, nil
	s.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(children))
	for i, c := range children {
		wg.Go(func() { errs[i] = c.stop(time.Minute) })
	}
	for _, m := range inproc {
		wg.Go(m.stop)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// String returns the summary as a few lines of text.
func (s *Summary) String() string {
	var b strings.Builder
	rep := s.Report
	fmt.Fprintf(&b, "scenario %s (faults %v, seed %d): %d records (%d good, %d bad) in %v, %v in all\n",
		s.Scenario.Name, s.Scenario.Faults, s.Scenario.Seed, rep.Records, rep.Good, rep.Bad,
		s.Scenario.Duration, s.Took.Round(time.Millisecond))
	if len(rep.BadKinds) > 0 {
		fmt.Fprintf(&b, "  bad input: %s\n", formatCounts(rep.BadKinds))
	}
	if len(rep.Faults) > 0 {
		fmt.Fprintf(&b, "  faults injected: %s\n", formatCounts(rep.Faults))
	}
	if s.Scenario.Faults != 0 {
		fmt.Fprintf(&b, "  faults fired by kind: %s", formatFired(rep.Fired))
		if rep.Unfired != 0 {
			fmt.Fprintf(&b, "; never fired: %v", rep.Unfired)
		}
		b.WriteString("\n")
	}
	for _, g := range rep.Groups {
		fmt.Fprintf(&b, "  %s: lost %d, undrained %d, handled %d, dead-lettered %d, duplicates %d (bound %d), dead letters %d (%d duplicates), commit rewinds %d, members %d, ownerships %d (%d ungraceful), partition losses %d",
			g.Group, g.Lost, g.Undrained, g.Handled, g.DeadLettered, g.Duplicates, g.Bound, g.Letters, g.LetterDups,
			g.Rewinds, g.Members, g.Epochs, g.Ungraceful, g.LostEvents)
		if g.Group == GroupAdditive {
			fmt.Fprintf(&b, ", store effects %d (%d handlings already applied), commits behind the store %d", g.StoreEntries, g.NotApplied, g.StaleCommits)
		}
		fmt.Fprintf(&b, ", violations %d\n", len(g.Violations)+g.violationsCut)
	}
	fmt.Fprintf(&b, "  max lag %d records, max produce-to-handle latency %v", s.MaxLag, rep.MaxLatency.Round(time.Millisecond))
	if s.Recovery > 0 {
		fmt.Fprintf(&b, "\n  recovery: the members drained every group %v after the last fault", s.Recovery.Round(time.Millisecond))
		var parts []string
		for _, g := range slices.Sorted(maps.Keys(s.GroupRecovery)) {
			parts = append(parts, fmt.Sprintf("%s %v", g, s.GroupRecovery[g].Round(time.Millisecond)))
		}
		fmt.Fprintf(&b, " (%s)", strings.Join(parts, ", "))
		if s.Scenario.RecoveryBound > 0 {
			fmt.Fprintf(&b, " (bound %v: %s)", s.Scenario.RecoveryBound, s.Scenario.RecoveryReason)
		}
	}
	return b.String()
}

func formatCounts[V int | int64](m map[string]V) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
