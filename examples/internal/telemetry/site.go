package telemetry

import (
	"fmt"
	"strconv"
	"strings"
)

// A Site is a construction site's boundary: a polygon of GPS positions,
// closed implicitly from the last vertex back to the first.
type Site []GPS

// DefaultSite is the site the producer's machines work on and the alerts
// service watches: a quadrilateral of about 1.5 × 1 km near Munich.
var DefaultSite = Site{
	{Lat: 48.1300, Lon: 11.5600},
	{Lat: 48.1300, Lon: 11.5800},
	{Lat: 48.1400, Lon: 11.5820},
	{Lat: 48.1410, Lon: 11.5590},
}

// Contains reports whether p lies inside the site, by ray casting. Points
// exactly on an edge may fall on either side, the same way every time.
func (s Site) Contains(p GPS) bool {
	in := false
	for i, j := 0, len(s)-1; i < len(s); j, i = i, i+1 {
		a, b := s[i], s[j]
		if (a.Lat > p.Lat) != (b.Lat > p.Lat) &&
			p.Lon < (b.Lon-a.Lon)*(p.Lat-a.Lat)/(b.Lat-a.Lat)+a.Lon {
			in = !in
		}
	}
	return in
}

// Center returns the mean of the site's vertices.
func (s Site) Center() GPS {
	var c GPS
	for _, v := range s {
		c.Lat += v.Lat
		c.Lon += v.Lon
	}
	n := float64(len(s))
	return GPS{Lat: c.Lat / n, Lon: c.Lon / n}
}

// String formats the site the way ParseSite reads it.
func (s Site) String() string {
	parts := make([]string, len(s))
	for i, v := range s {
		parts[i] = strconv.FormatFloat(v.Lat, 'f', -1, 64) + "," + strconv.FormatFloat(v.Lon, 'f', -1, 64)
	}
	return strings.Join(parts, ";")
}

// ParseSite reads "lat,lon;lat,lon;..." with at least three vertices.
func ParseSite(s string) (Site, error) {
	var site Site
	for _, part := range strings.Split(s, ";") {
		lat, lon, ok := strings.Cut(strings.TrimSpace(part), ",")
		if !ok {
			return nil, fmt.Errorf("site: %q is not lat,lon", part)
		}
		var p GPS
		var err1, err2 error
		p.Lat, err1 = strconv.ParseFloat(strings.TrimSpace(lat), 64)
		p.Lon, err2 = strconv.ParseFloat(strings.TrimSpace(lon), 64)
		if err1 != nil || err2 != nil || p.Lat < -90 || p.Lat > 90 || p.Lon < -180 || p.Lon > 180 {
			return nil, fmt.Errorf("site: %q is not a position", part)
		}
		site = append(site, p)
	}
	if len(site) < 3 {
		return nil, fmt.Errorf("site: %d vertices, need at least 3", len(site))
	}
	return site, nil
}

// Set implements flag.Value.
func (s *Site) Set(v string) error {
	site, err := ParseSite(v)
	if err != nil {
		return err
	}
	*s = site
	return nil
}
