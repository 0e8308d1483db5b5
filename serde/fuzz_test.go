package serde_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/kconsumer/kconsumer/fault"
	"github.com/kconsumer/kconsumer/serde"
)

// FuzzDecode feeds arbitrary bytes to the decoder of the v2 telemetry type,
// with v1, v2 and v3 registered as schema IDs 1, 2 and 3. The registry is in
// process and always up, so every failure must be a poison *DecodeError;
// every success must re-encode to bytes that decode to the same value.
func FuzzDecode(f *testing.F) {
	ctx := context.Background()
	fake := srfake.NewRegistry()
	reg := inProcess(f, fake)
	w1 := newAvro[telemetry](f, reg, telemetrySchema)
	w2 := newAvro[telemetry2](f, reg, telemetryV2)
	w3 := newAvro[telemetry3](f, reg, telemetryV3)
	volts := 23.9
	for _, enc := range []func() ([]byte, error){
		func() ([]byte, error) { return w1.Encode(ctx, topic, sample(1)) },
		func() ([]byte, error) {
			return w2.Encode(ctx, topic, telemetry2{telemetry: sample(2), Firmware: "2.0", BatteryV: &volts})
		},
		func() ([]byte, error) {
			return w3.Encode(ctx, topic, telemetry3{telemetry: sample(3), Firmware: "3.1"})
		},
	} {
		b, err := enc()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	codec := newAvro[telemetry2](f, reg, telemetryV2)

	f.Fuzz(func(t *testing.T, data []byte) {
		var v telemetry2
		err := codec.Decode(ctx, topic, data, &v)
		if err != nil {
			// An ID the registry lacks may come later (uncertain); other
			// bytes that do not decode never will (poison).
			if c := fault.ClassOf(err); c != fault.Poison && !(c == fault.Uncertain && errors.Is(err, serde.ErrUnknownSchema)) {
				t.Fatalf("class %v, want poison: %v", c, err)
			}
			if _, ok := errors.AsType[*serde.DecodeError](err); !ok {
				t.Fatalf("not a *DecodeError: %v", err)
			}
			return
		}
		again, err := codec.Encode(ctx, topic, v)
		if err != nil {
			t.Fatalf("re-encoding a decoded value: %v", err)
		}
		var w telemetry2
		if err := codec.Decode(ctx, topic, again, &w); err != nil {
			t.Fatalf("decoding a re-encoded value: %v", err)
		}
		third, err := codec.Encode(ctx, topic, w)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, third) {
			t.Fatalf("value changed through a decode: % x then % x", again, third)
		}
	})
}
