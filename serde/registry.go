package serde

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
)

// maxReferenceDepth bounds how deep schema references are followed, so a
// reference cycle in the registry ends in an error instead of a loop.
const maxReferenceDepth = 32

// RegistryOpt configures a Registry.
type RegistryOpt interface{ apply(*registryCfg) }

type registryOpt func(*registryCfg)

func (o registryOpt) apply(c *registryCfg) { o(c) }

type registryCfg struct {
	clientOpts []sr.ClientOpt
	timeout    time.Duration
}

// BasicAuth sends HTTP basic authentication with every registry request
// (Confluent: basic.auth.user.info). The default is no authentication.
func BasicAuth(user, pass string) RegistryOpt {
	return registryOpt(func(c *registryCfg) { c.clientOpts = append(c.clientOpts, sr.BasicAuth(user, pass)) })
}

// BearerToken sends "Authorization: Bearer token" with every registry
// request (Confluent: bearer.auth.token). The default is no authentication.
func BearerToken(token string) RegistryOpt {
	return registryOpt(func(c *registryCfg) { c.clientOpts = append(c.clientOpts, sr.BearerToken(token)) })
}

// TLS sets the TLS configuration for https registry URLs: root CAs, client
// certificates, server name (Confluent: schema.registry.ssl.*). The default
// is the system's roots and no client certificate.
func TLS(cfg *tls.Config) RegistryOpt {
	return registryOpt(func(c *registryCfg) { c.clientOpts = append(c.clientOpts, sr.DialTLSConfig(cfg)) })
}

// ClientOpts passes options through to the franz-go registry client, applied
// after the ones above; for example sr.HTTPClient, sr.UserAgent, or the
// options of an existing client, cl.Opts(). The default is none.
func ClientOpts(opts ...sr.ClientOpt) RegistryOpt {
	return registryOpt(func(c *registryCfg) { c.clientOpts = append(c.clientOpts, opts...) })
}

// LookupTimeout bounds each schema lookup, including the lookups of the
// schemas it references. A lookup that times out is retriable. The default
// is 10s; the default HTTP client of package sr also gives up on a single
// request after 5s.
func LookupTimeout(d time.Duration) RegistryOpt {
	return registryOpt(func(c *registryCfg) { c.timeout = d })
}

// Registry looks up writer schemas in a Confluent Schema Registry by ID and
// caches them for the life of the Registry: a schema ID never changes its
// schema. Concurrent lookups of one ID make one request; a failed lookup is
// not cached, so the next record asks again. A Registry is safe for
// concurrent use and is meant to be shared by all codecs of a process.
type Registry struct {
	cl      *sr.Client
	timeout time.Duration
	schemas flight[int, *writerSchema]
}

// writerSchema is a schema as the registry stores it, parsed for Avro.
type writerSchema struct {
	id     int
	schema sr.Schema
	avro   avro.Schema // nil when err is set
	err    error       // why the schema is no Avro writer schema; it never changes
}

// NewRegistry returns a Registry for the registry at url, which may list
// several URLs separated by commas (tried in order on transport errors). An
// empty url means http://localhost:8081, or the URLs given through
// ClientOpts(sr.URLs(...)). NewRegistry sends no request.
func NewRegistry(url string, opts ...RegistryOpt) (*Registry, error) {
	cfg := registryCfg{timeout: 10 * time.Second}
	for _, o := range opts {
		o.apply(&cfg)
	}
	if cfg.timeout <= 0 {
		return nil, fmt.Errorf("serde: LookupTimeout must be positive, got %v", cfg.timeout)
	}
	var clOpts []sr.ClientOpt
	var urls []string
	for u := range strings.SplitSeq(url, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	if len(urls) > 0 {
		clOpts = append(clOpts, sr.URLs(urls...))
	}
	cl, err := sr.NewClient(append(clOpts, cfg.clientOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("serde: registry client: %w", err)
	}
	return &Registry{cl: cl, timeout: cfg.timeout}, nil
}

// Client returns the underlying franz-go registry client, for registry
// calls of one's own (subjects, compatibility checks).
func (r *Registry) Client() *sr.Client { return r.cl }

// schema returns the writer schema with the given ID. Its error is a failed
// request (to classify with registryError); a schema that was found but
// cannot serve as an Avro writer schema comes back with its err set and is
// cached like any other.
func (r *Registry) schema(ctx context.Context, id int) (*writerSchema, error) {
	return r.schemas.get(ctx, id, func() (*writerSchema, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout)
		defer cancel()
		return r.fetch(ctx, id)
	})
}

func (r *Registry) fetch(ctx context.Context, id int) (*writerSchema, error) {
	s, err := r.cl.SchemaByID(ctx, id)
	if err != nil {
		return nil, err
	}
	ws := &writerSchema{id: id, schema: s}
	if s.Type != sr.TypeAvro {
		ws.err = fmt.Errorf("schema ID %d is a %s schema, not Avro", id, s.Type)
		return ws, nil
	}
	// A fresh cache per schema: hamba's default cache is global, and a
	// name defined by one schema must not leak into another.
	cache := new(avro.SchemaCache)
	if err := r.parseReferences(ctx, s.References, cache, 0); err != nil {
		if _, bad := errors.AsType[*badSchemaError](err); !bad {
			return nil, err
		}
		ws.err = err
		return ws, nil
	}
	ws.avro, err = avro.ParseWithCache(s.Schema, "", cache)
	if err != nil {
		ws.err = fmt.Errorf("parsing schema ID %d: %w", id, err)
	}
	return ws, nil
}

// badSchemaError is a referenced schema that exists but cannot be parsed.
type badSchemaError struct{ err error }

func (e *badSchemaError) Error() string { return e.err.Error() }
func (e *badSchemaError) Unwrap() error { return e.err }

// parseReferences parses the referenced schemas, depth first, into cache so
// that the referring schema can name their types.
func (r *Registry) parseReferences(ctx context.Context, refs []sr.SchemaReference, cache *avro.SchemaCache, depth int) error {
	if len(refs) > 0 && depth >= maxReferenceDepth {
		return &badSchemaError{fmt.Errorf("schema references nested deeper than %d", maxReferenceDepth)}
	}
	for _, ref := range refs {
		s, err := r.cl.SchemaByVersion(ctx, ref.Subject, ref.Version)
		if err != nil {
			return fmt.Errorf("reference %q (subject %q version %d): %w", ref.Name, ref.Subject, ref.Version, err)
		}
		if err := r.parseReferences(ctx, s.References, cache, depth+1); err != nil {
			return err
		}
		if _, err := avro.ParseWithCache(s.Schema.Schema, "", cache); err != nil {
			return &badSchemaError{fmt.Errorf("parsing reference %q (subject %q version %d): %w", ref.Name, ref.Subject, ref.Version, err)}
		}
	}
	return nil
}
