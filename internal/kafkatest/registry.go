package kafkatest

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/sr/srfake"
)

// Registry is an in-process Schema Registry (srfake, served over HTTP on
// loopback) that counts the schema-by-ID requests reaching it and can be
// made to fail.
type Registry struct {
	*srfake.Registry
	byID  atomic.Int64
	fault atomic.Pointer[srfake.Interceptor]
}

// NewRegistry starts a registry that is closed when the test ends; its URL
// is r.URL().
func NewRegistry(t testing.TB, opts ...srfake.Option) *Registry {
	t.Helper()
	r := &Registry{Registry: srfake.New(opts...)}
	r.Intercept(func(w http.ResponseWriter, req *http.Request) bool {
		if strings.HasPrefix(req.URL.Path, "/schemas/ids/") {
			r.byID.Add(1)
		}
		if fault := r.fault.Load(); fault != nil {
			return (*fault)(w, req)
		}
		return false
	})
	t.Cleanup(r.Close)
	return r
}

// ByIDRequests returns how many schema-by-ID requests reached the registry.
func (r *Registry) ByIDRequests() int64 { return r.byID.Load() }

// SetFault makes the registry answer every request with fault until it is
// cleared with nil.
func (r *Registry) SetFault(fault srfake.Interceptor) {
	if fault == nil {
		r.fault.Store(nil)
		return
	}
	r.fault.Store(&fault)
}

// Status returns a fault that answers with an HTTP status and, if not 0, a
// registry error code.
func Status(code, errorCode int) srfake.Interceptor {
	return func(w http.ResponseWriter, _ *http.Request) bool {
		w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
		w.WriteHeader(code)
		if errorCode != 0 {
			_, _ = fmt.Fprintf(w, `{"error_code": %d, "message": "injected"}`, errorCode)
		}
		return true
	}
}
