package fault

import (
	"errors"
	"fmt"
)

// Class says what to do with a record whose handler failed.
type Class int

// The values of the classes are stable: they index
// RouterStats.DeadLetteredByClass and monitors' counters, so a new class is
// only ever added at the end.
const (
	// Unclassified errors follow the configured default: a dead-letter
	// router retries them a bounded number of times and then
	// dead-letters the record, and counts that against its circuit
	// breaker.
	Unclassified Class = iota
	// Retriable errors may succeed later (a sink is down, a timeout): the
	// record is retried with backoff and its offset does not advance. It
	// is never dead-lettered; a dead-letter router counts a retriable
	// failure that persists against its circuit breaker.
	Retriable
	// Poison errors will never succeed, whatever happens elsewhere: bad
	// bytes (a bad magic byte, a truncated payload), a payload that does
	// not match its schema, failed validation. A dead-letter router
	// writes the record to its dead-letter topic at once and never counts
	// it against its circuit breaker, so mark an error poison only when
	// the record alone is at fault.
	Poison
	// Uncertain errors may be the record's fault or a systemic one, and
	// only time tells: a schema ID the registry does not know yet may be
	// a registry replica that is behind (it will know it in a moment) or
	// a registry pointed at the wrong cluster (it never will, and neither
	// will it know any other record's). A dead-letter router retries the
	// record with backoff for a bounded time, then dead-letters it as
	// poison and counts that against its circuit breaker.
	Uncertain
)

// classes is how many classes there are.
const classes = int(Uncertain) + 1

func (c Class) String() string {
	switch c {
	case Retriable:
		return "retriable"
	case Poison:
		return "poison"
	case Uncertain:
		return "uncertain"
	}
	return "unclassified"
}

// MarshalText returns the class's name, as in HeaderClass.
func (c Class) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText parses a class's name: "poison", "retriable",
// "uncertain" or "unclassified".
func (c *Class) UnmarshalText(b []byte) error {
	for k := range Class(classes) {
		if string(b) == k.String() {
			*c = k
			return nil
		}
	}
	return fmt.Errorf("fault: unknown error class %q", b)
}

var (
	// ErrPoison matches, with errors.Is, every error marked by MarkPoison.
	ErrPoison = errors.New("poison")
	// ErrRetriable matches, with errors.Is, every error marked by
	// MarkRetriable.
	ErrRetriable = errors.New("retriable")
	// ErrUncertain matches, with errors.Is, every error marked by
	// MarkUncertain.
	ErrUncertain = errors.New("uncertain")
)

// ClassError marks an error with a Class. It is found by errors.As anywhere
// in a wrap chain, and matches ErrPoison, ErrRetriable or ErrUncertain with
// errors.Is.
type ClassError struct {
	Class Class
	Err   error
}

func (e *ClassError) Error() string { return fmt.Sprintf("%s: %v", e.Class, e.Err) }

// Unwrap returns the marked error.
func (e *ClassError) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel of e's class.
func (e *ClassError) Is(target error) bool {
	switch target {
	case ErrPoison:
		return e.Class == Poison
	case ErrRetriable:
		return e.Class == Retriable
	case ErrUncertain:
		return e.Class == Uncertain
	}
	return false
}

// MarkPoison marks err as poison: the record can never be handled, whatever
// happens elsewhere. It returns nil for a nil err.
func MarkPoison(err error) error { return mark(Poison, err) }

// MarkRetriable marks err as retriable: handling may succeed later. It
// returns nil for a nil err.
func MarkRetriable(err error) error { return mark(Retriable, err) }

// MarkUncertain marks err as uncertain: the record may be poison, or the
// failure systemic and passing, and only time tells. The example is a
// schema ID the registry does not know (yet): a registry replica behind
// the one the producer registered with knows it in a moment, a registry
// pointed at the wrong cluster never does. It returns nil for a nil err.
func MarkUncertain(err error) error { return mark(Uncertain, err) }

// Mark marks err with class c; for Unclassified it returns err as it is.
// It lets code that re-wraps an error keep its class:
//
//	return fault.Mark(fault.ClassOf(err), &DecodeError{Err: err})
//
// It returns nil for a nil err.
func Mark(c Class, err error) error {
	if c == Unclassified {
		return err
	}
	return mark(c, err)
}

func mark(c Class, err error) error {
	if err == nil {
		return nil
	}
	return &ClassError{Class: c, Err: err}
}

// ClassOf returns the class of the outermost ClassError in err's chain, or
// Unclassified.
func ClassOf(err error) Class {
	if ce, ok := errors.AsType[*ClassError](err); ok {
		return ce.Class
	}
	return Unclassified
}
