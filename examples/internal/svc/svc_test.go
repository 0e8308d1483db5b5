package svc

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestConfigReadsFlagsOverEnvironment(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "k1:9092, k2:9092")
	t.Setenv("SCHEMA_REGISTRY_URL", "http://reg:8081")
	t.Setenv("MONGODB_URI", "mongodb://m:27017")
	t.Setenv("HTTP_ADDR", ":9000")
	t.Setenv("LOG_LEVEL", "warn")
	var c Config
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c.Register(fs, ":1", Kafka|Registry|Mongo)
	if err := Parse(fs, []string{"-mongo", "mongodb://other:27017"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Brokers, ",") != "k1:9092,k2:9092" || c.RegistryURL != "http://reg:8081" || c.MongoURI != "mongodb://other:27017" ||
		c.HTTPAddr != ":9000" || c.LogLevel != slog.LevelWarn || c.DialTimeout != 10*time.Second {
		t.Errorf("config %+v", c)
	}
}

func TestConfigRegistersOnlyWhatIsNeeded(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.Register(fs, ":1", 0)
	for _, name := range []string{"brokers", "registry", "mongo", "dial-timeout"} {
		if fs.Lookup(name) != nil {
			t.Errorf("-%s registered for a service without dependencies", name)
		}
	}
	var usage *UsageError
	if err := Parse(fs, []string{"-brokers", "x"}); !errors.As(err, &usage) {
		t.Errorf("an unknown flag: %v, want a *UsageError", err)
	}
	if err := Parse(fs, []string{"extra"}); !errors.As(err, &usage) {
		t.Errorf("an argument: %v, want a *UsageError", err)
	}
}

func TestConfigCheckRefusesBadValues(t *testing.T) {
	t.Setenv("LOG_LEVEL", "loud")
	var c Config
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c.Register(fs, ":1", Kafka)
	if err := Parse(fs, []string{"-log-format", "xml", "-dial-timeout", "0s"}); err != nil {
		t.Fatal(err)
	}
	err := c.Check()
	for _, want := range []string{"-log-format", "LOG_LEVEL", "-dial-timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check: %v, want it to name %s", err, want)
		}
	}
}

func TestExitCodes(t *testing.T) {
	for _, c := range []struct {
		err  error
		code int
	}{
		{nil, 0},
		{flag.ErrHelp, 0},
		{Usagef("bad -x"), 2},
		{&UnreachableError{"Kafka", "a:1", "hint", errors.New("refused")}, 1},
	} {
		var out bytes.Buffer
		if got := ExitCode("svc", c.err, &out); got != c.code {
			t.Errorf("ExitCode(%v) = %d, want %d", c.err, got, c.code)
		}
		if (c.code == 0) != (out.Len() == 0) {
			t.Errorf("ExitCode(%v) printed %q", c.err, out.String())
		}
	}
}

func TestUnreachableDependenciesFailWithinTheTimeout(t *testing.T) {
	ctx := context.Background()
	began := time.Now()
	err := PingKafka(ctx, []string{"127.0.0.1:1"}, 300*time.Millisecond)
	var u *UnreachableError
	if !errors.As(err, &u) || u.Dependency != "Kafka" || !strings.Contains(err.Error(), "KAFKA_BROKERS") {
		t.Errorf("PingKafka: %v", err)
	}
	if err := PingRegistry(ctx, "http://127.0.0.1:1", 300*time.Millisecond); !errors.As(err, &u) || u.Dependency != "Schema Registry" {
		t.Errorf("PingRegistry: %v", err)
	}
	if _, err := ConnectMongo(ctx, "mongodb://user:secret@127.0.0.1:1/", 300*time.Millisecond); !errors.As(err, &u) || strings.Contains(err.Error(), "secret") {
		t.Errorf("ConnectMongo: %v (the password must not show)", err)
	}
	if d := time.Since(began); d > 10*time.Second {
		t.Errorf("the three checks took %v", d)
	}
}

func TestProbes(t *testing.T) {
	h := NewHTTP()
	healthy := errors.New("stuck")
	h.Health(func() error { return healthy })
	h.Ready(func() error { return nil })
	srv := httptest.NewServer(h.Mux)
	defer srv.Close()
	get := func(path string) int {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if get("/healthz") != http.StatusServiceUnavailable || get("/readyz") != http.StatusOK || get("/metrics") != http.StatusOK {
		t.Error("probes do not follow their checks")
	}
	healthy = nil
	if get("/healthz") != http.StatusOK {
		t.Error("/healthz stays unhealthy")
	}
}
