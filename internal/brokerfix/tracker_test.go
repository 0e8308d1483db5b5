package brokerfix

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// These tests drive the tracker with a made-up clock, so they pin the
// timing rules exactly; janitor_test.go shows them against kfake.

const (
	tGrace    = 100 * time.Millisecond
	tSession  = 300 * time.Millisecond
	tInterval = 50 * time.Millisecond
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func joinReq(group, id string, session time.Duration) *kmsg.JoinGroupRequest {
	r := kmsg.NewPtrJoinGroupRequest()
	r.Group, r.MemberID, r.SessionTimeoutMillis = group, id, int32(session.Milliseconds())
	return r
}

func heartbeatReq(group, id string) *kmsg.HeartbeatRequest {
	r := kmsg.NewPtrHeartbeatRequest()
	r.Group, r.MemberID = group, id
	return r
}

func syncReq(group, id string) *kmsg.SyncGroupRequest {
	r := kmsg.NewPtrSyncGroupRequest()
	r.Group, r.MemberID = group, id
	return r
}

func snap(state string, ids ...string) snapshot {
	s := snapshot{state: state}
	for _, id := range ids {
		s.members = append(s.members, snapMember{id: id})
	}
	return s
}

// pollEvery evaluates snapshots from s(ms) every tInterval from fromMS to
// toMS and returns the start of the first poll that kicks id, or -1.
func pollEvery(tr *tracker, group, id string, fromMS, toMS int, s func(ms int) snapshot) int {
	for ms := fromMS; ms <= toMS; ms += int(tInterval / time.Millisecond) {
		for _, k := range tr.evaluate(group, s(ms), at(ms), at(ms+1)) {
			if k.MemberID == id {
				return ms
			}
		}
	}
	return -1
}

func TestSilentMemberIsKickedAfterSessionPlusGrace(t *testing.T) {
	tr := newTracker(tGrace, time.Minute)
	tr.observe(joinReq("g", "m", tSession), at(0))
	tr.observe(syncReq("g", "m"), at(10))
	tr.observe(heartbeatReq("g", "m"), at(20)) // last sign of life
	stable := func(int) snapshot { return snap("Stable", "m") }
	got := pollEvery(tr, "g", "m", 25, 2000, stable)
	// First poll strictly more than session + grace after the heartbeat:
	// 20 + 400 = 420 is not "more than", the next poll at 425 is.
	if got != 425 {
		t.Fatalf("kicked at %dms, want 425ms (first poll after 20 + %v + %v)", got, tSession, tGrace)
	}
}

func TestMemberWaitingInJoinIsAliveWhileGroupPrepares(t *testing.T) {
	tr := newTracker(tGrace, time.Minute)
	tr.observe(joinReq("g", "n", tSession), at(0))
	// The group prepares for ten session timeouts: n is never kicked.
	preparing := func(int) snapshot { return snap("PreparingRebalance", "n") }
	if got := pollEvery(tr, "g", "n", 50, 3000, preparing); got != -1 {
		t.Fatalf("kicked at %dms while waiting in join", got)
	}
	// The rebalance completes between the poll at 3000 (which saw n
	// waiting) and the poll at 3050, whose answer came at 3051. The reply
	// to n is lost: n never speaks again. Kafka's deadline is completion +
	// session, somewhere in (3000, 3051] + 300.
	stable := func(int) snapshot { return snap("Stable", "n") }
	got := pollEvery(tr, "g", "n", 3050, 6000, stable)
	// Clock starts at max(3000, 3051-100) = 3000; kick at the first poll
	// with now-3000 > 400: 3450.
	if got != 3450 {
		t.Fatalf("kicked at %dms, want 3450ms", got)
	}
	// The bound: after the earliest possible completion (the snapshot of
	// the poll at 3000, answered at 3001) + session, and no later than the
	// latest (3051) + session + grace + interval.
	if got <= 3001+300 || got > 3051+300+100+50 {
		t.Fatalf("kick at %d outside (completion + session, completion + session + grace + interval]", got)
	}
}

// The clock of a member whose wait ended never starts earlier than the
// answer minus grace, however long ago the last poll that saw it waiting
// was (say, polls failed in between): the kick stays after answer +
// session.
func TestWaitEndedAfterGapStartsClockAtAnswerMinusGrace(t *testing.T) {
	tr := newTracker(tGrace, time.Minute)
	tr.observe(joinReq("g", "n", tSession), at(0))
	tr.evaluate("g", snap("PreparingRebalance", "n"), at(50), at(51))
	// No successful poll for 2s, then the group is Stable.
	if ks := tr.evaluate("g", snap("Stable", "n"), at(2050), at(2060)); len(ks) != 0 {
		t.Fatalf("kicked on the poll that saw the wait end: %+v", ks)
	}
	got := pollEvery(tr, "g", "n", 2100, 5000, func(int) snapshot { return snap("Stable", "n") })
	// Clock from 2060-100 = 1960; kick at first poll > 1960+400 = 2360: 2400.
	if got != 2400 {
		t.Fatalf("kicked at %dms, want 2400ms", got)
	}
}

func TestMemberWaitingInSyncIsAliveWhileGroupCompletes(t *testing.T) {
	tr := newTracker(tGrace, time.Minute)
	tr.observe(joinReq("g", "f", tSession), at(0))
	tr.observe(syncReq("g", "f"), at(5))
	completing := func(int) snapshot { return snap("CompletingRebalance", "f") }
	if got := pollEvery(tr, "g", "f", 25, 2000, completing); got != -1 {
		t.Fatalf("kicked at %dms while waiting in sync", got)
	}
}

// A request seen after a poll began may not have been handled when the
// snapshot was taken: it neither ends a wait nor is forgotten as absent.
func TestRequestsAfterPollStartAreNotJudgedByThatPoll(t *testing.T) {
	tr := newTracker(tGrace, time.Minute)
	tr.observe(joinReq("g", "n", tSession), at(100))
	// Poll started at 90, before the join: the group looks Stable and n
	// absent, as kfake has not handled the join yet.
	tr.evaluate("g", snap("Stable"), at(90), at(110))
	if m := tr.groups["g"].members["n"]; m == nil || m.wait != waitJoin {
		t.Fatalf("n after a poll that began before its join: %+v, want still waiting in join", m)
	}
	// A later poll that began after the join sees n parked.
	tr.evaluate("g", snap("PreparingRebalance", "n"), at(140), at(150))
	if m := tr.groups["g"].members["n"]; m.wait != waitJoin || !m.lastAlive.Equal(at(140)) {
		t.Fatalf("n: wait %v lastAlive %v, want waiting, alive at 140ms", m.wait, m.lastAlive.Sub(t0))
	}
	// And a member absent from a snapshot taken after its last request is
	// forgotten.
	tr.evaluate("g", snap("Stable"), at(200), at(210))
	if _, ok := tr.groups["g"]; ok {
		t.Fatal("group still tracked after its only member disappeared")
	}
}

func TestStaticJoinIsAdoptedByInstanceID(t *testing.T) {
	tr := newTracker(tGrace, time.Minute)
	r := joinReq("g", "", tSession)
	r.InstanceID = kmsg.StringPtr("pod-1")
	tr.observe(r, at(0))
	s := snapshot{state: "Stable", members: []snapMember{{id: "pod-1-abc", instanceID: kmsg.StringPtr("pod-1")}}}
	got := pollEvery(tr, "g", "pod-1-abc", 50, 2000, func(int) snapshot { return s })
	// Adopted at 50 as waiting since 0; the wait ends at once (Stable),
	// clock from max(0, 51-100) = 0, kick at the first poll > 400: 450.
	if got != 450 {
		t.Fatalf("kicked at %dms, want 450ms (the static join's session, not the fallback)", got)
	}
}

func TestUnknownMemberGetsFallbackSession(t *testing.T) {
	tr := newTracker(tGrace, time.Second)
	tr.observe(joinReq("g", "known", tSession), at(0))
	s := func(ms int) snapshot {
		tr.observe(heartbeatReq("g", "known"), at(ms))
		return snap("Stable", "known", "stranger")
	}
	got := pollEvery(tr, "g", "stranger", 50, 5000, s)
	// Adopted at 50 (waiting), wait ends at 100 (answer 101): clock from
	// max(50, 1) = 50; kick at first poll > 50 + 1000 + 100: 1200.
	if got != 1200 {
		t.Fatalf("kicked at %dms, want 1200ms (fallback session)", got)
	}
}

func TestLeaveForgetsMember(t *testing.T) {
	tr := newTracker(tGrace, time.Minute)
	tr.observe(joinReq("g", "a", tSession), at(0))
	tr.observe(joinReq("g", "b", tSession), at(0))
	l := kmsg.NewPtrLeaveGroupRequest()
	l.Version = 5
	l.Group = "g"
	l.Members = []kmsg.LeaveGroupRequestMember{{MemberID: "a"}}
	tr.observe(l, at(10))
	if _, ok := tr.groups["g"].members["a"]; ok {
		t.Fatal("a still tracked after its LeaveGroup")
	}
	if _, ok := tr.groups["g"].members["b"]; !ok {
		t.Fatal("b forgotten by a's LeaveGroup")
	}
}

// Commits alone do not start tracking: KIP-848 members and memberless
// (direct-assignment) commits are not the janitor's business.
func TestCommitsDoNotTrackGroups(t *testing.T) {
	tr := newTracker(tGrace, time.Minute)
	c := kmsg.NewPtrOffsetCommitRequest()
	c.Group, c.MemberID, c.Generation = "g", "m", 3
	tr.observe(c, at(0))
	if len(tr.groupNames()) != 0 {
		t.Fatalf("tracked %v after a commit alone", tr.groupNames())
	}
}

// A Heartbeat or commit while a JoinGroup is parked does not end the wait:
// kgo may send them on other connections during its join.
func TestHeartbeatDoesNotEndJoinWait(t *testing.T) {
	tr := newTracker(tGrace, time.Minute)
	tr.observe(joinReq("g", "n", tSession), at(0))
	tr.observe(heartbeatReq("g", "n"), at(5))
	preparing := func(int) snapshot { return snap("PreparingRebalance", "n") }
	if got := pollEvery(tr, "g", "n", 25, 2000, preparing); got != -1 {
		t.Fatalf("kicked at %dms while its join was parked", got)
	}
}

func TestRestoreAfterFailedLeave(t *testing.T) {
	tr := newTracker(tGrace, time.Minute)
	tr.observe(heartbeatReq("g", "m"), at(0))
	ks := tr.evaluate("g", snap("Stable", "m"), at(61_000), at(61_001))
	if len(ks) != 1 {
		t.Fatalf("kicks %+v, want m", ks)
	}
	l := kmsg.NewPtrLeaveGroupRequest()
	l.Version = 5
	l.Group = "g"
	l.Members = []kmsg.LeaveGroupRequestMember{{MemberID: "m"}}
	tr.observe(l, at(61_002)) // our own LeaveGroup, which kfake then refuses
	tr.restore(ks[0])
	if ks := tr.evaluate("g", snap("Stable", "m"), at(61_050), at(61_051)); len(ks) != 1 {
		t.Fatalf("after a failed leave: kicks %+v, want m again", ks)
	}
}
