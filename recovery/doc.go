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
// Partitions added to a topic while a group consumes it lose nothing. A
// partition for which the group has no position (no checkpoint for a
// CheckpointSkip, no commit) is told apart by the rest of its topic. While
// the store holds no checkpoint and the group no commit for any partition
// of the topic, it is the group's first start on the topic, and the
// partition starts where the strategy is configured to: StartWithoutCheckpoint
// for a CheckpointSkip, kgo.ConsumeStartOffset for a Stateless. Once any
// partition of the topic has one, the partition was added since, every
// record in it is new to the group, and it starts at its log start (logged
// at info level). So "latest" skips a topic's history on the first start,
// never the first records of a partition created later. Kafka keeps no
// creation time for partitions: a partition that existed on the first
// start but has had no record handled since is taken for a new one, and
// read from its log start too.
//
// A strategy is a consumer.Plugin: attach it with consumer.With, first. Each
// serves one Consumer (a second attach fails with ErrInUse, unless the New
// that attached it failed) and has a Ready method for readiness
// probes: it returns nil once partitions are assigned and, for a FullReplay,
// the replay has caught up, and otherwise an error wrapping ErrNotReady that
// says why, including partitions left unconsumed because their checkpoint
// is ahead of the partition's end (*AheadError).
package recovery
