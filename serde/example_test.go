package serde_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/fault"
	"github.com/kconsumer/kconsumer/serde"
)

// Reading is the Go type of readingSchema.
type Reading struct {
	Sensor string  `avro:"sensor" json:"sensor"`
	Km     float64 `avro:"km" json:"km"`
}

const readingSchema = `{
	"type": "record", "name": "Reading", "namespace": "example",
	"fields": [
		{"name": "sensor", "type": "string"},
		{"name": "km", "type": "double"}
	]
}`

// A producer encodes with the codec, which registers its schema under
// "<topic>-value" on first use; a consumer decodes with the writer's schema,
// found by the ID in the header.
func Example() {
	ctx := context.Background()
	fake := srfake.New() // a Schema Registry for the example
	defer fake.Close()

	reg, err := serde.NewRegistry(fake.URL())
	if err != nil {
		log.Fatal(err)
	}
	codec, err := serde.NewAvro[Reading](reg, readingSchema)
	if err != nil {
		log.Fatal(err)
	}

	b, err := codec.Encode(ctx, "sensor-data", Reading{Sensor: "s-17", Km: 48211.25})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("header % x\n", b[:5])

	var r Reading
	if err := codec.Decode(ctx, "sensor-data", b, &r); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%+v\n", r)
	// Output:
	// header 00 00 00 00 01
	// {Sensor:s-17 Km:48211.25}
}

// Handle turns a function of decoded values into a consumer.Handler.
func ExampleHandle() {
	ctx := context.Background()
	fake := srfake.New()
	defer fake.Close()
	reg, err := serde.NewRegistry(fake.URL())
	if err != nil {
		log.Fatal(err)
	}
	codec, err := serde.NewAvro[Reading](reg, readingSchema)
	if err != nil {
		log.Fatal(err)
	}

	h := serde.Handle(codec, func(_ context.Context, r *kgo.Record, v Reading) error {
		fmt.Printf("offset %d: %s at %.1f km\n", r.Offset, v.Sensor, v.Km)
		return nil
	})

	// What the Consumer would do with two records.
	value, err := codec.Encode(ctx, "sensor-data", Reading{Sensor: "s-17", Km: 12.5})
	if err != nil {
		log.Fatal(err)
	}
	for i, v := range [][]byte{value, []byte(`{"sensor":"s-17"}`)} {
		err := h.Handle(ctx, &kgo.Record{Topic: "sensor-data", Partition: 0, Offset: int64(i), Value: v})
		if err != nil {
			fmt.Println(fault.ClassOf(err), errors.Is(err, serde.ErrBadMagic))
			fmt.Println(err)
		}
	}
	// Output:
	// offset 0: s-17 at 12.5 km
	// poison true
	// poison: serde: decoding value of topic "sensor-data" partition 0 offset 1, no schema ID: bad magic byte: first byte is 0x7b, want 0x00
}

// A consumer whose handler gets the decoded key and value of each record.
func ExampleHandleKV() {
	reg, err := serde.NewRegistry("http://localhost:8081")
	if err != nil {
		log.Fatal(err)
	}
	keys, err := serde.NewAvro[string](reg, `"string"`, serde.ForKey())
	if err != nil {
		log.Fatal(err)
	}
	values, err := serde.NewAvro[Reading](reg, readingSchema)
	if err != nil {
		log.Fatal(err)
	}
	c, err := consumer.New(
		serde.HandleKV(keys, values, func(_ context.Context, _ *kgo.Record, sensor string, v Reading) error {
			log.Printf("%s: %.1f km", sensor, v.Km)
			return nil
		}),
		consumer.SeedBrokers("localhost:9092"),
		consumer.Topics("sensor-data"),
		consumer.Group("current"),
	)
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

// Registry options carry authentication and TLS to the franz-go client.
func ExampleNewRegistry() {
	reg, err := serde.NewRegistry("https://registry-1.example.com,https://registry-2.example.com",
		serde.BasicAuth("api-key", "api-secret"),
		serde.TLS(&tls.Config{MinVersion: tls.VersionTLS12}),
		serde.LookupTimeout(5*time.Second),
	)
	if err != nil {
		log.Fatal(err)
	}
	_ = reg
}

// JSON serves topics without Avro and without a registry.
func ExampleJSON() {
	ctx := context.Background()
	var codec serde.JSON[Reading]
	b, err := codec.Encode(ctx, "readings", Reading{Sensor: "s-3", Km: 7})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(b))

	var r Reading
	err = codec.Decode(ctx, "readings", []byte(`{"sensor": 3}`), &r)
	fmt.Println(fault.ClassOf(err), errors.Is(err, serde.ErrMismatch))
	// Output:
	// {"sensor":"s-3","km":7}
	// poison true
}
