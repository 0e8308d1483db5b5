package svc

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// HTTP is a service's HTTP server: its own routes plus /metrics, /healthz
// and /readyz.
type HTTP struct {
	Mux      *http.ServeMux
	Registry *prometheus.Registry
	healthy  func() error
	ready    func() error
}

// NewHTTP returns a server whose /metrics serves a registry holding the Go
// runtime and process collectors; the probes answer 200 until Health and
// Ready set checks.
func NewHTTP() *HTTP {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	h := &HTTP{Mux: http.NewServeMux(), Registry: reg}
	h.Mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	h.Mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { probe(w, h.healthy) })
	h.Mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { probe(w, h.ready) })
	return h
}

// Health sets the liveness check behind /healthz. Call it before Serve.
func (h *HTTP) Health(check func() error) { h.healthy = check }

// Ready sets the readiness check behind /readyz. Call it before Serve.
func (h *HTTP) Ready(check func() error) { h.ready = check }

func probe(w http.ResponseWriter, check func() error) {
	if check != nil {
		if err := check(); err != nil {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(err.Error() + "\n"))
			return
		}
	}
	_, _ = w.Write([]byte("ok\n"))
}

// Listen binds addr, so that a port in use fails the service at start;
// services bind first, before reaching their dependencies, so that the
// port is theirs from the moment they start. An empty addr binds nothing.
func Listen(addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, &UnreachableError{"the HTTP address", addr, "set -http or HTTP_ADDR to a free address", err}
	}
	return ln, nil
}

// Serve serves on ln until ctx is done, then shuts down, letting requests
// in progress finish for up to five seconds.
func (h *HTTP) Serve(ctx context.Context, ln net.Listener, logger *slog.Logger) error {
	srv := &http.Server{Handler: h.Mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("serving HTTP", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// WriteJSON writes v as JSON with status 200, or a 500 if v cannot be
// encoded.
func WriteJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, '\n'))
}
