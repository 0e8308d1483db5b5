package main

import (
	_ "embed"
	"fmt"
)

// telemetrySchema is the schema of the sensor readings on the Avro topic,
// the same as the serde package's test data.
//
//go:embed telemetry.avsc
var telemetrySchema string

// telemetry is a Go type for telemetrySchema.
type telemetry struct {
	SensorID    string   `avro:"sensor_id"`
	TimestampMs int64    `avro:"timestamp_ms"`
	Odometry    odometry `avro:"odometry"`
	GPS         gps      `avro:"gps"`
}

type odometry struct {
	HoursTot float64 `avro:"hours_tot"`
	KmTot    float64 `avro:"km_tot"`
}

type gps struct {
	Lat float64 `avro:"lat"`
	Lon float64 `avro:"lon"`
}

// reading returns the i-th reading of a fleet of 1,000 sensors.
func reading(i int) telemetry {
	return telemetry{
		SensorID:    fmt.Sprintf("sensor-%04d", i%1000),
		TimestampMs: 1_700_000_000_000 + int64(i)*100,
		Odometry:    odometry{HoursTot: 1200.5 + float64(i)/3600, KmTot: 48211.25 + float64(i)/100},
		GPS:         gps{Lat: 48.137154 + float64(i%1000)/1e5, Lon: 11.576124},
	}
}
