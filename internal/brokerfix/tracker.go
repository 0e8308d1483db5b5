package brokerfix

import (
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// The tracker is the janitor's bookkeeping, without any I/O so that its
// timing rules can be tested with made-up clocks. observe is called from
// kfake control functions with the arrival time of a request; evaluate is
// called by the janitor's loop with a snapshot of the groups taken after
// poll start (see the ordering argument in doc.go).

// wait is what a member was last seen waiting for. While the group is in
// the matching phase, a waiting member counts as alive, as Kafka counts a
// member awaiting join or sync (MemberMetadata.hasSatisfiedHeartbeat).
type wait uint8

const (
	waitNone wait = iota
	waitJoin      // sent JoinGroup; answered when the group leaves PreparingRebalance
	waitSync      // sent SyncGroup; answered when the group leaves CompletingRebalance
)

// phase is the group state in which a wait is still in progress.
func (w wait) phase() string {
	switch w {
	case waitJoin:
		return "PreparingRebalance"
	case waitSync:
		return "CompletingRebalance"
	}
	return ""
}

type member struct {
	instanceID *string
	session    time.Duration
	lastAlive  time.Time // the session clock runs from here
	lastObs    time.Time // the last request seen from it, or when it was adopted
	wait       wait
	waitSince  time.Time // when the wait began
}

// staticJoin is a JoinGroup with an instance ID and no member ID. kfake
// answers it with a member ID we never see (groups.go:839-872), so it is
// remembered by instance ID until the member shows up in a snapshot.
type staticJoin struct {
	session time.Duration
	at      time.Time
}

type trackedGroup struct {
	members map[string]*member
	static  map[string]staticJoin
}

type tracker struct {
	mu       sync.Mutex
	groups   map[string]*trackedGroup
	grace    time.Duration
	fallback time.Duration // session of a member whose JoinGroup we did not see
}

func newTracker(grace, fallback time.Duration) *tracker {
	return &tracker{groups: make(map[string]*trackedGroup), grace: grace, fallback: fallback}
}

// group returns the tracked group name, creating it if create is set.
func (t *tracker) group(name string, create bool) *trackedGroup {
	g := t.groups[name]
	if g == nil && create && name != "" {
		g = &trackedGroup{members: make(map[string]*member), static: make(map[string]staticJoin)}
		t.groups[name] = g
	}
	return g
}

// member returns g's member id, creating it with a session taken from a
// remembered static join or the fallback.
func (t *tracker) member(g *trackedGroup, id string, instanceID *string) *member {
	m := g.members[id]
	if m == nil {
		m = &member{session: t.fallback}
		if instanceID != nil {
			if sj, ok := g.static[*instanceID]; ok {
				m.session = sj.session
			}
		}
		g.members[id] = m
	}
	if instanceID != nil {
		m.instanceID = instanceID
	}
	return m
}

func (m *member) heard(now time.Time) {
	if now.After(m.lastAlive) {
		m.lastAlive = now
	}
	if now.After(m.lastObs) {
		m.lastObs = now
	}
}

// observe records a request that arrived at now. It must not block: it runs
// inside a kfake control function.
//
// Only JoinGroup, SyncGroup and Heartbeat, which only classic group members
// send, start tracking a group; OffsetCommit and TxnOffsetCommit only refresh
// members already tracked, so KIP-848 groups and simple (memberless) commits
// are left alone. A Heartbeat or commit does not end a wait: kgo may commit
// on another connection while its JoinGroup is parked, and the member is
// still in that join.
func (t *tracker) observe(req kmsg.Request, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch r := req.(type) {
	case *kmsg.JoinGroupRequest:
		g := t.group(r.Group, true)
		if g == nil {
			return
		}
		session := time.Duration(r.SessionTimeoutMillis) * time.Millisecond
		if r.MemberID == "" {
			// A dynamic member's first join gets MEMBER_ID_REQUIRED and
			// is pending in kfake, with kfake's own session timer
			// (addPendingRebalance); it is not a member yet. A static
			// member joins for real with an ID we cannot see.
			if r.InstanceID != nil {
				g.static[*r.InstanceID] = staticJoin{session: session, at: now}
			}
			return
		}
		m := t.member(g, r.MemberID, r.InstanceID)
		if session > 0 {
			m.session = session
		}
		m.heard(now)
		m.wait, m.waitSince = waitJoin, now
	case *kmsg.SyncGroupRequest:
		if g := t.group(r.Group, true); g != nil && r.MemberID != "" {
			m := t.member(g, r.MemberID, r.InstanceID)
			m.heard(now)
			m.wait, m.waitSince = waitSync, now
		}
	case *kmsg.HeartbeatRequest:
		if g := t.group(r.Group, true); g != nil && r.MemberID != "" {
			t.member(g, r.MemberID, r.InstanceID).heard(now)
		}
	case *kmsg.OffsetCommitRequest:
		t.refresh(r.Group, r.MemberID, now)
	case *kmsg.TxnOffsetCommitRequest:
		t.refresh(r.Group, r.MemberID, now)
	case *kmsg.LeaveGroupRequest:
		g := t.group(r.Group, false)
		if g == nil {
			return
		}
		if r.Version < 3 {
			delete(g.members, r.MemberID)
			return
		}
		for _, lm := range r.Members {
			if lm.MemberID != "" {
				delete(g.members, lm.MemberID)
			}
			if lm.InstanceID != nil {
				delete(g.static, *lm.InstanceID)
				for id, m := range g.members {
					if m.instanceID != nil && *m.instanceID == *lm.InstanceID {
						delete(g.members, id)
					}
				}
			}
		}
	}
}

func (t *tracker) refresh(group, memberID string, now time.Time) {
	if g := t.group(group, false); g != nil && memberID != "" {
		if m := g.members[memberID]; m != nil {
			m.heard(now)
		}
	}
}

// groupNames returns the tracked groups, sorted.
func (t *tracker) groupNames() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	names := make([]string, 0, len(t.groups))
	for name := range t.groups {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// snapshot is what one DescribeGroups answer says about a group.
// A group that does not exist is an empty snapshot.
type snapshot struct {
	state   string
	members []snapMember
}

type snapMember struct {
	id         string
	instanceID *string
}

// Kick is a member the janitor removed, or tried to.
type Kick struct {
	Group      string
	MemberID   string
	InstanceID *string
	// Session is the session timeout the member joined with, or the
	// fallback when its JoinGroup was not seen.
	Session time.Duration
	// LastAlive is when the member's session clock started: its last
	// request, or about when the join or sync it waited in was answered.
	LastAlive time.Time
	// At is when the janitor decided (the start of that poll).
	At time.Time
	// Err is the LeaveGroup's error for this member; kerr.UnknownMemberID
	// means kfake had already dropped it.
	Err error
}

// evaluate applies a snapshot of group name taken between pollStart and
// answered and returns the members to remove.
//
// Requests seen before pollStart were handled by kfake before the snapshot
// (doc.go); later ones may not have been, so they are neither resolved nor
// garbage-collected in this poll.
func (t *tracker) evaluate(name string, snap snapshot, pollStart, answered time.Time) []Kick {
	t.mu.Lock()
	defer t.mu.Unlock()
	g := t.groups[name]
	if g == nil {
		return nil
	}
	present := make(map[string]bool, len(snap.members))
	for _, sm := range snap.members {
		present[sm.id] = true
	}
	for id, m := range g.members {
		if !present[id] && m.lastObs.Before(pollStart) {
			delete(g.members, id) // removed by kfake, or its join was refused
		}
	}

	var kicks []Kick
	for _, sm := range snap.members {
		m := g.members[sm.id]
		if m == nil {
			m = t.adopt(g, sm, pollStart)
		}
		if m.wait != waitNone && m.waitSince.Before(pollStart) {
			if snap.state == m.wait.phase() {
				// Still waiting: alive at least until this poll began.
				if pollStart.After(m.lastAlive) {
					m.lastAlive = pollStart
				}
			} else {
				// The wait is over: the join or sync was answered, or
				// the reply was lost, somewhere between the last poll
				// that saw the wait and this answer. Start the clock no
				// later than the answer minus grace, so that the kick
				// comes after the answer + session (Kafka's deadline)
				// and, with grace >= interval, before answer + session
				// + grace + interval.
				m.wait = waitNone
				if floor := answered.Add(-t.grace); floor.After(m.lastAlive) {
					m.lastAlive = floor
				}
			}
		}
		if m.wait == waitNone && pollStart.Sub(m.lastAlive) > m.session+t.grace {
			kicks = append(kicks, Kick{
				Group:      name,
				MemberID:   sm.id,
				InstanceID: m.instanceID,
				Session:    m.session,
				LastAlive:  m.lastAlive,
				At:         pollStart,
			})
		}
	}

	// Every static join before pollStart has been handled; the members it
	// created were adopted above.
	for id, sj := range g.static {
		if sj.at.Before(pollStart) {
			delete(g.static, id)
		}
	}
	if len(g.members) == 0 && len(g.static) == 0 && len(snap.members) == 0 {
		delete(t.groups, name)
	}
	return kicks
}

// restore puts back the record of a member whose removal failed: the
// LeaveGroup passed through observe, which forgot the member, before kfake
// refused it. The next poll judges it again.
func (t *tracker) restore(k Kick) {
	t.mu.Lock()
	defer t.mu.Unlock()
	g := t.group(k.Group, true)
	if g == nil || g.members[k.MemberID] != nil {
		return
	}
	g.members[k.MemberID] = &member{instanceID: k.InstanceID, session: k.Session, lastAlive: k.LastAlive, lastObs: k.At}
}

// adopt starts tracking a member found in a snapshot whose requests we have
// not seen: one created by a static join, or one that joined before the
// janitor started or whose requests another control answered. It is taken
// to be waiting in a join, the most lenient reading.
func (t *tracker) adopt(g *trackedGroup, sm snapMember, pollStart time.Time) *member {
	m := &member{
		instanceID: sm.instanceID,
		session:    t.fallback,
		lastAlive:  pollStart,
		lastObs:    pollStart,
		wait:       waitJoin,
		waitSince:  pollStart,
	}
	if sm.instanceID != nil {
		if sj, ok := g.static[*sm.instanceID]; ok && sj.at.Before(pollStart) {
			m.session, m.lastAlive, m.waitSince = sj.session, sj.at, sj.at
		}
	}
	g.members[sm.id] = m
	return m
}
