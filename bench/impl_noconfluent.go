//go:build !cgo

package main

// confluentImpl reports that confluent-kafka-go is not in this binary: it
// needs cgo to link librdkafka.
func confluentImpl() (impl, bool) { return impl{}, false }
