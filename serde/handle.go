package serde

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/fault"
)

// A Decoder decodes a record key or value read from topic into v. Avro and
// JSON are Decoders. Errors should be *DecodeError values marked poison or
// retriable with package dlq, as theirs are.
type Decoder[T any] interface {
	Decode(ctx context.Context, topic string, data []byte, v *T) error
}

// Handle adapts a function of decoded values to a consumer.Handler: each
// record's value is decoded with values and passed to fn. A value that fails
// to decode never reaches fn; the handler returns the *DecodeError, with the
// record's topic, partition and offset filled in and its poison or retriable
// mark kept, for the Consumer's retry and the dlq middleware to act on.
func Handle[T any](values Decoder[T], fn func(ctx context.Context, r *kgo.Record, v T) error) consumer.Handler {
	return consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		var v T
		if err := values.Decode(ctx, r.Topic, r.Value, &v); err != nil {
			return locate(err, r, false)
		}
		return fn(ctx, r, v)
	})
}

// HandleKV is Handle for records whose key and value are both encoded: the
// key is decoded with keys, then the value with values.
func HandleKV[K, V any](keys Decoder[K], values Decoder[V], fn func(ctx context.Context, r *kgo.Record, k K, v V) error) consumer.Handler {
	return consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		var k K
		if err := keys.Decode(ctx, r.Topic, r.Key, &k); err != nil {
			return locate(err, r, true)
		}
		var v V
		if err := values.Decode(ctx, r.Topic, r.Value, &v); err != nil {
			return locate(err, r, false)
		}
		return fn(ctx, r, k, v)
	})
}

// locate returns err as a *DecodeError with r's coordinates. It copies
// rather than modifies a *DecodeError found in err, and keeps err's class.
func locate(err error, r *kgo.Record, key bool) error {
	de, ok := errors.AsType[*DecodeError](err)
	if !ok {
		// A Decoder of one's own: keep its error, class included, whole.
		return &DecodeError{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: key, SchemaID: -1, Err: err}
	}
	located := *de
	located.Topic, located.Partition, located.Offset, located.Key = r.Topic, r.Partition, r.Offset, key
	if fault.ClassOf(located.Err) != fault.Unclassified {
		return &located
	}
	return fault.Mark(fault.ClassOf(err), &located)
}
