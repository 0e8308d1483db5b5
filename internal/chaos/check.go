//go:build unix

package chaos

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/dlq"
	"github.com/kconsumer/kconsumer/fault"
)

// Letter is a dead letter read back from the dead-letter topic.
type Letter struct {
	dlq.Letter
	Key       string
	NullKey   bool
	ValueSum  [32]byte
	NullValue bool
}

// Final is the state of the cluster and the store after the drain.
type Final struct {
	End       map[int32]int64            // high watermarks of the topic
	Committed map[string]map[int32]int64 // by group
	Letters   []Letter
	Store     map[int32][]Entry // the additive group's store, by partition
	StoreErr  error
}

// GroupReport is what the checker found for one group.
type GroupReport struct {
	Group        string
	Members      int // consumer runs, the drain's included
	Epochs       int // ownerships of a partition by a member
	Ungraceful   int // of them, ended by SIGKILL, loss or a refused commit
	LostEvents   int // partition losses members reported
	Handlings    int // handled and dead-lettered records, re-deliveries included
	Handled      int // distinct records handled
	DeadLettered int // distinct records dead-lettered
	Duplicates   int // Handlings minus distinct records
	// Bound is the number of handlings at or beyond the last accepted
	// commit of their ownership: what a crash may hand out again. The
	// checker asserts Duplicates <= Bound for the stateless group.
	Bound int
	// Rewinds counts accepted commits below an earlier accepted commit of
	// the same partition.
	Rewinds      int
	Letters      int // dead letters written, duplicates included
	LetterDups   int
	Lost         int // records neither handled nor dead-lettered, below the final commit
	Undrained    int // records at or beyond the final commit
	StoreEntries int // additive: effects in the store
	NotApplied   int // additive: handlings the store had already applied
	// StaleCommits counts partitions, additive, whose final commit is
	// behind the store's checkpoint: CheckpointSkip started after the
	// checkpoint and had nothing to commit.
	StaleCommits  int
	Violations    []string
	violationsCut int
}

// Report is what the checker found in a run.
type Report struct {
	Records, Good, Bad int
	BadKinds           map[string]int
	Groups             []*GroupReport
	Faults             map[string]int64 // what was injected, by label
	Fired              map[Fault]int64  // faults that took effect, by kind
	// Unfired holds the kinds of CheckOpts.Faults that never took effect:
	// the run did not test what it was asked to.
	Unfired    Fault
	MaxLatency time.Duration // from a record's produce to its first handling
	Problems   []string      // the run's machinery, not the library
}

// Violations returns every violation found, prefixed with its group, or
// with "run" for the run's machinery.
func (r *Report) Violations() []string {
	var out []string
	for _, f := range r.Unfired.Kinds() {
		out = append(out, fmt.Sprintf("run: fault %v was asked for but never fired (fired: %s)", f, formatFired(r.Fired)))
	}
	for _, p := range r.Problems {
		out = append(out, "run: "+p)
	}
	for _, g := range r.Groups {
		for _, v := range g.Violations {
			out = append(out, g.Group+": "+v)
		}
		if g.violationsCut > 0 {
			out = append(out, fmt.Sprintf("%s: ... and %d more violations", g.Group, g.violationsCut))
		}
	}
	return out
}

// maxViolations bounds the violations kept per group; the rest are counted.
const maxViolations = 40

func (g *GroupReport) violate(format string, args ...any) {
	if len(g.Violations) >= maxViolations {
		g.violationsCut++
		return
	}
	g.Violations = append(g.Violations, fmt.Sprintf(format, args...))
}

// How an ownership of a partition ended.
type epochEnd int

const (
	epochOpen epochEnd = iota
	epochRevoked
	epochLost
	epochStopped
	epochKilled
)

func (e epochEnd) String() string {
	return [...]string{"open", "revoked", "lost", "stopped", "killed"}[e]
}

// occurrence is one handling of a record.
type occurrence struct {
	offset  int64
	time    int64
	dead    bool // dead-lettered rather than handled
	key     string
	seq     int64
	applied bool
	epoch   *epoch
}

// epoch is one ownership of a partition by one member.
type epoch struct {
	member    string
	partition int32
	start     int64 // when it was assigned
	end       epochEnd
	occs      []*occurrence
	commit    int64 // the highest commit of the partition accepted in it; -1 for none
	refused   bool  // a commit failed in it, or Run failed
	abandoned bool  // a record finished after its context was cancelled: a revoke timed out
}

// graceful reports whether the epoch ended by a revoke or a shutdown in
// time and with every commit accepted: it must then have committed what it
// handled.
func (e *epoch) graceful() bool {
	return (e.end == epochRevoked || e.end == epochStopped) && !e.refused && !e.abandoned
}

// committed returns the first offset the epoch leaves to its successor: its
// last accepted commit, or where it started if it committed nothing.
func (e *epoch) committed() int64 {
	c := e.commit
	if len(e.occs) > 0 {
		c = max(c, slices.MinFunc(e.occs, func(a, b *occurrence) int { return cmp.Compare(a.offset, b.offset) }).offset)
	}
	return c
}

// commitEvent is an accepted commit of one partition.
type commitEvent struct {
	time   int64
	offset int64
	member string
}

// CheckOpts says what the checker may expect of a run.
type CheckOpts struct {
	Topic string
	Order consumer.Ordering
	// Faults are the faults the run asked for: each kind must have fired
	// at least once (see History.fault), or the run is a violation.
	Faults Fault
}

// Check checks a run's history against the invariants (see the package
// documentation).
func Check(h *History, final Final, opts CheckOpts) *Report {
	records, members, faults, fired, problems := h.snapshot()
	rep := &Report{Records: len(records), BadKinds: badCounts(records), Faults: faults, Fired: fired, Problems: problems}
	for _, f := range opts.Faults.Kinds() {
		if fired[f] == 0 {
			rep.Unfired |= f
		}
	}
	for _, r := range records {
		if r.Bad == "" {
			rep.Good++
		} else {
			rep.Bad++
		}
	}
	byID := make(map[recordID]*Produced, len(records))
	for i := range records {
		byID[recordID{records[i].Partition, records[i].Offset}] = &records[i]
	}
	groups := slices.Sorted(maps.Keys(final.Committed))
	for _, g := range groups {
		var ms []memberLog
		for _, m := range members {
			if m.group == g {
				ms = append(ms, m)
			}
		}
		first := make(map[recordID]int64) // the group's earliest handling of each record
		gr := checkGroup(g, ms, records, byID, final, opts, first)
		rep.Groups = append(rep.Groups, gr)
		for id, t := range first {
			if p := byID[id]; p != nil && t > p.Time {
				rep.MaxLatency = max(rep.MaxLatency, time.Duration(t-p.Time))
			}
		}
	}
	return rep
}

type recordID struct {
	partition int32
	offset    int64
}

func checkGroup(group string, members []memberLog, records []Produced, byID map[recordID]*Produced, final Final, opts CheckOpts, first map[recordID]int64) *GroupReport {
	gr := &GroupReport{Group: group, Members: len(members)}
	var epochs []*epoch
	commits := make(map[int32][]commitEvent)
	for _, m := range members {
		epochs = append(epochs, memberEpochs(gr, m, commits)...)
	}
	gr.Epochs = len(epochs)

	occs := make(map[recordID][]*occurrence)
	for _, e := range epochs {
		if !e.graceful() {
			gr.Ungraceful++
		}
		checkEpoch(gr, e, opts, commits[e.partition])
		c := e.committed()
		for _, o := range e.occs {
			id := recordID{e.partition, o.offset}
			occs[id] = append(occs[id], o)
			gr.Handlings++
			if o.offset >= c {
				gr.Bound++
			}
			if !o.dead && !o.applied {
				gr.NotApplied++
			}
			if t, ok := first[id]; !ok || o.time < t {
				first[id] = o.time
			}
		}
	}
	gr.Duplicates = gr.Handlings - len(occs)
	checkRewinds(gr, group, commits)
	if group == GroupStateless {
		checkRedelivery(gr, occs, commits)
		if gr.Duplicates > gr.Bound {
			gr.violate("%d duplicates exceed the bound of %d handlings beyond the last accepted commit", gr.Duplicates, gr.Bound)
		}
	}
	position := final.Committed[group]
	var applied map[recordID]bool
	if group == GroupAdditive {
		inOrder := opts.Order == consumer.PartitionOrder
		checkStore(gr, records, final, inOrder)
		position, applied = additivePosition(gr, final, inOrder)
	}
	checkAccounting(gr, records, occs, applied, position, final.End)
	checkLetters(gr, group, byID, occs, final.Letters, opts.Topic)
	return gr
}

// memberEpochs splits a member's events into ownerships of partitions and
// collects its accepted commits.
func memberEpochs(gr *GroupReport, m memberLog, commits map[int32][]commitEvent) []*epoch {
	var all []*epoch
	open := make(map[int32]*epoch)
	last := make(map[int32]*epoch)
	stuck := make(map[int32]*epoch) // the last epoch that ended with a handler running
	closeAll := func(end epochEnd) {
		for p, e := range open {
			e.end = end
			delete(open, p)
		}
	}
	stoppedSeen := false
	for _, ev := range m.events {
		switch ev.Kind {
		case Assigned:
			for _, p := range ev.Partitions {
				if e := open[p]; e != nil {
					gr.violate("member %s: partition %d assigned again while owned", m.name, p)
				}
				e := &epoch{member: m.name, partition: p, start: ev.Time, commit: -1}
				open[p], last[p] = e, e
				all = append(all, e)
			}
		case Revoked, Lost:
			end := epochRevoked
			if ev.Kind == Lost && len(ev.Partitions) > 0 {
				end = epochLost
				gr.LostEvents++
			}
			for _, p := range ev.Partitions {
				if e := open[p]; e != nil {
					e.end = end
					delete(open, p)
				}
			}
			for _, p := range ev.Stuck {
				if e := last[p]; e != nil {
					e.abandoned = true
					stuck[p] = e
				}
			}
		case Handled, DeadLettered:
			e := last[ev.Partition]
			if s := stuck[ev.Partition]; ev.Abandoned && s != nil {
				e = s // a handler left running finished late
			}
			if e == nil {
				gr.violate("member %s: record %d@%d handled before any assignment of its partition", m.name, ev.Partition, ev.Offset)
				continue
			}
			e.occs = append(e.occs, &occurrence{offset: ev.Offset, time: ev.Time, dead: ev.Kind == DeadLettered,
				key: ev.Key, seq: ev.Seq, applied: ev.Applied, epoch: e})
			e.abandoned = e.abandoned || ev.Abandoned
		case Committed:
			for p, o := range ev.Offsets {
				commits[p] = append(commits[p], commitEvent{ev.Time, o, m.name})
				if e := last[p]; e != nil {
					e.commit = max(e.commit, o)
				}
			}
			if ev.Failed {
				for _, e := range open {
					e.refused = true
				}
			}
		case Stopped:
			stoppedSeen = true
			if ev.Text != "" {
				for _, e := range open {
					e.refused = true
				}
			}
			closeAll(epochStopped)
		}
	}
	switch {
	case m.end == killed:
		closeAll(epochKilled)
	case !stoppedSeen && len(m.events) > 0:
		gr.violate("member %s ended without stopping", m.name)
		closeAll(epochKilled)
	}
	return all
}

// checkEpoch checks order within one ownership and that a graceful end
// committed what was handled.
func checkEpoch(gr *GroupReport, e *epoch, opts CheckOpts, commits []commitEvent) {
	seen := make(map[int64]bool, len(e.occs))
	keySeq := make(map[string]int64)
	var prev *occurrence
	for _, o := range e.occs {
		if seen[o.offset] {
			gr.violate("member %s handled %d@%d twice while owning the partition", e.member, e.partition, o.offset)
		}
		seen[o.offset] = true
		if !o.dead {
			if s, ok := keySeq[o.key]; ok && o.seq <= s {
				gr.violate("member %s: key %s handled seq %d after seq %d (partition %d offset %d)", e.member, o.key, o.seq, s, e.partition, o.offset)
			}
			keySeq[o.key] = o.seq
		}
		if opts.Order == consumer.PartitionOrder && prev != nil && o.offset != prev.offset+1 {
			gr.violate("member %s: partition %d handled offset %d right after %d", e.member, e.partition, o.offset, prev.offset)
		}
		prev = o
	}
	if !e.graceful() || len(e.occs) == 0 {
		return
	}
	// Offsets finished in a row from the start must be committed; with
	// KeyOrder, records finished after an unfinished one need not be. Out
	// of order, the first record the epoch finished need not be where it
	// started: a record before it may be unfinished (retried when the
	// revoke came), so the start is the partition's last commit before
	// the assignment, when there is one.
	next, committed := e.committed(), e.commit
	if opts.Order != consumer.PartitionOrder {
		if start := lastCommitBefore(commits, e.start); start >= 0 && start < next {
			next, committed = start, max(committed, start)
		}
	}
	for seen[next] {
		next++
	}
	if committed < next {
		gr.violate("member %s: partition %d %s gracefully after handling offsets up to %d, but its last accepted commit asks to read %d next",
			e.member, e.partition, e.end, next-1, e.commit)
	}
}

// lastCommitBefore returns the offset of the last accepted commit before
// time t, or -1.
func lastCommitBefore(commits []commitEvent, t int64) int64 {
	offset, at := int64(-1), int64(-1)
	for _, c := range commits {
		if c.time < t && c.time > at {
			offset, at = c.offset, c.time
		}
	}
	return offset
}

// checkRewinds counts accepted commits below an earlier accepted commit of
// the same partition. For the stateless group each is a violation: the
// group's position moved back past records another member had committed,
// and they are handled again. CheckpointSkip legitimately resumes below the
// group's commit (after trailing dead letters), so the additive group's
// rewinds are only counted.
func checkRewinds(gr *GroupReport, group string, commits map[int32][]commitEvent) {
	for p, cs := range commits {
		cs = slices.Clone(cs)
		slices.SortStableFunc(cs, func(a, b commitEvent) int { return cmp.Compare(a.time, b.time) })
		var top commitEvent
		for i, c := range cs {
			if i > 0 && c.offset < top.offset {
				gr.Rewinds++
				if group == GroupStateless {
					gr.violate("partition %d: %s's commit of %d was accepted %v after %s's commit of %d: the group's position moved back",
						p, c.member, c.offset, time.Duration(c.time-top.time), top.member, top.offset)
				}
			}
			if i == 0 || c.offset > top.offset {
				top = c
			}
		}
	}
}

// checkRedelivery checks that no record was handled once a commit past it
// had been accepted, except by a member that had lost the partition without
// knowing it and never committed the record.
func checkRedelivery(gr *GroupReport, occs map[recordID][]*occurrence, commits map[int32][]commitEvent) {
	// best[p][i] is the highest of the first i+1 commits of p, by time.
	best := make(map[int32][]commitEvent, len(commits))
	for p, cs := range commits {
		slices.SortFunc(cs, func(a, b commitEvent) int { return cmp.Compare(a.time, b.time) })
		b := make([]commitEvent, len(cs))
		for i, c := range cs {
			b[i] = c
			if i > 0 && b[i-1].offset >= c.offset {
				b[i] = b[i-1]
			}
		}
		best[p] = b
	}
	// maxBefore returns the highest commit of p accepted before t, and when.
	maxBefore := func(p int32, t int64) (int64, int64) {
		cs := commits[p]
		i := sort.Search(len(cs), func(i int) bool { return cs[i].time >= t })
		if i == 0 {
			return -1, 0
		}
		return best[p][i-1].offset, best[p][i-1].time
	}
	for id, os := range occs {
		for _, o := range os {
			c, at := maxBefore(id.partition, o.time)
			if id.offset >= c {
				continue
			}
			if !o.epoch.graceful() && id.offset >= o.epoch.committed() {
				continue // a zombie: it had lost the partition and did not commit this
			}
			gr.violate("record %d@%d handled by %s %v after a commit of %d was accepted",
				id.partition, id.offset, o.epoch.member, time.Duration(o.time-at), c)
		}
	}
}

// additivePosition returns where the additive group stands in each
// partition: after its final commit or after its store's checkpoint,
// whichever is further, since CheckpointSkip resumes from the store. The
// checkpoint of a store kept in order is its last entry; of one kept out
// of order, the end of the contiguous run of offsets from 0. It also
// returns the records whose effect the store holds.
func additivePosition(gr *GroupReport, final Final, inOrder bool) (map[int32]int64, map[recordID]bool) {
	pos := make(map[int32]int64)
	applied := make(map[recordID]bool)
	for p, c := range final.Committed[GroupAdditive] {
		pos[p] = c
	}
	for p, es := range final.Store {
		for _, e := range es {
			applied[recordID{p, e.Offset}] = true
		}
		next := int64(0)
		switch {
		case inOrder && len(es) > 0:
			next = es[len(es)-1].Offset + 1
		case !inOrder:
			for applied[recordID{p, next}] {
				next++
			}
		}
		if next > pos[p] {
			pos[p] = next
			gr.StaleCommits++
		}
	}
	return pos, applied
}

// checkAccounting checks that every produced record was handled (good
// ones; for the additive group, a record whose effect the store holds
// counts) or dead-lettered (bad ones), and that the group drained.
func checkAccounting(gr *GroupReport, records []Produced, occs map[recordID][]*occurrence, applied map[recordID]bool, position, end map[int32]int64) {
	for p, e := range end {
		if position[p] != e {
			gr.violate("partition %d: final position %d, end offset %d: not drained", p, position[p], e)
		}
	}
	for _, r := range records {
		id := recordID{r.Partition, r.Offset}
		os := occs[id]
		if len(os) == 0 && applied[id] {
			gr.Handled++
			continue
		}
		if len(os) == 0 {
			if r.Offset >= position[r.Partition] {
				gr.Undrained++
			} else {
				gr.Lost++
				gr.violate("record %d@%d (%s) lost: neither handled nor dead-lettered, below the final position %d",
					r.Partition, r.Offset, kindOf(r), position[r.Partition])
			}
			continue
		}
		handled, dead := false, false
		for _, o := range os {
			if o.dead {
				dead = true
				continue
			}
			handled = true
			if o.key != r.Key || o.seq != r.Seq {
				gr.violate("record %d@%d handled as key %s seq %d, produced as key %s seq %d", r.Partition, r.Offset, o.key, o.seq, r.Key, r.Seq)
			}
		}
		if handled {
			gr.Handled++
		}
		if dead {
			gr.DeadLettered++
		}
		switch {
		case r.Bad == "" && dead:
			gr.violate("good record %d@%d was dead-lettered", r.Partition, r.Offset)
		case r.Bad != "" && handled:
			gr.violate("bad record %d@%d (%s) was handled as good", r.Partition, r.Offset, r.Bad)
		}
	}
}

func kindOf(r Produced) string {
	if r.Bad == "" {
		return "good"
	}
	return r.Bad
}

// checkLetters checks the group's dead letters against the bad records.
func checkLetters(gr *GroupReport, group string, byID map[recordID]*Produced, occs map[recordID][]*occurrence, letters []Letter, topic string) {
	got := make(map[recordID]int)
	for _, l := range letters {
		if l.Group != group {
			continue
		}
		gr.Letters++
		id := recordID{l.Partition, l.Offset}
		got[id]++
		r := byID[id]
		switch {
		case l.Topic != topic:
			gr.violate("dead letter names topic %q", l.Topic)
		case r == nil:
			gr.violate("dead letter for %d@%d, which was never produced", l.Partition, l.Offset)
		case r.Bad == "":
			gr.violate("dead letter for good record %d@%d: %s", l.Partition, l.Offset, l.Error)
		case l.Class != fault.Poison:
			gr.violate("dead letter for %d@%d (%s) has class %v, want poison", l.Partition, l.Offset, r.Bad, l.Class)
		case !strings.Contains(l.Error, r.Reason):
			gr.violate("dead letter for %d@%d (%s) says %q, want it to say %q", l.Partition, l.Offset, r.Bad, l.Error, r.Reason)
		case l.Key != r.Key || l.NullKey != r.NullKey || l.ValueSum != r.ValueSum || l.NullValue != r.NullValue:
			gr.violate("dead letter for %d@%d (%s) does not hold the record's key and value unchanged", l.Partition, l.Offset, r.Bad)
		}
	}
	for id, os := range occs {
		dead := slices.ContainsFunc(os, func(o *occurrence) bool { return o.dead })
		if dead && got[id] == 0 {
			gr.violate("record %d@%d was acknowledged as dead-lettered, but no dead letter exists", id.partition, id.offset)
		}
	}
	gr.LetterDups = gr.Letters - len(got)
}

// checkStore checks that the store holds every good record once and
// nothing else, so that the per-key sums are exact; a store kept in order
// must hold them in offset order.
func checkStore(gr *GroupReport, records []Produced, final Final, inOrder bool) {
	if final.StoreErr != nil {
		gr.violate("reading the store: %v", final.StoreErr)
		return
	}
	want := make(map[recordID]*Produced)
	for i := range records {
		if records[i].Bad == "" {
			want[recordID{records[i].Partition, records[i].Offset}] = &records[i]
		}
	}
	sums := make(map[string][2]int64)
	for p, es := range final.Store {
		prev := int64(-1)
		seen := make(map[int64]bool)
		for _, e := range es {
			gr.StoreEntries++
			switch {
			case inOrder && e.Offset <= prev:
				gr.violate("store: partition %d applied offset %d after %d", p, e.Offset, prev)
			case seen[e.Offset]:
				gr.violate("store: partition %d applied offset %d twice", p, e.Offset)
			}
			prev = e.Offset
			seen[e.Offset] = true
			r := want[recordID{p, e.Offset}]
			if r == nil {
				gr.violate("store: partition %d offset %d is not a good record", p, e.Offset)
				continue
			}
			if r.Key != e.Key || r.Amount != e.Amount {
				gr.violate("store: %d@%d holds %s+%d, produced %s+%d", p, e.Offset, e.Key, e.Amount, r.Key, r.Amount)
			}
			s := sums[e.Key]
			s[0] += e.Amount
			s[1]++
			sums[e.Key] = s
		}
	}
	for key, w := range truth(records) {
		if g := sums[key]; g != w {
			gr.violate("store: key %s sums to %d over %d records, produced %d over %d", key, g[0], g[1], w[0], w[1])
		}
	}
}
