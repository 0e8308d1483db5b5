// Package lag measures per-partition consumer lag in records and seconds,
// rates each partition's health over a sliding window, and exposes both as
// Prometheus metrics and /healthz and /readyz handlers.
package lag
