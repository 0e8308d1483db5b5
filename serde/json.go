package serde

import (
	"context"
	"encoding/json"
	"fmt"
)

// JSON encodes and decodes values of type T as plain JSON with
// encoding/json, without a header or a registry, for topics that do not use
// Avro. Its zero value is ready to use and safe for concurrent use.
type JSON[T any] struct {
	// Key makes errors say "key" instead of "value".
	Key bool
}

var _ Decoder[int] = JSON[int]{}

// Decode decodes data, read from topic, into v. Malformed JSON, or JSON
// that does not fit T, is a poison *DecodeError wrapping ErrMismatch; a
// null key or value (not the JSON literal null) one wrapping ErrNull.
func (j JSON[T]) Decode(_ context.Context, topic string, data []byte, v *T) error {
	if data == nil {
		return poison(topic, j.Key, -1, nullError(j.Key))
	}
	if err := json.Unmarshal(data, v); err != nil {
		return poison(topic, j.Key, -1, fmt.Errorf("%w: %w", ErrMismatch, err))
	}
	return nil
}

// Encode returns v as JSON.
func (j JSON[T]) Encode(_ context.Context, _ string, v T) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("serde: encoding %T as JSON: %w", v, err)
	}
	return b, nil
}

// AppendEncode is Encode appending to b.
func (j JSON[T]) AppendEncode(ctx context.Context, b []byte, topic string, v T) ([]byte, error) {
	enc, err := j.Encode(ctx, topic, v)
	if err != nil {
		return b, err
	}
	return append(b, enc...), nil
}
