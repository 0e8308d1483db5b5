package brokercheck

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const topic = "brokercheck"

// newCluster starts a one-broker kfake cluster with topic seeded. The group
// minimum session timeout is lowered from kfake's 6s default so that the
// tests can use session timeouts of a few hundred milliseconds; JoinGroup
// rejects anything below it with INVALID_SESSION_TIMEOUT (groups.go:826).
func newCluster(t *testing.T) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.SeedTopics(2, topic),
		kfake.GroupMinSessionTimeout(50*time.Millisecond),
	)
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// closer closes a client once, whether the test or its cleanup gets there
// first.
type closer struct {
	*kgo.Client
	once sync.Once
}

func (c *closer) close() { c.once.Do(c.Client.Close) }

// newClient returns a client of c that is closed when the test ends. Every
// raw group member gets its own client: franz-go sends JoinGroup and
// SyncGroup on a dedicated connection per broker, and kfake serves one
// request per connection at a time, so one member's parked JoinGroup would
// otherwise hold up another's.
func newClient(t *testing.T, c *kfake.Cluster, opts ...kgo.Opt) *closer {
	t.Helper()
	opts = append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...), kgo.DisableClientMetrics()}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatalf("creating client: %v", err)
	}
	cc := &closer{Client: cl}
	t.Cleanup(cc.close)
	return cc
}

// testCtx is a context for the test's requests, canceled when the test ends
// so that no parked request outlives it.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// member is a classic group member driven with raw requests, so the test
// decides exactly which requests it sends and when it goes silent.
type member struct {
	name      string
	id        string
	session   time.Duration
	rebalance time.Duration
}

func (m *member) joinReq(group string) *kmsg.JoinGroupRequest {
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

// newMemberID gets m a member ID the KIP-394 way: a JoinGroup without one is
// answered at once with MEMBER_ID_REQUIRED and the ID to use. The member is
// then pending (groups.go:865-868) until it joins with that ID.
func (m *member) newMemberID(ctx context.Context, t *testing.T, cl *closer, group string) {
	t.Helper()
	resp, err := m.joinReq(group).RequestWith(ctx, cl.Client)
	if err != nil {
		t.Fatalf("%s: first join: %v", m.name, err)
	}
	if resp.ErrorCode != kerr.MemberIDRequired.Code {
		t.Fatalf("%s: first join: got %v, want MEMBER_ID_REQUIRED", m.name, kerr.ErrorForCode(resp.ErrorCode))
	}
	m.id = resp.MemberID
}

type joinResult struct {
	resp *kmsg.JoinGroupResponse
	err  error
	at   time.Time // when the answer arrived
}

// asyncJoin is a JoinGroup in flight. kfake parks a JoinGroup until the
// rebalance completes, so the tests send it from a goroutine.
type asyncJoin struct {
	done chan struct{}
	r    joinResult
}

// pending reports whether the JoinGroup is still unanswered.
func (j *asyncJoin) pending() bool {
	select {
	case <-j.done:
		return false
	default:
		return true
	}
}

// joinAsync sends m's JoinGroup with its current member ID.
func (m *member) joinAsync(ctx context.Context, cl *closer, group string) *asyncJoin {
	req := m.joinReq(group)
	j := &asyncJoin{done: make(chan struct{})}
	go func() {
		defer close(j.done)
		resp, err := req.RequestWith(ctx, cl.Client)
		j.r = joinResult{resp, err, time.Now()}
	}()
	return j
}

// await waits for a JoinGroup answer and fails the test on an error.
func await(t *testing.T, what string, j *asyncJoin, within time.Duration) joinResult {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	select {
	case <-j.done:
	case <-timer.C:
		t.Fatalf("%s: no answer within %v", what, within)
	}
	if j.r.err != nil {
		t.Fatalf("%s: %v", what, j.r.err)
	}
	if j.r.resp.ErrorCode != 0 {
		t.Fatalf("%s: %v", what, kerr.ErrorForCode(j.r.resp.ErrorCode))
	}
	return j.r
}

// syncErr sends m's SyncGroup; as leader, assign lists the members to hand
// (empty) assignments to. It may run off the test goroutine.
func (m *member) syncErr(ctx context.Context, cl *closer, group string, gen int32, assign []string) error {
	req := kmsg.NewPtrSyncGroupRequest()
	req.Group = group
	req.Generation = gen
	req.MemberID = m.id
	req.ProtocolType = kmsg.StringPtr("consumer")
	req.Protocol = kmsg.StringPtr("range")
	for _, id := range assign {
		a := kmsg.NewSyncGroupRequestGroupAssignment()
		a.MemberID = id
		req.GroupAssignment = append(req.GroupAssignment, a)
	}
	resp, err := req.RequestWith(ctx, cl.Client)
	if err != nil {
		return err
	}
	return kerr.ErrorForCode(resp.ErrorCode)
}

func (m *member) sync(ctx context.Context, t *testing.T, cl *closer, group string, gen int32, assign []string) {
	t.Helper()
	if err := m.syncErr(ctx, cl, group, gen, assign); err != nil {
		t.Fatalf("%s: sync: %v", m.name, err)
	}
}

func (m *member) heartbeat(ctx context.Context, t *testing.T, cl *closer, group string, gen int32) error {
	t.Helper()
	req := kmsg.NewPtrHeartbeatRequest()
	req.Group = group
	req.Generation = gen
	req.MemberID = m.id
	resp, err := req.RequestWith(ctx, cl.Client)
	if err != nil {
		t.Fatalf("%s: heartbeat: %v", m.name, err)
	}
	return kerr.ErrorForCode(resp.ErrorCode)
}

// groupView is what DescribeGroups says about a group. kfake answers it on
// the cluster loop, so it is a consistent snapshot.
type groupView struct {
	state   string
	members []string
}

func (v groupView) has(id string) bool { return slices.Contains(v.members, id) }

func describe(ctx context.Context, t *testing.T, cl *closer, group string) groupView {
	t.Helper()
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{group}
	resp, err := req.RequestWith(ctx, cl.Client)
	if err != nil {
		t.Fatalf("describe %s: %v", group, err)
	}
	if len(resp.Groups) != 1 {
		t.Fatalf("describe %s: %d groups in answer", group, len(resp.Groups))
	}
	g := resp.Groups[0]
	v := groupView{state: g.State}
	for _, m := range g.Members {
		v.members = append(v.members, m.MemberID)
	}
	slices.Sort(v.members)
	return v
}

// waitFor polls describe until cond holds and returns when it first did. It
// fails the test at the deadline.
func waitFor(ctx context.Context, t *testing.T, cl *closer, group, what string, within time.Duration, cond func(groupView) bool) (groupView, time.Time) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		v := describe(ctx, t, cl, group)
		if cond(v) {
			return v, time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; group is %s with %v", what, within, v.state, v.members)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, ctx.Err())
		}
	}
}

// holdFor asserts that cond holds on every poll for d: it is how the tests
// show a timer does NOT fire. It waits out d by polling, never by sleeping.
func holdFor(ctx context.Context, t *testing.T, cl *closer, group, what string, d time.Duration, cond func(groupView) bool) {
	t.Helper()
	end := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(end) {
		if v := describe(ctx, t, cl, group); !cond(v) {
			t.Fatalf("%s: broke after %v of %v; group is %s with %v", what, d-time.Until(end), d, v.state, v.members)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, ctx.Err())
		}
	}
}

// formGroup brings group to Stable with a and b as members, a leading, and
// returns the generation. kfake has no initial rebalance delay, so a's join
// completes at once; b's join then parks until a rejoins.
func formGroup(ctx context.Context, t *testing.T, c *kfake.Cluster, group string, a, b *member) (gen int32, acl, bcl *closer) {
	t.Helper()
	acl, bcl = newClient(t, c), newClient(t, c)

	a.newMemberID(ctx, t, acl, group)
	r := await(t, a.name+" joins", a.joinAsync(ctx, acl, group), 5*time.Second)
	a.sync(ctx, t, acl, group, r.resp.Generation, []string{a.id})

	b.newMemberID(ctx, t, bcl, group)
	bj := b.joinAsync(ctx, bcl, group)
	waitFor(ctx, t, acl, group, b.name+" parks in join", 5*time.Second, func(v groupView) bool {
		return v.state == "PreparingRebalance" && v.has(b.id)
	})
	ar := await(t, a.name+" rejoins", a.joinAsync(ctx, acl, group), 5*time.Second)
	br := await(t, b.name+" join completes", bj, 5*time.Second)
	if ar.resp.LeaderID != a.id || br.resp.Generation != ar.resp.Generation {
		t.Fatalf("unexpected join answers: leader %s (want %s), generations %d and %d", ar.resp.LeaderID, a.id, ar.resp.Generation, br.resp.Generation)
	}
	gen = ar.resp.Generation

	// b's SyncGroup parks until the leader's arrives.
	bsync := make(chan error, 1)
	go func() { bsync <- b.syncErr(ctx, bcl, group, gen, nil) }()
	a.sync(ctx, t, acl, group, gen, []string{a.id, b.id})
	if err := <-bsync; err != nil {
		t.Fatalf("%s: sync: %v", b.name, err)
	}
	waitFor(ctx, t, acl, group, "group is stable", 5*time.Second, func(v groupView) bool {
		return v.state == "Stable" && len(v.members) == 2
	})
	return gen, acl, bcl
}
