package lag

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Healthz returns a handler for liveness probes: 200 "ok" while Healthy
// returns nil, 503 with the reason otherwise.
func (m *Monitor) Healthz() http.Handler { return probe(m.Healthy) }

// Readyz returns a handler for readiness probes: 200 "ok" while Ready
// returns nil, 503 with the reason otherwise.
func (m *Monitor) Readyz() http.Handler { return probe(m.Ready) }

func probe(check func() error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := check(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
}

// Handler returns a handler serving /metrics from g, and /healthz and
// /readyz. With a nil g, /metrics is not served.
func (m *Monitor) Handler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	if g != nil {
		mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	}
	mux.Handle("/healthz", m.Healthz())
	mux.Handle("/readyz", m.Readyz())
	return mux
}

// shutdownTimeout bounds how long Serve waits for requests in progress
// once its context is done.
const shutdownTimeout = 5 * time.Second

// ListenAndServe listens on addr and serves Handler(g) until ctx is done;
// see Serve.
func (m *Monitor) ListenAndServe(ctx context.Context, addr string, g prometheus.Gatherer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("lag: %w", err)
	}
	return m.Serve(ctx, ln, g)
}

// Serve serves Handler(g) on ln until ctx is done, then shuts the server
// down, waiting up to 5 s for requests in progress. It returns nil after a
// clean stop and the server's error otherwise. It closes ln.
func (m *Monitor) Serve(ctx context.Context, ln net.Listener, g prometheus.Gatherer) error {
	srv := &http.Server{Handler: m.Handler(g), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("lag: serving: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("lag: shutting down: %w", err)
	}
	return nil
}
