// Package dlq routes handler errors: poison records (that will never
// succeed) go to a dead-letter topic at once, retriable failures are retried
// with backoff, and a circuit breaker stops dead-lettering when failures are
// systemic. It also re-drives a dead-letter topic back to its source.
package dlq
