package serde_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/kconsumer/kconsumer/fault"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
	"github.com/kconsumer/kconsumer/serde"
)

func TestRoundTripTelemetry(t *testing.T) {
	ctx := context.Background()
	fake := kafkatest.NewRegistry(t)
	codec := newAvro[telemetry](t, newRegistry(t, fake.URL()), telemetrySchema)

	want := sample(7)
	b, err := codec.Encode(ctx, topic, want)
	if err != nil {
		t.Fatal(err)
	}
	ss, ok := fake.GetSchema(topic+"-value", 1)
	if !ok {
		t.Fatalf("Encode did not register the schema under %s-value", topic)
	}
	if b[0] != 0 || int(binary.BigEndian.Uint32(b[1:5])) != ss.ID {
		t.Fatalf("header % x, want magic 0 and schema ID %d", b[:5], ss.ID)
	}
	raw, err := avro.Marshal(codec.Schema(), want)
	if err != nil {
		t.Fatal(err)
	}
	if string(b[5:]) != string(raw) {
		t.Fatalf("payload after the header is not the plain Avro encoding")
	}

	var got telemetry
	if err := codec.Decode(ctx, topic, b, &got); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("decoded %+v, want %+v", got, want)
	}
}

// TestEvolutionOneStream writes one stream with v1, v2 and v3 of the
// telemetry schema (v2 adds a field with a default and an optional field,
// v3 drops the optional field) and reads it with the v2 and the v1 types.
func TestEvolutionOneStream(t *testing.T) {
	ctx := context.Background()
	fake := kafkatest.NewRegistry(t)
	reg := newRegistry(t, fake.URL())
	w1 := newAvro[telemetry](t, reg, telemetrySchema)
	w2 := newAvro[telemetry2](t, reg, telemetryV2)
	w3 := newAvro[telemetry3](t, reg, telemetryV3)

	volts := 24.5
	var stream [][]byte
	for i := range 9 {
		var b []byte
		var err error
		switch i % 3 {
		case 0:
			b, err = w1.Encode(ctx, topic, sample(i))
		case 1:
			b, err = w2.Encode(ctx, topic, telemetry2{telemetry: sample(i), Firmware: "2.1", BatteryV: &volts})
		case 2:
			b, err = w3.Encode(ctx, topic, telemetry3{telemetry: sample(i), Firmware: "3.0"})
		}
		if err != nil {
			t.Fatal(err)
		}
		stream = append(stream, b)
	}
	ids := map[uint32]bool{}
	for _, b := range stream {
		ids[binary.BigEndian.Uint32(b[1:5])] = true
	}
	if len(ids) != 3 {
		t.Fatalf("stream uses %d schema IDs, want 3", len(ids))
	}

	r2 := newAvro[telemetry2](t, newRegistry(t, fake.URL()), telemetryV2)
	for i, b := range stream {
		var got telemetry2
		if err := r2.Decode(ctx, topic, b, &got); err != nil {
			t.Fatalf("record %d into v2 type: %v", i, err)
		}
		want := telemetry2{telemetry: sample(i), Firmware: "unknown"}
		switch i % 3 {
		case 1:
			want.Firmware, want.BatteryV = "2.1", &volts
		case 2:
			want.Firmware = "3.0"
		}
		if got.telemetry != want.telemetry || got.Firmware != want.Firmware ||
			(got.BatteryV == nil) != (want.BatteryV == nil) || got.BatteryV != nil && *got.BatteryV != *want.BatteryV {
			t.Errorf("record %d into v2 type: got %+v (battery %v), want %+v", i, got, got.BatteryV, want)
		}
	}

	r1 := newAvro[telemetry](t, newRegistry(t, fake.URL()), telemetrySchema)
	for i, b := range stream {
		var got telemetry
		if err := r1.Decode(ctx, topic, b, &got); err != nil {
			t.Fatalf("record %d into v1 type: %v", i, err)
		}
		if got != sample(i) {
			t.Errorf("record %d into v1 type: got %+v, want %+v", i, got, sample(i))
		}
	}
}

func TestIncompatibleNamesBothIDs(t *testing.T) {
	ctx := context.Background()
	fake := kafkatest.NewRegistry(t)
	reg := newRegistry(t, fake.URL())

	// A producer that turned sensor_id into a number.
	type numericID struct {
		SensorID    int64    `avro:"sensor_id"`
		TimestampMs int64    `avro:"timestamp_ms"`
		Odometry    odometry `avro:"odometry"`
		GPS         gps      `avro:"gps"`
	}
	broken := strings.Replace(telemetrySchema, `{"name": "sensor_id", "type": "string"}`, `{"name": "sensor_id", "type": "long"}`, 1)
	if broken == telemetrySchema {
		t.Fatal("test schema edit did not apply")
	}
	reader := newAvro[telemetry](t, reg, telemetrySchema)
	if _, err := reader.Encode(ctx, topic, sample(0)); err != nil { // registers the reader schema
		t.Fatal(err)
	}
	readerID, _, _ := fake.RegisterSchema(topic+"-value", sr.Schema{Schema: telemetrySchema})

	writer := newAvro[numericID](t, newRegistry(t, fake.URL()), broken)
	b, err := writer.Encode(ctx, topic, numericID{SensorID: 42})
	if err != nil {
		t.Fatal(err)
	}
	writerID := int(binary.BigEndian.Uint32(b[1:5]))

	for range 2 { // the second time from the cached resolution
		var got telemetry
		err = reader.Decode(ctx, topic, b, &got)
		if fault.ClassOf(err) != fault.Poison || !errors.Is(err, serde.ErrIncompatible) {
			t.Fatalf("got %v, want a poison ErrIncompatible", err)
		}
		for _, s := range []string{fmt.Sprintf("writer schema ID %d", writerID), fmt.Sprintf("reader schema ID %d", readerID)} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not say %q", err, s)
			}
		}
	}
}

func TestNewAvroChecksType(t *testing.T) {
	reg := newRegistry(t, "http://127.0.0.1:1")
	type wrong struct {
		SensorID int `avro:"sensor_id"`
	}
	if _, err := serde.NewAvro[wrong](reg, telemetrySchema); err == nil {
		t.Error("NewAvro accepted a type whose sensor_id is an int for a string field")
	}
	if _, err := serde.NewAvro[telemetry](reg, `{"type": "record"`); err == nil {
		t.Error("NewAvro accepted a schema that does not parse")
	}
	type withPointers struct {
		SensorID string    `avro:"sensor_id"`
		Odometry *odometry `avro:"odometry"`
	}
	if _, err := serde.NewAvro[withPointers](reg, telemetrySchema); err != nil {
		t.Errorf("NewAvro refused a type with pointer fields and fields left out: %v", err)
	}
}

func TestSubjectStrategies(t *testing.T) {
	ctx := context.Background()
	fake := kafkatest.NewRegistry(t)
	reg := newRegistry(t, fake.URL())
	for _, tc := range []struct {
		opts    []serde.AvroOpt
		subject string
	}{
		{nil, topic + "-value"},
		{[]serde.AvroOpt{serde.ForKey()}, topic + "-key"},
		{[]serde.AvroOpt{serde.SubjectNaming(serde.RecordName)}, "kconsumer.telemetry.Telemetry"},
		{[]serde.AvroOpt{serde.SubjectNaming(serde.TopicRecordName)}, topic + "-kconsumer.telemetry.Telemetry"},
	} {
		codec := newAvro[telemetry](t, reg, telemetrySchema, tc.opts...)
		if _, err := codec.Encode(ctx, topic, sample(1)); err != nil {
			t.Fatal(err)
		}
		if !fake.SubjectExists(tc.subject) {
			t.Errorf("schema not registered under %q", tc.subject)
		}
	}

	keys := newAvro[string](t, reg, `"string"`, serde.ForKey(), serde.SubjectNaming(serde.RecordName))
	if _, err := keys.Encode(ctx, topic, "k"); err == nil {
		t.Error("RecordName named a subject for a schema without a name")
	}
}

func TestAutoRegisterOff(t *testing.T) {
	ctx := context.Background()
	fake := kafkatest.NewRegistry(t)
	codec := newAvro[telemetry](t, newRegistry(t, fake.URL()), telemetrySchema, serde.AutoRegister(false))

	_, err := codec.Encode(ctx, topic, sample(1))
	if err == nil || fault.ClassOf(err) == fault.Retriable {
		t.Fatalf("Encode of an unregistered schema: got %v, want a permanent error", err)
	}
	if fake.SubjectExists(topic + "-value") {
		t.Fatal("Encode registered the schema with AutoRegister(false)")
	}
	id, _, err := fake.RegisterSchema(topic+"-value", sr.Schema{Schema: telemetrySchema})
	if err != nil {
		t.Fatal(err)
	}
	b, err := codec.Encode(ctx, topic, sample(1))
	if err != nil {
		t.Fatal(err)
	}
	if got := int(binary.BigEndian.Uint32(b[1:5])); got != id {
		t.Fatalf("encoded with schema ID %d, registered as %d", got, id)
	}
}

// TestReferences decodes a record whose writer schema names a type from
// another subject through a schema reference.
func TestReferences(t *testing.T) {
	ctx := context.Background()
	fake := kafkatest.NewRegistry(t)
	odo := `{"type": "record", "name": "Odometry", "namespace": "kconsumer.telemetry", "fields": [
		{"name": "hours_tot", "type": "double"}, {"name": "km_tot", "type": "double"}]}`
	if _, _, err := fake.RegisterSchema("odometry", sr.Schema{Schema: odo}); err != nil {
		t.Fatal(err)
	}
	writer := `{"type": "record", "name": "Telemetry", "namespace": "kconsumer.telemetry", "fields": [
		{"name": "sensor_id", "type": "string"},
		{"name": "odometry", "type": "kconsumer.telemetry.Odometry"}]}`
	id, _, err := fake.RegisterSchema(topic+"-value", sr.Schema{
		Schema:     writer,
		References: []sr.SchemaReference{{Name: "kconsumer.telemetry.Odometry", Subject: "odometry", Version: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	cache := new(avro.SchemaCache)
	if _, err := avro.ParseWithCache(odo, "", cache); err != nil {
		t.Fatal(err)
	}
	ws, err := avro.ParseWithCache(writer, "", cache)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := avro.Marshal(ws, map[string]any{
		"sensor_id": "s1",
		"odometry":  map[string]any{"hours_tot": 1.5, "km_tot": 2.5},
	})
	if err != nil {
		t.Fatal(err)
	}
	b := append([]byte{0, 0, 0, 0, byte(id)}, payload...)

	codec := newAvro[telemetry3](t, newRegistry(t, fake.URL()), telemetryV3)
	var got telemetry3
	if err := codec.Decode(ctx, topic, b, &got); err == nil || !errors.Is(err, serde.ErrIncompatible) {
		// The writer lacks timestamp_ms and gps, which have no default.
		t.Fatalf("got %v, want ErrIncompatible", err)
	}

	type partial struct {
		SensorID string   `avro:"sensor_id"`
		Odometry odometry `avro:"odometry"`
		Firmware string   `avro:"firmware"`
	}
	readerSchema := withFields(writer[:strings.Index(writer, `"fields"`)]+`"fields": [
		{"name": "sensor_id", "type": "string"},
		{"name": "odometry", "type": `+odo+`}]}`,
		`{"name": "firmware", "type": "string", "default": "unknown"}`)
	pc := newAvro[partial](t, newRegistry(t, fake.URL()), readerSchema)
	var p partial
	if err := pc.Decode(ctx, topic, b, &p); err != nil {
		t.Fatal(err)
	}
	if p != (partial{SensorID: "s1", Odometry: odometry{1.5, 2.5}, Firmware: "unknown"}) {
		t.Fatalf("decoded %+v", p)
	}
}
