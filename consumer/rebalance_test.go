package consumer_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
)

// member records, per partition, the runs of offsets it handled; a new run
// starts each time the partition is assigned to it.
type member struct {
	mu   sync.Mutex
	runs map[int32][][]int64
	n    int
}

func newMember() *member { return &member{runs: make(map[int32][][]int64)} }

func (m *member) assigned(_ context.Context, ps map[string][]int32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range ps[topic] {
		m.runs[p] = append(m.runs[p], nil)
	}
}

func (m *member) Handle(_ context.Context, r *kgo.Record) error {
	time.Sleep(200 * time.Microsecond) // work, so the rebalance lands mid-stream
	m.mu.Lock()
	defer m.mu.Unlock()
	runs := m.runs[r.Partition]
	if len(runs) == 0 {
		runs = append(runs, nil)
	}
	runs[len(runs)-1] = append(runs[len(runs)-1], r.Offset)
	m.runs[r.Partition] = runs
	m.n++
	return nil
}

func (m *member) total() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n
}

// protocols are the group protocols every rebalance test runs under.
var protocols = []struct {
	name string
	opts []consumer.Opt
}{
	{"classic", nil},
	{"next-gen", []consumer.Opt{consumer.ServerSideBalancer()}},
}

func TestRebalanceCommitsRevokedPartitionsBeforeTheyMove(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto.name, func(t *testing.T) { testRebalanceCommits(t, proto.opts) })
	}
}

func testRebalanceCommits(t *testing.T, protoOpts []consumer.Opt) {
	cluster := kafkatest.NewCluster(t, 6, topic)
	produced := cluster.ProduceSeq(t, topic, 6000, 300)
	a, b := newMember(), newMember()
	var revokedA atomic.Int64
	ca, err := consumer.New(a, testOpts(cluster, "g", append([]consumer.Opt{
		consumer.OnAssigned(a.assigned),
		consumer.OnRevoked(func(_ context.Context, ps map[string][]int32) { revokedA.Add(int64(len(ps[topic]))) }),
	}, protoOpts...)...)...)
	if err != nil {
		t.Fatal(err)
	}
	stopA := kafkatest.Run(t, ca)
	kafkatest.WaitFor(t, 20*time.Second, "the first member to get going", func() bool { return a.total() >= 600 })
	cb, err := consumer.New(b, testOpts(cluster, "g", append([]consumer.Opt{consumer.OnAssigned(b.assigned)}, protoOpts...)...)...)
	if err != nil {
		t.Fatal(err)
	}
	stopB := kafkatest.Run(t, cb)
	kafkatest.WaitFor(t, 60*time.Second, "every record handled", func() bool { return a.total()+b.total() >= len(produced) })
	moved := revokedA.Load() // a revokes the rest when it stops
	if err := stopA(); err != nil {
		t.Fatalf("Run a: %v", err)
	}
	if err := stopB(); err != nil {
		t.Fatalf("Run b: %v", err)
	}
	if moved == 0 || b.total() == 0 {
		t.Fatalf("no partition moved (revoked from a: %d, handled by b: %d)", moved, b.total())
	}

	handled := make(map[int32]map[int64]int)
	for name, m := range map[string]*member{"a": a, "b": b} {
		for p, runs := range m.runs {
			for _, run := range runs {
				for i := 1; i < len(run); i++ {
					if run[i] != run[i-1]+1 {
						t.Fatalf("member %s, partition %d: offset %d after %d within one assignment", name, p, run[i], run[i-1])
					}
				}
				for _, o := range run {
					if handled[p] == nil {
						handled[p] = make(map[int64]int)
					}
					handled[p][o]++
				}
			}
		}
	}
	dups := 0
	for p, offs := range expectedOffsets(produced) {
		for _, o := range offs {
			switch n := handled[p][o]; {
			case n == 0:
				t.Fatalf("partition %d offset %d never handled", p, o)
			case n > 1:
				dups += n - 1
			}
		}
	}
	// A revoked partition finishes its record in hand and commits before
	// it moves, and records fetched but not started are not handled, so a
	// rebalance without timeouts duplicates nothing.
	if dups != 0 {
		t.Fatalf("%d records handled twice across a cooperative rebalance", dups)
	}
}

func TestLostPartitionsAreNotCommitted(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto.name, func(t *testing.T) { testLostPartitions(t, proto.name != "classic", proto.opts) })
	}
}

func testLostPartitions(t *testing.T, nextGen bool, protoOpts []consumer.Opt) {
	cluster := kafkatest.NewCluster(t, 2, topic)
	cluster.ProduceSeq(t, topic, 200, 10)
	commits := cluster.CountRequests(kmsg.OffsetCommit)
	rec := newRecorder()
	lost := make(chan struct{})
	var lostOnce sync.Once
	var assignments atomic.Int64
	c, err := consumer.New(rec, testOpts(cluster, "g", append([]consumer.Opt{
		consumer.CommitInterval(time.Hour),
		consumer.OnAssigned(func(context.Context, map[string][]int32) { assignments.Add(1) }),
		consumer.OnLost(func(context.Context, map[string][]int32) { lostOnce.Do(func() { close(lost) }) }),
	}, protoOpts...)...)...)
	if err != nil {
		t.Fatal(err)
	}
	stop := kafkatest.Run(t, c)
	kafkatest.WaitFor(t, 20*time.Second, "records handled", func() bool { return rec.total() >= 200 })

	// The session expires: the broker answers a heartbeat with
	// UNKNOWN_MEMBER_ID, and the member has lost its partitions.
	if nextGen {
		var once sync.Once
		cluster.ControlKey(kmsg.ConsumerGroupHeartbeat.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
			handled := false
			var resp kmsg.Response
			once.Do(func() {
				r := req.(*kmsg.ConsumerGroupHeartbeatRequest).ResponseKind().(*kmsg.ConsumerGroupHeartbeatResponse)
				r.ErrorCode = kerr.UnknownMemberID.Code
				resp, handled = r, true
			})
			if !handled {
				cluster.KeepControl()
			}
			return resp, nil, handled
		})
	} else {
		cluster.ControlKey(kmsg.Heartbeat.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
			resp := req.(*kmsg.HeartbeatRequest).ResponseKind().(*kmsg.HeartbeatResponse)
			resp.ErrorCode = kerr.UnknownMemberID.Code
			return resp, nil, true
		})
	}
	select {
	case <-lost:
	case <-time.After(20 * time.Second):
		t.Fatal("partitions were never lost")
	}
	kafkatest.WaitFor(t, 20*time.Second, "the member to rejoin", func() bool { return assignments.Load() >= 2 })
	if n := commits.Load(); n != 0 {
		t.Fatalf("%d commits sent around lost partitions, want none", n)
	}
	if got := cluster.Committed(t, "g", topic); len(got) != 0 {
		t.Fatalf("committed %v for lost partitions", got)
	}
	// After the rejoin the records are read again from the last commit.
	kafkatest.WaitFor(t, 20*time.Second, "records re-read after rejoining", func() bool { return rec.total() >= 400 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := cluster.Committed(t, "g", topic); got[0]+got[1] != 200 {
		t.Fatalf("committed %v after a graceful stop, want the end of both partitions", got)
	}
}

func TestBackpressureBoundsBufferedRecords(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 4, topic)
	const produced = 20_000
	for range produced / 5000 {
		cluster.ProduceSeq(t, topic, 5000, 1000)
	}
	const maxInFlight, perPartition = 200, 40
	release := make(chan struct{})
	var handled atomic.Int64
	h := consumer.HandlerFunc(func(ctx context.Context, _ *kgo.Record) error {
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		handled.Add(1)
		return nil
	})
	c, err := consumer.New(h, testOpts(cluster, "g",
		consumer.MaxInFlight(maxInFlight),
		consumer.MaxInFlightPerPartition(perPartition),
	)...)
	if err != nil {
		t.Fatal(err)
	}
	stop := kafkatest.Run(t, c)
	// Polling stops at the total bound, or once every partition is paused;
	// partitions stuck at their own bound are paused either way.
	kafkatest.WaitFor(t, 20*time.Second, "fetching to stop behind the blocked handler", func() bool {
		s := c.Stats()
		return s.Paused > 0 && (s.Paused == 4 || s.InFlight == maxInFlight)
	})
	if s := c.Stats(); s.InFlight > maxInFlight || s.PeakInFlight > maxInFlight {
		t.Fatalf("buffered %d (peak %d) records with a limit of %d", s.InFlight, s.PeakInFlight, maxInFlight)
	}
	close(release)
	kafkatest.WaitFor(t, 60*time.Second, "the backlog handled", func() bool { return handled.Load() >= produced })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if s := c.Stats(); s.PeakInFlight > maxInFlight {
		t.Fatalf("peak of %d buffered records with a limit of %d", s.PeakInFlight, maxInFlight)
	}
}

// errObserver keeps the errors handlers returned.
type errObserver struct {
	mu   sync.Mutex
	errs []error
}

func (o *errObserver) Polled(kgo.FetchTopicPartition)                {}
func (o *errObserver) Committed(map[string]map[int32]int64, error)   {}
func (o *errObserver) Rebalanced(consumer.Event, map[string][]int32) {}
func (o *errObserver) Paused(string, int32, bool)                    {}
func (o *errObserver) Handled(_ *kgo.Record, _ time.Duration, err error) {
	if err != nil {
		o.mu.Lock()
		o.errs = append(o.errs, err)
		o.mu.Unlock()
	}
}

func TestHandlerPanicBecomesAnError(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic)
	cluster.ProduceSeq(t, topic, 10, 1)
	var panicked atomic.Bool
	rec := newRecorder()
	h := consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		if r.Offset == 5 && panicked.CompareAndSwap(false, true) {
			var seen []int64
			seen[r.Offset]++ // a real runtime panic: index out of range
		}
		return rec.Handle(ctx, r)
	})
	obs := &errObserver{}
	c, err := consumer.New(h, testOpts(cluster, "g", consumer.With(consumer.PluginFunc(func(a *consumer.Attachment) error { a.Observe(obs); return nil })))...)
	if err != nil {
		t.Fatal(err)
	}
	stop := kafkatest.Run(t, c)
	kafkatest.WaitFor(t, 20*time.Second, "every record handled", func() bool { return rec.total() >= 10 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.errs) != 1 {
		t.Fatalf("got %d handler errors, want the one panic", len(obs.errs))
	}
	var pe *consumer.PanicError
	if !errors.As(obs.errs[0], &pe) || len(pe.Stack) == 0 {
		t.Fatalf("handler error %v is not a *PanicError with a stack", obs.errs[0])
	}
	var rt interface{ RuntimeError() }
	if !errors.As(obs.errs[0], &rt) {
		t.Fatalf("the runtime error inside the panic is not reachable through errors.As: %v", obs.errs[0])
	}
	if got := rec.offsets()[0]; len(got) != 10 || got[5] != 5 {
		t.Fatalf("records after the panic were not handled in order: %v", got)
	}
}

// A member that loses a partition while its shutdown waits for the record in
// hand must not store that record when it returns: by then another member
// owns the partition, and a commit of the old offset, sent under the
// member's next generation, would move the group's position back.
func TestShutdownDoesNotCommitAPartitionLostWhileDraining(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic)
	cluster.ProduceSeq(t, topic, 10, 10)
	blocked, release := make(chan struct{}), make(chan struct{})
	a := consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
		if r.Offset == 5 {
			close(blocked)
			<-release // a hung call that ignores its context
		}
		return nil
	})
	lostA := make(chan struct{})
	var lostOnce sync.Once
	fast := consumer.ClientOpts(kgo.SessionTimeout(time.Second))
	ca, err := consumer.New(a, testOpts(cluster, "g", fast,
		consumer.CommitInterval(100*time.Millisecond),
		consumer.ShutdownTimeout(time.Minute),
		consumer.OnLost(func(context.Context, map[string][]int32) { lostOnce.Do(func() { close(lostA) }) }),
	)...)
	if err != nil {
		t.Fatal(err)
	}
	stopA := kafkatest.Run(t, ca)
	kafkatest.WaitClosed(t, 20*time.Second, "a to hold offset 5", blocked)
	kafkatest.WaitFor(t, 20*time.Second, "offset 5 committed", func() bool { return cluster.Committed(t, "g", topic)[0] == 5 })
	memberA := onlyMember(t, cluster, "g")

	b, stopB := joinSecond(t, cluster, fast)

	stopped := make(chan error, 1)
	go func() { stopped <- stopA() }()
	kafkatest.WaitFor(t, 20*time.Second, "a's shutdown to take its worker", func() bool { return ca.Stats().Partitions == 0 })

	// a's session expires: the broker sees none of its heartbeats and
	// none of its joins until b owns the partition and has committed
	// past offset 5.
	var cut atomic.Bool
	cut.Store(true)
	for _, key := range []kmsg.Key{kmsg.Heartbeat, kmsg.JoinGroup, kmsg.SyncGroup} {
		cluster.ControlKey(key.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
			cluster.KeepControl()
			if id := memberID(req); cut.Load() && (id == memberA || id == "") {
				return nil, errors.New("cut off"), true
			}
			return nil, nil, false
		})
	}
	kafkatest.WaitFor(t, 30*time.Second, "b to take the partition and commit its end", func() bool {
		return b.total() == 5 && cluster.Committed(t, "g", topic)[0] == 10
	})
	cut.Store(false)
	select {
	case <-lostA:
	case <-time.After(30 * time.Second):
		t.Fatal("a never learned that it lost the partition")
	}
	kafkatest.WaitFor(t, 30*time.Second, "a to rejoin", func() bool { return groupSize(t, cluster, "g") == 2 })

	close(release)
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Run a: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run a did not return within a minute of the held call")
	}
	if got := cluster.Committed(t, "g", topic)[0]; got != 10 {
		t.Fatalf("committed offset %d after a stopped, want 10: a committed a partition it had lost", got)
	}
	if err := stopB(); err != nil {
		t.Fatalf("Run b: %v", err)
	}
}

// memberID returns the member ID of a group request.
func memberID(req kmsg.Request) string {
	switch r := req.(type) {
	case *kmsg.HeartbeatRequest:
		return r.MemberID
	case *kmsg.JoinGroupRequest:
		return r.MemberID
	case *kmsg.SyncGroupRequest:
		return r.MemberID
	}
	return ""
}

func describe(t *testing.T, cluster *kafkatest.Cluster, group string) kadm.DescribedGroup {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	described, err := cluster.Admin.DescribeGroups(ctx, group)
	if err != nil {
		t.Fatalf("describing %s: %v", group, err)
	}
	return described[group]
}

func groupSize(t *testing.T, cluster *kafkatest.Cluster, group string) int {
	t.Helper()
	d := describe(t, cluster, group)
	if d.State != "Stable" {
		return 0
	}
	return len(d.Members)
}

func onlyMember(t *testing.T, cluster *kafkatest.Cluster, group string) string {
	t.Helper()
	var id string
	kafkatest.WaitFor(t, 20*time.Second, "one stable member", func() bool {
		if d := describe(t, cluster, group); d.State == "Stable" && len(d.Members) == 1 {
			id = d.Members[0].MemberID
			return true
		}
		return false
	})
	return id
}

// A member the group expired while it was cut off, and that comes back
// under a new member ID, must not go on from its old position: kgo keeps
// the old claim and position, so the Consumer reports the partitions lost
// and starts them again at the group's commits.
func TestRejoinAsNewMemberRestartsFromTheGroupsCommits(t *testing.T) {
	testRejoinAsNewMember(t, false)
}

// The same, with the other member still in the group: the group takes
// the partition from the member that rejoined, whose revoke must not
// commit the old membership's position over the other member's commits.
func TestRejoinAsNewMemberCommitsNothingOfTheOldMembership(t *testing.T) {
	testRejoinAsNewMember(t, true)
}

func testRejoinAsNewMember(t *testing.T, bStays bool) {
	cluster := kafkatest.NewCluster(t, 1, topic)
	cluster.ProduceSeq(t, topic, 50, 50)
	var mu sync.Mutex
	var handledA []int64
	blockedA, wakeA := make(chan struct{}), make(chan struct{})
	var blockOnce sync.Once
	a := consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		if r.Offset == 60 {
			blockOnce.Do(func() { close(blockedA) })
			<-ctx.Done() // held until the partition is taken from it
			return ctx.Err()
		}
		mu.Lock()
		handledA = append(handledA, r.Offset)
		mu.Unlock()
		return nil
	})
	lostA := make(chan struct{})
	var lostOnce sync.Once
	fast := consumer.ClientOpts(kgo.SessionTimeout(time.Second))
	// Heartbeats far apart, so that a's revoke ends and it rejoins before a
	// heartbeat tells it that its member ID is unknown (kgo handles that
	// path correctly); a session long enough that a late one of them does
	// not expire a before the held one.
	slowBeat := consumer.ClientOpts(kgo.HeartbeatInterval(700*time.Millisecond), kgo.SessionTimeout(3*time.Second))
	ca, err := consumer.New(a, testOpts(cluster, "g", slowBeat,
		consumer.CommitInterval(100*time.Millisecond),
		consumer.OnLost(func(context.Context, map[string][]int32) { lostOnce.Do(func() { close(lostA) }) }),
	)...)
	if err != nil {
		t.Fatal(err)
	}
	kafkatest.Run(t, ca)
	kafkatest.WaitFor(t, 20*time.Second, "a to commit the first records", func() bool { return cluster.Committed(t, "g", topic)[0] == 50 })
	memberA := onlyMember(t, cluster, "g")

	b, stopB := joinSecond(t, cluster, fast)

	// a's next heartbeat is held until the group expired a, and then
	// answered REBALANCE_IN_PROGRESS, as a broker fault can answer it:
	// a rejoins, learns that its member ID is unknown, and joins anew.
	var held atomic.Bool
	cluster.ControlKey(kmsg.Heartbeat.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		hb := req.(*kmsg.HeartbeatRequest)
		if hb.MemberID != memberA || !held.CompareAndSwap(false, true) {
			cluster.KeepControl()
			return nil, nil, false
		}
		cluster.SleepControl(func() { <-wakeA })
		resp := hb.ResponseKind().(*kmsg.HeartbeatResponse)
		resp.ErrorCode = kerr.RebalanceInProgress.Code
		return resp, nil, true
	})
	cluster.ProduceSeq(t, topic, 50, 50)
	kafkatest.WaitClosed(t, 30*time.Second, "a to hold offset 60", blockedA)
	kafkatest.WaitFor(t, 30*time.Second, "b to take the partition and commit its end", func() bool {
		return b.total() > 0 && cluster.Committed(t, "g", topic)[0] == 100
	})
	if !bStays {
		if err := stopB(); err != nil {
			t.Fatalf("Run b: %v", err)
		}
	}
	close(wakeA)
	select {
	case <-lostA:
	case <-time.After(30 * time.Second):
		t.Fatal("a was never told that it lost the partition")
	}
	if bStays {
		kafkatest.WaitFor(t, 30*time.Second, "both members in the group again", func() bool { return groupSize(t, cluster, "g") == 2 })
		if got := cluster.Committed(t, "g", topic)[0]; got != 100 {
			t.Fatalf("committed %d once a was back, want b's 100: a committed its old position", got)
		}
		cluster.ProduceSeq(t, topic, 1, 1)
		kafkatest.WaitFor(t, 30*time.Second, "the next record committed", func() bool { return cluster.Committed(t, "g", topic)[0] == 101 })
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(handledA[:60], span(0, 60)) || slices.ContainsFunc(handledA[60:], func(o int64) bool { return o < 100 }) {
			t.Fatalf("a handled %v, want 0 to 59 and then nothing below b's commit", handledA)
		}
		return
	}
	cluster.ProduceSeq(t, topic, 1, 1)
	kafkatest.WaitFor(t, 30*time.Second, "a to handle the next record", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handledA) > 0 && handledA[len(handledA)-1] == 100
	})
	mu.Lock()
	got := slices.Clone(handledA)
	mu.Unlock()
	if want := append(span(0, 60), 100); !slices.Equal(got, want) {
		t.Fatalf("a handled %v, want %v: after rejoining it must start at b's commit", got, want)
	}
	kafkatest.WaitFor(t, 20*time.Second, "a to commit", func() bool { return cluster.Committed(t, "g", topic)[0] == 101 })
}

func span(from, to int64) []int64 {
	var out []int64
	for o := from; o < to; o++ {
		out = append(out, o)
	}
	return out
}

// joinSecond starts a second member of group g and waits until the group
// is stable with both.
func joinSecond(t *testing.T, cluster *kafkatest.Cluster, opts ...consumer.Opt) (*member, func() error) {
	t.Helper()
	b := newMember()
	cb, err := consumer.New(b, testOpts(cluster, "g", append(opts, consumer.CommitInterval(100*time.Millisecond))...)...)
	if err != nil {
		t.Fatal(err)
	}
	stop := kafkatest.Run(t, cb)
	kafkatest.WaitFor(t, 20*time.Second, "the second member to join", func() bool { return groupSize(t, cluster, "g") == 2 })
	return b, stop
}
