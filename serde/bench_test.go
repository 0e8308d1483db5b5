package serde_test

import (
	"context"
	"testing"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

// BenchmarkDecode compares decoding a telemetry record whose schema is
// cached (serde) with hamba/avro's Unmarshal of the same payload without
// the header (hamba). The target is serde ≤ 1.1 × hamba.
func BenchmarkDecode(b *testing.B) {
	ctx := context.Background()
	codec := newAvro[telemetry](b, inProcess(b, srfake.NewRegistry()), telemetrySchema)
	data, err := codec.Encode(ctx, topic, sample(1))
	if err != nil {
		b.Fatal(err)
	}
	var v telemetry
	if err := codec.Decode(ctx, topic, data, &v); err != nil {
		b.Fatal(err)
	}
	schema := codec.Schema()
	payload := data[5:]

	b.Run("impl=serde", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := codec.Decode(ctx, topic, data, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=hamba", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := avro.Unmarshal(schema, payload, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
}
