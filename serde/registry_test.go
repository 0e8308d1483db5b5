package serde_test

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/kconsumer/kconsumer/fault"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
	"github.com/kconsumer/kconsumer/serde"
)

// encoded returns sample(i) in the wire format, registered in fake.
func encoded(t *testing.T, fake *kafkatest.Registry, i int) []byte {
	t.Helper()
	codec := newAvro[telemetry](t, newRegistry(t, fake.URL()), telemetrySchema)
	b, err := codec.Encode(context.Background(), topic, sample(i))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkClass fails unless err is a *DecodeError of class c, wrapping want,
// for the given schema ID, whose message names the topic and the ID.
func checkClass(t *testing.T, err error, c fault.Class, want error, id int) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v %v", c, want)
	}
	if got := fault.ClassOf(err); got != c {
		t.Errorf("class %v, want %v: %v", got, c, err)
	}
	if !errors.Is(err, want) {
		t.Errorf("error does not wrap %q: %v", want, err)
	}
	de, ok := errors.AsType[*serde.DecodeError](err)
	if !ok {
		t.Fatalf("error is no *DecodeError: %v", err)
	}
	if de.SchemaID != id || de.Topic != topic {
		t.Errorf("DecodeError topic %q schema ID %d, want %q and %d", de.Topic, de.SchemaID, topic, id)
	}
	idText := "no schema ID"
	if id >= 0 {
		idText = fmt.Sprintf("schema ID %d", id)
	}
	if msg := err.Error(); !strings.Contains(msg, topic) || !strings.Contains(msg, idText) {
		t.Errorf("message does not name topic and %s: %s", idText, msg)
	}
}

func TestPoison(t *testing.T) {
	ctx := context.Background()
	fake := kafkatest.NewRegistry(t)
	good := encoded(t, fake, 3)
	id := int(good[4])
	jsonID, _, err := fake.RegisterSchema("other", sr.Schema{Schema: `{"type": "object"}`, Type: sr.TypeJSON})
	if err != nil {
		t.Fatal(err)
	}
	codec := newAvro[telemetry](t, newRegistry(t, fake.URL()), telemetrySchema)

	for _, tc := range []struct {
		name  string
		data  []byte
		want  error
		id    int
		class fault.Class // poison unless set
	}{
		{"bad magic", append([]byte{1}, good[1:]...), serde.ErrBadMagic, -1, 0},
		{"JSON instead of Avro", []byte(`{"sensor_id":"x"}`), serde.ErrBadMagic, -1, 0},
		{"null (a tombstone)", nil, serde.ErrNull, -1, 0},
		{"empty", []byte{}, serde.ErrTruncated, -1, 0},
		{"short header", good[:3], serde.ErrTruncated, -1, 0},
		{"header only", good[:5], serde.ErrTruncated, id, 0},
		{"truncated payload", good[:len(good)-1], serde.ErrTruncated, id, 0},
		// A replica behind may learn it later: retried for a while first.
		{"unknown schema ID", []byte{0, 0, 0, 0x30, 0x39, 2, 'x'}, serde.ErrUnknownSchema, 12345, fault.Uncertain},
		{"trailing bytes", append(append([]byte(nil), good...), 0), serde.ErrMismatch, id, 0},
		{"negative string length", append([]byte{0, 0, 0, 0, byte(id)}, 0x01), serde.ErrMismatch, id, 0},
		{"not an Avro schema", []byte{0, 0, 0, 0, byte(jsonID), 0}, serde.ErrIncompatible, jsonID, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v telemetry
			err := codec.Decode(ctx, topic, tc.data, &v)
			checkClass(t, err, cmp.Or(tc.class, fault.Poison), tc.want, tc.id)
		})
	}
}

func TestRegistryFailuresAreRetriable(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		fault srfake.Interceptor
	}{
		{"500", kafkatest.Status(http.StatusInternalServerError, sr.ErrStoreError.Code)},
		{"503 without body", kafkatest.Status(http.StatusServiceUnavailable, 0)},
		{"429", kafkatest.Status(http.StatusTooManyRequests, 0)},
		{"401", kafkatest.Status(http.StatusUnauthorized, 0)},
		{"404 without registry error code", kafkatest.Status(http.StatusNotFound, 0)},
		{"connection dropped", func(w http.ResponseWriter, _ *http.Request) bool {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return true
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := kafkatest.NewRegistry(t)
			b := encoded(t, fake, 1)
			codec := newAvro[telemetry](t, newRegistry(t, fake.URL()), telemetrySchema)

			fake.SetFault(tc.fault)
			var v telemetry
			err := codec.Decode(ctx, topic, b, &v)
			checkClass(t, err, fault.Retriable, serde.ErrRegistryUnavailable, int(b[4]))

			fake.SetFault(nil) // the registry is back: the failure was not cached
			if err := codec.Decode(ctx, topic, b, &v); err != nil {
				t.Fatalf("after recovery: %v", err)
			}
			if v != sample(1) {
				t.Fatalf("decoded %+v", v)
			}
		})
	}
}

func TestRegistryTimeoutIsRetriable(t *testing.T) {
	fake := kafkatest.NewRegistry(t)
	b := encoded(t, fake, 1)
	codec := newAvro[telemetry](t, newRegistry(t, fake.URL(), serde.LookupTimeout(500*time.Millisecond)), telemetrySchema)

	fake.SetFault(func(_ http.ResponseWriter, r *http.Request) bool {
		<-r.Context().Done() // never answers; the client gives up
		return true
	})
	var v telemetry
	err := codec.Decode(context.Background(), topic, b, &v)
	checkClass(t, err, fault.Retriable, serde.ErrRegistryUnavailable, int(b[4]))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error does not wrap the deadline: %v", err)
	}

	// The lookup after recovery has the same timeout: long enough for a
	// new connection on a loaded machine.
	fake.SetFault(nil)
	if err := codec.Decode(context.Background(), topic, b, &v); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

// TestCallerContextEndsWait checks that a decode waiting on a slow lookup
// returns when its own context ends, retriable.
func TestCallerContextEndsWait(t *testing.T) {
	fake := kafkatest.NewRegistry(t)
	b := encoded(t, fake, 1)
	codec := newAvro[telemetry](t, newRegistry(t, fake.URL()), telemetrySchema)
	release := make(chan struct{})
	fake.SetFault(func(_ http.ResponseWriter, r *http.Request) bool {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return false
	})
	defer close(release)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var v telemetry
	err := codec.Decode(ctx, topic, b, &v)
	if fault.ClassOf(err) != fault.Retriable || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want a retriable context.Canceled", err)
	}
}

// TestRegistryDownAndBack closes the registry's server, so connections are
// refused, then serves the same registry on the same address again.
func TestRegistryDownAndBack(t *testing.T) {
	backing := srfake.NewRegistry()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	srv := &http.Server{Handler: backing.Handler()}
	go func() { _ = srv.Serve(ln) }()

	id, _, err := backing.RegisterSchema(topic+"-value", sr.Schema{Schema: telemetrySchema})
	if err != nil {
		t.Fatal(err)
	}
	writer := newAvro[telemetry](t, newRegistry(t, "http://"+addr), telemetrySchema)
	b, err := writer.Encode(context.Background(), topic, sample(2))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	codec := newAvro[telemetry](t, newRegistry(t, "http://"+addr), telemetrySchema)
	var v telemetry
	err = codec.Decode(context.Background(), topic, b, &v)
	checkClass(t, err, fault.Retriable, serde.ErrRegistryUnavailable, id)

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening again on %s: %v", addr, err)
	}
	srv = &http.Server{Handler: backing.Handler()}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	if err := codec.Decode(context.Background(), topic, b, &v); err != nil {
		t.Fatalf("after the registry came back: %v", err)
	}
	if v != sample(2) {
		t.Fatalf("decoded %+v", v)
	}
}

// TestConcurrentMissOneRequest starts 1,000 decodes of a schema ID no one has
// looked up yet and holds the registry's answer until all have started.
func TestConcurrentMissOneRequest(t *testing.T) {
	const n = 1000
	fake := kafkatest.NewRegistry(t)
	b := encoded(t, fake, 5)
	codec := newAvro[telemetry](t, newRegistry(t, fake.URL()), telemetrySchema)
	before := fake.ByIDRequests()

	var started atomic.Int64
	allStarted := make(chan struct{})
	fake.SetFault(func(_ http.ResponseWriter, r *http.Request) bool {
		select {
		case <-allStarted:
		case <-r.Context().Done():
		}
		return false
	})

	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			if started.Add(1) == n {
				close(allStarted)
			}
			var v telemetry
			if err := codec.Decode(context.Background(), topic, b, &v); err != nil {
				errs <- err
			} else if v != sample(5) {
				errs <- fmt.Errorf("decoded %+v", v)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := fake.ByIDRequests() - before; got != 1 {
		t.Fatalf("%d decodes made %d schema requests, want 1", n, got)
	}
}

func TestAuth(t *testing.T) {
	ctx := context.Background()
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("user:secret"))
	for _, tc := range []struct {
		name     string
		expected string
		opt      serde.RegistryOpt
	}{
		{"bearer", "Bearer t0ken", serde.BearerToken("t0ken")},
		{"basic", basic, serde.BasicAuth("user", "secret")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := kafkatest.NewRegistry(t, srfake.WithAuth(tc.expected))
			codec := newAvro[telemetry](t, newRegistry(t, fake.URL(), tc.opt), telemetrySchema)
			b, err := codec.Encode(ctx, topic, sample(1))
			if err != nil {
				t.Fatal(err)
			}
			var v telemetry
			if err := newAvro[telemetry](t, newRegistry(t, fake.URL(), tc.opt), telemetrySchema).Decode(ctx, topic, b, &v); err != nil {
				t.Fatal(err)
			}

			// Without credentials the registry refuses: retriable, the
			// records are fine.
			anon := newAvro[telemetry](t, newRegistry(t, fake.URL()), telemetrySchema)
			checkClass(t, anon.Decode(ctx, topic, b, &v), fault.Retriable, serde.ErrRegistryUnavailable, int(b[4]))
		})
	}
}

func TestTLS(t *testing.T) {
	ctx := context.Background()
	backing := srfake.NewRegistry()
	srv := httptest.NewUnstartedServer(backing.Handler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted client's failed handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}

	codec := newAvro[telemetry](t, newRegistry(t, srv.URL, serde.TLS(cfg)), telemetrySchema)
	b, err := codec.Encode(ctx, topic, sample(1))
	if err != nil {
		t.Fatal(err)
	}
	var v telemetry
	if err := codec.Decode(ctx, topic, b, &v); err != nil {
		t.Fatal(err)
	}

	untrusted := newAvro[telemetry](t, newRegistry(t, srv.URL), telemetrySchema)
	checkClass(t, untrusted.Decode(ctx, topic, b, &v), fault.Retriable, serde.ErrRegistryUnavailable, int(b[4]))
}

func TestNewRegistryURLs(t *testing.T) {
	fake := kafkatest.NewRegistry(t)
	// The first URL refuses connections; the client moves on to the next.
	reg := newRegistry(t, "http://127.0.0.1:1, "+fake.URL())
	b := encoded(t, fake, 1)
	var v telemetry
	if err := newAvro[telemetry](t, reg, telemetrySchema).Decode(context.Background(), topic, b, &v); err != nil {
		t.Fatal(err)
	}
	if _, err := serde.NewRegistry("", serde.LookupTimeout(0)); err == nil {
		t.Error("NewRegistry accepted a zero LookupTimeout")
	}
}
