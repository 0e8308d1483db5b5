//go:build unix

package chaos

import (
	"flag"
	"os"
	"testing"
	"time"

	"github.com/kconsumer/kconsumer/consumer"
)

var (
	soakDuration = flag.Duration("chaos.duration", 0, "run TestSoak with every fault for this long (it is skipped without)")
	seed         = flag.Uint64("chaos.seed", 0, "seed of the scenarios; 0 picks one from the clock")
	verbose      = flag.Bool("chaos.v", false, "print the progress of each scenario")
)

// TestMain runs a member instead of the tests when the process was started
// as one by Run.
func TestMain(m *testing.M) {
	if IsChild() {
		os.Exit(ChildMain())
	}
	os.Exit(m.Run())
}

func scenarioSeed(t *testing.T) uint64 {
	s := *seed
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -chaos.seed=%d)", s, s)
	return s
}

// short returns the CI size of a scenario with the given faults.
func short(t *testing.T, name string, faults Fault) Scenario {
	sc := Scenario{
		Name:       name,
		Faults:     faults,
		Duration:   4 * time.Second,
		Rate:       300,
		Partitions: 6,
		Groups:     []string{GroupStateless, GroupAdditive},
		Members:    2,
		Seed:       scenarioSeed(t),
	}
	if *verbose {
		sc.Log = os.Stderr
	}
	return sc
}

// TestScenarios runs each fault on its own and all of them together, each
// for a few seconds, and checks the invariants after each.
func TestScenarios(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults Fault
		adjust func(*Scenario)
	}{
		// Slow records keep work in hand when the kills land.
		{"kill", Kill, func(sc *Scenario) { sc.Children, sc.Members, sc.SlowEvery = 2, 0, 25 }},
		{"storm", Storm, func(sc *Scenario) { sc.Members = 1 }},
		// With KeyOrder, records of a partition finish out of offset order:
		// the additive group's store records every offset and reports the
		// contiguous prefix, which stops at each dead-lettered record.
		{"storm-keyorder", Storm | BadInput, func(sc *Scenario) { sc.Members, sc.Order = 1, consumer.KeyOrder }},
		{"kill-keyorder", Kill | BadInput, func(sc *Scenario) {
			sc.Children, sc.Members, sc.SlowEvery, sc.Order = 2, 0, 25, consumer.KeyOrder
		}},
		{"fetch-errors", FetchErrors, nil},
		{"commit-errors", CommitErrors | Storm, nil},
		{"group-errors", GroupErrors | Storm, nil},
		{"dlq-errors", DLQErrors | BadInput, nil},
		{"slow-responses", SlowResponses | Storm, nil},
		{"timeouts", Timeouts | BadInput, nil},
		{"registry-errors", RegistryErrors | Storm, nil},
		{"sink-faults", SinkFaults | Storm, nil},
		{"session-expiry", SessionExpiry, nil},
		{"bad-input", BadInput, nil},
		{"all", AllFaults, func(sc *Scenario) { sc.Children, sc.Members, sc.Pace = 1, 1, 3 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sc := short(t, tc.name, tc.faults)
			if tc.adjust != nil {
				tc.adjust(&sc)
			}
			s := Run(t, sc)
			t.Log(s)
		})
	}
}

// TestSoak runs every fault at once for -chaos.duration and prints the
// summary; it is skipped without the flag.
func TestSoak(t *testing.T) {
	if *soakDuration <= 0 {
		t.Skip("set -chaos.duration to soak")
	}
	sc := Scenario{
		Name:          "soak",
		Faults:        AllFaults,
		Duration:      *soakDuration,
		Rate:          150,
		Partitions:    6,
		Groups:        []string{GroupStateless, GroupAdditive},
		Children:      1,
		Members:       1,
		Seed:          scenarioSeed(t),
		Pace:          10,
		HugeEvery:     30 * time.Second,
		DrainTimeout:  5 * time.Minute,
		Log:           os.Stderr,
		ProgressEvery: 15 * time.Second,
	}
	s := Run(t, sc)
	t.Logf("\n%s", s)
}
