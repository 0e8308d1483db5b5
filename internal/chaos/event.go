//go:build unix

package chaos

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Kind says what an Event reports.
type Kind byte

const (
	Handled      Kind = 'H' // the handler finished a good record
	DeadLettered Kind = 'X' // a record's dead letter was acknowledged
	Assigned     Kind = 'A' // partitions were assigned
	Revoked      Kind = 'R' // partitions were revoked
	Lost         Kind = 'L' // partitions were lost
	Committed    Kind = 'C' // a commit was answered
	Stopped      Kind = 'S' // Run returned
	SinkFault    Kind = 'F' // the sink failed or was slow
)

// An Event is one thing a member reports. Members in child processes write
// events to their stdout, one line each, with one write call before the
// handler returns, so that a SIGKILL cannot lose the event of a record whose
// offset may already be committed.
type Event struct {
	Kind Kind
	Time int64 // wall clock, Unix nanoseconds

	// Handled and DeadLettered.
	Partition int32
	Offset    int64
	Seq       int64  // Handled: the record's per-key sequence number
	Key       string // Handled
	Applied   bool   // Handled: the store took the effect (additive group)
	// Handled and DeadLettered: the record's context was cancelled when it
	// finished (its partition was lost or its revoke timed out), so the
	// Consumer does not store its offset.
	Abandoned bool

	Partitions []int32 // Assigned, Revoked, Lost
	// Revoked, Lost: partitions whose handler was still running, so their
	// revoke timed out or their loss abandoned it.
	Stuck   []int32
	Offsets map[int32]int64 // Committed: offsets the broker accepted
	Failed  bool            // Committed: the commit or part of it failed
	Text    string          // Stopped: Run's error, "" for nil; SinkFault: the fault
}

// AppendEvent appends e as one line, newline included, to b.
func AppendEvent(b []byte, e Event) []byte {
	b = append(b, byte(e.Kind), ' ')
	b = strconv.AppendInt(b, e.Time, 10)
	switch e.Kind {
	case Handled:
		b = fmt.Appendf(b, " %d %d %d %t %t ", e.Partition, e.Offset, e.Seq, e.Applied, e.Abandoned)
		b = hex.AppendEncode(b, []byte(e.Key))
	case DeadLettered:
		b = fmt.Appendf(b, " %d %d %t", e.Partition, e.Offset, e.Abandoned)
	case Assigned, Revoked, Lost:
		for _, ps := range [][]int32{e.Partitions, e.Stuck} {
			b = append(b, ' ')
			b = appendList(b, len(ps), func(b []byte, i int) []byte {
				return strconv.AppendInt(b, int64(ps[i]), 10)
			})
		}
	case Committed:
		b = append(b, ' ')
		b = strconv.AppendBool(b, e.Failed)
		b = append(b, ' ')
		ps := slices.Sorted(func(yield func(int32) bool) {
			for p := range e.Offsets {
				if !yield(p) {
					return
				}
			}
		})
		b = appendList(b, len(ps), func(b []byte, i int) []byte {
			return fmt.Appendf(b, "%d:%d", ps[i], e.Offsets[ps[i]])
		})
	case Stopped, SinkFault:
		b = append(b, ' ')
		b = strconv.AppendQuote(b, e.Text)
	}
	return append(b, '\n')
}

// appendList appends n items separated by commas, or "-" for none.
func appendList(b []byte, n int, item func([]byte, int) []byte) []byte {
	if n == 0 {
		return append(b, '-')
	}
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = item(b, i)
	}
	return b
}

var errEvent = errors.New("malformed event")

// ParseEvent reads one line written by AppendEvent, without its newline.
func ParseEvent(line string) (Event, error) {
	fail := func(why string) (Event, error) {
		return Event{}, fmt.Errorf("%w %q: %s", errEvent, line, why)
	}
	if len(line) < 3 || line[1] != ' ' {
		return fail("too short")
	}
	e := Event{Kind: Kind(line[0])}
	timeText, rest, _ := strings.Cut(line[2:], " ")
	var err error
	if e.Time, err = strconv.ParseInt(timeText, 10, 64); err != nil {
		return fail("time")
	}
	switch e.Kind {
	case Handled:
		f := strings.Split(rest, " ")
		if len(f) != 6 {
			return fail("want 6 fields")
		}
		key, err := hex.DecodeString(f[5])
		p, err1 := strconv.ParseInt(f[0], 10, 32)
		o, err2 := strconv.ParseInt(f[1], 10, 64)
		s, err3 := strconv.ParseInt(f[2], 10, 64)
		a, err4 := strconv.ParseBool(f[3])
		ab, err5 := strconv.ParseBool(f[4])
		if errors.Join(err, err1, err2, err3, err4, err5) != nil {
			return fail("fields")
		}
		e.Partition, e.Offset, e.Seq, e.Applied, e.Abandoned, e.Key = int32(p), o, s, a, ab, string(key)
	case DeadLettered:
		f := strings.Split(rest, " ")
		if len(f) != 3 {
			return fail("want 3 fields")
		}
		p, err1 := strconv.ParseInt(f[0], 10, 32)
		o, err2 := strconv.ParseInt(f[1], 10, 64)
		ab, err3 := strconv.ParseBool(f[2])
		if errors.Join(err1, err2, err3) != nil {
			return fail("fields")
		}
		e.Partition, e.Offset, e.Abandoned = int32(p), o, ab
	case Assigned, Revoked, Lost:
		parts, stuck, ok := strings.Cut(rest, " ")
		if !ok {
			return fail("want 2 fields")
		}
		for _, l := range []struct {
			text string
			to   *[]int32
		}{{parts, &e.Partitions}, {stuck, &e.Stuck}} {
			if err := parseList(l.text, func(item string) error {
				p, err := strconv.ParseInt(item, 10, 32)
				*l.to = append(*l.to, int32(p))
				return err
			}); err != nil {
				return fail("partitions")
			}
		}
	case Committed:
		failed, list, _ := strings.Cut(rest, " ")
		if e.Failed, err = strconv.ParseBool(failed); err != nil {
			return fail("failed flag")
		}
		e.Offsets = make(map[int32]int64)
		if err := parseList(list, func(item string) error {
			ps, os, ok := strings.Cut(item, ":")
			p, err1 := strconv.ParseInt(ps, 10, 32)
			o, err2 := strconv.ParseInt(os, 10, 64)
			if !ok || err1 != nil || err2 != nil {
				return errEvent
			}
			e.Offsets[int32(p)] = o
			return nil
		}); err != nil {
			return fail("offsets")
		}
	case Stopped, SinkFault:
		if e.Text, err = strconv.Unquote(rest); err != nil {
			return fail("text")
		}
	default:
		return fail("unknown kind")
	}
	return e, nil
}

func parseList(s string, item func(string) error) error {
	if s == "-" {
		return nil
	}
	for it := range strings.SplitSeq(s, ",") {
		if err := item(it); err != nil {
			return err
		}
	}
	return nil
}
