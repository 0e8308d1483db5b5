package serde

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/hamba/avro/v2"
	"github.com/modern-go/reflect2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/kconsumer/kconsumer/fault"
)

// maxPooledWriter is the largest encode buffer kept for reuse, so one huge
// record does not pin its buffer for the life of the process.
const maxPooledWriter = 1 << 20

// AvroOpt configures an Avro codec.
type AvroOpt interface{ apply(*avroCfg) }

type avroOpt func(*avroCfg)

func (o avroOpt) apply(c *avroCfg) { o(c) }

type avroCfg struct {
	key          bool
	subjects     SubjectStrategy
	autoRegister bool
	api          avro.API
}

// ForKey makes the codec serve record keys: subjects are named for keys
// (TopicName gives "<topic>-key") and errors say "key". The default is
// record values (Confluent: the isKey argument of configure).
func ForKey() AvroOpt { return avroOpt(func(c *avroCfg) { c.key = true }) }

// SubjectNaming sets how Encode names the subject of the codec's schema,
// and under which subject an incompatibility error looks up the reader
// schema's ID. The default is TopicName (Confluent:
// key.subject.name.strategy, value.subject.name.strategy).
func SubjectNaming(s SubjectStrategy) AvroOpt {
	return avroOpt(func(c *avroCfg) { c.subjects = s })
}

// AutoRegister sets whether Encode registers the codec's schema under its
// subject (true) or only looks up the ID of an already registered, equal
// schema (false). The default is true (Confluent: auto.register.schemas).
func AutoRegister(on bool) AvroOpt { return avroOpt(func(c *avroCfg) { c.autoRegister = on }) }

// WithAvroAPI sets the hamba/avro configuration used to encode and decode,
// for example one with a larger MaxByteSliceSize or another struct tag key.
// The default is avro.DefaultConfig.
func WithAvroAPI(api avro.API) AvroOpt { return avroOpt(func(c *avroCfg) { c.api = api }) }

// Avro encodes values of type T in the Confluent wire format and decodes
// them with schema evolution: each record is decoded with the schema it was
// written with (found by the ID in its header), resolved against the codec's
// reader schema, which describes T. Writer and reader schemas may differ as
// Avro's resolution rules allow: fields added with a default, optional
// fields removed, numeric promotion, enum symbols with a default. The
// resolution is computed once per writer schema ID and cached, so decoding a
// record of a known schema costs a map lookup on top of the Avro decode.
//
// An Avro codec is safe for concurrent use.
type Avro[T any] struct {
	reg    *Registry
	cfg    avroCfg
	text   string
	schema avro.Schema
	record string // full name of the reader schema, "" if not named
	compat *avro.SchemaCompatibility

	plans   atomic.Pointer[map[int]*plan] // by writer schema ID; copied on write
	mu      sync.Mutex                    // serializes writers of plans
	readers sync.Pool
	writers sync.Pool
	ids     flight[string, int] // subject → ID of the reader schema
}

var _ Decoder[int] = (*Avro[int])(nil)

// plan is how to decode records of one writer schema into T.
type plan struct {
	// dec decodes the writer schema, resolved against the reader's, into
	// a *T. Holding it skips the decoder cache lookup that Unmarshal makes
	// on every call (a sync.Map keyed by a 32-byte fingerprint).
	dec avro.ValDecoder
	err error // why records of this schema can never be read as T
}

// NewAvro returns a codec for values of type T, described by the Avro
// schema text. T is typically a struct whose fields carry `avro:"name"`
// tags; fields of the schema that T lacks are skipped when decoding.
// Writer schemas are looked up in reg. NewAvro sends no request; it checks
// that the schema parses and that T can hold what it describes, so that a
// wrong Go type fails here rather than as poison on every record.
func NewAvro[T any](reg *Registry, schema string, opts ...AvroOpt) (*Avro[T], error) {
	if reg == nil {
		return nil, errors.New("serde: NewAvro needs a Registry")
	}
	cfg := avroCfg{subjects: TopicName, autoRegister: true, api: avro.DefaultConfig}
	for _, o := range opts {
		o.apply(&cfg)
	}
	if cfg.subjects == nil || cfg.api == nil {
		return nil, errors.New("serde: SubjectNaming and WithAvroAPI need a non-nil argument")
	}
	s, err := avro.ParseWithCache(schema, "", new(avro.SchemaCache))
	if err != nil {
		return nil, fmt.Errorf("serde: parsing reader schema: %w", err)
	}
	if probe, ok := minimalPayload(nil, s, 0); ok {
		if err := cfg.api.Unmarshal(s, probe, new(T)); err != nil {
			return nil, fmt.Errorf("serde: %T does not fit the reader schema: %w", *new(T), err)
		}
	}
	a := &Avro[T]{reg: reg, cfg: cfg, text: schema, schema: s, compat: avro.NewSchemaCompatibility()}
	if n, ok := s.(avro.NamedSchema); ok {
		a.record = n.FullName()
	}
	a.plans.Store(&map[int]*plan{})
	a.readers.New = func() any { return avro.NewReader(nil, 0, avro.WithReaderConfig(cfg.api)) }
	a.writers.New = func() any { return avro.NewWriter(nil, 512, avro.WithWriterConfig(cfg.api)) }
	return a, nil
}

// Schema returns the reader schema the codec was created with.
func (a *Avro[T]) Schema() avro.Schema { return a.schema }

// Decode decodes data, a record key or value in the Confluent wire format
// read from topic, into v. It looks up an unknown writer schema ID in the
// registry, waiting at most until ctx is done. Like hamba/avro, it fills
// pointers, slices and maps already in v, so pass a zero value when an
// earlier one may still be in use (Handle does).
//
// Errors are *DecodeError values marked with a class of package fault:
// poison for bytes that will never decode (ErrNull, ErrBadMagic,
// ErrTruncated, ErrMismatch, ErrIncompatible), uncertain for a schema ID the
// registry does not know (ErrUnknownSchema), retriable when the registry
// could not be asked (ErrRegistryUnavailable, or ctx's error).
func (a *Avro[T]) Decode(ctx context.Context, topic string, data []byte, v *T) error {
	if v == nil {
		return errors.New("serde: Decode into a nil pointer")
	}
	if data == nil {
		return poison(topic, a.cfg.key, -1, nullError(a.cfg.key))
	}
	id, payload, err := splitHeader(data)
	if err != nil {
		return poison(topic, a.cfg.key, -1, err)
	}
	p, ok := (*a.plans.Load())[id]
	if !ok {
		if p, err = a.plan(ctx, topic, id); err != nil {
			return err
		}
	}
	if p.err != nil {
		return a.incompatible(ctx, topic, id, p.err)
	}

	r := a.readers.Get().(*avro.Reader)
	r.Reset(payload)
	p.dec.Decode(unsafe.Pointer(v), r)
	err = r.Error
	if err == nil {
		// Peek at the end of the data sets io.EOF; anything else means
		// bytes the schema did not account for.
		if r.Peek(); r.Error == nil {
			err = errLeftover
		}
	}
	r.Reset(nil)
	r.Error = nil
	a.readers.Put(r)

	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return poison(topic, a.cfg.key, id, fmt.Errorf("%w: record ends early: %w", ErrTruncated, err))
	default:
		return poison(topic, a.cfg.key, id, fmt.Errorf("%w: %w", ErrMismatch, err))
	}
}

var errLeftover = errors.New("bytes left over after the record")

// plan returns the cached plan for writer schema ID id, creating it from the
// registry's schema.
func (a *Avro[T]) plan(ctx context.Context, topic string, id int) (*plan, error) {
	ws, err := a.reg.schema(ctx, id)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return nil, fault.MarkRetriable(&DecodeError{Topic: topic, Partition: -1, Offset: -1, Key: a.cfg.key, SchemaID: id, Err: err})
		}
		class, cause := registryError(err)
		return nil, fault.Mark(class, &DecodeError{Topic: topic, Partition: -1, Offset: -1, Key: a.cfg.key, SchemaID: id, Err: cause})
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	plans := *a.plans.Load()
	if p, ok := plans[id]; ok {
		return p, nil
	}
	p := &plan{err: ws.err}
	if p.err == nil {
		var resolved avro.Schema
		if resolved, p.err = a.compat.Resolve(a.schema, ws.avro); p.err == nil {
			p.dec = a.cfg.api.DecoderOf(resolved, reflect2.TypeOf((*T)(nil)))
		}
	}
	next := maps.Clone(plans)
	next[id] = p
	a.plans.Store(&next)
	return p, nil
}

// incompatible returns the poison error for records of writer schema ID id,
// naming the reader schema's ID where the registry knows it.
func (a *Avro[T]) incompatible(ctx context.Context, topic string, id int, cause error) error {
	var reader string
	subject := a.cfg.subjects(topic, a.cfg.key, a.record)
	if subject == "" {
		reader = "reader schema (no subject to find its ID)"
	} else if rid, err := a.readerID(ctx, subject, false); err != nil {
		reader = fmt.Sprintf("reader schema (ID unknown, subject %q: %v)", subject, err)
	} else {
		reader = fmt.Sprintf("reader schema ID %d (subject %q)", rid, subject)
	}
	return poison(topic, a.cfg.key, id, fmt.Errorf("%w: writer schema ID %d, %s: %w", ErrIncompatible, id, reader, cause))
}

// readerID returns the ID of the reader schema under subject, registering
// the schema first if register is set.
func (a *Avro[T]) readerID(ctx context.Context, subject string, register bool) (int, error) {
	return a.ids.get(ctx, subject, func() (int, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.reg.timeout)
		defer cancel()
		s := sr.Schema{Schema: a.text, Type: sr.TypeAvro}
		if register {
			return a.reg.cl.RegisterSchema(ctx, subject, s, -1, -1)
		}
		ss, err := a.reg.cl.LookupSchema(ctx, subject, s)
		return ss.ID, err
	})
}

// Encode returns v in the Confluent wire format for a record of topic: the
// header with the ID of the codec's schema under its subject (registered on
// first use unless AutoRegister(false)), then v's Avro encoding.
func (a *Avro[T]) Encode(ctx context.Context, topic string, v T) ([]byte, error) {
	return a.AppendEncode(ctx, nil, topic, v)
}

// AppendEncode is Encode appending to b. Registry failures that may pass
// (unreachable, 5xx, 429, timeouts) are marked retriable.
func (a *Avro[T]) AppendEncode(ctx context.Context, b []byte, topic string, v T) ([]byte, error) {
	subject := a.cfg.subjects(topic, a.cfg.key, a.record)
	if subject == "" {
		return b, fmt.Errorf("serde: no subject for topic %q: the schema is not a named type", topic)
	}
	id, err := a.readerID(ctx, subject, a.cfg.autoRegister)
	if err != nil {
		err = fmt.Errorf("serde: schema ID for subject %q: %w", subject, err)
		if encodeRetriable(err) {
			err = fault.MarkRetriable(fmt.Errorf("%w: %w", ErrRegistryUnavailable, err))
		}
		return b, err
	}

	w := a.writers.Get().(*avro.Writer)
	w.Reset(nil)
	w.WriteVal(a.schema, v)
	if err = w.Error; err == nil {
		b = appendHeader(b, id)
		b = append(b, w.Buffer()...)
	}
	w.Error = nil
	if cap(w.Buffer()) <= maxPooledWriter {
		a.writers.Put(w)
	}
	if err != nil {
		return b, fmt.Errorf("serde: encoding %T for subject %q: %w", v, subject, err)
	}
	return b, nil
}

// encodeRetriable reports whether a failed schema registration or lookup
// may succeed later: anything but an answer that the request is wrong.
func encodeRetriable(err error) bool {
	re, ok := errors.AsType[*sr.ResponseError](err)
	if !ok {
		return true
	}
	switch re.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusRequestTimeout, http.StatusTooManyRequests:
		return true
	}
	return re.StatusCode >= 500
}
