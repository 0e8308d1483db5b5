package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// fakeServiceEnv makes the test binary a stand-in service: it binds the
// address after -http and answers every request with 200.
const fakeServiceEnv = "KCONSUMER_DEMO_FAKE_SERVICE"

func TestMain(m *testing.M) {
	if os.Getenv(fakeServiceEnv) != "" {
		os.Exit(fakeService(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func fakeService(args []string) int {
	var addr string
	for i, a := range args {
		if a == "-http" && i+1 < len(args) {
			addr = args[i+1]
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_ = http.Serve(ln, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	return 1
}

// TestServiceMovesOffATakenPort: a port freeAddr found free can be taken
// before the child binds it; the service starts again on another one.
func TestServiceMovesOffATakenPort(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	t.Setenv(fakeServiceEnv, "1")
	s := &service{name: "fake", bin: os.Args[0], addr: taken.Addr().String(), logs: t.TempDir()}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	defer s.kill()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.waitReady(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if s.addr == taken.Addr().String() || s.rebinds != 1 {
		t.Fatalf("ready on %s after %d rebinds; the taken address was %s", s.addr, s.rebinds, taken.Addr())
	}
}
