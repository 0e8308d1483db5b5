//go:build unix

package chaos

import (
	"strings"
	"testing"
)

// A run must fail when a fault it asked for never took effect, and name
// the fault.
func TestCheckFindsAFaultThatNeverFired(t *testing.T) {
	s := newSynth(4, 2) // a bad record: BadInput took effect
	s.member("a", GroupStateless, "A", "h0", "h1", "x2", "h3", "c4", "R", "S")
	s.h.fault(Kill, "kill", 1)
	s.h.fault(Storm, "storm join", 0) // scheduled, but nothing happened
	s.h.note("sink period fail", 1)   // a period no handler met
	rep := Check(s.h, Final{
		End:       map[int32]int64{0: 4},
		Committed: map[string]map[int32]int64{GroupStateless: {0: 4}},
	}, CheckOpts{Topic: topic, Faults: Kill | Storm | SinkFaults | BadInput})
	if want := Storm | SinkFaults; rep.Unfired != want {
		t.Errorf("unfired %v, want %v", rep.Unfired, want)
	}
	if rep.Fired[Kill] != 1 || rep.Fired[BadInput] != 1 {
		t.Errorf("fired %v, want kill=1 and bad-input=1", formatFired(rep.Fired))
	}
	for _, f := range []string{"storm", "sink-faults"} {
		wantViolation(t, rep, "fault "+f+" was asked for but never fired")
	}
	for _, v := range rep.Violations() {
		if strings.Contains(v, "fault kill ") || strings.Contains(v, "fault bad-input ") {
			t.Errorf("a fault that fired is reported: %s", v)
		}
	}
}

// A handler meeting the failing sink is SinkFaults taking effect.
func TestSinkFaultEventsFireSinkFaults(t *testing.T) {
	h := NewHistory()
	m := h.member("a", GroupAdditive)
	m.add(Event{Kind: SinkFault, Time: 1, Text: string(sinkFail)})
	m.add(Event{Kind: SinkFault, Time: 2, Text: string(sinkSlow)})
	_, _, faults, fired, _ := h.snapshot()
	if fired[SinkFaults] != 2 || faults["sink-"+string(sinkFail)] != 1 {
		t.Errorf("fired %v, faults %v", formatFired(fired), faults)
	}
}

func TestFaultKinds(t *testing.T) {
	if got := (Kill | Timeouts | BadInput).Kinds(); len(got) != 3 || got[0] != Kill || got[1] != Timeouts || got[2] != BadInput {
		t.Errorf("kinds %v", got)
	}
	if n := len(everyFault.Kinds()); n != len(faultNames) {
		t.Errorf("everyFault has %d kinds, want %d", n, len(faultNames))
	}
}
