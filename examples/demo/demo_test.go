package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var full = flag.Bool("full", false, "run the demo at full scale (100 sensors × 1000 readings, 6 kill rounds); best without -race")

// TestDemo runs the crash scenario end to end: the services as child
// processes built once for the test, on an in-process stack on free ports,
// SIGKILLed in several rounds, one of them during a rebalance; then every
// check of the demo must pass.
func TestDemo(t *testing.T) {
	cfg := defaultConfig()
	cfg.kafkaAddr, cfg.registryAddr, cfg.mongoAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.dir = t.TempDir()
	cfg.seed = 42
	cfg.race = raceEnabled
	timeout := 4 * time.Minute
	if *full {
		timeout = 10 * time.Minute
	} else {
		// Small, and paced so the kills land while readings still arrive
		// (each kill waits until the services are back from the last one).
		cfg.sensors, cfg.messages, cfg.partitions, cfg.kills = 12, 60, 6, 3
		cfg.interval = 150 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out bytes.Buffer
	began := time.Now()
	res, err := run(ctx, cfg, &out)
	t.Logf("demo output:\n%s", out.String())
	defer func() {
		if t.Failed() {
			dumpLogs(t, filepath.Join(cfg.dir, "logs"))
		}
	}()
	if err != nil {
		t.Fatalf("demo: %v (logs in %s)", err, cfg.dir)
	}
	t.Logf("%d readings, %d kill rounds in %v", res.readings, res.kills, time.Since(began).Round(time.Second))

	if res.kills != cfg.kills || res.rebalanceKills != 1 {
		t.Errorf("%d kill rounds, %d during a rebalance; want %d and 1", res.kills, res.rebalanceKills, cfg.kills)
	}
	if want := cfg.sensors * cfg.messages; res.readings != want || res.sensors != cfg.sensors {
		t.Errorf("the truth holds %d readings of %d sensors, want %d of %d", res.readings, res.sensors, want, cfg.sensors)
	}
	if res.currentExact != cfg.sensors {
		t.Errorf("current serves the exact last reading of %d of %d sensors", res.currentExact, cfg.sensors)
	}
	if res.exact.exactSensors != cfg.sensors || res.exact.records != res.truth.records {
		t.Errorf("query: %d of %d sensors exact, %d records, want %d", res.exact.exactSensors, cfg.sensors, res.exact.records, res.truth.records)
	}
	if res.truth.records == 0 || res.alertsExpected == 0 {
		t.Errorf("the run has %d usage records and %d readings outside the site: it shows nothing", res.truth.records, res.alertsExpected)
	}
	if res.alertsDistinct != res.alertsExpected {
		t.Errorf("alerts for %d readings, %d were outside the site", res.alertsDistinct, res.alertsExpected)
	}
	for _, g := range []string{"usage", "alerts"} {
		if msg, ok := res.letters[g]; !ok || msg != "" {
			t.Errorf("dead letter for group %s: %q", g, msg)
		}
	}
	if !res.ok() {
		t.Errorf("failed checks:\n%s", strings.Join(res.failures, "\n"))
	}
	if !strings.Contains(out.String(), "OK: every reading counted exactly once") {
		t.Error("the demo did not print its verdict")
	}
	checkStalls(t, cfg, res.stalls)
	for i := 1; i <= cfg.kills; i++ {
		if !regexp.MustCompile(fmt.Sprintf(`\] kill %d/%d: usage#\S+ stalled \S+s .*; alerts stalled .*; current stalled `, i, cfg.kills)).MatchString(out.String()) {
			t.Errorf("no stall line for kill %d", i)
		}
	}
	if !strings.Contains(out.String(), "\ncount, median, max ") {
		t.Error("the demo did not print the stall summary")
	}
}

// stallMargin is what a stall may take beyond the session timeout. After a
// SIGKILL the demo restarts the service at once. A killed group member's
// partitions move once its session expired, at most the session timeout
// after its last heartbeat, and the group rebalanced; current replays from
// the start. Unloaded, under -race, usage and alerts stall for the session
// timeout plus up to 0.9 s (the most after the kill during a rebalance),
// current for 0.1 to 0.9 s. The margin covers, on a loaded 2-core machine
// running about ten race-instrumented processes, the restarted process
// starting and connecting (seconds at worst), a join and a sync round, and
// handling again what came after the last commit or checkpoint, even after
// a first fetch that waited out franz-go's 5 s fetch wait (seen with alerts
// while it also reads its redrive topic); it stays well below what a
// rebalance stuck on the dead member would cost, franz-go's 60 s rebalance
// timeout.
const stallMargin = 15 * time.Second

// checkStalls: each kill round reports a stall for usage, alerts and
// current, each positive and below the session timeout plus stallMargin.
func checkStalls(t *testing.T, cfg config, rounds []*stallRound) {
	t.Helper()
	if len(rounds) != cfg.kills {
		t.Errorf("stalls measured for %d kill rounds, want %d", len(rounds), cfg.kills)
	}
	limit := cfg.session + stallMargin
	for _, r := range rounds {
		for _, service := range measured {
			var st *stall
			for _, s := range r.stalls {
				if s.service == service {
					st = s
				}
			}
			switch {
			case st == nil:
				t.Errorf("kill %d: no stall measured for %s", r.kill, service)
			case !st.over():
				t.Errorf("kill %d: partitions %v of %s not back within %v", r.kill, st.left, service, stallLimit)
			case st.took <= 0 || st.took >= limit:
				t.Errorf("kill %d: %s stalled %v, want more than 0 and less than %v", r.kill, service, st.took, limit)
			case len(st.from) == 0:
				t.Errorf("kill %d: %s stalled %v on no partition", r.kill, service, st.took)
			default:
				t.Logf("kill %d (rebalance %v): %s stalled %v on %d partitions (fallback %v)", r.kill, r.rebalance, service, st.took, len(st.from), st.fallback)
			}
		}
	}
}

// dumpLogs logs the end of every service log, to tell why a run failed.
func dumpLogs(t *testing.T, dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		t.Logf("== %s (last lines)\n%s", filepath.Base(f), strings.Join(lines[max(0, len(lines)-40):], "\n"))
	}
}

func TestConfigRefusesWhatCannotWork(t *testing.T) {
	for _, mod := range []func(*config){
		func(c *config) { c.sensors = 0 },
		func(c *config) { c.messages = 1 },
		func(c *config) { c.kills = 1 },
		func(c *config) { c.partitions = 0 },
		func(c *config) { c.interval = -time.Second },
	} {
		c := defaultConfig()
		mod(&c)
		if c.check() == nil {
			t.Errorf("%+v passed the check", c)
		}
	}
	if err := defaultConfig().check(); err != nil {
		t.Errorf("the default config: %v", err)
	}
}

// TestKillTargetsAreReachable: each kill waits for usage's commits to pass
// its target, so a target beyond what usage can commit would hang the demo.
// However far usage got at the last kill, the next target is within reach.
func TestKillTargetsAreReachable(t *testing.T) {
	const n, expected = 6, 721
	for i := range n {
		for _, last := range []int64{0, expected / 2, expected - 50, expected} {
			for _, u := range []float64{0, 0.5, 0.999} {
				target := killTarget(i, n, last, expected, u)
				if target > expected*9/10 {
					t.Errorf("kill %d after %d committed (u %v): target %d of %d records", i+1, last, u, target, expected)
				}
				if last < expected/2 && target <= last {
					t.Errorf("kill %d after %d committed (u %v): target %d asks for no progress", i+1, last, u, target)
				}
			}
		}
	}
}
