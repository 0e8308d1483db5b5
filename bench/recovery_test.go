package main

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for the bench program when the
// recovery benchmark starts it as its broker or a member.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && (os.Args[1] == "broker" || os.Args[1] == "member") {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestRecoveryStaticMember runs the recovery benchmark in its smallest
// form: two static members, one repetition, a short heartbeat so that the
// rejoin is quick.
func TestRecoveryStaticMember(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := recoveryOptions{
		plan:       []modePlan{{Mode: modeStatic, Reps: 1}},
		members:    2,
		partitions: 4,
		rate:       20,
		restart:    200 * time.Millisecond,
		timeout:    30 * time.Second,
		settle:     500 * time.Millisecond,
		heartbeat:  300 * time.Millisecond,
		logs:       t.TempDir(),
	}
	rep, err := runRecovery(ctx, exe, r, "test")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != 1 {
		t.Fatalf("%d runs, want 1", len(rep.Runs))
	}
	run := rep.Runs[0]
	t.Log(run.line())
	if run.Err != "" {
		t.Fatal(run.Err)
	}
	if len(run.VictimPartitions) != 2 || len(run.Partitions) != 2 {
		t.Fatalf("the killed member owned %v, measured %v; want 2 of the 4 partitions", run.VictimPartitions, run.Partitions)
	}
	if run.StallMs < ms(r.restart) || run.RebalancedMs < ms(r.restart) || run.AssignedMs < ms(r.restart) {
		t.Errorf("stall %v ms, back at the pre-kill assignment %v ms, restarted member assigned %v ms: want each after the restart (%v)",
			run.StallMs, run.RebalancedMs, run.AssignedMs, r.restart)
	}
	for _, p := range run.Partitions {
		if !strings.Contains(p.By, "restarted") {
			t.Errorf("partition %d was handled again by %s, want the restarted static member", p.Partition, p.By)
		}
	}
	if !run.SamePartitions || run.SurvivorMoves != 0 {
		t.Errorf("assignment %v before, %v after (%d survivor moves): want the static member's partitions back and nothing else moved",
			run.Before, run.After, run.SurvivorMoves)
	}
	if run.Produced == 0 || run.OthersMaxGapMs <= 0 {
		t.Errorf("%d records produced, longest pause elsewhere %v ms", run.Produced, run.OthersMaxGapMs)
	}

	rep.summarize()
	dir := t.TempDir()
	if err := rep.write(dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(rep.mdPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| static |", "Target, static members"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("the Markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestParseModes(t *testing.T) {
	got, err := parseModes("dynamic:2, static:5,next-gen")
	if err != nil {
		t.Fatal(err)
	}
	want := []modePlan{{modeDynamic, 2}, {modeStatic, 5}, {modeNextGen, 1}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"", "eager", "static:0", "static:x", "static,static"} {
		if _, err := parseModes(bad); err == nil {
			t.Errorf("parseModes(%q) did not fail", bad)
		}
	}
}

func TestParseMemberLine(t *testing.T) {
	ev, err := parseMemberLine("assigned 1700000000000000000 0,3,11")
	if err != nil || ev.kind != "assigned" || !slices.Equal(ev.parts, []int32{0, 3, 11}) || ev.at.UnixNano() != 1700000000000000000 {
		t.Fatalf("got %+v, %v", ev, err)
	}
	ev, err = parseMemberLine("revoked 1 -")
	if err != nil || len(ev.parts) != 0 {
		t.Fatalf("got %+v, %v", ev, err)
	}
	ev, err = parseMemberLine("rec 5 7 123")
	if err != nil || ev.partition != 7 || ev.offset != 123 {
		t.Fatalf("got %+v, %v", ev, err)
	}
	for _, bad := range []string{"", "rec", "rec x 1 2", "rec 1 2", "assigned 1 a,b"} {
		if _, err := parseMemberLine(bad); err == nil {
			t.Errorf("parseMemberLine(%q) did not fail", bad)
		}
	}
}
