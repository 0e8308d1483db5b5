//go:build unix

package chaos

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/internal/brokerfix"
)

var (
	soakDuration = flag.Duration("chaos.duration", 0, "run TestSoak with every fault for this long (it is skipped without)")
	seedFlag     = flag.Uint64("chaos.seed", 0, "run the scenarios with this seed only, to replay a failure (or set "+seedEnv+"); 0 runs the fixed seeds and a random one")
	verbose      = flag.Bool("chaos.v", false, "print the progress of each scenario")
	withDefaults = flag.Bool("chaos.defaults", false, "run TestScenarios/defaults, the library's default timeouts under process faults (skipped without: about 2 minutes, and kfake makes it fail about 2 runs in 3; see defaultsScenario)")
)

// TestMain runs a member instead of the tests when the process was started
// as one by Run.
func TestMain(m *testing.M) {
	if IsChild() {
		os.Exit(ChildMain())
	}
	os.Exit(m.Run())
}

// seedEnv replays a seed like -chaos.seed, for runs that cannot pass the
// flag, such as go test ./... over packages without it.
const seedEnv = "CHAOS_SEED"

// fixedSeeds are the seeds TestScenarios always runs, so that a run is
// comparable with the last; a random seed is added to explore.
var fixedSeeds = []uint64{1, 2}

// randomSeed is this process's random seed: one for all the scenarios, so
// that one seed replays any of them.
var randomSeed = sync.OnceValue(func() uint64 {
	for {
		if s := rand.Uint64(); s != 0 {
			return s
		}
	}
})

// replaySeed returns the seed given by -chaos.seed or CHAOS_SEED, 0 for
// none. The flag wins.
func replaySeed(t *testing.T) uint64 {
	if *seedFlag != 0 {
		return *seedFlag
	}
	v := os.Getenv(seedEnv)
	if v == "" {
		return 0
	}
	s, err := strconv.ParseUint(v, 10, 64)
	if err != nil || s == 0 {
		t.Fatalf("%s=%q: want a seed, a positive integer", seedEnv, v)
	}
	return s
}

// seeds returns the seeds the scenarios run with: the one to replay if
// given, else the fixed seeds and a random one, which it logs.
func seeds(t *testing.T) []uint64 {
	if s := replaySeed(t); s != 0 {
		t.Logf("replaying seed %d", s)
		return []uint64{s}
	}
	r := randomSeed()
	t.Logf("seeds %v and random seed %d (%s)", fixedSeeds, r, replay(r))
	return append(fixedSeeds[:len(fixedSeeds):len(fixedSeeds)], r)
}

// replay says how to run a seed again.
func replay(seed uint64) string {
	return fmt.Sprintf("replay with -chaos.seed=%d or %s=%d", seed, seedEnv, seed)
}

// scenarioSeed returns the seed of a single scenario: the one to replay if
// given, else a random one. It logs it.
func scenarioSeed(t *testing.T) uint64 {
	s := replaySeed(t)
	if s == 0 {
		s = randomSeed()
	}
	t.Logf("seed %d (%s)", s, replay(s))
	return s
}

// withSeed makes a failure of t name the seed and how to replay it.
func withSeed(t *testing.T, seed uint64) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("FAILED with seed %d: %s", seed, replay(seed))
		}
	})
}

// short returns the CI size of a scenario with the given faults.
func short(name string, faults Fault, seed uint64) Scenario {
	sc := Scenario{
		Name:       name,
		Faults:     faults,
		Duration:   4 * time.Second,
		Rate:       300,
		Partitions: 6,
		Groups:     []string{GroupStateless, GroupAdditive},
		Members:    2,
		Seed:       seed,
	}
	if *verbose {
		sc.Log = os.Stderr
	}
	return sc
}

// TestScenarios runs each fault on its own and all of them together, each
// for a few seconds with each seed (see seeds), and checks the invariants
// and that each fault asked for fired after each.
func TestScenarios(t *testing.T) {
	seedList := seeds(t)
	for _, tc := range []struct {
		name   string
		faults Fault
		adjust func(*Scenario)
	}{
		// The library's own timeouts under the process faults' rhythm
		// (see defaultsScenario), with -chaos.defaults only. First, since
		// it runs longest, mostly waiting for sessions to expire; with one
		// seed.
		{"defaults", ProcessFaults, defaultsScenario},
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
		// Every fault at once, paced to a third so that the groups keep
		// making progress, and so run twice as long as the others: a
		// paced fault's cycle takes up to three seconds, and each fault
		// must fire (Check fails the run otherwise) after the members
		// have started.
		{"all", AllFaults, func(sc *Scenario) {
			sc.Children, sc.Members, sc.Pace, sc.Duration = 1, 1, 3, 8*time.Second
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "defaults" && !*withDefaults {
				t.Skip("set -chaos.defaults to run it (see defaultsScenario)")
			}
			t.Parallel()
			list := seedList
			if s, ok := oneSeed[tc.name]; ok && replaySeed(t) == 0 {
				list = []uint64{s}
			}
			for _, seed := range list {
				t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
					t.Parallel()
					withSeed(t, seed)
					sc := short(tc.name, tc.faults, seed)
					if tc.adjust != nil {
						tc.adjust(&sc)
					}
					s := Run(t, sc)
					t.Log(s)
				})
			}
		})
	}
}

// oneSeed holds the scenarios that run with a single fixed seed rather
// than each seed of seeds, unless one is replayed: the long ones.
var oneSeed = map[string]uint64{"defaults": 1}

// defaultsScenario runs members with the library's default timeouts
// (session 45 s, heartbeat 3 s, rebalance 60 s, revoke and shutdown 30 s,
// commits every second) as child processes, and hits them every 0.3 to 3 s
// with a SIGKILL, a SIGTERM followed by SIGKILL 100 ms later, a SIGSTOP of
// 8 to 10 s, or a SIGKILL within 200 ms of a member's start, for 14 s: long
// enough for each kind to come at least once (a round of the four takes at
// most 4 x 3 s). Members killed while they join leave the group stuck; the
// members left running must drain it within defaultsBound of the last
// fault.
func defaultsScenario(sc *Scenario) {
	sc.Children, sc.Members, sc.SlowEvery = 2, 0, 25
	sc.Duration = 14 * time.Second
	sc.LibraryDefaults = true
	sc.DrainTimeout = 4 * time.Minute
	sc.RecoveryBound, sc.RecoveryReason = defaultsBound()
}

// defaultsBound is how soon after the last fault the defaults scenario's
// members must have drained their groups, and what that is made of. A
// member killed while the group is stable holds the next rebalance until
// its session runs out: at most a session timeout after the last fault,
// since it heartbeat until it died. Members killed while they were parked
// in that rebalance's join count as joined: the rebalance hands them
// partitions when it completes, and they hold them until their own session
// runs out, a session timeout later (kfake's timer) or, when kfake lost
// their join's answer, up to the janitor's interval and grace after that
// (internal/brokerfix). A last rebalance, which the live members learn of
// by their 3 s heartbeats, then moves their partitions, and the backlog
// of the stuck partitions is drained. So two session timeouts, the
// janitor's interval and grace, and 15 s for the rebalances and the
// drain. The seed-1 runs took about 41 s (additive: one expiry) and 85 s
// (stateless: the chain of two) when they passed.
//
// It runs with -chaos.defaults only: on kfake it fails about two runs in
// three, the stateless group draining some 170 s after the last fault.
// kfake expires a member parked in a join at its session timeout, counted
// from its JoinGroup, where Kafka keeps it waiting for the rebalance
// (internal/brokerfix, "What it does not fix"). When a live member joins a
// rebalance before a member that then dies in it sent its own JoinGroup,
// kfake expires the live one first, 45 s into its wait, and never answers
// its join: kgo gives up after the rebalance timeout plus the request
// overhead (70 s, "i/o timeout", partitions lost), and its rejoin waits
// out the 60 s rebalance deadline, after which the members that died
// mid-join hold their partitions for another session. That is kfake's,
// not the library's, so the bound is not widened to it.
func defaultsBound() (time.Duration, string) {
	lt := LibraryTiming
	janitor := brokerfix.DefaultInterval + brokerfix.DefaultGrace
	const rest = 15 * time.Second
	return 2*lt.Session + janitor + rest, fmt.Sprintf(
		"2 x session timeout %v, for a stable member killed and then members killed mid-join, + janitor interval and grace %v + %v for the rebalances and the drain",
		lt.Session, janitor, rest)
}

// TestSoak runs every fault at once for -chaos.duration and prints the
// summary; it is skipped without the flag.
func TestSoak(t *testing.T) {
	if *soakDuration <= 0 {
		t.Skip("set -chaos.duration to soak")
	}
	seed := scenarioSeed(t)
	withSeed(t, seed)
	sc := Scenario{
		Name:          "soak",
		Faults:        AllFaults,
		Duration:      *soakDuration,
		Rate:          150,
		Partitions:    6,
		Groups:        []string{GroupStateless, GroupAdditive},
		Children:      1,
		Members:       1,
		Seed:          seed,
		Pace:          10,
		HugeEvery:     30 * time.Second,
		DrainTimeout:  5 * time.Minute,
		Log:           os.Stderr,
		ProgressEvery: 15 * time.Second,
	}
	s := Run(t, sc)
	t.Logf("\n%s", s)
}
