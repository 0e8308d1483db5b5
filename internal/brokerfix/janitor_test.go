package brokerfix

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/internal/kafkatest"
)

// Timings of the kfake tests. kafkatest.NewCluster lowers kfake's group
// minimum session timeout to 100ms.
const (
	zombieSession = 300 * time.Millisecond // the dying candidates' session timeout
	liveSession   = 5 * time.Second        // the live member's; it outlasts every test
	liveHeartbeat = 50 * time.Millisecond
	interval      = 50 * time.Millisecond // the janitor's
	grace         = 100 * time.Millisecond

	// removalBound is the package doc's bound on when the janitor removes
	// a member whose join was answered but that never spoke again:
	// session + grace + interval after the answer.
	removalBound = zombieSession + grace + interval
	// slack covers what the bound leaves out (a DescribeGroups and a
	// LeaveGroup round trip, the live member's own requests, scheduling
	// under -race).
	slack = 250 * time.Millisecond

	candidates = 8 // per round: no zombie at all with probability 2^-8
	maxRounds  = 4 // so a test fails for want of a zombie with probability 2^-32
)

// Without the janitor, a new member that dies while parked in its join
// stays in the group for good once kfake's reply to it is lost: kfake
// arms a member's session timer only when a reply reaches its connection
// (reply, groups.go:1705-1716), and a new member has none before
// (addMemberAndRebalance stops its pending timer, groups.go:1617-1618).
// This is brokercheck's TestNewMemberParkedInJoinHasNoSessionTimer
// "closed" subtest, made to happen: its coin flip is repeated over many
// candidates. The live member keeps only its share of the partitions: the
// group is either Stable with the zombies holding theirs, or, once kfake
// expired the candidates whose reply got through, PreparingRebalance
// waiting for zombies that will never rejoin (until kfake's rebalance
// timeout, a minute here, restarted by every JoinGroup).
func TestZombieKeepsGroupStuckWithoutJanitor(t *testing.T) {
	t.Parallel()
	const group = "stuck"
	const hold = 1500 * time.Millisecond // 5 session timeouts
	ctx := testCtx(t)
	c := kafkatest.NewCluster(t, partitions, topic)
	l := newLiveMember(ctx, t, c, group, liveSession, liveHeartbeat)

	for round := 1; round <= maxRounds; round++ {
		answered, cands := formCandidates(ctx, t, c, l, candidates, zombieSession)
		// kfake expires a candidate whose reply got through one session
		// after the reply.
		time.Sleep(time.Until(answered.Add(zombieSession + 200*time.Millisecond)))
		_, ids := members(c, group)
		zombies := intersect(cands, ids)
		if len(zombies) == 0 {
			t.Logf("round %d: every reply got through and kfake expired all %d candidates; again", round, candidates)
			kafkatest.WaitFor(t, 10*time.Second, "live member alone with every partition", l.hasAll)
			continue
		}

		end := time.Now().Add(hold)
		for time.Now().Before(end) {
			state, ids := members(c, group)
			if still := intersect(zombies, ids); len(still) != len(zombies) {
				t.Fatalf("round %d: zombies %v left the group %v after the answer (state %s, members %v); kfake expires them now?",
					round, time.Since(answered), zombies, state, ids)
			}
			if ps, _, err := l.state(); len(ps) == partitions || err != nil {
				t.Fatalf("round %d: live member has %d partitions (err %v); the group recovered by itself", round, len(ps), err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		state, ids := members(c, group)
		ps, _, _ := l.state()
		t.Logf("round %d: %d of %d candidates are zombies; %v after the rebalance (%.0f session timeouts) the group is %s with %d members and the live member holds %d of %d partitions",
			round, len(zombies), candidates, time.Since(answered).Round(time.Millisecond), float64(time.Since(answered))/float64(zombieSession),
			state, len(ids), len(ps), partitions)
		return
	}
	t.Fatalf("no zombie formed in %d rounds of %d candidates", maxRounds, candidates)
}

// With the janitor, the same zombies are removed within the bound, and
// the live member gets every partition. The live member, which heartbeats,
// and the candidates kfake expires itself are never kicked.
func TestJanitorRemovesZombie(t *testing.T) {
	t.Parallel()
	const group = "recovers"
	ctx := testCtx(t)
	c := kafkatest.NewCluster(t, partitions, topic)
	kl := startJanitor(t, c.Cluster, interval, grace)
	l := newLiveMember(ctx, t, c, group, liveSession, liveHeartbeat)

	for round := 1; round <= maxRounds; round++ {
		before := len(kl.all())
		answered, cands := formCandidates(ctx, t, c, l, candidates, zombieSession)
		kafkatest.WaitFor(t, 10*time.Second, "live member alone with every partition", func() bool {
			_, _, err := l.state()
			return l.hasAll() || err != nil
		})
		_, allAt, err := l.state()
		if err != nil {
			t.Fatalf("live member: %v", err)
		}
		recovered := allAt.Sub(answered)

		var removed []Kick
		for _, k := range kl.all()[before:] {
			if k.MemberID == l.id {
				t.Fatalf("the janitor kicked the live member: %+v", k)
			}
			if !slices.Contains(cands, k.MemberID) {
				t.Fatalf("the janitor kicked a member of no candidate: %+v", k)
			}
			if k.Err == nil {
				removed = append(removed, k)
			}
		}
		if len(removed) == 0 {
			t.Logf("round %d: every reply got through and kfake expired all %d candidates itself (live member recovered in %v); again",
				round, candidates, recovered.Round(time.Millisecond))
			continue
		}

		for _, k := range removed {
			decided := k.At.Sub(answered)
			t.Logf("round %d: zombie %s removed: decided %v after the rebalance (silent %v), session timeout %v",
				round, k.MemberID, decided.Round(time.Millisecond), k.At.Sub(k.LastAlive).Round(time.Millisecond), k.Session)
			// Never before the session timeout, Kafka's deadline (less
			// the moment between kfake's answer and the live member
			// reading it).
			if decided < zombieSession-25*time.Millisecond {
				t.Errorf("zombie %s removed %v after the rebalance, before its session timeout %v", k.MemberID, decided, zombieSession)
			}
			if decided > removalBound+slack {
				t.Errorf("zombie %s removed %v after the rebalance, beyond the bound %v (+%v slack)", k.MemberID, decided, removalBound, slack)
			}
		}
		t.Logf("round %d: %d of %d candidates were zombies; the live member had all %d partitions %v after the rebalance (bound %v + heartbeat %v + slack %v)",
			round, len(removed), candidates, partitions, recovered.Round(time.Millisecond), removalBound, liveHeartbeat, slack)
		if recovered > removalBound+liveHeartbeat+slack {
			t.Errorf("live member recovered %v after the rebalance, beyond %v", recovered, removalBound+liveHeartbeat+slack)
		}
		if _, ids := members(c, group); len(ids) != 1 || ids[0] != l.id {
			t.Errorf("after recovery the group has %v, want the live member only", ids)
		}
		return
	}
	t.Fatalf("no zombie formed in %d rounds of %d candidates", maxRounds, candidates)
}

// A new member parked in its join is alive for as long as the rebalance
// lasts, however long that is past its session timeout (Kafka: a member
// awaiting join satisfies its heartbeats), and once answered it is alive as
// long as it heartbeats. kfake has no timer on it while parked (brokercheck
// TestNewMemberParkedInJoinHasNoSessionTimer "open"); the janitor must not
// make one up.
func TestParkedNewMemberIsNotKicked(t *testing.T) {
	t.Parallel()
	const group = "parked"
	ctx := testCtx(t)
	c := kafkatest.NewCluster(t, partitions, topic)
	kl := startJanitor(t, c.Cluster, interval, grace)

	// b alone is Stable. Its long session keeps it out of the way.
	b := &rawMember{name: "b", session: liveSession, rebalance: time.Minute, cl: newClient(t, c)}
	b.newMemberID(ctx, t, group)
	r := <-b.joinAsync(ctx, group)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if _, err := b.sync(ctx, group, r.resp.Generation, roundRobin(r.resp.Members)); err != nil {
		t.Fatal(err)
	}

	// n parks its join and waits, connection open, for four session
	// timeouts while b does not rejoin.
	n := &rawMember{name: "n", session: zombieSession, rebalance: time.Minute, cl: newClient(t, c)}
	n.newMemberID(ctx, t, group)
	nj := n.joinAsync(ctx, group)
	kafkatest.WaitFor(t, 5*time.Second, "n parked in join", func() bool {
		state, ids := members(c, group)
		return state == "PreparingRebalance" && slices.Contains(ids, n.id)
	})
	end := time.Now().Add(4 * zombieSession)
	for time.Now().Before(end) {
		if state, ids := members(c, group); state != "PreparingRebalance" || !slices.Contains(ids, n.id) {
			t.Fatalf("while n is parked: group %s with %v", state, ids)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// b rejoins; the rebalance completes and n is answered. n syncs and
	// heartbeats for four more session timeouts.
	br := <-b.joinAsync(ctx, group)
	if br.err != nil {
		t.Fatal(br.err)
	}
	nr := <-nj
	if nr.err != nil {
		t.Fatalf("n's join: %v", nr.err)
	}
	gen := br.resp.Generation
	nsync := make(chan error, 1)
	go func() { _, err := n.sync(ctx, group, gen, nil); nsync <- err }()
	if _, err := b.sync(ctx, group, gen, roundRobin(br.resp.Members)); err != nil {
		t.Fatal(err)
	}
	if err := <-nsync; err != nil {
		t.Fatalf("n's sync: %v", err)
	}
	end = time.Now().Add(4 * zombieSession)
	for time.Now().Before(end) {
		if err := n.heartbeat(ctx, group, gen); err != nil {
			t.Fatalf("n's heartbeat: %v", err)
		}
		time.Sleep(zombieSession / 3)
	}
	if state, ids := members(c, group); state != "Stable" || len(ids) != 2 {
		t.Fatalf("at the end: group %s with %v, want Stable with b and n", state, ids)
	}
	if ks := kl.all(); len(ks) > 0 {
		t.Fatalf("the janitor kicked %+v", ks)
	}
}

// kgo group members going through ordinary rebalances (a second member
// joins, one leaves, another joins) are never kicked.
func TestKgoGroupIsLeftAlone(t *testing.T) {
	t.Parallel()
	const group = "kgo"
	c := kafkatest.NewCluster(t, partitions, topic)
	kl := startJanitor(t, c.Cluster, interval, grace)
	consumer := func() *closer {
		cl, err := kgo.NewClient(
			kgo.SeedBrokers(c.Addrs...),
			kgo.DisableClientMetrics(),
			kgo.ConsumerGroup(group),
			kgo.ConsumeTopics(topic),
			kgo.SessionTimeout(zombieSession),
			kgo.HeartbeatInterval(liveHeartbeat),
			kgo.RebalanceTimeout(2*time.Second),
		)
		if err != nil {
			t.Fatal(err)
		}
		cc := &closer{Client: cl}
		t.Cleanup(cc.close)
		return cc
	}
	stable := func(n int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := c.WaitGroupStable(ctx, group, n); err != nil {
			t.Fatalf("group not stable with %d members: %v", n, err)
		}
	}

	a := consumer()
	stable(1)
	b := consumer()
	stable(2)
	time.Sleep(3 * zombieSession)
	b.close()
	stable(1)
	_ = consumer()
	stable(2)
	time.Sleep(3 * zombieSession)
	stable(2)
	if ks := kl.all(); len(ks) > 0 {
		t.Fatalf("the janitor kicked %+v", ks)
	}
	a.close()
}

// stop returns promptly even when the cluster was closed first, while the
// janitor has a group to look at (a look at a closed cluster must not
// hang, as Cluster.GroupInfo would).
func TestStopAfterClusterClose(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	c := kafkatest.NewCluster(t, partitions, topic)
	stop, err := Start(context.Background(), c.Cluster, WithInterval(interval), WithGrace(grace))
	if err != nil {
		t.Fatal(err)
	}
	m := &rawMember{name: "m", session: zombieSession, rebalance: time.Minute, cl: newClient(t, c)}
	m.newMemberID(ctx, t, "g")
	if r := <-m.joinAsync(ctx, "g"); r.err != nil {
		t.Fatal(r.err)
	}
	m.cl.close()
	c.Close()
	time.Sleep(3 * interval) // a few looks at the closed cluster
	start := time.Now()
	stop()
	stop() // idempotent
	if took := time.Since(start); took > time.Second {
		t.Fatalf("stop took %v after the cluster closed", took)
	}
}
