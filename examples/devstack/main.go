// Command devstack serves, in one process, what the example services need
// on a laptop: a Kafka broker (franz-go's kfake) on 127.0.0.1:9092, a
// Schema Registry (srfake) on :8081 and a MongoDB-compatible server
// (FerretDB v1 with its SQLite backend) on :27017, and prints what it
// serves. Kafka and the registry keep their data in memory; MongoDB keeps
// its files under -data. It stops cleanly on SIGINT or SIGTERM.
//
//	go run ./devstack
//
// Each server can be skipped by setting its flag to "", and is skipped by
// default when its environment variable (KAFKA_BROKERS, SCHEMA_REGISTRY_URL,
// MONGODB_URI) points at a real one.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kconsumer/kconsumer/examples/internal/devstack"
	"github.com/kconsumer/kconsumer/examples/internal/svc"
)

func main() { svc.Main("devstack", run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("devstack", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg svc.Config
	cfg.Register(fs, "127.0.0.1:8090", 0)
	var st devstack.Config
	fs.StringVar(&st.KafkaAddr, "kafka", unlessSet("KAFKA_BROKERS", "127.0.0.1:9092"), `Kafka listen address (loopback only); "" skips it, the default when $KAFKA_BROKERS is set`)
	fs.StringVar(&st.RegistryAddr, "registry", unlessSet("SCHEMA_REGISTRY_URL", "127.0.0.1:8081"), `Schema Registry listen address; "" skips it, the default when $SCHEMA_REGISTRY_URL is set`)
	fs.StringVar(&st.MongoAddr, "mongo", unlessSet("MONGODB_URI", "127.0.0.1:27017"), `MongoDB listen address; "" skips it, the default when $MONGODB_URI is set`)
	fs.StringVar(&st.DataDir, "data", "devstack-data", "directory of MongoDB's SQLite files")
	keep := fs.Bool("keep-data", false, "keep the MongoDB data of an earlier run (by default its *.sqlite files are removed, since Kafka starts empty)")
	partitions := fs.Int("partitions", 16, "partitions of the topics created at start")
	ferretLevel := slog.LevelError
	fs.TextVar(&ferretLevel, "mongo-log-level", ferretLevel, "log level of the MongoDB server (FerretDB logs every connection at info)")
	fs.DurationVar(&st.SessionFloor, "session-floor", time.Second, "shortest consumer group session the broker accepts")
	if err := svc.Parse(fs, args); err != nil {
		return err
	}
	if err := cfg.Check(); err != nil {
		return &svc.UsageError{Err: err}
	}
	if *partitions < 1 || *partitions > 10_000 {
		return svc.Usagef("-partitions %d: want 1 to 10000", *partitions)
	}
	st.Partitions = int32(*partitions)
	logger := cfg.Logger(stderr, "devstack")
	st.Logger = svc.Config{LogFormat: cfg.LogFormat, LogLevel: max(cfg.LogLevel, ferretLevel)}.Logger(stderr, "devstack").With("component", "ferretdb")
	st.JanitorLogger = logger
	if st.MongoAddr != "" && !*keep {
		if err := removeData(st.DataDir); err != nil {
			return err
		}
	}

	stack, err := devstack.Start(st)
	if err != nil {
		return err
	}
	defer func() {
		stack.Close()
		fmt.Fprintln(stdout, "devstack stopped")
	}()
	printServed(stdout, stack, st)

	if cfg.HTTPAddr == "" {
		<-ctx.Done()
		return nil
	}
	hln, err := svc.Listen(cfg.HTTPAddr)
	if err != nil {
		return err
	}
	httpSrv := svc.NewHTTP()
	httpSrv.Health(func() error { return stack.Check(ctx, 2*time.Second) })
	httpSrv.Mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) { printServed(w, stack, st) })
	fmt.Fprintf(stdout, "  health   http://%s/healthz\n", hln.Addr())
	return httpSrv.Serve(ctx, hln, logger)
}

// unlessSet returns def, or "" when the environment names a real server.
func unlessSet(env, def string) string {
	if os.Getenv(env) != "" {
		return ""
	}
	return def
}

func printServed(w io.Writer, s *devstack.Stack, cfg devstack.Config) {
	line := func(name, addr, env string) {
		if addr == "" {
			fmt.Fprintf(w, "  %-8s skipped (%s=%s)\n", name, env, os.Getenv(env))
			return
		}
		fmt.Fprintf(w, "  %-8s %s\n", name, addr)
	}
	fmt.Fprintln(w, "devstack serving:")
	line("kafka", s.Brokers, "KAFKA_BROKERS")
	line("registry", s.RegistryURL, "SCHEMA_REGISTRY_URL")
	mongo := s.MongoURI
	if mongo != "" {
		mongo += " (data in " + cfg.DataDir + ")"
	}
	line("mongodb", mongo, "MONGODB_URI")
	var env []string
	for _, kv := range [][2]string{{"KAFKA_BROKERS", s.Brokers}, {"SCHEMA_REGISTRY_URL", s.RegistryURL}, {"MONGODB_URI", s.MongoURI}} {
		if kv[1] != "" {
			env = append(env, kv[0]+"="+kv[1])
		}
	}
	if len(env) > 0 {
		fmt.Fprintf(w, "for the services: export %s\n", strings.Join(env, " "))
	}
}

// removeData removes the SQLite files of an earlier run from dir, and
// nothing else.
func removeData(dir string) error {
	for _, pattern := range []string{"*.sqlite", "*.sqlite-wal", "*.sqlite-shm"} {
		files, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			return err
		}
		for _, f := range files {
			if err := os.Remove(f); err != nil {
				return err
			}
		}
	}
	return nil
}
