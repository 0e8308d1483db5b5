// Package devstack runs, in one process, what the example services need:
// a Kafka broker (franz-go's kfake), a Schema Registry (srfake) and a
// MongoDB-compatible server (FerretDB v1 on SQLite). Kafka and the registry
// keep their data in memory; MongoDB keeps its files under a directory.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/kconsumer/kconsumer/examples/internal/svc"
	"github.com/kconsumer/kconsumer/examples/internal/telemetry"
	"github.com/kconsumer/kconsumer/internal/brokerfix"
)

// Config says what to start. An empty address skips that server; port 0
// picks a free one.
type Config struct {
	KafkaAddr    string // 127.0.0.1:<port>; kfake listens on loopback only
	RegistryAddr string
	MongoAddr    string
	DataDir      string // MongoDB's SQLite files; created if missing
	Partitions   int32  // of the topics created at start
	// SessionFloor is the shortest consumer group session the broker
	// accepts; short sessions let a killed member's partitions move soon.
	SessionFloor time.Duration
	Logger       *slog.Logger // FerretDB's logger; nil discards its logs
	// JanitorLogger gets the Kafka session janitor's logs (a line per
	// group member it removes); nil uses slog.Default().
	JanitorLogger *slog.Logger
}

// Stack is a running dev stack.
type Stack struct {
	Brokers     string // host:port, "" if Kafka was skipped
	RegistryURL string
	MongoURI    string

	kafka       *kfake.Cluster
	stopJanitor func()
	registry    *http.Server
	stop        context.CancelFunc
	done        []chan struct{}
}

// Start starts the servers cfg names. Kafka starts with the topics the
// services use (sensor-data, its dead-letter topic and sensor-alerts), each
// with cfg.Partitions partitions, and creates others on first use.
func Start(cfg Config) (_ *Stack, err error) {
	ctx, stop := context.WithCancel(context.Background())
	s := &Stack{stop: stop}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if cfg.KafkaAddr != "" {
		if err := s.startKafka(cfg); err != nil {
			return nil, err
		}
	}
	if cfg.RegistryAddr != "" {
		if err := s.startRegistry(cfg.RegistryAddr); err != nil {
			return nil, err
		}
	}
	if cfg.MongoAddr != "" {
		if err := s.startMongo(ctx, cfg); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Stack) startKafka(cfg Config) error {
	host, portStr, err := net.SplitHostPort(cfg.KafkaAddr)
	if err != nil {
		return fmt.Errorf("kafka address %q: %w", cfg.KafkaAddr, err)
	}
	if host != "" && host != "127.0.0.1" && host != "localhost" {
		return fmt.Errorf("kafka address %q: the fake broker listens on 127.0.0.1 only", cfg.KafkaAddr)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return fmt.Errorf("kafka address %q: bad port", cfg.KafkaAddr)
	}
	partitions := max(cfg.Partitions, 1)
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.SeedTopics(partitions, telemetry.Topic, telemetry.DLQTopic, telemetry.AlertsTopic),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(int(partitions)),
	}
	if cfg.SessionFloor > 0 {
		opts = append(opts, kfake.GroupMinSessionTimeout(cfg.SessionFloor))
	}
	if s.kafka, err = kfake.NewCluster(opts...); err != nil {
		return fmt.Errorf("starting Kafka on %s: %w", cfg.KafkaAddr, err)
	}
	s.Brokers = s.kafka.ListenAddrs()[0]
	// kfake leaves a consumer killed while its JoinGroup is parked in the
	// group without a session timer when its answer is lost, holding its
	// partitions for good; the janitor removes such members at their
	// session timeout, as a real broker does (see internal/brokerfix).
	// It must start before any client connects, to see every join.
	logger := cfg.JanitorLogger
	if logger == nil {
		logger = slog.Default()
	}
	if s.stopJanitor, err = brokerfix.Start(context.Background(), s.kafka, brokerfix.WithLogger(logger.With("component", "brokerfix"))); err != nil {
		return err
	}
	return nil
}

func (s *Stack) startRegistry(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("starting the Schema Registry: %w", err)
	}
	s.registry = &http.Server{Handler: srfake.NewRegistry().Handler(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	s.done = append(s.done, done)
	go func() {
		defer close(done)
		_ = s.registry.Serve(ln) // returns ErrServerClosed on Close
	}()
	s.RegistryURL = "http://" + ln.Addr().String()
	return nil
}

func (s *Stack) startMongo(ctx context.Context, cfg Config) error {
	if cfg.DataDir == "" {
		return errors.New("MongoDB needs a data directory")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f, err := ferretdb.New(&ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: cfg.MongoAddr},
		Logger:   logger,
		Handler:  "sqlite",
		// WAL without an fsync per commit: a killed service loses nothing
		// it was told is written, only a crash of this process may.
		SQLiteURL: "file:" + cfg.DataDir + "/?_pragma=synchronous(normal)",
	})
	if err != nil {
		return fmt.Errorf("starting MongoDB (FerretDB) on %s: %w", cfg.MongoAddr, err)
	}
	done := make(chan struct{})
	s.done = append(s.done, done)
	go func() {
		defer close(done)
		_ = f.Run(ctx) // returns when ctx is cancelled
	}()
	s.MongoURI = f.MongoDBURI()
	return nil
}

// Check reports the first server that does not answer within timeout.
func (s *Stack) Check(ctx context.Context, timeout time.Duration) error {
	if s.Brokers != "" {
		if err := svc.PingKafka(ctx, []string{s.Brokers}, timeout); err != nil {
			return err
		}
	}
	if s.RegistryURL != "" {
		if err := svc.PingRegistry(ctx, s.RegistryURL, timeout); err != nil {
			return err
		}
	}
	if s.MongoURI != "" {
		cl, err := svc.ConnectMongo(ctx, s.MongoURI, timeout)
		if err != nil {
			return err
		}
		return cl.Disconnect(ctx)
	}
	return nil
}

// Close stops every server and waits for them to finish.
func (s *Stack) Close() {
	s.stop()
	if s.registry != nil {
		_ = s.registry.Close()
	}
	if s.stopJanitor != nil {
		s.stopJanitor() // before the cluster: its requests would fail
	}
	if s.kafka != nil {
		s.kafka.Close()
	}
	for _, d := range s.done {
		<-d
	}
}
