package svc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kconsumer/kconsumer/examples/internal/telemetry"
	"github.com/kconsumer/kconsumer/serde"
)

// An UnreachableError says a dependency did not answer at start.
type UnreachableError struct {
	Dependency string // "Kafka", "Schema Registry", "MongoDB"
	Addr       string
	Hint       string // what to set or start
	Err        error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach %s at %s: %v (%s)", e.Dependency, e.Addr, e.Err, e.Hint)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// PingKafka checks that a broker answers within timeout.
func PingKafka(ctx context.Context, brokers []string, timeout time.Duration) error {
	fail := func(err error) error {
		return &UnreachableError{"Kafka", strings.Join(brokers, ","), "start the dev stack with `go run ./devstack` or set KAFKA_BROKERS", err}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DialTimeout(timeout))
	if err != nil {
		return fail(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return retry(ctx, fail, func() error { return cl.Ping(ctx) })
}

// PingRegistry checks that the Schema Registry at url answers within
// timeout.
func PingRegistry(ctx context.Context, url string, timeout time.Duration) error {
	fail := func(err error) error {
		return &UnreachableError{"Schema Registry", url, "start the dev stack with `go run ./devstack` or set SCHEMA_REGISTRY_URL", err}
	}
	cl, err := sr.NewClient(sr.URLs(url), sr.HTTPClient(&http.Client{Timeout: timeout}))
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return retry(ctx, fail, func() error { _, err := cl.Subjects(ctx); return err })
}

// ConnectMongo connects to uri and checks the server answers within
// timeout. The caller disconnects the client.
func ConnectMongo(ctx context.Context, uri string, timeout time.Duration) (*mongo.Client, error) {
	fail := func(err error) error {
		return &UnreachableError{"MongoDB", redact(uri), "start the dev stack with `go run ./devstack` or set MONGODB_URI", err}
	}
	cl, err := mongo.Connect(options.Client().ApplyURI(uri).SetServerSelectionTimeout(timeout).SetConnectTimeout(timeout))
	if err != nil {
		return nil, fail(err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := cl.Ping(ctx, nil); err != nil {
		_ = cl.Disconnect(context.Background())
		return nil, fail(err)
	}
	return cl, nil
}

// retry calls ping until it succeeds or ctx ends, so that a service started
// together with its dependencies waits for them briefly.
func retry(ctx context.Context, fail func(error) error, ping func() error) error {
	for {
		err := ping()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				err = ctx.Err()
			}
			return fail(err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// redact hides the password of a connection string in messages.
func redact(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return "the configured URI"
	}
	return u.Redacted()
}

// TelemetryCodec checks that Kafka and the Schema Registry answer, and
// returns the codec of the telemetry readings.
func (c Config) TelemetryCodec(ctx context.Context) (*serde.Avro[telemetry.Telemetry], error) {
	if err := PingKafka(ctx, c.Brokers, c.DialTimeout); err != nil {
		return nil, err
	}
	if err := PingRegistry(ctx, c.RegistryURL, c.DialTimeout); err != nil {
		return nil, err
	}
	reg, err := serde.NewRegistry(c.RegistryURL)
	if err != nil {
		return nil, err
	}
	return serde.NewAvro[telemetry.Telemetry](reg, telemetry.Schema)
}
