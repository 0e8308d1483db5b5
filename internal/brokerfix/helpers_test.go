package brokerfix

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kconsumer/kconsumer/internal/kafkatest"
)

const (
	topic      = "brokerfix"
	partitions = 16
)

// closer closes a client once, whether the test or its cleanup gets there
// first.
type closer struct {
	*kgo.Client
	once sync.Once
}

func (c *closer) close() { c.once.Do(c.Client.Close) }

// newClient returns a client of c closed when the test ends. Every raw
// member gets its own: kfake serves one request per connection at a time,
// so one member's parked JoinGroup would hold up another's.
func newClient(t *testing.T, c *kafkatest.Cluster) *closer {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Addrs...), kgo.DisableClientMetrics())
	if err != nil {
		t.Fatalf("creating client: %v", err)
	}
	cc := &closer{Client: cl}
	t.Cleanup(cc.close)
	return cc
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// tlog is a slog handler's writer that logs through t.
type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// kickLog collects the janitor's kicks.
type kickLog struct {
	mu    sync.Mutex
	kicks []Kick
	heard chan struct{} // signalled on every kick
}

func (l *kickLog) add(k Kick) {
	l.mu.Lock()
	l.kicks = append(l.kicks, k)
	l.mu.Unlock()
	select {
	case l.heard <- struct{}{}:
	default:
	}
}

func (l *kickLog) all() []Kick {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.kicks)
}

// startJanitor starts a janitor with the test timings, stopped before the
// cluster closes (cleanups run last in, first out).
func startJanitor(t *testing.T, c *kfake.Cluster, interval, grace time.Duration) *kickLog {
	t.Helper()
	kl := &kickLog{heard: make(chan struct{}, 1)}
	stop, err := Start(context.Background(), c,
		WithInterval(interval),
		WithGrace(grace),
		WithLogger(slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		WithOnKick(kl.add),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return kl
}

// rawMember is a classic group member driven with raw requests, so the
// test decides exactly what it sends and when it goes silent.
type rawMember struct {
	name      string
	id        string
	session   time.Duration
	rebalance time.Duration
	cl        *closer
}

func (m *rawMember) joinReq(group string) *kmsg.JoinGroupRequest {
	req := kmsg.NewPtrJoinGroupRequest()
	req.Group = group
	req.MemberID = m.id
	req.SessionTimeoutMillis = int32(m.session.Milliseconds())
	req.RebalanceTimeoutMillis = int32(m.rebalance.Milliseconds())
	req.ProtocolType = "consumer"
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Topics = []string{topic}
	proto := kmsg.NewJoinGroupRequestProtocol()
	proto.Name = "range"
	proto.Metadata = meta.AppendTo(nil)
	req.Protocols = append(req.Protocols, proto)
	return req
}

// newMemberID gets m a member ID the KIP-394 way: the first JoinGroup is
// answered with MEMBER_ID_REQUIRED and the ID to join with.
func (m *rawMember) newMemberID(ctx context.Context, t *testing.T, group string) {
	t.Helper()
	resp, err := m.joinReq(group).RequestWith(ctx, m.cl.Client)
	if err != nil {
		t.Fatalf("%s: first join: %v", m.name, err)
	}
	if resp.ErrorCode != kerr.MemberIDRequired.Code {
		t.Fatalf("%s: first join: %v, want MEMBER_ID_REQUIRED", m.name, kerr.ErrorForCode(resp.ErrorCode))
	}
	m.id = resp.MemberID
}

type joinResult struct {
	resp *kmsg.JoinGroupResponse
	err  error
	at   time.Time
}

// joinAsync sends m's JoinGroup; kfake parks it until the rebalance
// completes. The result arrives on the channel.
func (m *rawMember) joinAsync(ctx context.Context, group string) <-chan joinResult {
	req := m.joinReq(group)
	ch := make(chan joinResult, 1)
	go func() {
		resp, err := req.RequestWith(ctx, m.cl.Client)
		if err == nil && resp.ErrorCode != 0 {
			err = kerr.ErrorForCode(resp.ErrorCode)
		}
		ch <- joinResult{resp, err, time.Now()}
	}()
	return ch
}

// sync sends m's SyncGroup; as leader, assign gives each member its
// partitions of topic. It returns m's own partitions.
func (m *rawMember) sync(ctx context.Context, group string, gen int32, assign map[string][]int32) ([]int32, error) {
	req := kmsg.NewPtrSyncGroupRequest()
	req.Group = group
	req.Generation = gen
	req.MemberID = m.id
	req.ProtocolType = kmsg.StringPtr("consumer")
	req.Protocol = kmsg.StringPtr("range")
	for id, ps := range assign {
		ca := kmsg.NewConsumerMemberAssignment()
		if len(ps) > 0 {
			at := kmsg.NewConsumerMemberAssignmentTopic()
			at.Topic, at.Partitions = topic, ps
			ca.Topics = append(ca.Topics, at)
		}
		a := kmsg.NewSyncGroupRequestGroupAssignment()
		a.MemberID = id
		a.MemberAssignment = ca.AppendTo(nil)
		req.GroupAssignment = append(req.GroupAssignment, a)
	}
	resp, err := req.RequestWith(ctx, m.cl.Client)
	if err != nil {
		return nil, err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, err
	}
	var ca kmsg.ConsumerMemberAssignment
	if err := ca.ReadFrom(resp.MemberAssignment); err != nil {
		return nil, err
	}
	var mine []int32
	for _, at := range ca.Topics {
		mine = append(mine, at.Partitions...)
	}
	slices.Sort(mine)
	return mine, nil
}

func (m *rawMember) heartbeat(ctx context.Context, group string, gen int32) error {
	req := kmsg.NewPtrHeartbeatRequest()
	req.Group = group
	req.Generation = gen
	req.MemberID = m.id
	resp, err := req.RequestWith(ctx, m.cl.Client)
	if err != nil {
		return err
	}
	return kerr.ErrorForCode(resp.ErrorCode)
}

// roundRobin spreads topic's partitions over the members, sorted by ID.
func roundRobin(members []kmsg.JoinGroupResponseMember) map[string][]int32 {
	ids := make([]string, 0, len(members))
	for _, m := range members {
		ids = append(ids, m.MemberID)
	}
	slices.Sort(ids)
	out := make(map[string][]int32, len(ids))
	for p := range int32(partitions) {
		id := ids[int(p)%len(ids)]
		out[id] = append(out[id], p)
	}
	return out
}

// liveMember is a raw member that stays alive: it heartbeats, and rejoins
// and syncs (as leader, assigning round-robin) whenever the group
// rebalances. The test can pause it to set up a rebalance precisely.
type liveMember struct {
	rawMember
	group string
	hb    time.Duration

	opMu   sync.Mutex // serializes the member's group requests
	paused bool       // under opMu

	mu         sync.Mutex // guards the fields below
	gen        int32
	assigned   []int32
	assignedAt time.Time
	failed     error
}

func newLiveMember(ctx context.Context, t *testing.T, c *kafkatest.Cluster, group string, session, hb time.Duration) *liveMember {
	t.Helper()
	l := &liveMember{
		rawMember: rawMember{name: "live", session: session, rebalance: time.Minute, cl: newClient(t, c)},
		group:     group,
		hb:        hb,
	}
	l.newMemberID(ctx, t, group)
	if _, err := l.rebalanceLocked(ctx); err != nil {
		t.Fatalf("live member's first join: %v", err)
	}
	go l.loop(ctx)
	return l
}

// rebalanceLocked joins and syncs; it returns when the join was answered.
// The caller holds opMu or is the only user.
func (l *liveMember) rebalanceLocked(ctx context.Context) (time.Time, error) {
	r := <-l.joinAsync(ctx, l.group)
	if r.err != nil {
		return time.Time{}, r.err
	}
	l.mu.Lock()
	l.gen = r.resp.Generation // heartbeats of this generation, even if the sync fails
	l.mu.Unlock()
	var assign map[string][]int32
	if r.resp.LeaderID == l.id {
		assign = roundRobin(r.resp.Members)
	}
	mine, err := l.sync(ctx, l.group, r.resp.Generation, assign)
	if err != nil {
		return r.at, err
	}
	l.mu.Lock()
	l.assigned, l.assignedAt = mine, time.Now()
	l.mu.Unlock()
	return r.at, nil
}

func (l *liveMember) loop(ctx context.Context) {
	tick := time.NewTicker(l.hb)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		l.opMu.Lock()
		err := l.tick(ctx)
		l.opMu.Unlock()
		if err != nil && ctx.Err() == nil {
			l.mu.Lock()
			l.failed = err
			l.mu.Unlock()
			return
		}
	}
}

func (l *liveMember) tick(ctx context.Context) error {
	if l.paused {
		return nil
	}
	l.mu.Lock()
	gen := l.gen
	l.mu.Unlock()
	err := l.heartbeat(ctx, l.group, gen)
	if !errors.Is(err, kerr.RebalanceInProgress) && !errors.Is(err, kerr.IllegalGeneration) {
		return err
	}
	_, err = l.rebalanceLocked(ctx)
	if errors.Is(err, kerr.RebalanceInProgress) || errors.Is(err, kerr.IllegalGeneration) {
		return nil // a newer rebalance began; the next heartbeat says so
	}
	return err
}

// state returns the member's partitions, when it got them, and the error
// that stopped it, if any.
func (l *liveMember) state() ([]int32, time.Time, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.assigned), l.assignedAt, l.failed
}

func (l *liveMember) hasAll() bool {
	ps, _, _ := l.state()
	return len(ps) == partitions
}

// candidates are new members that die while parked in their join, the
// way a consumer SIGKILLed during a rebalance does. formCandidates parks
// their second JoinGroup (the one with the ID from MEMBER_ID_REQUIRED),
// closes their connections, and then lets the live member complete the
// rebalance. It returns when the live member's join was answered, which is
// a moment after kfake completed the rebalance and answered the
// candidates too.
//
// kfake answers each candidate into a connection that is gone, and its
// reply selects between a buffered response channel and the connection's
// done channel (client_conn.go:74-82, cluster.go:431): each candidate is a
// coin flip. If the reply "succeeds", kfake arms the candidate's session
// timer and expires it; if not, the candidate stays a member with no timer
// at all, a zombie. k candidates give at least one zombie with probability
// 1 - 2^-k; the tests repeat the round if none formed.
func formCandidates(ctx context.Context, t *testing.T, c *kafkatest.Cluster, l *liveMember, k int, session time.Duration) (answered time.Time, ids []string) {
	t.Helper()
	l.opMu.Lock()
	defer l.opMu.Unlock()

	var cands []*rawMember
	for i := range k {
		m := &rawMember{name: "candidate", session: session, rebalance: time.Minute, cl: newClient(t, c)}
		m.name += string(rune('a' + i))
		m.newMemberID(ctx, t, l.group)
		m.joinAsync(ctx, l.group)
		cands = append(cands, m)
		ids = append(ids, m.id)
	}
	kafkatest.WaitFor(t, 5*time.Second, "candidates parked in join", func() bool {
		gi := c.GroupInfo(l.group)
		if gi == nil || gi.State != "PreparingRebalance" {
			return false
		}
		n := 0
		for _, m := range gi.Members {
			if slices.Contains(ids, m.MemberID) {
				n++
			}
		}
		return n == k
	})
	var wg sync.WaitGroup
	for _, m := range cands {
		wg.Go(m.cl.close)
	}
	wg.Wait()
	// Let kfake's connection readers see the EOFs. Should one not have
	// yet, that candidate's reply simply succeeds: one zombie fewer.
	time.Sleep(50 * time.Millisecond)

	answered, err := l.rebalanceLocked(ctx)
	if err != nil {
		t.Fatalf("live member completing the rebalance: %v", err)
	}
	return answered, ids
}

// members returns the IDs kfake has in group, with its state.
func members(c *kafkatest.Cluster, group string) (string, []string) {
	gi := c.GroupInfo(group)
	if gi == nil {
		return "", nil
	}
	var ids []string
	for _, m := range gi.Members {
		ids = append(ids, m.MemberID)
	}
	return gi.State, ids
}

func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
