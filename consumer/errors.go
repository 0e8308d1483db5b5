package consumer

import "errors"

var (
	// ErrInvalidOption is returned by New, wrapped, for a missing or
	// conflicting option.
	ErrInvalidOption = errors.New("consumer: invalid option")

	// ErrRunTwice is returned by Run when it was called before: a
	// Consumer runs once.
	ErrRunTwice = errors.New("consumer: Run called twice")

	// ErrDrainTimeout is returned by Run, wrapped, when records were still
	// in hand at the end of the shutdown timeout; their handler contexts
	// were cancelled and their offsets not stored.
	ErrDrainTimeout = errors.New("consumer: shutdown timed out waiting for handlers")
)
