//go:build race

package main

// raceEnabled is true when the test binary runs with the race detector;
// the services it builds for the demo then run with it too.
const raceEnabled = true
