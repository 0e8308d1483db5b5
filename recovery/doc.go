// Package recovery holds the strategies that decide where a consumer starts
// after a restart, chosen by the kind of state its handler keeps: FullReplay
// for state that is overwritten (replaying is idempotent), CheckpointSkip for
// state that accumulates (resume after a checkpoint stored with the effect),
// and Stateless for handlers that keep none.
//
// The question to ask is what happens if the handler sees the same record
// twice. Overwrite: replay from the earliest offset. Accumulate: checkpoint
// and skip. Nothing: no recovery.
//
//	// Totals per sensor, added in the same transaction as the checkpoint.
//	h := consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
//		return db.AddUsage(ctx, recovery.CheckpointOf(r), r.Key, r.Value)
//	})
//	skip := recovery.NewCheckpointSkip(db) // db implements CheckpointStore
//	c, err := consumer.New(h,
//		consumer.Topics("sensor-data"),
//		consumer.Group("usage"),
//		consumer.With(skip),
//	)
//
// A FullReplay takes no group, reads every partition from the start (or
// from a snapshot, see Snapshots) and is caught up once it handled every
// record below the high watermarks seen at start (CaughtUp). A
// CheckpointSkip starts each assigned partition after the checkpoint its
// CheckpointStore holds, whatever Kafka committed (OutOfOrderStore excepted),
// and skips records at or below it. A Stateless resumes from the group's
// committed offsets.
//
// A strategy is a consumer.Plugin: attach it with consumer.With, first. Each
// serves one Consumer (a second attach fails with ErrInUse, unless the New
// that attached it failed) and has a Ready method for readiness
// probes: it returns nil once partitions are assigned and, for a FullReplay,
// the replay has caught up, and otherwise an error wrapping ErrNotReady that
// says why, including partitions left unconsumed because their checkpoint
// is ahead of the partition's end (*AheadError).
package recovery
