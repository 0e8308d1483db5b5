package telemetry

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
)

// Truth is what a producer run wrote: per sensor, the last reading and the
// usage and alerts the services should derive from all of its readings.
// The crash-recovery demo checks the services against it.
type Truth struct {
	Topic    string        `json:"topic"`
	Site     Site          `json:"site"`
	Messages int           `json:"messages"`
	Sensors  []SensorTruth `json:"sensors"` // sorted by sensor id
}

// SensorTruth is the truth about one sensor.
type SensorTruth struct {
	SensorID   string    `json:"sensor_id"`
	Messages   int       `json:"messages"`
	Last       Telemetry `json:"last"`
	TotalHours float64   `json:"total_hours"` // sum of the counted deltas
	TotalKm    float64   `json:"total_km"`
	Records    int       `json:"records"` // counted deltas: usage records
	Outside    int       `json:"outside"` // readings outside the site
}

// A Tally builds a Truth from readings in the order a sensor sent them.
type Tally struct {
	topic   string
	site    Site
	n       int
	sensors map[string]*SensorTruth
}

// NewTally returns an empty tally for topic, judging positions by site.
func NewTally(topic string, site Site) *Tally {
	return &Tally{topic: topic, site: site, sensors: make(map[string]*SensorTruth)}
}

// Add counts one reading that the broker acknowledged.
func (t *Tally) Add(r Telemetry) {
	t.n++
	s, ok := t.sensors[r.SensorID]
	if !ok {
		s = &SensorTruth{SensorID: r.SensorID}
		t.sensors[r.SensorID] = s
	} else if h, km, counted := Delta(s.Last.Odometry, r.Odometry); counted {
		s.TotalHours += h
		s.TotalKm += km
		s.Records++
	}
	s.Messages++
	s.Last = r
	if !t.site.Contains(r.GPS) {
		s.Outside++
	}
}

// Truth returns the tally so far.
func (t *Tally) Truth() Truth {
	out := Truth{Topic: t.topic, Site: t.site, Messages: t.n}
	for _, id := range slices.Sorted(maps.Keys(t.sensors)) {
		out.Sensors = append(out.Sensors, *t.sensors[id])
	}
	return out
}

// WriteFile writes the truth as JSON to path, replacing it atomically.
func (t Truth) WriteFile(path string) error {
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".truth-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// ReadTruth reads a truth file written by WriteFile.
func ReadTruth(path string) (Truth, error) {
	var t Truth
	b, err := os.ReadFile(path)
	if err != nil {
		return t, err
	}
	if err := json.Unmarshal(b, &t); err != nil {
		return t, fmt.Errorf("%s: %w", path, err)
	}
	if !slices.IsSortedFunc(t.Sensors, func(a, b SensorTruth) int { return cmp.Compare(a.SensorID, b.SensorID) }) {
		return t, fmt.Errorf("%s: sensors are not sorted by id", path)
	}
	return t, nil
}
