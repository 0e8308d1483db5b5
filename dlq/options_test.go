package dlq_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/dlq"
	"github.com/kconsumer/kconsumer/fault"
)

func TestNewRefusesBadOptions(t *testing.T) {
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	cases := map[string][]dlq.RouterOpt{
		"zero attempts":       {dlq.MaxAttempts(0)},
		"zero write timeout":  {dlq.WriteTimeout(0)},
		"negative uncertain":  {dlq.UncertainFor(-time.Second)},
		"threshold above one": {dlq.Breaker(10, 1.5, time.Second)},
		"empty window":        {dlq.Breaker(0, 0.5, time.Second)},
		"no cool-down":        {dlq.Breaker(10, 0.5, 0)},
		"nil topic function":  {dlq.DeadLetterTopic(nil)},
		"nil classifier":      {dlq.Classify(nil)},
		"nil logger":          {dlq.WithLogger(nil)},
		"client and brokers":  {dlq.WithClient(cl), dlq.SeedBrokers("127.0.0.1:1")},
		"acks=1":              {dlq.ClientOpts(kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())},
		"not idempotent":      {dlq.ClientOpts(kgo.DisableIdempotentWrite())},
	}
	for name, opts := range cases {
		r, err := dlq.New(append(opts, dlq.SeedBrokers("127.0.0.1:1"))...)
		if !errors.Is(err, dlq.ErrInvalidOption) {
			t.Errorf("%s: New returned %v, want ErrInvalidOption", name, err)
		}
		if r != nil {
			r.Close()
		}
	}
	r, err := dlq.New(dlq.WithClient(cl))
	if err != nil {
		t.Fatalf("New with a default client: %v", err)
	}
	r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t"}).FirstErr(); errors.Is(err, kgo.ErrClientClosed) {
		t.Error("Close closed a client given with WithClient")
	}
}

func TestRedriveRefusesBadOptions(t *testing.T) {
	cases := map[string][]dlq.RedriveOpt{
		"empty group":     {dlq.ProgressGroup("")},
		"reversed range":  {dlq.Offsets(10, 5)},
		"negative from":   {dlq.Offsets(-1, 5)},
		"unknown class":   {dlq.Classes(fault.Class(9))},
		"uncertain class": {dlq.Classes(fault.Uncertain)}, // written as poison
		"zero batch size": {dlq.BatchSize(0)},
	}
	for name, opts := range cases {
		if _, err := dlq.Redrive(context.Background(), "t.dlq", opts...); !errors.Is(err, dlq.ErrInvalidOption) {
			t.Errorf("%s: Redrive returned %v, want ErrInvalidOption", name, err)
		}
	}
	if _, err := dlq.Redrive(context.Background(), ""); !errors.Is(err, dlq.ErrInvalidOption) {
		t.Errorf("Redrive without a topic returned %v, want ErrInvalidOption", err)
	}
}
