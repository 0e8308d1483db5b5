package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/kconsumer/kconsumer/examples/internal/telemetry"
)

// fleet simulates construction machines: each works or idles for a while,
// its engine-hour meter runs while it works, it drives a few kilometres an
// hour, and its GPS position wanders around the site, now and then outside.
type fleet struct {
	machines []*machine
	site     telemetry.Site
	center   telemetry.GPS
	step     time.Duration
	start    time.Time
}

type machine struct {
	id      string
	rng     *rand.Rand
	working bool
	hours   float64 // exact totals; readings report them rounded to 0.01
	km      float64
	pos     telemetry.GPS
}

// newFleet returns n machines whose behaviour depends only on seed, the
// first reading at start and one reading per machine every step.
func newFleet(n int, seed uint64, site telemetry.Site, start time.Time, step time.Duration) *fleet {
	f := &fleet{site: site, center: site.Center(), step: step, start: start}
	width := len(fmt.Sprint(n - 1))
	for i := range n {
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		m := &machine{
			id:      fmt.Sprintf("sensor-%0*d", max(width, 3), i),
			rng:     rng,
			working: rng.IntN(2) == 0,
			hours:   100 + rng.Float64()*5000,
			km:      1000 + rng.Float64()*40000,
		}
		// Start somewhere inside the site.
		for {
			m.pos = telemetry.GPS{
				Lat: f.center.Lat + (rng.Float64()-0.5)*0.008,
				Lon: f.center.Lon + (rng.Float64()-0.5)*0.016,
			}
			if site.Contains(m.pos) {
				break
			}
		}
		f.machines = append(f.machines, m)
	}
	return f
}

// reading advances machine m by one step and returns its reading number
// round.
func (f *fleet) reading(m *machine, round int) telemetry.Telemetry {
	h := f.step.Hours()
	switch {
	case m.working && m.rng.Float64() < 0.1:
		m.working = false
	case !m.working && m.rng.Float64() < 0.3:
		m.working = true
	}
	if m.working {
		m.hours += h * (0.9 + 0.1*m.rng.Float64()) // the meter runs while the engine does
		m.km += h * 12 * m.rng.Float64()           // up to 12 km/h
		// Wander, pulled back gently towards the middle of the site.
		m.pos.Lat += m.rng.NormFloat64()*0.0008 + (f.center.Lat-m.pos.Lat)*0.05
		m.pos.Lon += m.rng.NormFloat64()*0.0012 + (f.center.Lon-m.pos.Lon)*0.05
	}
	ts := f.start.Add(time.Duration(round) * f.step).UnixMilli()
	return telemetry.Telemetry{
		SensorID:    m.id,
		TimestampMs: ts,
		Odometry:    telemetry.Odometry{HoursTot: hundredths(m.hours), KmTot: hundredths(m.km)},
		// GPS noise of a few metres on top of the true position.
		GPS: telemetry.GPS{
			Lat: m.pos.Lat + m.rng.NormFloat64()*0.00003,
			Lon: m.pos.Lon + m.rng.NormFloat64()*0.00004,
		},
	}
}

// hundredths rounds v to 0.01, the resolution of the machines' meters.
// Rounding is monotonic, so readings never go backwards.
func hundredths(v float64) float64 { return math.Round(v*100) / 100 }
