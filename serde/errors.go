package serde

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/kconsumer/kconsumer/fault"
)

// Causes of a failed decode, found with errors.Is in the error a Decoder or
// a handler from Handle returns. Each such error is also marked poison or
// retriable (package dlq).
var (
	// ErrBadMagic: the first byte is not the Confluent magic byte 0, so the
	// bytes were not written by a Schema Registry serializer. Poison.
	ErrBadMagic = errors.New("bad magic byte")

	// ErrTruncated: the payload ends before the 5-byte header or before the
	// end of the record its schema describes. Poison.
	ErrTruncated = errors.New("payload truncated")

	// ErrNull: the key or value is null; a null value is a tombstone of a
	// compacted topic. There is nothing to decode. Poison.
	ErrNull = errors.New("null")

	// ErrUnknownSchema: the registry does not know the schema ID (HTTP 404
	// with a not-found error code). Poison.
	ErrUnknownSchema = errors.New("schema ID not found in the registry")

	// ErrMismatch: the payload cannot be decoded with its writer schema, or
	// bytes are left over after the record. Poison.
	ErrMismatch = errors.New("payload does not match its schema")

	// ErrIncompatible: the writer schema cannot be resolved against the
	// reader schema (an incompatible change, or not an Avro schema). Poison.
	ErrIncompatible = errors.New("writer schema incompatible with reader schema")

	// ErrRegistryUnavailable: the registry could not be asked, or answered
	// with something other than the schema or a not-found: unreachable,
	// timed out, 5xx, 429, or refused our credentials. Retriable.
	ErrRegistryUnavailable = errors.New("schema registry unavailable")
)

// DecodeError describes a record key or value that could not be decoded.
// Decoders return it with Partition and Offset -1; handlers built by Handle
// and HandleKV fill in the record's coordinates.
type DecodeError struct {
	Topic     string
	Partition int32 // -1 when not known
	Offset    int64 // -1 when not known
	Key       bool  // the key failed rather than the value
	SchemaID  int   // the writer schema ID from the header; -1 when there is none
	Err       error
}

func (e *DecodeError) Error() string {
	part := "value"
	if e.Key {
		part = "key"
	}
	where := fmt.Sprintf("topic %q", e.Topic)
	if e.Partition >= 0 {
		where += fmt.Sprintf(" partition %d offset %d", e.Partition, e.Offset)
	}
	id := "no schema ID"
	if e.SchemaID >= 0 {
		id = fmt.Sprintf("schema ID %d", e.SchemaID)
	}
	return fmt.Sprintf("serde: decoding %s of %s, %s: %v", part, where, id, e.Err)
}

// Unwrap returns the cause.
func (e *DecodeError) Unwrap() error { return e.Err }

// poison returns a poison *DecodeError for topic and schema ID id.
func poison(topic string, key bool, id int, err error) error {
	return fault.MarkPoison(&DecodeError{Topic: topic, Partition: -1, Offset: -1, Key: key, SchemaID: id, Err: err})
}

// nullError returns the cause for a null key or value.
func nullError(key bool) error {
	if key {
		return fmt.Errorf("%w key, nothing to decode", ErrNull)
	}
	return fmt.Errorf("%w value (a tombstone), nothing to decode", ErrNull)
}

// registryError classifies a failed registry request: a not-found answer
// from the registry itself is uncertain (ErrUnknownSchema: a registry
// replica behind, or one pointed at the wrong cluster), anything else is
// retriable (ErrRegistryUnavailable). A bare 404 without a registry error
// code is retriable: it comes from a wrong URL or a proxy, not from a
// registry that lacks the schema, and dead-lettering every record for it
// would be wrong.
func registryError(err error) (class fault.Class, cause error) {
	re, ok := errors.AsType[*sr.ResponseError](err)
	if !ok {
		return fault.Retriable, fmt.Errorf("%w: %w", ErrRegistryUnavailable, err)
	}
	// The response error's text is only the registry's message.
	err = fmt.Errorf("%s %s: HTTP %d: %w", re.Method, re.URL, re.StatusCode, err)
	if re.StatusCode == http.StatusNotFound && sr.IsNotFoundError(re.ErrorCode) {
		return fault.Uncertain, fmt.Errorf("%w: %w", ErrUnknownSchema, err)
	}
	return fault.Retriable, fmt.Errorf("%w: %w", ErrRegistryUnavailable, err)
}
