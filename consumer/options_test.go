package consumer_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
)

var nop = consumer.HandlerFunc(func(context.Context, *kgo.Record) error { return nil })

func TestClientOptsRefusesOptionsTheConsumerOwns(t *testing.T) {
	noop := func(context.Context, *kgo.Client, map[string][]int32) {}
	for name, o := range map[string]kgo.Opt{
		"ConsumeTopics":        kgo.ConsumeTopics("x"),
		"ConsumeRegex":         kgo.ConsumeRegex(),
		"ConsumerGroup":        kgo.ConsumerGroup("g"),
		"OnPartitionsAssigned": kgo.OnPartitionsAssigned(noop),
		"OnPartitionsRevoked":  kgo.OnPartitionsRevoked(noop),
		"OnPartitionsLost":     kgo.OnPartitionsLost(noop),
		"BlockRebalanceOnPoll": kgo.BlockRebalanceOnPoll(),
		"AutoCommitMarks":      kgo.AutoCommitMarks(),
		"AutoCommitInterval":   kgo.AutoCommitInterval(time.Second),
		"DisableAutoCommit":    kgo.DisableAutoCommit(),
		"AdjustFetchOffsetsFn": kgo.AdjustFetchOffsetsFn(nil),
	} {
		_, err := consumer.New(nop, consumer.Topics("t"), consumer.ClientOpts(o))
		if !errors.Is(err, consumer.ErrInvalidOption) || !strings.Contains(err.Error(), "kgo."+name) {
			t.Errorf("ClientOpts(kgo.%s): got %v, want an ErrInvalidOption naming it", name, err)
		}
	}
}

func TestClientOptsPassesOtherOptions(t *testing.T) {
	_, err := consumer.New(nop, consumer.Topics("t"), consumer.ClientOpts(
		kgo.FetchMaxBytes(1<<20),
		kgo.SessionTimeout(10*time.Second),
		kgo.Balancers(kgo.RoundRobinBalancer()),
		kgo.ClientID("svc"),
	))
	if err != nil {
		t.Fatalf("New with ordinary client options: %v", err)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for name, opts := range map[string][]consumer.Opt{
		"no topics":           nil,
		"short interval":      {consumer.Topics("t"), consumer.CommitInterval(10 * time.Millisecond)},
		"zero in-flight":      {consumer.Topics("t"), consumer.MaxInFlight(0)},
		"inverted backoff":    {consumer.Topics("t"), consumer.RetryBackoff(time.Second, time.Millisecond)},
		"zero revoke timeout": {consumer.Topics("t"), consumer.RevokeTimeout(0)},
		"nil logger":          {consumer.Topics("t"), consumer.WithLogger(nil)},
	} {
		if _, err := consumer.New(nop, opts...); !errors.Is(err, consumer.ErrInvalidOption) {
			t.Errorf("%s: got %v, want ErrInvalidOption", name, err)
		}
	}
	if _, err := consumer.New(nil, consumer.Topics("t")); !errors.Is(err, consumer.ErrInvalidOption) {
		t.Errorf("nil handler: got %v, want ErrInvalidOption", err)
	}
}

func TestRunTwice(t *testing.T) {
	c, err := consumer.New(nop, consumer.Topics("t"), consumer.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = c.Run(ctx)
	if err := c.Run(ctx); !errors.Is(err, consumer.ErrRunTwice) {
		t.Fatalf("second Run: got %v, want ErrRunTwice", err)
	}
}
