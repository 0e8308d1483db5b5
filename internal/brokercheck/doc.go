// Package brokercheck pins, in tests only, the behaviour of the two
// third-party components the library's recovery guarantees rest on: the
// in-process broker kfake (github.com/twmb/franz-go/pkg/kfake), which every
// integration test runs against, and the franz-go client kgo. It has no
// non-test code.
//
// It exists for the issue "Time to recover: no group left stuck, SIGTERM
// always ends". How long a classic consumer group takes to drop a dead
// member, and how long Close takes while a JoinGroup is unanswered, are
// decided by timers inside these components, not by this library. The
// tests state those timers as measured facts, so a dependency upgrade that
// changes one fails here, with a message naming the timer, instead of as a
// flaky or hanging test elsewhere.
//
// What is pinned (line numbers in the test comments refer to kfake
// v0.0.0-20260918054303-01f206a7e32c and kgo v1.22.2, the versions in
// go.mod):
//
//   - kfake keeps an existing member's session timer running while its
//     JoinGroup is parked and, when it fires, drops the member and never
//     answers that JoinGroup. Kafka treats a member awaiting join as alive.
//   - kfake re-arms the rebalance deadline, at the full rebalance timeout, on
//     every JoinGroup during PreparingRebalance, so a member that keeps
//     rejoining keeps the group preparing. Kafka arms it once per rebalance.
//   - kfake gives a new member (KIP-394 second join) no session timer while
//     its JoinGroup is parked, and counts that join as done even if the
//     member's connection is gone. Kafka bounds such a member by
//     NewMemberJoinTimeoutMs (5 minutes).
//   - kgo's Close waits for a pending JoinGroup to be answered or to hit its
//     read deadline (rebalance timeout + RequestTimeoutOverhead), whatever
//     LeaveGroupContext's context says; canceling the context given to
//     kgo.WithContext is what cuts it short.
//   - kgo reports a failed join to PollFetches as a fetch error on topic ""
//     partition 0 wrapping *kgo.ErrGroupSession, and a closed client as
//     topic "" partition -1.
//
// The tests use short session and rebalance timeouts (kfake's
// group.min.session.timeout.ms is lowered with kfake.GroupMinSessionTimeout)
// and wait on conditions with deadlines; they run in a few seconds.
package brokercheck
