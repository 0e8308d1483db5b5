package consumer

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A Handler processes one record.
//
// With PartitionOrder, the default, Handle is called with the records of one
// partition in offset order, never concurrently for the same partition. With
// KeyOrder, records of one key come in offset order and records of
// different keys of the same partition may be handled concurrently; with
// Unordered, any records may. Returning nil means the record's effect
// is done: only then is its offset stored, and stored offsets are committed
// in the background. Returning an error keeps the offset where it is; the
// Consumer logs the error and calls Handle again with the same record after a
// backoff, so a partition never skips a record on its own. Dead-lettering and
// bounded retries come from a plugin (package dlq).
//
// The context is cancelled when the record's partition is lost or revoked and
// the revoke timeout passes, or when shutdown's drain deadline passes; it is
// not cancelled merely because Run's context is done, so a handler finishes the
// record in hand during a graceful stop. A panic in Handle is recovered and
// returned as a *PanicError.
//
// Handle must not retain r after returning.
type Handler interface {
	Handle(ctx context.Context, r *kgo.Record) error
}

// HandlerFunc adapts an ordinary function to a Handler.
type HandlerFunc func(ctx context.Context, r *kgo.Record) error

// Handle calls f(ctx, r).
func (f HandlerFunc) Handle(ctx context.Context, r *kgo.Record) error { return f(ctx, r) }

// Middleware wraps a Handler with behaviour of its own, such as retries,
// metrics or decoding.
type Middleware func(Handler) Handler

// chain wraps h so that mw[0] is the outermost layer.
func chain(h Handler, mw []Middleware) Handler {
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h
}

// PanicError is returned in place of a panic raised by a Handler.
type PanicError struct {
	Value any    // the value passed to panic
	Stack []byte // the goroutine's stack where the panic happened
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("consumer: handler panic: %v", e.Value)
}

// Unwrap returns the panic value if it is an error, so errors.Is and
// errors.As see through the panic.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// safeHandle calls h and turns a panic into a *PanicError.
func safeHandle(ctx context.Context, h Handler, r *kgo.Record) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return h.Handle(ctx, r)
}
