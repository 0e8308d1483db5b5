package brokercheck

import (
	"testing"
	"time"
)

// These tests pin the timers kfake runs for a classic (JoinGroup/SyncGroup)
// group whose rebalance waits on a member. Line references are to kfake
// v0.0.0-20260918054303-01f206a7e32c, groups.go. Each test also says what
// Apache Kafka does, so a failure after an upgrade tells you whether kfake
// moved toward Kafka or away from it.

// An existing member's session timer keeps running while its JoinGroup is
// parked: nothing in handleJoin/updateMemberAndRebalance (groups.go:1597)
// touches m.t, which was last armed by its heartbeat or by the JoinGroup or
// SyncGroup answer it got (reply, groups.go:1705). When it fires, the member
// is removed (updateHeartbeat, groups.go:1504) and its parked JoinGroup is
// dropped without an answer (removeMember, groups.go:1561).
//
// Kafka does the opposite: a member awaiting join "automatically satisfies
// expected heartbeats" (MemberMetadata.hasSatisfiedHeartbeat,
// ClassicGroupMember.hasSatisfiedHeartbeat), so only the rebalance deadline
// can drop it, and a parked JoinGroup is always answered.
func TestKnownMemberParkedInJoinExpiresAtSessionTimeout(t *testing.T) {
	t.Parallel()
	const group = "known-member-parked"
	const session = 300 * time.Millisecond
	const rebalance = 10 * time.Second // far beyond the test: any removal seen is not the rebalance timer
	ctx := testCtx(t)
	c := newCluster(t)

	a := &member{name: "a", session: session, rebalance: rebalance}
	b := &member{name: "b", session: 10 * time.Second, rebalance: rebalance}
	gen, acl, bcl := formGroup(ctx, t, c, group, a, b)

	// a's last sign of life: the heartbeat re-arms its session timer,
	// no earlier than hb.
	hb := time.Now()
	if err := a.heartbeat(ctx, t, acl, group, gen); err != nil {
		t.Fatalf("a: heartbeat: %v", err)
	}
	// a rejoins and goes silent. b does not rejoin, so a's JoinGroup
	// stays parked and the group stays in PreparingRebalance.
	aj := a.joinAsync(ctx, acl, group)
	waitFor(ctx, t, bcl, group, "rebalance starts", 5*time.Second, func(v groupView) bool {
		return v.state == "PreparingRebalance"
	})

	_, removed := waitFor(ctx, t, bcl, group, "a is removed while parked in join", 5*time.Second, func(v groupView) bool {
		return !v.has(a.id)
	})
	took := removed.Sub(hb)
	t.Logf("a removed %v after its last heartbeat (session timeout %v, rebalance timeout %v)", took, session, rebalance)
	if took < session {
		t.Fatalf("a removed after %v, before its session timeout %v", took, session)
	}
	if v := describe(ctx, t, bcl, group); v.state != "PreparingRebalance" || len(v.members) != 1 || !v.has(b.id) {
		t.Fatalf("after a's removal: group %s with %v, want PreparingRebalance with b only", v.state, v.members)
	}
	if !aj.pending() {
		t.Fatalf("a's parked JoinGroup was answered (%+v); kfake used to drop it silently", aj.r)
	}

	// b's join is now the only one wanted: it completes at once, without
	// a, and a's JoinGroup is still never answered.
	br := await(t, "b rejoins", b.joinAsync(ctx, bcl, group), 5*time.Second)
	if br.resp.Generation != gen+1 || br.resp.LeaderID != b.id || len(br.resp.Members) != 1 {
		t.Fatalf("b's join: generation %d leader %s with %d members, want generation %d led by b alone",
			br.resp.Generation, br.resp.LeaderID, len(br.resp.Members), gen+1)
	}
	if !aj.pending() {
		t.Fatalf("a's parked JoinGroup was answered after the rebalance: %+v", aj.r)
	}
}

// The rebalance deadline is re-armed, at the full rebalance timeout, by every
// call to rebalance() (groups.go:1333-1353), and every JoinGroup of a known
// member during PreparingRebalance makes one (updateMemberAndRebalance,
// groups.go:1613; handleJoin, groups.go:898-899). A member that keeps
// re-sending JoinGroup more often than the rebalance timeout therefore keeps
// the group in PreparingRebalance for as long as it does so, and the member
// that never rejoined is removed only once the re-sends stop
// (completeRebalance, groups.go:1369-1372).
//
// Kafka arms the join deadline once, when the group enters
// PreparingRebalance (GroupCoordinator.prepareRebalance /
// GroupMetadataManager.prepareRebalance); a JoinGroup during
// PreparingRebalance only re-checks whether everyone has joined. There, this
// group completes one rebalance timeout after a's first join.
func TestRebalanceTimerRestartsOnEveryJoin(t *testing.T) {
	t.Parallel()
	const group = "rebalance-timer-restarts"
	const rebalance = 600 * time.Millisecond
	const resend = 100 * time.Millisecond // well inside the rebalance timeout, even under -race
	const resendFor = 1500 * time.Millisecond
	ctx := testCtx(t)
	c := newCluster(t)

	// b is the dead member: it never speaks again. Its session timeout
	// outlasts the test, so only the rebalance deadline can remove it.
	// a, the leader, is the one that keeps rejoining: a follower whose
	// metadata is unchanged would just get the Stable group's answer back
	// (handleJoin, groups.go:905-909) and start no rebalance.
	a := &member{name: "a", session: 20 * time.Second, rebalance: rebalance}
	b := &member{name: "b", session: 20 * time.Second, rebalance: rebalance}
	gen, acl, _ := formGroup(ctx, t, c, group, a, b)
	observer := newClient(t, c)

	// a re-sends its JoinGroup every resend, each from a new connection
	// the way a client does after its request times out. The previous
	// one is abandoned: kfake replaces m.waitingReply and never answers it.
	start := time.Now()
	var last time.Time
	var lastJoin *asyncJoin
	prev := acl
	tick := time.NewTicker(resend)
	defer tick.Stop()
	for {
		cl := newClient(t, c)
		last = time.Now()
		lastJoin = a.joinAsync(ctx, cl, group)
		go prev.close()
		prev = cl
		if time.Since(start) >= resendFor {
			break
		}
		<-tick.C
		if v := describe(ctx, t, observer, group); v.state != "PreparingRebalance" || len(v.members) != 2 {
			t.Fatalf("after %v of re-sent joins: group %s with %v; want PreparingRebalance with a and b",
				time.Since(start), v.state, v.members)
		}
	}
	t.Logf("a re-sent JoinGroup every %v for %v (%.1fx the rebalance timeout) and the group stayed in PreparingRebalance",
		resend, last.Sub(start), float64(last.Sub(start))/float64(rebalance))

	r := await(t, "a's last join", lastJoin, 5*time.Second)
	sinceLast, sinceFirst := r.at.Sub(last), r.at.Sub(start)
	t.Logf("rebalance completed %v after a's last JoinGroup, %v after its first (rebalance timeout %v)", sinceLast, sinceFirst, rebalance)
	if sinceLast < rebalance {
		t.Fatalf("rebalance completed %v after the last join, before the rebalance timeout %v", sinceLast, rebalance)
	}
	if r.resp.Generation != gen+1 || r.resp.LeaderID != a.id || len(r.resp.Members) != 1 {
		t.Fatalf("a's join: generation %d leader %s with %d members, want generation %d led by a alone (b removed)",
			r.resp.Generation, r.resp.LeaderID, len(r.resp.Members), gen+1)
	}
}

// A new member, one joining with the ID it got from MEMBER_ID_REQUIRED, has
// no session timer while its JoinGroup is parked: addMemberAndRebalance stops
// the pending-member timer (stopPending, groups.go:1618, 1525) and arms
// nothing in its place. Its parked JoinGroup counts as joined (nJoining), so
// the rebalance completes as soon as the others join, with the silent member
// in the new generation. Only then does it get a session timer, and only if
// kfake's answer reached its connection (reply, groups.go:1705-1716).
//
// Kafka also keeps a new member's session timeout out of the join phase, but
// bounds it: NewMemberJoinTimeoutMs, 5 minutes
// (GroupCoordinator.addMemberAndRebalance /
// group.classic.new.member.join.timeout in the new coordinator).
//
// The subtest "closed" shows the part that is not deterministic: if the
// member's connection is gone, kfake's reply selects between a buffered
// response channel (cluster.go:431, capacity 2) and the closed connection's
// done channel (client_conn.go:74-82), so about half the time the member
// gets a session timer and half the time it stays in the group with no timer
// at all. The subtest only logs which happened.
func TestNewMemberParkedInJoinHasNoSessionTimer(t *testing.T) {
	t.Parallel()
	for _, connClosed := range []bool{false, true} {
		name := "open"
		if connClosed {
			name = "closed"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			const group = "new-member-parked"
			const session = 300 * time.Millisecond
			ctx := testCtx(t)
			c := newCluster(t)

			// b alone is Stable.
			b := &member{name: "b", session: 20 * time.Second, rebalance: 10 * time.Second}
			bcl := newClient(t, c)
			b.newMemberID(ctx, t, bcl, group)
			r := await(t, "b joins", b.joinAsync(ctx, bcl, group), 5*time.Second)
			gen := r.resp.Generation
			b.sync(ctx, t, bcl, group, gen, []string{b.id})

			// n joins and goes silent with its JoinGroup parked.
			n := &member{name: "n", session: session, rebalance: 10 * time.Second}
			ncl := newClient(t, c)
			n.newMemberID(ctx, t, ncl, group)
			nj := n.joinAsync(ctx, ncl, group)
			waitFor(ctx, t, bcl, group, "n parks in join", 5*time.Second, func(v groupView) bool {
				return v.state == "PreparingRebalance" && v.has(n.id)
			})
			if connClosed {
				ncl.close()
			}

			// Several of n's session timeouts pass: n stays.
			holdFor(ctx, t, bcl, group, "n stays while parked", 3*session, func(v groupView) bool {
				return v.state == "PreparingRebalance" && v.has(n.id)
			})

			// b rejoins: n's parked join counts, so the rebalance
			// completes at once and n is in the new generation.
			br := await(t, "b rejoins", b.joinAsync(ctx, bcl, group), 5*time.Second)
			if br.resp.Generation != gen+1 || len(br.resp.Members) != 2 {
				t.Fatalf("b's join: generation %d with %d members, want generation %d with b and n",
					br.resp.Generation, len(br.resp.Members), gen+1)
			}
			b.sync(ctx, t, bcl, group, br.resp.Generation, []string{b.id, n.id})

			if !connClosed {
				// n got its answer, so kfake armed its session
				// timer; n never syncs nor heartbeats and is
				// removed a session timeout later. The leader's
				// sync already ended the pending-sync wait
				// (completeLeaderSync clears it, groups.go:1483),
				// so this is the session timer.
				nr := await(t, "n's join", nj, 5*time.Second)
				_, removed := waitFor(ctx, t, bcl, group, "n expires once answered", 5*time.Second, func(v groupView) bool {
					return !v.has(n.id)
				})
				took := removed.Sub(nr.at)
				t.Logf("n removed %v after its JoinGroup answer (session timeout %v)", took, session)
				if took < session-50*time.Millisecond { // nr.at is when the client saw it, a little after kfake armed the timer
					t.Fatalf("n removed %v after its answer, before its session timeout %v", took, session)
				}
				return
			}
			// Bounded wait, only to report which way kfake's reply
			// race went; nothing is asserted.
			end := time.Now().Add(2 * session)
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for time.Now().Before(end) {
				if v := describe(ctx, t, bcl, group); !v.has(n.id) {
					t.Logf("closed connection: n removed by its session timer (the reply won the race)")
					return
				}
				<-tick.C
			}
			v := describe(ctx, t, bcl, group)
			t.Logf("closed connection: %v after the rebalance n is still a member with no timer; group %s with %v", 2*session, v.state, v.members)
		})
	}
}
