// Package fault holds the words every kconsumer package uses for a handler's
// failures: the class of an error (Poison, Retriable, Unclassified), the
// markers that set it, and what a dead-letter router reports of itself.
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
package fault
