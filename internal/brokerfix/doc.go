// Package brokerfix works around a hole in the group session handling of
// the in-process broker kfake (github.com/twmb/franz-go/pkg/kfake) that the
// dev stack and tests run on. It changes nothing in the library: it is a
// "session janitor" that does from outside what a real Kafka broker does
// inside, removing classic group members whose session ran out.
//
// # The kfake behaviour
//
// Line numbers refer to kfake v0.0.0-20260918054303-01f206a7e32c, the
// version in go.mod; internal/brokercheck pins each point in a test.
//
// A new member (one sending its second JoinGroup, with the ID it got from
// MEMBER_ID_REQUIRED, or a static member's first) is parked in the join
// with no session timer: addMemberAndRebalance stops its pending timer and
// arms none (groups.go:1617-1618). Its parked join counts as joined, so the
// rebalance completes as soon as the others rejoin. kfake then answers it
// and arms its session timer only if the answer was handed to its
// connection (reply, groups.go:1705-1716). When the member's process has
// died, the connection is gone and the hand-off selects between a buffered
// response channel and the connection's done channel (client_conn.go:74-82,
// cluster.go:431): a coin flip. Half the time the member stays in the group
// with no timer at all. It never syncs nor heartbeats, and nothing removes
// it: the pending-sync timer, which would, is cancelled as soon as the
// leader syncs (completeLeaderSync, clearPendingSync, groups.go:1482-1491).
// In a Stable group it holds its partitions forever; if another rebalance
// starts, the group waits for it until the rebalance deadline, which every
// JoinGroup re-arms at the full rebalance timeout (groups.go:1308-1353).
// brokercheck: TestNewMemberParkedInJoinHasNoSessionTimer (its "closed"
// subtest logs the coin flip) and TestRebalanceTimerRestartsOnEveryJoin.
// Our fault runs, which SIGKILL consumers during joins, saw groups stuck for
// more than 20 minutes.
//
// Kafka bounds such a member three ways: its session timer starts when the
// join completes (GroupCoordinator.completeAndScheduleNextHeartbeatExpiration
// for every member in onCompleteJoin), a member that has not synced is
// removed by the pending-sync timeout even after the group is Stable, and a
// new member that never completes its join is removed after
// NewMemberJoinTimeoutMs (5 minutes). Until then a member awaiting join or
// sync counts as alive (MemberMetadata.hasSatisfiedHeartbeat; a new member
// only up to NewMemberJoinTimeoutMs); the broker never looks at whether its
// connection is open.
//
// # What the janitor does
//
// Start installs observe-only kfake control functions (Cluster.ControlKey,
// returning handled=false so kfake still handles every request) for
// JoinGroup, SyncGroup, Heartbeat, OffsetCommit, TxnOffsetCommit and
// LeaveGroup. From them it keeps, per group and member ID, the session
// timeout of the member's last JoinGroup, when it was last heard from, and
// whether it is waiting in a join or a sync. Every interval it takes a
// DescribeGroups of the groups it tracks from its own kgo client, and:
//
//   - a member waiting in a join while the group is PreparingRebalance, or
//     in a sync while it is CompletingRebalance, is alive: that is Kafka's
//     rule, and the only one observable here. A control function sees a
//     request, not its connection, so whether a parked member's process is
//     still there cannot be known until the wait ends;
//   - once a snapshot shows the wait over (the join or sync was answered,
//     or its answer lost), the member's session clock starts, no later than
//     that snapshot's answer less the grace;
//   - any other member's clock runs from its last request of any of the
//     kinds above;
//   - a member present in the group whose clock has run longer than its
//     session timeout plus the grace is removed with a LeaveGroup (v3+, one
//     Members entry per member, by member ID).
//
// So a member that is never heard from again after its join was answered
// (no SyncGroup, no Heartbeat) is removed between
//
//	answer + session timeout  and  answer + session timeout + grace + interval
//
// (plus a DescribeGroups and a LeaveGroup round trip), and a member that
// stops heartbeating between last request + session + grace and that plus
// interval. The grace is at least the interval. Members kfake expires by
// itself are gone before the janitor would act, since kfake's timers fire
// at the session timeout; the janitor only ever removes members kfake
// left without a timer. The package tests show a stuck group on kfake
// without the janitor and its recovery within this bound with it.
//
// Why the snapshot is a DescribeGroups over the wire: kfake serves requests
// one at a time in its run loop, and a control function runs while kfake is
// serving that request, so a DescribeGroups sent after a control function
// saw a request is answered after kfake has handled that request. The
// janitor relies on this to never judge a member on a snapshot older than
// its last request. Cluster.GroupInfo would not do: kfake runs admin
// functions while a control function is in progress (tryControlKey,
// cluster.go:944-966), and one blocks forever once the cluster is closed
// (admin, cluster.go:1299-1305). For the same reason a control function
// must never send a request to the cluster: kfake would not read it until
// the control function returned.
//
// # What it does not fix
//
// kfake expires an existing member parked in a join at its session timeout
// (brokercheck TestKnownMemberParkedInJoinExpiresAtSessionTimeout), where
// Kafka would wait for the rebalance; the janitor cannot give a member back.
// It does not emulate Kafka's single rebalance deadline either: a group
// whose live members keep re-sending JoinGroup stays PreparingRebalance
// (TestRebalanceTimerRestartsOnEveryJoin); a dead member in it that was
// answered before is removed once its session runs out, but one still
// waiting counts as alive for as long as the group prepares. Nor
// NewMemberJoinTimeout. KIP-848 groups (ConsumerGroupHeartbeat) have
// kfake's own timers and are left alone.
//
// Limits of observing through controls: kfake runs the controls of a key in
// the order they were added and stops at the first that answers, so a
// control added before the janitor's that answers or sleeps group requests
// hides them from it; start the janitor first. A member whose JoinGroup the
// janitor did not see (it joined before Start) is judged with the fallback
// session timeout from when the janitor first saw it.
//
// The LeaveGroup names the member ID only, not its instance ID: kfake
// resolves an instance ID to whichever member holds it now and ignores the
// member ID (handleLeave, groups.go:1137-1146), so a stale removal naming
// the instance would remove a live static member that replaced the dead
// one. By member ID alone kfake removes exactly that member and drops its
// instance mapping with it.
package brokerfix
