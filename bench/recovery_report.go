package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// recoveryRun is one repetition of the recovery benchmark. Times are in
// milliseconds from the SIGKILL, taken by the processes that saw the event
// (one clock: they share a machine).
type recoveryRun struct {
	Mode    string `json:"mode"`
	Rep     int    `json:"rep"`
	Members int    `json:"members"`
	// FormedMs is how long the members took from their start to a
	// stable group, every partition handled by its owner.
	FormedMs float64 `json:"formed_ms"`
	// KillDelayMs is how long after the group settled the kill came: a
	// random point of a heartbeat interval.
	KillDelayMs      float64            `json:"kill_delay_ms"`
	Before           map[string][]int32 `json:"assignment_before"`
	Victim           string             `json:"victim"`
	VictimPartitions []int32            `json:"victim_partitions"`
	KilledAt         time.Time          `json:"killed_at"`

	// The restarted member: when the parent started it, when its main
	// ran, when its client existed, its first assignment and its first
	// record.
	RestartMs     float64 `json:"restart_ms"`
	ProcessUpMs   float64 `json:"process_up_ms"`
	RunningMs     float64 `json:"running_ms"`
	AssignedMs    float64 `json:"assigned_ms"`
	FirstRecordMs float64 `json:"first_record_ms"`

	// Partitions is, for each partition the killed member owned, when
	// a member first handled one of its records again, and which.
	Partitions []partitionRecovery `json:"partitions"`
	// StallMs is the largest of Partitions: the kill to every partition
	// of the killed member handled again.
	StallMs float64 `json:"stall_ms"`
	// RebalancedMs is the kill to the group back at the pre-kill
	// assignment: every partition owned once, each member owning as
	// many as before, the restarted one as many as the killed one.
	RebalancedMs   float64            `json:"rebalanced_ms"`
	After          map[string][]int32 `json:"assignment_after"`
	SamePartitions bool               `json:"same_partitions"` // every member owns exactly its pre-kill partitions
	// SurvivorMoves counts partitions the members that were not killed
	// were assigned, revoked or lost after the kill.
	SurvivorMoves int `json:"survivor_moves"`
	// OthersMaxGapMs is the longest time between two handled records,
	// across the kill, of a partition the killed member did not own.
	// Members report a partition at most every 50 ms.
	OthersMaxGapMs float64 `json:"others_max_gap_ms"`
	Produced       int64   `json:"produced"`
	Err            string  `json:"error,omitempty"`
}

type partitionRecovery struct {
	Partition int32   `json:"partition"`
	Ms        float64 `json:"ms"` // -1: not handled again
	By        string  `json:"by,omitempty"`
}

func (r recoveryRun) line() string {
	if r.Err != "" && r.Partitions == nil {
		return fmt.Sprintf("%-8s rep %d: FAILED: %s", r.Mode, r.Rep, r.Err)
	}
	s := fmt.Sprintf("%-8s rep %d: killed %s %v; stall %s, back to the pre-kill assignment %s, restarted member up %s, assigned %s, first record %s; other partitions' longest pause %s, survivor moves %d",
		r.Mode, r.Rep, r.Victim, r.VictimPartitions, fmtMs(r.StallMs), fmtMs(r.RebalancedMs),
		fmtMs(r.ProcessUpMs), fmtMs(r.AssignedMs), fmtMs(r.FirstRecordMs), fmtMs(r.OthersMaxGapMs), r.SurvivorMoves)
	if r.Err != "" {
		s += "; FAILED: " + r.Err
	}
	return s
}

func fmtMs(v float64) string {
	switch {
	case v < 0:
		return "—"
	case v >= 10_000:
		return fmt.Sprintf("%.1f s", v/1000)
	default:
		return fmt.Sprintf("%.2f s", v/1000)
	}
}

// measure computes the run's figures from the events its members
// reported.
func (r *recoveryRun) measure(g *group, killed time.Time, victim, restarted *member, pre map[string][]int32) {
	r.ProcessUpMs, r.RunningMs, r.AssignedMs, r.FirstRecordMs = -1, -1, -1, -1
	r.StallMs, r.RebalancedMs, r.OthersMaxGapMs = -1, -1, -1
	since := func(t time.Time) float64 { return ms(t.Sub(killed)) }
	isVictim := make(map[int32]bool)
	first := make(map[int32]memberEvent)
	for _, p := range r.VictimPartitions {
		isVictim[p] = true
	}
	recs := make(map[int32][]time.Time) // other partitions
	var after []memberEvent             // ownership changes after the kill
	for _, ev := range g.events {
		if ev.m == victim {
			continue
		}
		switch ev.kind {
		case "start", "running":
			if ev.m == restarted {
				v := since(ev.at)
				if ev.kind == "start" {
					r.ProcessUpMs = v
				} else {
					r.RunningMs = v
				}
			}
		case "assigned", "revoked", "lost":
			if !ev.at.After(killed) {
				continue
			}
			after = append(after, ev)
			if ev.m == restarted && ev.kind == "assigned" && len(ev.parts) > 0 && (r.AssignedMs < 0 || since(ev.at) < r.AssignedMs) {
				r.AssignedMs = since(ev.at)
			}
			if ev.m != restarted {
				r.SurvivorMoves += len(ev.parts)
			}
		case "rec":
			p := ev.partition
			if ev.m == restarted && (r.FirstRecordMs < 0 || since(ev.at) < r.FirstRecordMs) {
				r.FirstRecordMs = since(ev.at)
			}
			if !isVictim[p] {
				recs[p] = append(recs[p], ev.at)
				continue
			}
			if !ev.at.After(killed) {
				continue
			}
			if f, ok := first[p]; !ok || ev.at.Before(f.at) {
				first[p] = ev
			}
		}
	}
	all := true
	for _, p := range r.VictimPartitions {
		pr := partitionRecovery{Partition: p, Ms: -1}
		if f, ok := first[p]; ok {
			pr.Ms, pr.By = since(f.at), f.m.String()
			r.StallMs = max(r.StallMs, pr.Ms)
		} else {
			all = false
		}
		r.Partitions = append(r.Partitions, pr)
	}
	if !all {
		r.StallMs = -1
	}
	for _, ts := range recs {
		slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
		for i := 1; i < len(ts); i++ {
			if ts[i].After(killed) {
				r.OthersMaxGapMs = max(r.OthersMaxGapMs, ms(ts[i].Sub(ts[i-1])))
			}
		}
	}

	// Replay the ownership changes in time order from the pre-kill
	// assignment without the killed member's partitions.
	state := make(map[string]map[int32]bool)
	for slot, ps := range pre {
		state[slot] = make(map[int32]bool)
		if slot != victim.name {
			for _, p := range ps {
				state[slot][p] = true
			}
		}
	}
	back := func() bool {
		seen := make(map[int32]bool)
		for slot, ps := range pre {
			if len(state[slot]) != len(ps) {
				return false
			}
			for p := range state[slot] {
				if seen[p] {
					return false
				}
				seen[p] = true
			}
		}
		return len(seen) == g.partitions
	}
	slices.SortStableFunc(after, func(a, b memberEvent) int { return a.at.Compare(b.at) })
	var reached time.Time
	for _, ev := range after {
		s := state[ev.m.name]
		if s == nil {
			continue
		}
		for _, p := range ev.parts {
			if ev.kind == "assigned" {
				s[p] = true
			} else {
				delete(s, p)
			}
		}
		if back() {
			if reached.IsZero() {
				reached = ev.at
			}
		} else {
			reached = time.Time{}
		}
	}
	if !reached.IsZero() {
		r.RebalancedMs = since(reached)
	}
	r.After = make(map[string][]int32)
	r.SamePartitions = true
	for slot, s := range state {
		r.After[slot] = slices.Sorted(maps.Keys(s))
		r.SamePartitions = r.SamePartitions && slices.Equal(r.After[slot], pre[slot])
	}
}

// recoveryReport is a whole recovery benchmark run.
type recoveryReport struct {
	Started  time.Time             `json:"started"`
	Finished time.Time             `json:"finished"`
	Command  string                `json:"command"`
	Go       string                `json:"go"`
	CPUs     int                   `json:"cpus"`
	LoadFrom string                `json:"load_from"`
	Loads    []string              `json:"loads"` // after each round of the modes
	LoadTo   string                `json:"load_to"`
	Options  recoveryReportOptions `json:"options"`
	Broker   map[string]string     `json:"broker_configs"`
	Runs     []recoveryRun         `json:"runs"`
	Summary  []recoverySummary     `json:"summary"`
}

type recoveryReportOptions struct {
	Modes          []modePlan `json:"modes"`
	Members        int        `json:"members"`
	Partitions     int        `json:"partitions"`
	Rate           int        `json:"records_per_second_per_partition"`
	Restart        string     `json:"restart_after"`
	Timeout        string     `json:"timeout"`
	Settle         string     `json:"settle"`
	Heartbeat      string     `json:"heartbeat_interval"`
	Session        string     `json:"session_timeout"`
	Rebalance      string     `json:"rebalance_timeout"`
	CommitInterval string     `json:"commit_interval"`
}

// recoverySummary is one mode's medians and maxima over its repetitions.
type recoverySummary struct {
	Mode   string   `json:"mode"`
	Runs   int      `json:"runs"`
	Failed int      `json:"failed"`
	Errors []string `json:"errors,omitempty"`

	StallMedianMs      float64 `json:"stall_median_ms"`
	StallMaxMs         float64 `json:"stall_max_ms"`
	RebalancedMedianMs float64 `json:"rebalanced_median_ms"`
	RebalancedMaxMs    float64 `json:"rebalanced_max_ms"`
	ProcessUpMs        float64 `json:"process_up_median_ms"`
	AssignedMs         float64 `json:"assigned_median_ms"`
	FirstRecordMs      float64 `json:"first_record_median_ms"`
	OthersMaxGapMs     float64 `json:"others_max_gap_ms"` // the largest over the runs
	Same               int     `json:"same_partitions"`   // runs that ended with the pre-kill assignment exactly
	SurvivorMoves      int     `json:"survivor_moves"`    // the largest over the runs
}

func (rep *recoveryReport) summarize() {
	rep.Summary = nil
	for _, p := range rep.Options.Modes {
		s := recoverySummary{Mode: p.Mode}
		var stall, rebal, up, assigned, first []float64
		for _, r := range rep.Runs {
			if r.Mode != p.Mode {
				continue
			}
			s.Runs++
			if r.Err != "" || r.StallMs < 0 {
				s.Failed++
				if r.Err != "" && !slices.Contains(s.Errors, r.Err) {
					s.Errors = append(s.Errors, r.Err)
				}
				continue
			}
			stall = append(stall, r.StallMs)
			rebal = append(rebal, r.RebalancedMs)
			up = append(up, r.ProcessUpMs)
			assigned = append(assigned, r.AssignedMs)
			first = append(first, r.FirstRecordMs)
			s.OthersMaxGapMs = max(s.OthersMaxGapMs, r.OthersMaxGapMs)
			s.SurvivorMoves = max(s.SurvivorMoves, r.SurvivorMoves)
			if r.SamePartitions {
				s.Same++
			}
		}
		if len(stall) > 0 {
			s.StallMedianMs, s.StallMaxMs = median(stall), slices.Max(stall)
			s.RebalancedMedianMs, s.RebalancedMaxMs = median(rebal), slices.Max(rebal)
			s.ProcessUpMs, s.AssignedMs, s.FirstRecordMs = median(up), median(assigned), median(first)
		}
		rep.Summary = append(rep.Summary, s)
	}
}

// staticTarget is the target for static members: every partition of a
// member SIGKILLed and restarted after 1 s handled again within 2 s of the
// kill.
const staticTarget = 2 * time.Second

func (rep *recoveryReport) modeDesc(mode string) string {
	switch mode {
	case modeDynamic:
		return "classic protocol, cooperative-sticky, new member ID per start"
	case modeStatic:
		return "classic protocol, cooperative-sticky, `consumer.InstanceID`"
	case modeNextGen, modeNextGenStatic:
		static := ""
		if mode == modeNextGenStatic {
			static = " and `consumer.InstanceID`"
		}
		return fmt.Sprintf("`consumer.ServerSideBalancer` (KIP-848)%s; broker session %s ms, heartbeat %s ms", static,
			rep.Broker["group.consumer.session.timeout.ms"], rep.Broker["group.consumer.heartbeat.interval.ms"])
	}
	return mode
}

func (rep *recoveryReport) markdown() string {
	var b strings.Builder
	o := rep.Options
	fmt.Fprintf(&b, "# Time to recover after a SIGKILL, %s\n\n", rep.Started.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "Command: `%s` (in `bench/`). %d CPUs, %s, one kfake broker process on loopback, each member in a process of its own. ", rep.Command, rep.CPUs, rep.Go)
	fmt.Fprintf(&b, "Load average (1, 5, 15 min) before: %s, after each round of the modes: %s, at the end: %s.\n\n", rep.LoadFrom, strings.Join(rep.Loads, " | "), rep.LoadTo)
	fmt.Fprintf(&b, "Each repetition: a fresh topic of %d partitions, %d records/s produced to each; %d member processes of a fresh group running kconsumer (`recovery.NewStateless`, a handler that notes the time); once every partition is handled and the assignment stood still for %s, one member (member-N, N = repetition − 1 mod %d) is SIGKILLed at a random point of the next heartbeat interval and started again with the same arguments %s later. ",
		o.Partitions, o.Rate, o.Members, o.Settle, o.Members, o.Restart)
	fmt.Fprintf(&b, "Members: session timeout %s, heartbeat %s, rebalance timeout %s, commit interval %s. Broker: %s.\n\n",
		o.Session, o.Heartbeat, o.Rebalance, o.CommitInterval, fmtConfigs(rep.Broker))
	b.WriteString("How to read the columns, all from the SIGKILL: *stall* is until every partition the killed member owned has a record handled again, by any member (the largest over its partitions); *pre-kill assignment* is until every partition is owned once and each member owns as many as before the kill; *up / assigned / first record* are the restarted process's main, its first assignment and its first handled record; *longest pause elsewhere* is the longest time between two handled records of a partition the killed member did not own (reported at most every 50 ms); *survivor moves* counts partitions the other members were assigned, revoked or lost.\n\n")
	b.WriteString("| mode | group | reps | stall median | stall max | pre-kill assignment median / max | restarted: up / assigned / first record (medians) | longest pause elsewhere | survivor moves (max) | same partitions back |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, s := range rep.Summary {
		if s.Runs == s.Failed {
			fmt.Fprintf(&b, "| %s | %s | %d | failed: %s | | | | | | |\n", s.Mode, rep.modeDesc(s.Mode), s.Runs, strings.Join(s.Errors, "; "))
			continue
		}
		reps := fmt.Sprint(s.Runs)
		if s.Failed > 0 {
			reps = fmt.Sprintf("%d (%d failed)", s.Runs, s.Failed)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | **%s** | %s | %s / %s | %s / %s / %s | %s | %d | %d of %d |\n",
			s.Mode, rep.modeDesc(s.Mode), reps, fmtMs(s.StallMedianMs), fmtMs(s.StallMaxMs),
			fmtMs(s.RebalancedMedianMs), fmtMs(s.RebalancedMaxMs),
			fmtMs(s.ProcessUpMs), fmtMs(s.AssignedMs), fmtMs(s.FirstRecordMs),
			fmtMs(s.OthersMaxGapMs), s.SurvivorMoves, s.Same, s.Runs-s.Failed)
	}
	for _, s := range rep.Summary {
		if s.Mode != modeStatic || s.Runs == s.Failed {
			continue
		}
		met := "met"
		if s.StallMaxMs > ms(staticTarget) {
			met = "**missed**"
			if s.StallMedianMs <= ms(staticTarget) {
				met = "met at the median, **missed** at the max"
			}
		}
		fmt.Fprintf(&b, "\nTarget, static members: every partition handled again ≤ %v after the SIGKILL (restart after %s): %s (median %s, max %s).\n",
			staticTarget, o.Restart, met, fmtMs(s.StallMedianMs), fmtMs(s.StallMaxMs))
	}
	b.WriteString("\n## Repetitions\n\n")
	b.WriteString("| mode | rep | group formed | killed | its partitions: recovered after (by) | stall | pre-kill assignment | up / running / assigned / first record | longest pause elsewhere | survivor moves | same partitions |\n")
	b.WriteString("|---|--:|--:|---|---|--:|--:|--:|--:|--:|---|\n")
	for _, r := range rep.Runs {
		var parts []string
		for _, p := range r.Partitions {
			parts = append(parts, fmt.Sprintf("%d: %s (%s)", p.Partition, fmtMs(p.Ms), p.By))
		}
		stall := fmtMs(r.StallMs)
		if r.Err != "" {
			stall = "failed: " + r.Err
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s / %s / %s / %s | %s | %d | %v |\n",
			r.Mode, r.Rep, fmtMs(r.FormedMs), r.Victim, strings.Join(parts, ", "), stall, fmtMs(r.RebalancedMs),
			fmtMs(r.ProcessUpMs), fmtMs(r.RunningMs), fmtMs(r.AssignedMs), fmtMs(r.FirstRecordMs),
			fmtMs(r.OthersMaxGapMs), r.SurvivorMoves, r.SamePartitions)
	}
	return b.String()
}

func fmtConfigs(c map[string]string) string {
	var s []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		s = append(s, fmt.Sprintf("%s=%s", k, c[k]))
	}
	return strings.Join(s, ", ")
}

// basePath is the results' path in dir without its extension.
func (rep *recoveryReport) basePath(dir string) string {
	return filepath.Join(dir, rep.Started.Format("20060102-150405")+"-recovery")
}

func (rep *recoveryReport) mdPath(dir string) string { return rep.basePath(dir) + ".md" }

// write writes the report as <date>-<time>-recovery.json and .md in dir.
func (rep *recoveryReport) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	base := rep.basePath(dir)
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(base+".json", append(js, '\n'), 0o644); err != nil {
		return err
	}
	md := rep.markdown()
	return os.WriteFile(base+".md", []byte(md), 0o644)
}
