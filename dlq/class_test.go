package dlq_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/dlq"
)

func TestClassIsFoundAnywhereInTheChain(t *testing.T) {
	base := errors.New("boom")
	cases := []struct {
		err      error
		want     dlq.Class
		isPoison bool // errors.Is(err, ErrPoison): some mark in the chain is poison
	}{
		{base, dlq.Unclassified, false},
		{dlq.MarkPoison(base), dlq.Poison, true},
		{fmt.Errorf("decode: %w", dlq.MarkPoison(base)), dlq.Poison, true},
		{fmt.Errorf("save: %w", dlq.MarkRetriable(base)), dlq.Retriable, false},
		{errors.Join(base, dlq.MarkRetriable(base)), dlq.Retriable, false},
		{&consumer.PanicError{Value: dlq.MarkPoison(base)}, dlq.Poison, true},
		{dlq.MarkRetriable(dlq.MarkPoison(base)), dlq.Retriable, true}, // the outermost mark wins
	}
	for _, c := range cases {
		if got := dlq.ClassOf(c.err); got != c.want {
			t.Errorf("ClassOf(%v) = %v, want %v", c.err, got, c.want)
		}
		if got := errors.Is(c.err, dlq.ErrPoison); got != c.isPoison {
			t.Errorf("errors.Is(%v, ErrPoison) = %v", c.err, got)
		}
		if !errors.Is(c.err, base) {
			t.Errorf("%v no longer matches the error it marks", c.err)
		}
	}
	if dlq.MarkPoison(nil) != nil || dlq.MarkRetriable(nil) != nil {
		t.Error("marking nil returned an error")
	}
}

func TestClassText(t *testing.T) {
	for _, c := range []dlq.Class{dlq.Unclassified, dlq.Retriable, dlq.Poison} {
		b, _ := c.MarshalText()
		var got dlq.Class
		if err := got.UnmarshalText(b); err != nil || got != c {
			t.Errorf("%v round-tripped to %v, %v", c, got, err)
		}
	}
	var c dlq.Class
	if err := c.UnmarshalText([]byte("fatal")); err == nil {
		t.Error("unknown class name accepted")
	}
}
