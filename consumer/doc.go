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
//     dlq adds bounded retries and a dead-letter topic.
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
// Batches. A sink that writes faster in bulk implements a BatchHandler and
// runs a Consumer made with NewBatch: it gets up to BatchMaxRecords records
// (at most BatchMaxBytes, gathered for at most BatchLinger) of one partition
// in offset order, or of every partition with BatchAcrossPartitions. A
// record's offset is stored only once its batch succeeded. A *BatchError
// names the record that failed: the ones before it are stored, it is
// retried or dead-lettered on its own through the per-record middleware,
// and nothing at or after it is stored until it is settled. Revokes and
// shutdowns finish the batch in hand or abandon it, and never store an
// offset past what it settled.
//
//	c, err := consumer.NewBatch(consumer.BatchHandlerFunc(func(ctx context.Context, recs []*kgo.Record) error {
//		return store.InsertMany(ctx, recs) // or &consumer.BatchError{Index: i, Err: err}
//	}),
//		consumer.Topics("sensor-data"),
//		consumer.Group("usage"),
//		consumer.BatchMaxRecords(1000),
//	)
//
// Components attach to a Consumer in one step, with With: a recovery
// strategy (package recovery) decides where it starts after a restart, a
// dead-letter router (package dlq) routes the errors its handler returns, a
// lag monitor (package lag) gives metrics and health. Each is a Plugin: New
// hands it an Attachment, from which it learns the Consumer's group, topics
// and logger and through which it contributes middleware, an Observer,
// client options, readiness, start positions and start and stop hooks.
//
//	c, err := consumer.New(handler,
//		consumer.Topics("sensor-data"),
//		consumer.Group("usage"),
//		consumer.With(strategy, router, monitor),
//	)
package consumer
