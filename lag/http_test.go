package lag_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kconsumer/kconsumer/lag"
)

func TestHandlerRoutes(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, _ := attached(t, "", lag.GroupLabel("current"), lag.Registerer(reg))
	for _, tc := range []struct {
		g    prometheus.Gatherer
		path string
		code int
	}{
		{reg, "/metrics", http.StatusOK},
		{reg, "/healthz", http.StatusOK},
		{reg, "/readyz", http.StatusOK},
		{nil, "/metrics", http.StatusNotFound},
		{nil, "/healthz", http.StatusOK},
	} {
		if code, body := get(t, m.Handler(tc.g), tc.path); code != tc.code {
			t.Errorf("GET %s with gatherer %v: %d %q, want %d", tc.path, tc.g != nil, code, body, tc.code)
		}
	}
}

func TestListenAndServeReportsABadAddress(t *testing.T) {
	m := newMonitor(t)
	if err := m.ListenAndServe(context.Background(), "127.0.0.1:-1", nil); err == nil {
		t.Fatal("ListenAndServe on a bad address returned nil")
	}
}
