// Package serde decodes and encodes records in the Confluent wire format
// (magic byte 0, 4-byte big-endian schema ID, payload) with schemas from a
// Schema Registry, and adapts typed handlers to consumer.Handler.
//
// A consumer names its Go type and the Avro schema that describes it (the
// reader schema), and gets a handler of decoded values:
//
//	reg, err := serde.NewRegistry(os.Getenv("SCHEMA_REGISTRY_URL"))
//	if err != nil {
//		return err
//	}
//	values, err := serde.NewAvro[Telemetry](reg, telemetrySchema)
//	if err != nil {
//		return err
//	}
//	c, err := consumer.New(serde.Handle(values, func(ctx context.Context, r *kgo.Record, t Telemetry) error {
//		return store.Put(ctx, t.SensorID, t)
//	}), consumer.Topics("sensor-data"))
//
// and a producer encodes with the same kind of codec:
//
//	b, err := values.Encode(ctx, "sensor-data", t) // registers the schema under "sensor-data-value"
//	cl.Produce(ctx, &kgo.Record{Topic: "sensor-data", Value: b}, nil)
//
// # Schema evolution
//
// Each record is decoded with the schema it was written with, found in the
// registry by the ID in its header, and resolved against the reader schema
// by Avro's rules: a producer may add fields with defaults or drop optional
// ones without breaking consumers. Writer schemas are fetched once per ID
// and Registry; concurrent lookups of one ID make one request, and failed
// lookups are not cached. The resolution is cached per codec and writer ID,
// so a record of a known schema decodes at the speed of hamba/avro itself.
//
// # Errors
//
// A record that cannot be decoded yields a *DecodeError naming the topic,
// partition, offset and schema ID, marked with a class of package fault:
//
//   - poison, never to succeed: ErrNull (a null key, or a null value: a
//     tombstone), ErrBadMagic, ErrTruncated, ErrMismatch (the payload does
//     not fit its schema), ErrIncompatible (the writer schema cannot be
//     read as the reader schema; the message names both IDs);
//   - uncertain: ErrUnknownSchema (the registry answered not-found: a
//     replica behind, or a registry of another cluster); a dead-letter
//     router retries it for dlq.UncertainFor, then dead-letters it;
//   - retriable: ErrRegistryUnavailable (unreachable, timed out, 5xx, 429,
//     credentials refused) and the end of the handler's context.
//
// On a compacted topic, where a tombstone deletes its key, handle it
// before the typed handler instead of dead-lettering it:
//
//	typed := serde.Handle(codec, save)
//	h := consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
//		if r.Value == nil {
//			return remove(ctx, r.Key)
//		}
//		return typed.Handle(ctx, r)
//	})
//
// Subjects for encoding are named by a SubjectStrategy: TopicName (the
// default), RecordName or TopicRecordName. JSON is a codec without a
// registry for topics that carry plain JSON.
package serde
