// Package chaos is the fault-injection suite of kconsumer: it runs a
// workload against an in-process kfake broker and Schema Registry while
// faults are injected, records a history of what happened, and checks the
// history against the library's invariants.
//
// A run produces Avro records with a per-key sequence number and an amount,
// interleaved with bad input, to a topic consumed by two consumer groups:
// "stateless" (store-then-commit, recovery.Stateless) and "additive"
// (per-key sums in a file-backed checkpoint store, recovery.CheckpointSkip).
// Members are consumer processes (child processes of the test binary, so
// that SIGKILL is a real crash) or consumers in the test process. Each member
// reports every record it handled or dead-lettered, every rebalance and every
// commit the broker accepted. After the faults stop, the groups are drained
// and Check asserts:
//
//  1. every produced record was handled or dead-lettered, or is at or after
//     its group's final position (none is, after the drain);
//  2. while a member owns a partition, it handles the partition's records
//     in offset order without skipping one (with PartitionOrder) and each
//     key's records in produce order;
//  3. stateless: no record is handled after a commit past it was accepted,
//     except by a member that had lost the partition without knowing it;
//     an ownership that ended gracefully (revoke or shutdown in time, every
//     commit accepted) committed everything it handled; so duplicates are
//     bounded by the records handled at or beyond the last accepted commit
//     of ownerships ended by SIGKILL, loss, a timed-out revoke or a refused
//     commit, and Check asserts that count as the bound; and no accepted
//     commit moves a partition's position back;
//  4. additive: the store holds every good record exactly once and nothing
//     else, so the per-key sums equal the produced ones;
//
// and that every bad record reached the dead-letter topic, marked poison,
// with its key and value unchanged and an error that names its cause, while
// no good record did; and that every fault the scenario asked for fired at
// least once, counted where it took effect (a member killed, a request
// answered with an error or held, a handler meeting the failing sink, a
// bad record produced), not where it was scheduled, so that a scenario
// cannot pass without testing what it names.
//
// Faults (Fault) combine: SIGKILL of member processes, rebalance storms,
// broker errors, slow, dropped and unanswered requests, session expiry,
// registry errors and outages, a failing or slow sink, and bad input; and
// the process faults (ProcessFaults) of the defaults scenario: every 0.3
// to 3 s a SIGKILL, a SIGTERM followed by SIGKILL 100 ms later, a SIGSTOP
// of 8 to 10 s, or a SIGKILL within 200 ms of a member's start.
//
// A scenario with a RecoveryBound also asserts how soon after the last
// fault the members that survived it, left running, drain their groups.
//
// A test package runs scenarios with Run; its TestMain must hand the
// process to ChildMain when it was started as a member:
//
//	func TestMain(m *testing.M) {
//		if chaos.IsChild() {
//			os.Exit(chaos.ChildMain())
//		}
//		os.Exit(m.Run())
//	}
//
//	func TestKill(t *testing.T) {
//		s := chaos.Run(t, chaos.Scenario{
//			Name: "kill", Faults: chaos.Kill | chaos.BadInput,
//			Duration: 4 * time.Second, Rate: 300, Partitions: 6,
//			Groups:   []string{chaos.GroupStateless, chaos.GroupAdditive},
//			Children: 2, Seed: 1,
//		})
//		t.Log(s) // records, faults by kind, lost, duplicates, max lag
//	}
//
// TestScenarios runs, with go test:
//
//   - defaults: the members run with the library's own default timeouts
//     (session 45 s, heartbeat 3 s, rebalance 60 s, revoke and shutdown
//     30 s, commits every second; LibraryTiming), two member processes
//     per group, under the process faults for 14 s. A member killed while
//     the group is stable holds the next rebalance for its session; members
//     killed while parked in that rebalance's join are handed partitions
//     and hold them for theirs. The members must drain both groups within
//     2 x 45 s + the janitor's interval and grace (1.5 s) + 15 s = 106.5 s
//     of the last fault (seed 1: about 41 s and 85 s; some 105 s in all).
//     With seed 1 only, and with -chaos.defaults only: on kfake, which
//     expires a live member waiting in a join at its session timeout, it
//     fails about two runs in three, draining in some 170 s (see
//     defaultsScenario in chaos_test.go);
//   - kill, storm, storm-keyorder, kill-keyorder, fetch-errors,
//     commit-errors, group-errors, dlq-errors, slow-responses, timeouts,
//     registry-errors, sink-faults, session-expiry, bad-input: one fault
//     each (with Storm or BadInput where the fault needs traffic), with
//     short timings (DefaultTiming), for 4 s;
//   - all: every fault of AllFaults at once, paced, for 8 s.
//
// The short scenarios and all run with the fixed seeds and one random
// seed, which the test logs; a failure names its seed, and -chaos.seed=N
// (or CHAOS_SEED=N, for go test ./...) runs the scenarios with seed N
// only:
//
//	go test ./internal/chaos -run 'TestScenarios/all' -chaos.seed=N -chaos.v -v
//
// The soak runs every fault at once:
//
//	go test ./internal/chaos -run Soak -chaos.duration=30m -timeout 60m -v
package chaos
