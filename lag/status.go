package lag

import (
	"fmt"
	"time"
)

// Status rates a partition, or a group by its worst partition. The values
// are ordered by severity and exported as such in kconsumer_partition_status
// and kconsumer_group_status. docs/LAG.md explains the rules.
type Status int

const (
	// StatusOK: nothing waits, or the consumer is working it off.
	StatusOK Status = iota
	// StatusWarn: over a full window the offset advanced but the lag in
	// records grew at every step; the consumer is falling behind.
	StatusWarn
	// StatusRewind: the committed offset went back within the window
	// while records wait, as after an offset reset.
	StatusRewind
	// StatusErr: the last fetch of the partition failed, or a commit of
	// its progress failed and none has succeeded since.
	StatusErr
	// StatusStall: records wait, handler calls return or commits are
	// accepted, but the offset has not advanced for StuckAfter: the
	// consumer is stuck on a record.
	StatusStall
	// StatusStop: records wait and no handler call returned and no commit
	// was accepted for StuckAfter: the consumer is not working at all.
	// /healthz fails.
	StatusStop
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "OK"
	case StatusWarn:
		return "WARN"
	case StatusRewind:
		return "REWIND"
	case StatusErr:
		return "ERR"
	case StatusStall:
		return "STALL"
	case StatusStop:
		return "STOP"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// MarshalText returns the status's name, so JSON shows "STALL", not 4.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// sample is one point of a partition's window: its position (committed, or
// processed without a group) and lag in records at a time.
type sample struct {
	at, pos, lag int64
}

// window holds the last samples of a partition in a ring.
type window struct {
	s    []sample
	next int
	full bool
}

func newWindow(n int) window { return window{s: make([]sample, n)} }

func (w *window) add(s sample) {
	w.s[w.next] = s
	w.next++
	if w.next == len(w.s) {
		w.next, w.full = 0, true
	}
}

// ordered returns the samples, oldest first.
func (w *window) ordered() []sample {
	if !w.full {
		return append([]sample(nil), w.s[:w.next]...)
	}
	return append(append([]sample(nil), w.s[w.next:]...), w.s[:w.next]...)
}

// evaluate applies the status rules to the partition at now, most severe
// first, and says why when the status is not OK. It first dates the handler
// calls and progress counted since the last evaluation. The caller holds
// p.mu.
func (p *part) evaluate(now int64, c *cfg) (Status, string) {
	if p.counts.n != p.seenCalls {
		p.seenCalls, p.lastReturn = p.counts.n, now
	}
	if p.moves != p.seenMoves {
		p.seenMoves, p.lastProgress = p.moves, now
	}
	stuck := int64(c.stuck)
	if n := p.held.len(); n > 0 {
		if since := max(p.heldSince, p.lastReturn, p.lastCommit); now-since >= stuck {
			return StatusStop, fmt.Sprintf("%d records waiting; no handler call returned and no commit accepted for %v",
				n, time.Duration(now-since).Round(time.Millisecond))
		}
		if since := max(p.heldSince, p.lastProgress); now-since >= stuck {
			return StatusStall, fmt.Sprintf("%d records waiting; offset %d has not advanced for %v although the consumer is active",
				n, p.processed, time.Duration(now-since).Round(time.Millisecond))
		}
	}
	if p.fetchErr != nil {
		return StatusErr, fmt.Sprintf("fetch failed: %v", p.fetchErr)
	}
	if p.commitErr != nil {
		return StatusErr, fmt.Sprintf("commit failed: %v", p.commitErr)
	}
	if p.lag(c.grouped) == 0 {
		return StatusOK, ""
	}
	w := p.window.ordered()
	for i := 1; i < len(w); i++ {
		if w[i].pos < w[i-1].pos {
			return StatusRewind, fmt.Sprintf("offset went back from %d to %d", w[i-1].pos, w[i].pos)
		}
	}
	if len(w) == c.window && growing(w) {
		return StatusWarn, fmt.Sprintf("lag grew from %d to %d records over the last %d samples while the offset advanced",
			w[0].lag, w[len(w)-1].lag, len(w))
	}
	return StatusOK, ""
}

// growing reports whether the lag was never zero, never decreased and grew
// overall across w while the position advanced.
func growing(w []sample) bool {
	first, last := w[0], w[len(w)-1]
	if last.lag <= first.lag || last.pos <= first.pos {
		return false
	}
	for i, s := range w {
		if s.lag == 0 || i > 0 && s.lag < w[i-1].lag {
			return false
		}
	}
	return true
}
