// Package telemetry holds what the example services share about the
// sensor-data topic: the record type and its Avro schema, the construction
// site's boundary, the usage rule and the ground truth the producer writes.
package telemetry

import (
	_ "embed"
	"errors"
	"fmt"
	"math"
	"time"
)

// Topics of the platform.
const (
	Topic       = "sensor-data"     // telemetry, keyed by sensor id
	AlertsTopic = "sensor-alerts"   // GPS positions outside the site, as JSON
	DLQTopic    = "sensor-data.dlq" // dead letters of sensor-data
)

// Schema is the Avro schema of a Telemetry value.
//
//go:embed telemetry.avsc
var Schema string

// Telemetry is one reading of a sensor: odometry and GPS position.
type Telemetry struct {
	SensorID    string   `avro:"sensor_id" json:"sensor_id" bson:"sensor_id"`
	TimestampMs int64    `avro:"timestamp_ms" json:"timestamp_ms" bson:"timestamp_ms"`
	Odometry    Odometry `avro:"odometry" json:"odometry" bson:"odometry"`
	GPS         GPS      `avro:"gps" json:"gps" bson:"gps"`
}

// Odometry holds a machine's totals since it was built.
type Odometry struct {
	HoursTot float64 `avro:"hours_tot" json:"hours_tot" bson:"hours_tot"` // engine hours
	KmTot    float64 `avro:"km_tot" json:"km_tot" bson:"km_tot"`          // kilometres driven
}

// GPS is a position in decimal degrees.
type GPS struct {
	Lat float64 `avro:"lat" json:"lat" bson:"lat"`
	Lon float64 `avro:"lon" json:"lon" bson:"lon"`
}

// Time returns the reading's timestamp.
func (t Telemetry) Time() time.Time { return time.UnixMilli(t.TimestampMs).UTC() }

// Validate reports a reading no service can use: one without a sensor id
// or with a number that is not finite.
func (t Telemetry) Validate() error {
	if t.SensorID == "" {
		return errors.New("telemetry: empty sensor_id")
	}
	for _, v := range []float64{t.Odometry.HoursTot, t.Odometry.KmTot, t.GPS.Lat, t.GPS.Lon} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("telemetry: sensor %s: non-finite value %v", t.SensorID, v)
		}
	}
	return nil
}

// Delta is the usage between two readings of one sensor: the engine hours
// and kilometres the later one adds. Counted is false when neither grew,
// and such a pair makes no usage record.
func Delta(prev, cur Odometry) (hours, km float64, counted bool) {
	hours, km = cur.HoursTot-prev.HoursTot, cur.KmTot-prev.KmTot
	return hours, km, hours > 0 || km > 0
}

// Date is the UTC calendar day of a timestamp, as usage records store it.
func Date(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.DateOnly) }

// Cents rounds v to hundredths, the precision at which totals are compared.
func Cents(v float64) int64 { return int64(math.Round(v * 100)) }
