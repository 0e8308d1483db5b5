package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kconsumer/kconsumer/examples/internal/svctest"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestDevstackServesAndStops(t *testing.T) {
	for _, env := range []string{"KAFKA_BROKERS", "SCHEMA_REGISTRY_URL", "MONGODB_URI"} {
		t.Setenv(env, "")
	}
	dir := t.TempDir()
	stale := filepath.Join(dir, "telemetry.sqlite")
	keep := filepath.Join(dir, "notes.txt")
	for _, f := range []string{stale, keep} {
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ln := svctest.FreeAddr(t)
	ctx, stop := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-kafka", "127.0.0.1:0", "-registry", "127.0.0.1:0", "-mongo", "127.0.0.1:0", "-data", dir, "-http", ln}, &out, io.Discard)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + ln + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no healthy dev stack after 30s: %v\n%s", err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, want := range []string{"kafka    127.0.0.1:", "registry http://127.0.0.1:", "mongodb  mongodb://127.0.0.1:", "export KAFKA_BROKERS="} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Error("the SQLite file of an earlier run was kept")
	}
	if _, err := os.Stat(keep); err != nil {
		t.Error("a file that is not MongoDB's was removed")
	}
	stop() // as SIGTERM does
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(out.String(), "devstack stopped\n") {
		t.Errorf("no clean stop:\n%s", out.String())
	}
}

func TestDevstackSkipsWhatTheEnvironmentNames(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "broker:9092")
	t.Setenv("SCHEMA_REGISTRY_URL", "http://registry:8081")
	t.Setenv("MONGODB_URI", "")
	ctx, stop := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-mongo", "", "-http", ""}, &out, io.Discard)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "mongodb") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "kafka    skipped (KAFKA_BROKERS=broker:9092)") || strings.Contains(out.String(), "export") {
		t.Errorf("output:\n%s", out.String())
	}
}
