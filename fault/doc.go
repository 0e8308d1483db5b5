// Package fault holds the words every kconsumer package uses for a handler's
// failures: the class of an error (Poison, Retriable, Uncertain,
// Unclassified), the markers that set it, the error that says a record was
// held by a circuit breaker (ErrHeld), and what a dead-letter router
// reports of itself (RouterStats).
//
// It is a leaf: decoders (package serde) mark errors and monitors (package
// lag) count them without importing the dead-letter producer of package dlq.
//
//	if err := validate(reading); err != nil {
//		return fault.MarkPoison(err) // never succeeds: dead-letter it now
//	}
//	if err := db.Insert(ctx, reading); err != nil {
//		return fault.MarkRetriable(err) // try again until it works
//	}
//
// Mark an error poison only when the record alone is at fault: a
// dead-letter router dead-letters poison at full speed and does not count it
// against its circuit breaker. When a failure may be the record's or may be
// systemic and passing, mark it uncertain: the router retries it for a
// bounded time first, and counts it against the breaker if it still fails.
//
//	if errors.Is(err, errUnknownSchemaID) {
//		return fault.MarkUncertain(err) // a replica behind, or the wrong registry
//	}
//
// An observer of a Consumer's handler results tells them apart so:
//
//	switch {
//	case err == nil:                     // handled (or dead-lettered)
//	case errors.Is(err, fault.ErrHeld):  // not handled: a circuit breaker holds it
//	default:                             // failed: count by fault.ClassOf(err)
//	}
package fault
