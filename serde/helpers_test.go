package serde_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/kconsumer/kconsumer/serde"
)

const topic = "sensor-data"

// telemetrySchema is testdata/telemetry.avsc, the schema of the records on
// sensor-data.
var telemetrySchema = func() string {
	b, err := os.ReadFile("testdata/telemetry.avsc")
	if err != nil {
		panic(err)
	}
	return string(b)
}()

// telemetry is a Go type for telemetrySchema.
type telemetry struct {
	SensorID    string   `avro:"sensor_id" json:"sensor_id"`
	TimestampMs int64    `avro:"timestamp_ms" json:"timestamp_ms"`
	Odometry    odometry `avro:"odometry" json:"odometry"`
	GPS         gps      `avro:"gps" json:"gps"`
}

type odometry struct {
	HoursTot float64 `avro:"hours_tot" json:"hours_tot"`
	KmTot    float64 `avro:"km_tot" json:"km_tot"`
}

type gps struct {
	Lat float64 `avro:"lat" json:"lat"`
	Lon float64 `avro:"lon" json:"lon"`
}

func sample(i int) telemetry {
	return telemetry{
		SensorID:    "sensor-" + string(rune('a'+i%26)),
		TimestampMs: 1_700_000_000_000 + int64(i)*1000,
		Odometry:    odometry{HoursTot: 1200.5 + float64(i), KmTot: 48211.25 + float64(i)},
		GPS:         gps{Lat: 48.137154, Lon: 11.576124},
	}
}

// Schema evolution of telemetry: v2 adds a field with a default and an
// optional field; v3 removes the optional field again.
var (
	telemetryV2 = withFields(telemetrySchema,
		`{"name": "firmware", "type": "string", "default": "unknown"}`,
		`{"name": "battery_v", "type": ["null", "double"], "default": null}`)
	telemetryV3 = withFields(telemetrySchema,
		`{"name": "firmware", "type": "string", "default": "unknown"}`)
)

// telemetry2 is a Go type for telemetryV2.
type telemetry2 struct {
	telemetry
	Firmware string   `avro:"firmware"`
	BatteryV *float64 `avro:"battery_v"`
}

// telemetry3 is a Go type for telemetryV3.
type telemetry3 struct {
	telemetry
	Firmware string `avro:"firmware"`
}

// withFields returns the record schema s with fields appended.
func withFields(s string, fields ...string) string {
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		panic(err)
	}
	for _, f := range fields {
		var fm any
		if err := json.Unmarshal([]byte(f), &fm); err != nil {
			panic(err)
		}
		m["fields"] = append(m["fields"].([]any), fm)
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func newRegistry(t testing.TB, url string, opts ...serde.RegistryOpt) *serde.Registry {
	t.Helper()
	reg, err := serde.NewRegistry(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func newAvro[T any](t testing.TB, reg *serde.Registry, schema string, opts ...serde.AvroOpt) *serde.Avro[T] {
	t.Helper()
	a, err := serde.NewAvro[T](reg, schema, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// inProcess returns a Registry that reaches fake's handler without a
// network, for fuzzing and benchmarks.
func inProcess(t testing.TB, fake *srfake.Registry) *serde.Registry {
	t.Helper()
	return newRegistry(t, "http://registry.invalid", serde.ClientOpts(sr.HTTPClient(&http.Client{Transport: handlerTransport{fake.Handler()}})))
}

// handlerTransport serves requests with an http.Handler in process.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}
