package fault_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/fault"
)

func TestClassIsFoundAnywhereInTheChain(t *testing.T) {
	base := errors.New("boom")
	cases := []struct {
		err      error
		want     fault.Class
		isPoison bool // errors.Is(err, ErrPoison): some mark in the chain is poison
	}{
		{base, fault.Unclassified, false},
		{fault.MarkPoison(base), fault.Poison, true},
		{fmt.Errorf("decode: %w", fault.MarkPoison(base)), fault.Poison, true},
		{fmt.Errorf("save: %w", fault.MarkRetriable(base)), fault.Retriable, false},
		{errors.Join(base, fault.MarkRetriable(base)), fault.Retriable, false},
		{&consumer.PanicError{Value: fault.MarkPoison(base)}, fault.Poison, true},
		{fault.MarkRetriable(fault.MarkPoison(base)), fault.Retriable, true}, // the outermost mark wins
		{fmt.Errorf("schema: %w", fault.MarkUncertain(base)), fault.Uncertain, false},
		{fault.Mark(fault.ClassOf(fault.MarkPoison(base)), fmt.Errorf("located: %w", base)), fault.Poison, true},
		{fault.Mark(fault.Uncertain, base), fault.Uncertain, false},
		{fault.Mark(fault.Unclassified, base), fault.Unclassified, false},
	}
	for _, c := range cases {
		if got := fault.ClassOf(c.err); got != c.want {
			t.Errorf("ClassOf(%v) = %v, want %v", c.err, got, c.want)
		}
		if got := errors.Is(c.err, fault.ErrPoison); got != c.isPoison {
			t.Errorf("errors.Is(%v, ErrPoison) = %v", c.err, got)
		}
		if !errors.Is(c.err, base) {
			t.Errorf("%v no longer matches the error it marks", c.err)
		}
	}
	if fault.MarkPoison(nil) != nil || fault.MarkRetriable(nil) != nil || fault.MarkUncertain(nil) != nil ||
		fault.Mark(fault.Poison, nil) != nil || fault.Mark(fault.Unclassified, nil) != nil {
		t.Error("marking nil returned an error")
	}
	if fault.Mark(fault.Unclassified, base) != base {
		t.Error("Mark(Unclassified, err) wrapped err")
	}
}

func TestEachSentinelMatchesItsClassOnly(t *testing.T) {
	sentinels := map[fault.Class]error{fault.Poison: fault.ErrPoison, fault.Retriable: fault.ErrRetriable, fault.Uncertain: fault.ErrUncertain}
	for c := range sentinels {
		err := fmt.Errorf("w: %w", fault.Mark(c, errors.New("x")))
		for s, sentinel := range sentinels {
			if got := errors.Is(err, sentinel); got != (s == c) {
				t.Errorf("errors.Is(%v, %v) = %v", err, sentinel, got)
			}
		}
		if errors.Is(err, fault.ErrHeld) {
			t.Errorf("%v matches ErrHeld", err)
		}
	}
}

// The classes' values index counters and are stable.
func TestClassValues(t *testing.T) {
	for c, want := range map[fault.Class]int{fault.Unclassified: 0, fault.Retriable: 1, fault.Poison: 2, fault.Uncertain: 3} {
		if int(c) != want {
			t.Errorf("%v = %d, want %d", c, int(c), want)
		}
	}
	if n := len(fault.RouterStats{}.DeadLetteredByClass); n != 4 {
		t.Errorf("DeadLetteredByClass has %d elements, want one per class", n)
	}
}

func TestClassText(t *testing.T) {
	for _, c := range []fault.Class{fault.Unclassified, fault.Retriable, fault.Poison, fault.Uncertain} {
		b, _ := c.MarshalText()
		var got fault.Class
		if err := got.UnmarshalText(b); err != nil || got != c {
			t.Errorf("%v round-tripped to %v, %v", c, got, err)
		}
	}
	var c fault.Class
	if err := c.UnmarshalText([]byte("fatal")); err == nil {
		t.Error("unknown class name accepted")
	}
}
