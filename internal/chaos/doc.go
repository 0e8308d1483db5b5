// Package chaos is the fault-injection suite of kconsumer: it runs a
// workload against an in-process kfake broker and a Schema Registry while
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
// and the checker asserts:
//
//  1. every produced record was handled or dead-lettered, or is at or after
//     its partition's final committed offset (none is, after the drain);
//  2. within one ownership of a partition by one member, each key's records
//     are handled in produce order and no offset is skipped;
//  3. stateless: no record is handled after a commit past it was accepted,
//     except by a member that had lost the partition without knowing it;
//     an ownership that ended gracefully (revoke, shutdown) committed
//     everything it handled unless the broker refused a commit; so the
//     duplicates are bounded by the records handled after the last
//     accepted commit of members that were killed, lost their partitions
//     or had a commit refused;
//  4. additive: the store holds every good record exactly once and the
//     per-key sums equal the produced ones;
//
// and that every bad record reached the dead-letter topic with its key and
// value unchanged, marked poison, with an error that names its cause, while
// no good record did.
//
// Faults (Fault) are combinable: SIGKILL of child processes, rebalance
// storms, broker errors, slow and dropped responses, session expiry,
// registry errors and outages, a failing or slow sink, and bad input.
//
// The short scenarios run with go test; the soak runs with
//
//	go test ./internal/chaos -run Soak -chaos.duration=30m -timeout 60m -v
package chaos
