// Command current serves the last reading of every sensor from memory. Its
// state is overwritten by each reading, so handling a reading twice does no
// harm: it uses the FullReplay strategy, reading every partition of
// sensor-data from the start on each start, without a consumer group and
// without commits, and reports ready once it has caught up with the end of
// the topic as it was at start.
//
//	go run ./current
//
// Endpoints:
//
//	GET /sensors        the last reading of every sensor, sorted by id
//	GET /sensors/{id}   the last reading of one sensor, 404 if unknown
//	GET /status         readiness, sensor count, skipped records and the
//	                    next offset to handle on each partition
//	GET /readyz         200 once caught up, 503 before
//	GET /healthz        503 when records wait on a partition that does not move
//	GET /metrics        Prometheus metrics
//
// A record that cannot be decoded is logged, counted
// (current_skipped_records_total) and skipped: a replay on every start
// would dead-letter it again each time, and the usage and alerts services
// already do.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/examples/internal/svc"
	"github.com/kconsumer/kconsumer/examples/internal/telemetry"
	"github.com/kconsumer/kconsumer/fault"
	"github.com/kconsumer/kconsumer/lag"
	"github.com/kconsumer/kconsumer/recovery"
	"github.com/kconsumer/kconsumer/serde"
)

func main() { svc.Main("current", run) }

func run(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("current", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg svc.Config
	cfg.Register(fs, "127.0.0.1:8091", svc.Kafka|svc.Registry)
	snapshot := fs.String("snapshot", "", "file to keep a snapshot of the state in, so a restart replays only what came after it; empty replays everything")
	every := fs.Duration("snapshot-every", 30*time.Second, "how often to write the snapshot")
	if err := svc.Parse(fs, args); err != nil {
		return err
	}
	if err := cfg.Check(); err != nil {
		return &svc.UsageError{Err: err}
	}
	if *snapshot != "" && *every <= 0 {
		return svc.Usagef("-snapshot-every must be positive")
	}
	ln, err := svc.Listen(cfg.HTTPAddr) // before the dependencies: see Listen
	if err != nil {
		return err
	}
	if ln != nil {
		defer ln.Close()
	}
	logger := cfg.Logger(stderr, "current")
	codec, err := cfg.TelemetryCodec(ctx)
	if err != nil {
		return err
	}

	web := svc.NewHTTP()
	st := newState(codec, logger, web.Registry)
	var opts []recovery.ReplayOpt
	opts = append(opts, recovery.WithLogger(logger))
	if *snapshot != "" {
		opts = append(opts, recovery.Snapshots(&fileSnapshot{path: *snapshot, state: st}, *every))
	}
	replay := recovery.NewFullReplay(opts...)
	monitor, err := lag.NewMonitor(lag.GroupLabel("current"), lag.Registerer(web.Registry))
	if err != nil {
		return err
	}
	c, err := consumer.New(consumer.HandlerFunc(st.handle),
		consumer.SeedBrokers(cfg.Brokers...),
		consumer.Topics(telemetry.Topic),
		consumer.With(replay, monitor),
		consumer.WithLogger(logger),
	)
	if err != nil {
		return err
	}

	web.Ready(monitor.Ready)
	web.Health(monitor.Healthy)
	web.Mux.HandleFunc("GET /sensors", func(w http.ResponseWriter, _ *http.Request) { svc.WriteJSON(w, st.all()) })
	web.Mux.HandleFunc("GET /sensors/{id}", func(w http.ResponseWriter, r *http.Request) {
		t, ok := st.get(r.PathValue("id"))
		if !ok {
			http.Error(w, "unknown sensor", http.StatusNotFound)
			return
		}
		svc.WriteJSON(w, t)
	})
	web.Mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		ready := monitor.Ready()
		svc.WriteJSON(w, status{Ready: ready == nil, NotReady: errString(ready), Sensors: st.len(), Skipped: st.skippedCount(), Positions: positions(monitor)})
	})
	return svc.Run(ctx, logger, web, ln, c.Run)
}

// status is the body of GET /status.
type status struct {
	Ready     bool                       `json:"ready"`
	NotReady  string                     `json:"not_ready,omitempty"`
	Sensors   int                        `json:"sensors"`
	Skipped   int64                      `json:"skipped"`
	Positions map[string]map[int32]int64 `json:"positions"`
}

// positions returns, per partition, the next offset to handle.
func positions(m *lag.Monitor) map[string]map[int32]int64 {
	out := make(map[string]map[int32]int64)
	for _, p := range m.Snapshot().Partitions {
		if p.Processed < 0 {
			continue
		}
		if out[p.Topic] == nil {
			out[p.Topic] = make(map[int32]int64)
		}
		out[p.Topic][p.Partition] = p.Processed
	}
	return out
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// state is the last reading per sensor.
type state struct {
	codec   *serde.Avro[telemetry.Telemetry]
	logger  *slog.Logger
	skipped prometheus.Counter

	mu    sync.RWMutex
	last  map[string]telemetry.Telemetry
	skips int64
}

func newState(codec *serde.Avro[telemetry.Telemetry], logger *slog.Logger, reg prometheus.Registerer) *state {
	s := &state{
		codec:  codec,
		logger: logger,
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "current_skipped_records_total", Help: "Records skipped because they cannot be decoded or are invalid.",
		}),
		last: make(map[string]telemetry.Telemetry),
	}
	reg.MustRegister(s.skipped)
	return s
}

// handle keeps r's reading as its sensor's last. Registry outages are
// returned, so the Consumer retries; records that can never be read are
// skipped.
func (s *state) handle(ctx context.Context, r *kgo.Record) error {
	var t telemetry.Telemetry
	err := s.codec.Decode(ctx, r.Topic, r.Value, &t)
	if err == nil {
		err = fault.MarkPoison(t.Validate())
	}
	if err != nil {
		if fault.ClassOf(err) != fault.Poison {
			return err
		}
		s.logger.Warn("skipping a record that cannot be read", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		s.skipped.Inc()
		s.mu.Lock()
		s.skips++
		s.mu.Unlock()
		return nil
	}
	s.mu.Lock()
	s.last[t.SensorID] = t
	s.mu.Unlock()
	return nil
}

func (s *state) all() []telemetry.Telemetry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.SortedFunc(maps.Values(s.last), func(a, b telemetry.Telemetry) int { return cmp.Compare(a.SensorID, b.SensorID) })
}

func (s *state) get(id string) (telemetry.Telemetry, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.last[id]
	return t, ok
}

func (s *state) len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.last)
}

func (s *state) skippedCount() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.skips
}

// fileSnapshot keeps the state and the offsets it covers in one JSON file,
// replaced atomically.
type fileSnapshot struct {
	path  string
	state *state
}

type snapshotFile struct {
	Offsets recovery.Offsets               `json:"offsets"`
	Last    map[string]telemetry.Telemetry `json:"last"`
}

// Load implements recovery.Snapshotter.
func (f *fileSnapshot) Load(context.Context) (recovery.Offsets, error) {
	b, err := os.ReadFile(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var snap snapshotFile
	if err := json.Unmarshal(b, &snap); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", f.path, err)
	}
	f.state.mu.Lock()
	defer f.state.mu.Unlock()
	f.state.last = snap.Last
	if f.state.last == nil {
		f.state.last = make(map[string]telemetry.Telemetry)
	}
	return snap.Offsets, nil
}

// Save implements recovery.Snapshotter. Handlers are paused meanwhile, so
// the state matches offsets.
func (f *fileSnapshot) Save(_ context.Context, offsets recovery.Offsets) error {
	f.state.mu.RLock()
	b, err := json.Marshal(snapshotFile{Offsets: offsets, Last: f.state.last})
	f.state.mu.RUnlock()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.path), ".snapshot-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), f.path)
}
