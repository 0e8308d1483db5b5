//go:build unix

package chaos

import (
	"slices"
	"strings"
	"testing"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/dlq"
	"github.com/kconsumer/kconsumer/fault"
)

// A synthetic history: one partition, records 0..n-1 of key "k" with seq
// equal to the offset, except the offsets in bad, which are bad input.
type synth struct {
	h       *History
	records []Produced
	clock   int64
}

func newSynth(n int, bad ...int64) *synth {
	s := &synth{h: NewHistory()}
	for o := range int64(n) {
		p := Produced{Partition: 0, Offset: o, Key: "k", Seq: o, Amount: 1, Time: 1}
		if slices.Contains(bad, o) {
			p = Produced{Partition: 0, Offset: o, Key: "k", Seq: -1, Bad: badMagic, Reason: "bad magic byte", Time: 1}
		}
		s.records = append(s.records, p)
	}
	s.h.produced(s.records...)
	return s
}

// member replays a member's life from a script: "A" assigns partition 0,
// "R" revokes it, "L" loses it, "h3" handles offset 3, "x3" dead-letters
// it, "c4" is an accepted commit of 4, "f" a failed commit, "S" a clean
// stop, "K" a SIGKILL.
func (s *synth) member(name, group string, script ...string) {
	m := s.h.member(name, group)
	for _, step := range script {
		s.clock++
		e := Event{Time: s.clock}
		var n int64
		if len(step) > 1 {
			for _, c := range step[1:] {
				n = n*10 + int64(c-'0')
			}
		}
		switch step[0] {
		case 'A':
			e.Kind, e.Partitions = Assigned, []int32{0}
		case 'R':
			e.Kind, e.Partitions = Revoked, []int32{0}
		case 'L':
			e.Kind, e.Partitions = Lost, []int32{0}
		case 'h':
			e.Kind, e.Offset, e.Key, e.Seq, e.Applied = Handled, n, "k", n, true
		case 'x':
			e.Kind, e.Offset = DeadLettered, n
		case 'c':
			e.Kind, e.Offsets = Committed, map[int32]int64{0: n}
		case 'f':
			e.Kind, e.Failed = Committed, true
		case 'S':
			e.Kind = Stopped
		case 'K':
			m.ended(killed)
			continue
		}
		m.add(e)
	}
	if m.end == running {
		m.ended(stopped)
	}
}

func (s *synth) check(group string, final Final) *Report {
	return s.checkOrder(group, final, consumer.PartitionOrder)
}

func (s *synth) checkOrder(group string, final Final, order consumer.Ordering) *Report {
	if final.End == nil {
		final.End = map[int32]int64{0: int64(len(s.records))}
	}
	if final.Committed == nil {
		final.Committed = map[string]map[int32]int64{group: {0: int64(len(s.records))}}
	}
	return Check(s.h, final, CheckOpts{Topic: topic, Order: order})
}

func wantViolation(t *testing.T, rep *Report, substr string) {
	t.Helper()
	vs := rep.Violations()
	for _, v := range vs {
		if strings.Contains(v, substr) {
			return
		}
	}
	t.Errorf("no violation mentions %q; got %q", substr, vs)
}

func wantClean(t *testing.T, rep *Report) {
	t.Helper()
	if vs := rep.Violations(); len(vs) > 0 {
		t.Errorf("violations in a correct history: %q", vs)
	}
}

func TestCheckAcceptsACrashThatRedeliversUncommittedRecords(t *testing.T) {
	s := newSynth(6)
	s.member("a", GroupStateless, "A", "h0", "h1", "c2", "h2", "h3", "K")
	s.member("b", GroupStateless, "A", "h2", "h3", "h4", "h5", "c6", "R", "S")
	rep := s.check(GroupStateless, Final{})
	wantClean(t, rep)
	if g := rep.Groups[0]; g.Duplicates != 2 || g.Bound < 2 {
		t.Errorf("duplicates %d, bound %d; want 2 within the bound", g.Duplicates, g.Bound)
	}
}

func TestCheckFindsLostRecords(t *testing.T) {
	s := newSynth(4)
	s.member("a", GroupStateless, "A", "h0", "h2", "h3", "c4", "R", "S")
	wantViolation(t, s.check(GroupStateless, Final{}), "record 0@1 (good) lost")
}

func TestCheckFindsARedeliveryOfACommittedRecord(t *testing.T) {
	s := newSynth(4)
	s.member("a", GroupStateless, "A", "h0", "h1", "c2", "K")
	s.member("b", GroupStateless, "A", "h1", "h2", "h3", "c4", "R", "S")
	wantViolation(t, s.check(GroupStateless, Final{}), "record 0@1 handled by b")
}

func TestCheckFindsACommitThatRewindsTheGroup(t *testing.T) {
	s := newSynth(4)
	s.member("a", GroupStateless, "A", "h0", "h1", "h2", "h3", "c4", "R", "S")
	// A member that lost the partition commits its stale position.
	s.member("b", GroupStateless, "A", "h0", "L", "c1", "S")
	rep := s.check(GroupStateless, Final{})
	wantViolation(t, rep, "b's commit of 1 was accepted")
	if g := rep.Groups[0]; g.Rewinds != 1 {
		t.Errorf("rewinds %d, want 1", g.Rewinds)
	}
}

func TestCheckAcceptsAZombieThatLostItsPartition(t *testing.T) {
	s := newSynth(4)
	s.member("b", GroupStateless, "A", "h0", "h1", "h2", "h3", "c4", "R", "S")
	// A member that lost the partition without knowing it handles a
	// record the new owner committed, and never commits it itself.
	s.member("a", GroupStateless, "A", "h1", "L", "S")
	wantClean(t, s.check(GroupStateless, Final{}))
}

func TestCheckFindsAGracefulRevokeThatLeftRecordsUncommitted(t *testing.T) {
	s := newSynth(4)
	s.member("a", GroupStateless, "A", "h0", "h1", "c1", "R", "S")
	s.member("b", GroupStateless, "A", "h1", "h2", "h3", "c4", "R", "S")
	wantViolation(t, s.check(GroupStateless, Final{}), "revoked gracefully after handling offsets up to 1, but its last accepted commit asks to read 1 next")
}

// With KeyOrder, a revoke may come while the record at the group's commit
// is still being retried: the records of other keys finished after it are
// not committed, and need not be.
func TestCheckExcusesAKeyOrderRevokeBehindAnUnfinishedRecord(t *testing.T) {
	s := newSynth(4)
	s.member("a", GroupStateless, "A", "h0", "c1", "R", "S")
	s.member("b", GroupStateless, "A", "h2", "h3", "R", "S")
	s.member("c", GroupStateless, "A", "h1", "h2", "h3", "c4", "R", "S")
	wantClean(t, s.checkOrder(GroupStateless, Final{}, consumer.KeyOrder))
	// The same without the unfinished record is a graceful revoke that
	// left records uncommitted.
	s = newSynth(4)
	s.member("a", GroupStateless, "A", "h0", "c1", "R", "S")
	s.member("b", GroupStateless, "A", "h1", "h2", "R", "S")
	s.member("c", GroupStateless, "A", "h3", "c4", "R", "S")
	wantViolation(t, s.checkOrder(GroupStateless, Final{}, consumer.KeyOrder), "revoked gracefully after handling offsets up to 2, but its last accepted commit asks to read -1 next")
}

func TestCheckExcusesARevokeWhoseCommitFailed(t *testing.T) {
	s := newSynth(4)
	s.member("a", GroupStateless, "A", "h0", "h1", "c1", "f", "R", "S")
	s.member("b", GroupStateless, "A", "h1", "h2", "h3", "c4", "R", "S")
	wantClean(t, s.check(GroupStateless, Final{}))
}

func TestCheckFindsSkippedAndReorderedRecords(t *testing.T) {
	s := newSynth(4)
	s.member("a", GroupStateless, "A", "h0", "h2", "h1", "h3", "c4", "R", "S")
	rep := s.check(GroupStateless, Final{})
	wantViolation(t, rep, "handled offset 2 right after 0")
	wantViolation(t, rep, "key k handled seq 1 after seq 2")
}

func TestCheckFindsARecordHandledTwiceInOneOwnership(t *testing.T) {
	s := newSynth(2)
	s.member("a", GroupStateless, "A", "h0", "h1", "h1", "c2", "R", "S")
	wantViolation(t, s.check(GroupStateless, Final{}), "handled 0@1 twice")
}

func TestCheckFindsAnUndrainedGroup(t *testing.T) {
	s := newSynth(4)
	s.member("a", GroupStateless, "A", "h0", "h1", "c2", "R", "S")
	rep := s.check(GroupStateless, Final{Committed: map[string]map[int32]int64{GroupStateless: {0: 2}}})
	wantViolation(t, rep, "not drained")
	if g := rep.Groups[0]; g.Undrained != 2 || g.Lost != 0 {
		t.Errorf("undrained %d, lost %d; want 2 and 0", g.Undrained, g.Lost)
	}
}

func letterFor(r Produced, group, reason string) Letter {
	return Letter{Letter: dlq.Letter{Topic: topic, Partition: r.Partition, Offset: r.Offset, Group: group,
		Class: fault.Poison, Error: "poison: " + reason}, Key: r.Key, ValueSum: r.ValueSum}
}

func TestCheckDeadLetters(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script []string
		letter func(r Produced) Letter
		want   string
	}{
		{"correct", []string{"A", "h0", "x1", "h2", "c3", "R", "S"}, func(r Produced) Letter { return letterFor(r, GroupStateless, r.Reason) }, ""},
		{"missing", []string{"A", "h0", "x1", "h2", "c3", "R", "S"}, nil, "no dead letter exists"},
		{"wrong reason", []string{"A", "h0", "x1", "h2", "c3", "R", "S"}, func(r Produced) Letter { return letterFor(r, GroupStateless, "oops") }, "want it to say"},
		{"changed value", []string{"A", "h0", "x1", "h2", "c3", "R", "S"}, func(r Produced) Letter {
			l := letterFor(r, GroupStateless, r.Reason)
			l.ValueSum[0]++
			return l
		}, "unchanged"},
		{"not poison", []string{"A", "h0", "x1", "h2", "c3", "R", "S"}, func(r Produced) Letter {
			l := letterFor(r, GroupStateless, r.Reason)
			l.Class = fault.Unclassified
			return l
		}, "want poison"},
		{"bad handled as good", []string{"A", "h0", "h1", "h2", "c3", "R", "S"}, nil, "handled as good"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSynth(3, 1)
			s.member("a", GroupStateless, tc.script...)
			var final Final
			if tc.letter != nil {
				final.Letters = []Letter{tc.letter(s.records[1])}
			}
			rep := s.check(GroupStateless, final)
			if tc.want == "" {
				wantClean(t, rep)
				return
			}
			wantViolation(t, rep, tc.want)
		})
	}
}

func TestCheckFindsAGoodRecordDeadLettered(t *testing.T) {
	s := newSynth(2)
	s.member("a", GroupStateless, "A", "h0", "x1", "c2", "R", "S")
	rep := s.check(GroupStateless, Final{Letters: []Letter{letterFor(s.records[1], GroupStateless, "x")}})
	wantViolation(t, rep, "good record 0@1 was dead-lettered")
}

func TestCheckStoreTotals(t *testing.T) {
	entries := func(offsets ...int64) map[int32][]Entry {
		var es []Entry
		for _, o := range offsets {
			es = append(es, Entry{Offset: o, Key: "k", Amount: 1})
		}
		return map[int32][]Entry{0: es}
	}
	for _, tc := range []struct {
		name  string
		store map[int32][]Entry
		want  string
	}{
		{"exact", entries(0, 1, 2), ""},
		{"applied twice", entries(0, 1, 1, 2), "applied offset 1 after 1"},
		{"missing", entries(0, 2), "sums to 2 over 2 records, produced 3 over 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSynth(3)
			s.member("a", GroupAdditive, "A", "h0", "h1", "h2", "c3", "R", "S")
			rep := s.check(GroupAdditive, Final{Store: tc.store})
			if tc.want == "" {
				wantClean(t, rep)
				return
			}
			wantViolation(t, rep, tc.want)
		})
	}
}

func TestCheckCountsStoredRecordsAsHandled(t *testing.T) {
	// The first owner applied record 1 but its answer was lost; the next
	// owner resumed after the store's checkpoint and skipped it.
	s := newSynth(3)
	s.member("a", GroupAdditive, "A", "h0", "c1", "K")
	s.member("b", GroupAdditive, "A", "h2", "c3", "R", "S")
	store := map[int32][]Entry{0: {{0, "k", 1}, {1, "k", 1}, {2, "k", 1}}}
	wantClean(t, s.check(GroupAdditive, Final{Store: store}))
}

func TestEventRoundTrip(t *testing.T) {
	for _, e := range []Event{
		{Kind: Handled, Time: 1, Partition: 2, Offset: 3, Seq: 4, Key: "k 1\n", Applied: true, Abandoned: true},
		{Kind: DeadLettered, Time: 1, Partition: 2, Offset: 3},
		{Kind: Assigned, Time: 1, Partitions: []int32{0, 5}},
		{Kind: Revoked, Time: 1, Partitions: []int32{0, 5}, Stuck: []int32{5}},
		{Kind: Lost, Time: 1},
		{Kind: Committed, Time: 1, Offsets: map[int32]int64{0: 10, 3: 7}, Failed: true},
		{Kind: Committed, Time: 1, Offsets: map[int32]int64{}},
		{Kind: Stopped, Time: 1, Text: "consumer: final commit: \"x\"\n"},
		{Kind: SinkFault, Time: 1, Text: "slow"},
	} {
		line := AppendEvent(nil, e)
		if strings.Count(string(line), "\n") != 1 {
			t.Errorf("%+v: line %q is not one line", e, line)
		}
		got, err := ParseEvent(strings.TrimSuffix(string(line), "\n"))
		if err != nil {
			t.Errorf("%+v: %v", e, err)
			continue
		}
		if string(AppendEvent(nil, got)) != string(line) {
			t.Errorf("round trip of %q gave %+v", line, got)
		}
	}
}
