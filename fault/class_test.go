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
	if fault.MarkPoison(nil) != nil || fault.MarkRetriable(nil) != nil {
		t.Error("marking nil returned an error")
	}
}

func TestClassText(t *testing.T) {
	for _, c := range []fault.Class{fault.Unclassified, fault.Retriable, fault.Poison} {
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
