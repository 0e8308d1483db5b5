// Package serde decodes and encodes records in the Confluent wire format
// (magic byte 0, 4-byte big-endian schema ID, payload) with schemas from a
// Schema Registry, and adapts typed handlers to consumer.Handler.
package serde
