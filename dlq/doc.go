// Package dlq routes handler errors: poison records (that will never
// succeed) go to a dead-letter topic at once, retriable failures are retried
// with backoff, and a circuit breaker stops dead-lettering when failures are
// systemic. It also re-drives a dead-letter topic back to its source.
//
// A Router is a consumer.Plugin; attach it after the recovery strategy, if
// any. It learns the Consumer's group (written to each dead letter),
// brokers and logger when it attaches, and flushes its dead letters when
// Run returns:
//
//	router, err := dlq.New()
//	if err != nil {
//		return err
//	}
//	defer router.Close() // for a Consumer that never runs
//	c, err := consumer.New(handler,
//		consumer.SeedBrokers("localhost:9092"),
//		consumer.Topics("sensor-data"),
//		consumer.Group("usage"),
//		consumer.With(strategy, router),
//	)
//	if err != nil {
//		return err
//	}
//	err = c.Run(ctx)
//
// Handlers (and decoders) say what an error means by marking it:
//
//	if err := validate(reading); err != nil {
//		return fault.MarkPoison(err) // never succeeds: dead-letter it now
//	}
//	if err := db.Insert(ctx, reading); err != nil {
//		return fault.MarkRetriable(err) // try again until it works
//	}
//
// Unmarked errors go through the Classify function; by default they are
// retried MaxAttempts times and then dead-lettered. A handler panic is
// retried the same way and dead-lettered as poison. Attempts are spaced by
// the Consumer's RetryBackoff, and the record's partition waits meanwhile,
// so order is kept and the offset does not move.
//
// A dead letter keeps the record's key, value and headers byte for byte and
// adds the Header* headers (original topic, partition, offset and timestamp,
// group, error class and message, attempts, failure time). It goes to
// "<topic>.dlq" unless DeadLetterTopic says otherwise, and the source offset
// is stored only after the dead letter is acknowledged. A crash between the
// two writes the dead letter once more when the record is redelivered: at
// most one duplicate, never none.
//
// When most of the recent records fail for good, the circuit breaker opens:
// nothing is dead-lettered and every partition holds its record, which
// pauses consumption, until a probe after the cool-down succeeds. A probe
// whose error marks it poison is dead-lettered even so, so that a run of
// bad records passes, one per cool-down. Stats and OnBreakerChange expose
// the state for metrics.
//
// Redrive copies dead letters back to their original topic and partition,
// optionally only some classes or an offset range, keeping its progress as a
// consumer group's offsets on the dead-letter topic so that running it again
// copies nothing twice. The redrive command in the examples module wraps it.
package dlq
