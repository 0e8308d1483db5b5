//go:build unix

package chaos

import (
	"bufio"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
)

// History is everything a run did: the produced records, each member's
// events, and the faults injected. It is safe for concurrent use.
type History struct {
	mu       sync.Mutex
	records  []Produced
	members  []*memberLog
	faults   map[string]int64 // by label: what was injected, in detail
	fired    map[Fault]int64  // by kind: faults that took effect
	problems []string         // things that went wrong outside the checked invariants
}

// NewHistory returns an empty History.
func NewHistory() *History {
	return &History{faults: make(map[string]int64), fired: make(map[Fault]int64)}
}

// produced records produced records; a bad one is BadInput taking effect.
func (h *History) produced(ps ...Produced) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, ps...)
	for _, p := range ps {
		if p.Bad != "" {
			h.fired[BadInput]++
		}
	}
}

// fault counts n faults of kind f that took effect (a member was killed, a
// request was answered with an error or held, a handler met a failing
// sink), under a label that says what they were. Call it where the fault
// is applied, not where it is scheduled: Check fails a run in which a
// fault it asked for never fired.
func (h *History) fault(f Fault, label string, n int64) {
	if n == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.faults[label] += n
	h.fired[f] += n
}

// note counts n scheduled fault periods under a label, for the summary;
// they count as fired only through the faults they cause (see fault).
func (h *History) note(label string, n int64) {
	if n == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.faults[label] += n
}

// problem records something that went wrong in the machinery of the run.
func (h *History) problem(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.problems = append(h.problems, fmt.Sprintf(format, args...))
}

// member starts the log of a new member.
func (h *History) member(name, group string) *memberLog {
	m := &memberLog{name: name, group: group, h: h}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.members = append(h.members, m)
	return m
}

// How a member's run ended.
type ending int

const (
	running ending = iota
	stopped        // Run returned; see its Stopped event
	killed         // SIGKILL
)

// memberLog is the events of one member: one consumer, in the test process
// or in a child process, from its start to its end.
type memberLog struct {
	name, group string
	h           *History

	events []Event // under h.mu
	end    ending
}

func (m *memberLog) add(e Event) {
	m.h.mu.Lock()
	defer m.h.mu.Unlock()
	m.events = append(m.events, e)
	if e.Kind == SinkFault {
		// The handler met the sink's fault: SinkFaults took effect.
		m.h.faults["sink-"+e.Text]++
		m.h.fired[SinkFaults]++
	}
}

// empty reports whether the member reported nothing.
func (m *memberLog) empty() bool {
	m.h.mu.Lock()
	defer m.h.mu.Unlock()
	return len(m.events) == 0
}

func (m *memberLog) ended(how ending) {
	m.h.mu.Lock()
	defer m.h.mu.Unlock()
	m.end = how
}

// counts returns how many records were produced, members started and
// faults fired so far.
func (h *History) counts() (records, members int, faults int64, problems int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, n := range h.fired {
		faults += n
	}
	return len(h.records), len(h.members), faults, len(h.problems)
}

// dump writes the history to a file for a post-mortem: the produced
// records, then each member's events as its process wrote them.
func (h *History) dump(path string) error {
	records, members, _, _, problems := h.snapshot()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, p := range problems {
		fmt.Fprintf(w, "# problem: %s\n", p)
	}
	for _, r := range records {
		fmt.Fprintf(w, "P %d %d %d %q %d %q\n", r.Time, r.Partition, r.Offset, r.Key, r.Seq, r.Bad)
	}
	var b []byte
	for _, m := range members {
		fmt.Fprintf(w, "# member %s group %s ended %s\n", m.name, m.group, [...]string{"running", "stopped", "killed"}[m.end])
		for _, e := range m.events {
			b = AppendEvent(b[:0], e)
			w.Write(b)
		}
	}
	return errors.Join(w.Flush(), f.Close())
}

// snapshot returns copies of what the checker needs.
func (h *History) snapshot() (records []Produced, members []memberLog, faults map[string]int64, fired map[Fault]int64, problems []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	records = slices.Clone(h.records)
	for _, m := range h.members {
		members = append(members, memberLog{name: m.name, group: m.group, events: slices.Clone(m.events), end: m.end})
	}
	return records, members, maps.Clone(h.faults), maps.Clone(h.fired), slices.Clone(h.problems)
}
