// Package svctest helps the example services' tests: a dev stack per test,
// free ports, running a service's run function in the background and
// waiting on its HTTP endpoints.
package svctest

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/examples/internal/devstack"
	"github.com/kconsumer/kconsumer/examples/internal/telemetry"
	"github.com/kconsumer/kconsumer/serde"
)

// Stack starts the chosen servers on free ports, with three partitions per
// topic; they stop when the test ends.
func Stack(t *testing.T, kafka, registry, mongo bool) *devstack.Stack {
	t.Helper()
	cfg := devstack.Config{Partitions: 3, SessionFloor: 100 * time.Millisecond}
	if kafka {
		cfg.KafkaAddr = "127.0.0.1:0"
	}
	if registry {
		cfg.RegistryAddr = "127.0.0.1:0"
	}
	if mongo {
		cfg.MongoAddr, cfg.DataDir = "127.0.0.1:0", t.TempDir()
	}
	s, err := devstack.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// FreeAddr returns a loopback address whose port was free a moment ago.
func FreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Service is a service's run function running in the background.
type Service struct {
	stop   context.CancelFunc
	done   chan struct{}
	err    error
	mu     sync.Mutex
	stderr strings.Builder
}

// Start runs run with args until Stop or the end of the test.
func Start(t *testing.T, run func(context.Context, []string, io.Writer, io.Writer) error, args ...string) *Service {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	s := &Service{stop: stop, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.err = run(ctx, args, io.Discard, (*lockedWriter)(s))
	}()
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("service stopped with %v\n%s", err, s.Log())
		}
	})
	return s
}

type lockedWriter Service

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stderr.Write(p)
}

// Log returns what the service logged so far.
func (s *Service) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// Stop cancels the service's context, as SIGTERM does, and returns what
// run returned.
func (s *Service) Stop() error {
	s.stop()
	<-s.done
	return s.err
}

// Done is closed when run returned.
func (s *Service) Done() <-chan struct{} { return s.done }

// WaitFor calls cond every 20 ms until it returns true, failing the test
// after timeout or when the service returned.
func (s *Service) WaitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		select {
		case <-s.done:
			t.Fatalf("service returned %v while waiting for %s\n%s", s.err, what, s.Log())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v\n%s", what, timeout, s.Log())
		}
	}
}

// Status returns the status code of a GET of url, 0 if it failed.
func Status(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// GetJSON decodes the body of a GET of url into v and returns the status.
func GetJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
	}
	return resp.StatusCode
}

// Produce writes readings to sensor-data, Avro-encoded and keyed by sensor,
// and returns them as the broker stored them.
func Produce(t *testing.T, s *devstack.Stack, readings ...telemetry.Telemetry) []*kgo.Record {
	t.Helper()
	reg, err := serde.NewRegistry(s.RegistryURL)
	if err != nil {
		t.Fatal(err)
	}
	codec, err := serde.NewAvro[telemetry.Telemetry](reg, telemetry.Schema)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	recs := make([]*kgo.Record, len(readings))
	for i, r := range readings {
		v, err := codec.Encode(ctx, telemetry.Topic, r)
		if err != nil {
			t.Fatal(err)
		}
		recs[i] = &kgo.Record{Topic: telemetry.Topic, Key: []byte(r.SensorID), Value: v}
	}
	ProduceRaw(t, s, recs...)
	return recs
}

// ProduceRaw writes records as they are.
func ProduceRaw(t *testing.T, s *devstack.Stack, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.Brokers))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// ReadAll returns the records of topic's partitions up to their ends now.
func ReadAll(t *testing.T, s *devstack.Stack, topic string, want int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.Brokers), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s holds %d records, want %d", topic, len(out), want)
		}
		out = append(out, fs.Records()...)
	}
	return out
}
