package consumer_test

import (
	"context"
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
)

var nop = consumer.HandlerFunc(func(context.Context, *kgo.Record) error { return nil })

func TestOwnedClientOptionsAreOverridden(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic)
	noop := func(context.Context, *kgo.Client, map[string][]int32) {}
	c, err := consumer.New(nop, testOpts(cluster, "g", consumer.ClientOpts(
		kgo.ConsumeTopics("other"),
		kgo.ConsumerGroup("other"),
		kgo.OnPartitionsAssigned(noop),
		kgo.AutoCommitInterval(time.Hour),
	))...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	<-c.Running()
	cl := c.Client()
	if cl == nil {
		cancel()
		t.Fatalf("Run failed to start: %v", <-done)
	}
	if g := cl.OptValue(kgo.ConsumerGroup); g != "g" {
		t.Errorf("group = %v, want the Consumer's", g)
	}
	if ts := cl.OptValue(kgo.ConsumeTopics).(map[string]*regexp.Regexp); len(ts) != 1 || !hasKey(ts, topic) {
		t.Errorf("topics = %v, want only the Consumer's", ts)
	}
	if d := cl.OptValue(kgo.AutoCommitInterval); d != time.Second {
		t.Errorf("commit interval = %v, want the Consumer's 1s", d)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func hasKey[V any](m map[string]V, k string) bool { _, ok := m[k]; return ok }

func TestRunRefusesOptionsThatChangeTheOwnedOnes(t *testing.T) {
	for name, o := range map[string]kgo.Opt{
		"ConsumeRegex":      kgo.ConsumeRegex(),
		"ConsumePartitions": kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"x": {0: kgo.NewOffset()}}),
		"DisableAutoCommit": kgo.DisableAutoCommit(),
		"GreedyAutoCommit":  kgo.GreedyAutoCommit(),
	} {
		c, err := consumer.New(nop, consumer.Topics("t"), consumer.Group("g"),
			consumer.SeedBrokers("127.0.0.1:1"), consumer.ClientOpts(o))
		if err != nil {
			t.Fatalf("%s: New: %v", name, err)
		}
		err = c.Run(context.Background())
		if !errors.Is(err, consumer.ErrInvalidOption) {
			t.Errorf("ClientOpts(kgo.%s): Run = %v, want ErrInvalidOption", name, err)
		}
		select {
		case <-c.Running():
		default:
			t.Errorf("%s: Running not closed after Run failed to start", name)
		}
		if c.Client() != nil {
			t.Errorf("%s: Client() is not nil after Run failed to start", name)
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
		"empty instance ID":   {consumer.Topics("t"), consumer.Group("g"), consumer.InstanceID("")},
		"static, no group":    {consumer.Topics("t"), consumer.InstanceID("a")},
		"next-gen, no group":  {consumer.Topics("t"), consumer.ServerSideBalancer()},
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
