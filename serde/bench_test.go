package serde_test

import (
	"context"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/kconsumer/kconsumer/serde"
)

// cachedRecord returns a codec and a framed telemetry record whose schema
// the codec has already looked up and cached.
func cachedRecord(b *testing.B) (*serde.Avro[telemetry], []byte) {
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
	return codec, data
}

// BenchmarkDecode compares decoding a telemetry record whose schema is
// cached (serde) with hamba/avro's Unmarshal of the same payload without
// the header (hamba). The target is serde ≤ 1.1 × hamba.
func BenchmarkDecode(b *testing.B) {
	ctx := context.Background()
	codec, data := cachedRecord(b)
	schema, payload := codec.Schema(), data[5:]
	var v telemetry

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

// BenchmarkDecodeRatio decodes the same record through serde and through
// hamba/avro in alternating chunks and reports the ratio of their times, so
// that load on a shared machine, which moves both alike, cancels out.
func BenchmarkDecodeRatio(b *testing.B) {
	ctx := context.Background()
	codec, data := cachedRecord(b)
	schema, payload := codec.Schema(), data[5:]
	var v telemetry

	const chunk = 500
	viaSerde := func() time.Duration {
		start := time.Now()
		for range chunk {
			if err := codec.Decode(ctx, topic, data, &v); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start)
	}
	viaHamba := func() time.Duration {
		start := time.Now()
		for range chunk {
			if err := avro.Unmarshal(schema, payload, &v); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start)
	}
	var s, h time.Duration
	odd := false
	for b.Loop() {
		if odd = !odd; odd {
			s += viaSerde()
			h += viaHamba()
		} else {
			h += viaHamba()
			s += viaSerde()
		}
	}
	n := float64(b.N * chunk)
	b.ReportMetric(float64(s)/n, "serde-ns/op")
	b.ReportMetric(float64(h)/n, "hamba-ns/op")
	b.ReportMetric(float64(s)/float64(h), "serde/hamba")
}
