package telemetry

import (
	"math"
	"path/filepath"
	"testing"
	"time"
)

func TestSiteContains(t *testing.T) {
	square := Site{{0, 0}, {0, 10}, {10, 10}, {10, 0}}
	for _, c := range []struct {
		p    GPS
		want bool
	}{
		{GPS{5, 5}, true}, {GPS{0.1, 9.9}, true},
		{GPS{-1, 5}, false}, {GPS{5, 11}, false}, {GPS{11, 11}, false},
	} {
		if got := square.Contains(c.p); got != c.want {
			t.Errorf("Contains(%v) = %v", c.p, got)
		}
	}
	if !DefaultSite.Contains(DefaultSite.Center()) {
		t.Error("the default site does not contain its center")
	}
	concave := Site{{0, 0}, {0, 10}, {10, 10}, {10, 0}, {5, 5}} // a notch into the side at longitude 0
	if concave.Contains(GPS{5, 2}) || !concave.Contains(GPS{5, 8}) {
		t.Error("a concave site is read as convex")
	}
}

func TestParseSiteRoundTrips(t *testing.T) {
	s, err := ParseSite(DefaultSite.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != len(DefaultSite) {
		t.Fatalf("%v", s)
	}
	for i := range s {
		if s[i] != DefaultSite[i] {
			t.Errorf("vertex %d: %v, want %v", i, s[i], DefaultSite[i])
		}
	}
	for _, bad := range []string{"", "1,2;3,4", "1,2;3,4;x,5", "1;2;3", "91,0;1,1;2,2", "0,181;1,1;2,2"} {
		if _, err := ParseSite(bad); err == nil {
			t.Errorf("ParseSite(%q) succeeded", bad)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := Telemetry{SensorID: "s"}
	if err := ok.Validate(); err != nil {
		t.Error(err)
	}
	for _, bad := range []Telemetry{{}, {SensorID: "s", Odometry: Odometry{KmTot: math.NaN()}}, {SensorID: "s", GPS: GPS{Lat: math.Inf(1)}}} {
		if bad.Validate() == nil {
			t.Errorf("%+v is valid", bad)
		}
	}
}

func TestDeltaAndDate(t *testing.T) {
	for _, c := range []struct {
		prev, cur Odometry
		counted   bool
	}{
		{Odometry{1, 1}, Odometry{1, 1}, false},
		{Odometry{1, 1}, Odometry{1.5, 1}, true},
		{Odometry{1, 1}, Odometry{1, 2}, true},
		{Odometry{2, 2}, Odometry{1, 1}, false},
	} {
		if _, _, got := Delta(c.prev, c.cur); got != c.counted {
			t.Errorf("Delta(%v, %v) counted = %v", c.prev, c.cur, got)
		}
	}
	late := time.Date(2026, 3, 1, 23, 59, 59, 999e6, time.FixedZone("CET", 3600))
	if got := Date(late.UnixMilli()); got != "2026-03-01" {
		t.Errorf("Date = %s, want the UTC day 2026-03-01", got)
	}
}

func TestTallyAndTruthFile(t *testing.T) {
	site := Site{{0, 0}, {0, 10}, {10, 10}, {10, 0}}
	tally := NewTally("topic", site)
	for _, r := range []Telemetry{
		{SensorID: "b", Odometry: Odometry{10, 100}, GPS: GPS{5, 5}},
		{SensorID: "a", Odometry: Odometry{1, 1}, GPS: GPS{20, 5}},
		{SensorID: "b", Odometry: Odometry{10, 100}, GPS: GPS{5, 5}},       // idle
		{SensorID: "b", Odometry: Odometry{10.5, 101.25}, GPS: GPS{-1, 5}}, // outside
	} {
		tally.Add(r)
	}
	truth := tally.Truth()
	if truth.Messages != 4 || len(truth.Sensors) != 2 || truth.Sensors[0].SensorID != "a" {
		t.Fatalf("%+v", truth)
	}
	b := truth.Sensors[1]
	if b.Messages != 3 || b.Records != 1 || b.TotalHours != 0.5 || b.TotalKm != 1.25 || b.Outside != 1 || b.Last.Odometry.KmTot != 101.25 {
		t.Errorf("sensor b: %+v", b)
	}
	if a := truth.Sensors[0]; a.Records != 0 || a.Outside != 1 {
		t.Errorf("sensor a: %+v", a)
	}
	path := filepath.Join(t.TempDir(), "truth.json")
	if err := truth.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	back, err := ReadTruth(path)
	if err != nil {
		t.Fatal(err)
	}
	if back.Messages != truth.Messages || back.Sensors[1] != truth.Sensors[1] || len(back.Site) != 4 {
		t.Errorf("read back %+v", back)
	}
}

func TestCents(t *testing.T) {
	if Cents(0.1+0.2) != 30 || Cents(1182.955) != 118296 || Cents(-0.004) != 0 {
		t.Error("Cents does not round to hundredths")
	}
}
