package fault

import (
	"errors"
	"fmt"
)

// Class says what to do with a record whose handler failed.
type Class int

const (
	// Unclassified errors follow the configured default.
	Unclassified Class = iota
	// Retriable errors may succeed later (a sink is down, a timeout): the
	// record is retried with backoff and its offset does not advance.
	Retriable
	// Poison errors will never succeed (bad bytes, unknown schema, failed
	// validation): a dead-letter router writes the record to its
	// dead-letter topic at once.
	Poison
)

func (c Class) String() string {
	switch c {
	case Retriable:
		return "retriable"
	case Poison:
		return "poison"
	}
	return "unclassified"
}

// MarshalText returns the class's name, as in HeaderClass.
func (c Class) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText parses a class's name: "poison", "retriable" or
// "unclassified".
func (c *Class) UnmarshalText(b []byte) error {
	for _, k := range []Class{Unclassified, Retriable, Poison} {
		if string(b) == k.String() {
			*c = k
			return nil
		}
	}
	return fmt.Errorf("fault: unknown error class %q", b)
}

var (
	// ErrPoison matches, with errors.Is, every error marked by Poison.
	ErrPoison = errors.New("poison")
	// ErrRetriable matches, with errors.Is, every error marked by Retriable.
	ErrRetriable = errors.New("retriable")
)

// ClassError marks an error with a Class. It is found by errors.As anywhere
// in a wrap chain, and matches ErrPoison or ErrRetriable with errors.Is.
type ClassError struct {
	Class Class
	Err   error
}

func (e *ClassError) Error() string { return fmt.Sprintf("%s: %v", e.Class, e.Err) }

// Unwrap returns the marked error.
func (e *ClassError) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel of e's class.
func (e *ClassError) Is(target error) bool {
	return target == ErrPoison && e.Class == Poison || target == ErrRetriable && e.Class == Retriable
}

// MarkPoison marks err as poison: the record can never be handled. It returns
// nil for a nil err.
func MarkPoison(err error) error { return mark(Poison, err) }

// MarkRetriable marks err as retriable: handling may succeed later. It
// returns nil for a nil err.
func MarkRetriable(err error) error { return mark(Retriable, err) }

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
