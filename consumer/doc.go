// Package consumer turns a franz-go client into a crash-safe Kafka consumer.
//
// A user implements one Handler and runs a Consumer:
//
//	c, err := consumer.New(consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
//		return store.Save(ctx, r.Key, r.Value)
//	}),
//		consumer.SeedBrokers("localhost:9092"),
//		consumer.Topics("sensor-data"),
//		consumer.Group("usage"),
//	)
//	if err != nil {
//		return err
//	}
//	return c.Run(ctx) // until ctx is done, then drain, commit, leave
//
// The guarantees:
//
//   - At least once. A record's offset is stored only after its handler
//     returned nil. Stored offsets are committed every CommitInterval,
//     synchronously when partitions are revoked, never when they are lost,
//     and once more on shutdown. A crash re-delivers at most the records
//     handled since the last commit; a graceful stop re-delivers none.
//   - Order. By default the records of a partition reach the handler one at
//     a time, in offset order, on the partition's own goroutine. With
//     Order(KeyOrder), records with the same key keep their order while
//     different keys run in parallel on a pool of Workers, so a slow handler
//     is no longer bound by the partition count; offsets are then stored
//     only up to the first record not yet finished. A failing record is
//     retried with backoff and never skipped by the Consumer itself; package
//     dlq adds bounded retries and a dead-letter topic as middleware.
//   - Rebalances. Cooperative-sticky balancing by default. A revoked
//     partition finishes the record in hand (bounded by RevokeTimeout), its
//     offsets are committed, then OnRevoked runs; records fetched but not
//     started are dropped and read by the next owner.
//   - Backpressure. At most MaxInFlight records are fetched and not yet
//     handled; a partition with MaxInFlightPerPartition waiting records is
//     paused until it has worked off half of them.
//   - Panics. A handler panic becomes a *PanicError with the stack and is
//     treated like any other error.
//
// Where a Consumer starts after a restart is a Strategy (package recovery);
// metrics and health come from an Observer (package lag).
package consumer
