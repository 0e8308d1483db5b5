// Package dlq routes handler errors: poison records (that will never
// succeed) go to a dead-letter topic at once, retriable failures are retried
// with backoff, and a circuit breaker pauses consumption when failures that
// outlive their retries say the trouble is systemic. It also re-drives a
// dead-letter topic back to its source.
//
// A Router is a consumer.Plugin; attach it after the recovery strategy, if
// any. It learns the Consumer's group (written to each dead letter),
// brokers and logger when it attaches, and flushes its dead letters when
// Run returns: it waits up to WriteTimeout for dead-letter writes still in
// progress (from handlers abandoned at the drain deadline), which adds up
// to WriteTimeout to how long the Consumer's Run takes to return after its
// context is done, beyond the bound of consumer.ShutdownTimeout:
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
//	if errors.Is(err, errUnknownSchemaID) {
//		return fault.MarkUncertain(err) // a replica behind, or the wrong registry: wait a while
//	}
//
// Unmarked errors go through the Classify function; by default they are
// retried MaxAttempts times and then dead-lettered. A handler panic is
// retried the same way and dead-lettered as poison. Attempts are spaced by
// the Consumer's RetryBackoff, and the record's partition (with KeyOrder,
// its key) waits meanwhile, so order is kept and the offset does not move.
//
// # Decision table
//
// What the Router does with a record after each call of the handler, by the
// class of the error (after Classify) and the attempt; "window" is the
// circuit breaker's count of outcomes, one per record, from which it opens:
//
//	class          attempt                           the record                      window
//	-------------  --------------------------------  ------------------------------  -------------
//	(nil)          any                               handled, offset stored          a success
//	Poison         the first                         dead-lettered at once           nothing, ever
//	Retriable      n, not a multiple of MaxAttempts  retried                         nothing
//	Retriable      n, a multiple of MaxAttempts      retried (never dead-lettered)   a failure
//	Uncertain      before UncertainFor is up         retried                         nothing
//	Uncertain      once UncertainFor is up           dead-lettered as poison         a failure
//	Unclassified   before MaxAttempts                retried                         nothing
//	Unclassified   MaxAttempts and after             dead-lettered                   a failure
//	panic          before MaxAttempts                retried                         nothing
//	panic          MaxAttempts and after             dead-lettered as poison         a failure
//
// and what the circuit breaker changes:
//
//	breaker                     the record                                      breaker
//	--------------------------  ----------------------------------------------  ---------------------
//	open, or half-open with     held: the handler is not called; the error      stays
//	another record probing      matches fault.ErrHeld
//	closed, and this failure    held instead of dead-lettered                   opens
//	reaches the threshold
//	opened while the record     a failure that would dead-letter it holds it    stays
//	was being handled           instead; poison is dead-lettered
//	half-open, and the record   success: handled                                closes
//	is the probe                Poison: dead-lettered                           no verdict: the next
//	                                                                            record probes
//	                            Uncertain, time up: dead-lettered as poison     opens again
//	                            any other failure: held                         opens again
//	any                         a dead letter whose write failed: the write is  nothing (WriteFailures)
//	                            retried, the handler is not called again
//
// Poison never counts: a record poison on its own (a bad magic byte, a
// truncated payload, a payload that does not match its schema, failed
// validation) is dead-lettered at the speed of the dead-letter writes, one
// acknowledged write per record of a partition, whatever the records
// around it, and a run of poison never opens the breaker. The breaker
// counts what outlives retries: a retriable error that persists (once per
// MaxAttempts failed attempts in a row; the record is still retried, a
// sink outage is not the record's fault), an unclassified error or a panic
// that used up its attempts, and an uncertain error still failing when its
// time is up. The price is that a systemic failure that marks records
// poison (a reader schema deployed by mistake) dead-letters everything:
// mark poison only what is the record's own fault, and uncertain what may
// be systemic.
//
// Uncertain records wait UncertainFor (1 minute by default), measured
// over a partition's run of records that fail uncertain one after another:
// the first of the run waits, those after it in the run are dead-lettered
// at their first failure once the run is UncertainFor old, so a burst of
// records with an unknown schema ID costs one UncertainFor, not one each.
// A record of the partition handled successfully, or a pause of
// UncertainFor without an uncertain failure, ends the run. Their dead
// letters count against the breaker because an uncertain failure may be
// systemic: when the registry is pointed at the wrong cluster every record
// is uncertain, and the breaker stops dead-lettering them after a window's
// worth. A long run of genuinely unknown schema IDs can open the breaker
// too, since its dead letters go at full speed once the run's time is up;
// the breaker then slows the rest of the run down, to one per cool-down
// at worst.
//
// # Dead letters
//
// A dead letter keeps the record's key, value and headers byte for byte and
// adds the Header* headers (original topic, partition, offset and timestamp,
// group, error class and message, attempts, failure time). It goes to
// "<topic>.dlq" unless DeadLetterTopic says otherwise, and the source offset
// is stored only after the dead letter is acknowledged. A crash between the
// two writes the dead letter once more when the record is redelivered: at
// most one duplicate, never none. HeaderClass is poison or unclassified,
// never retriable or uncertain: an uncertain record is written as poison
// (its HeaderError holds the mark's "uncertain: " where the error was
// marked), and RouterStats counts it apart.
//
// # Circuit breaker
//
// When at least the threshold of the recent outcomes are failures, the
// breaker opens: no record is handled and every partition holds its
// record, which pauses consumption, until a probe after the cool-down
// succeeds. The state changes are logged, one line each, the opening with
// its reason, and told to OnBreakerChange.
//
// # Observing
//
// RouterStats (fault.RouterStats) counts dead letters in all and by the
// class that sent them (DeadLetteredByClass), failed dead-letter writes,
// and reports the breaker's state, how often it opened, why it is open
// (Reason) and how many partitions it holds (Held). A monitor that sees
// the results of the handler chain (a consumer.Observer) tells a hold
// from a failure with errors.Is(err, fault.ErrHeld): the handler was not
// called. A record dead-lettered is a nil result to the Consumer, since it
// is done; its class is in DeadLetteredByClass.
//
// # Re-driving
//
// Dead letters are per group: a dead-letter topic holds the letters of every
// group reading its source topic, each naming its group, and Redrive copies
// each back to the group that wrote it only, on that group's redrive topic
// (RedriveTopic: "sensor-data.redrive.usage"), to the partition it came
// from. A Router attached to a Consumer with a group reads the redrive topic
// of each of the Consumer's topics (creating it at start if it can), so a
// re-driven record goes through the same handler, strategy and routing as
// the original, while the groups that handled it never see it again and a
// re-driven record that fails once more is dead-lettered once more, to the
// same dead-letter topic, and nothing multiplies. Redrive can pick letters
// by group, class, offset range or failure time, and keeps its progress as
// a consumer group's offsets on the dead-letter topic so that running it
// again copies nothing twice. A redrive topic with fewer partitions than
// its source (the source grew since) gets more, when the Router starts and
// when Redrive copies to it. The redrive command in the examples module
// wraps it.
//
// A re-driven record reaches the handler from the redrive topic: its
// r.Topic is "<source>.redrive.<group>" ("sensor-data.redrive.usage"), not
// the source. A handler that branches on the topic, or keeps state per
// topic, maps it back with SourceTopic(r.Topic, group); the dead-letter
// topic of a re-driven record that fails again is chosen the same way.
//
// RedriveTopic replaces each character a topic name cannot hold by '_', so
// two group IDs that differ only in such characters ("a:b" and "a/b")
// share a redrive topic, and each group reads the other's re-driven
// records. Kafka's limit of 249 characters on a topic name applies to the
// redrive topic too: a longer one cannot be created. Name groups with
// [a-zA-Z0-9._-] only, short enough for "<source>.redrive.<group>".
package dlq
