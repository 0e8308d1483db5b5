package consumer_test

import (
	"context"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
)

// TestShutdownEndsWithAJoinThatNeverAnswers runs a member with the
// library's own timeouts, has the broker hold every JoinGroup from the next
// rebalance on, and stops the member while its JoinGroup waits. kgo's Close
// alone would wait for the join's read deadline (the rebalance timeout plus
// 10 s); Run must return within ShutdownTimeout plus its 9 s for the last
// commit and the leave, and the member must be out of the group at once,
// not after its session timeout.
func TestShutdownEndsWithAJoinThatNeverAnswers(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 2, topic)
	var hold atomic.Pointer[string] // the member whose joins are held
	held := make(chan struct{}, 16)
	cluster.ControlKey(int16(kmsg.JoinGroup), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if m := hold.Load(); m == nil || req.(*kmsg.JoinGroupRequest).MemberID != *m {
			return nil, nil, false
		}
		select {
		case held <- struct{}{}:
		default:
		}
		return nil, nil, true // no answer, ever
	})

	assigned := make(chan struct{}, 1)
	c, err := consumer.New(nop,
		consumer.SeedBrokers(cluster.Addrs...),
		consumer.Topics(topic),
		consumer.Group("g"),
		consumer.WithLogger(slog.New(slog.DiscardHandler)),
		consumer.OnAssigned(func(context.Context, map[string][]int32) {
			select {
			case assigned <- struct{}{}:
			default:
			}
		}),
	)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case <-assigned:
	case <-time.After(30 * time.Second):
		t.Fatal("no assignment")
	}
	member, _ := c.Client().GroupMetadata()

	// A second member's join starts a rebalance; the first learns of it at
	// its next heartbeat and joins again, and that join is held.
	hold.Store(&member)
	joinCtx, stopJoin := context.WithCancel(context.Background())
	defer stopJoin()
	other := cluster.Client(t, kgo.WithContext(joinCtx), kgo.ConsumerGroup("g"), kgo.ConsumeTopics(topic))
	go other.PollFetches(joinCtx)
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("the member's join was not held")
	}

	start := time.Now()
	cancel()
	select {
	case err := <-done:
		took := time.Since(start)
		t.Logf("Run returned %v after %v", err, took)
		if bound := 9 * time.Second; took > bound {
			t.Errorf("Run took %v to return with a join held, want at most %v", took, bound)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("Run did not return with a join held")
	}
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{"g"}
	resp, err := req.RequestWith(context.Background(), cluster.Client(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range resp.Groups {
		if slices.ContainsFunc(g.Members, func(m kmsg.DescribeGroupsResponseGroupMember) bool { return m.MemberID == member }) {
			t.Errorf("member %s is still in the group after Run returned", member)
		}
	}
}

// topicless counts the partitions without a topic an observer is shown.
type topicless struct{ n atomic.Int64 }

func (o *topicless) Polled(p kgo.FetchTopicPartition) {
	if p.Topic == "" {
		o.n.Add(1)
	}
}
func (*topicless) Handled(*kgo.Record, time.Duration, error)     {}
func (*topicless) Committed(map[string]map[int32]int64, error)   {}
func (*topicless) Rebalanced(consumer.Event, map[string][]int32) {}
func (*topicless) Paused(string, int32, bool)                    {}

// messages is a slog handler that notes the messages logged.
type messages struct{ group atomic.Int64 }

func (*messages) Enabled(context.Context, slog.Level) bool { return true }
func (m *messages) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "group session failed; joining again" {
		m.group.Add(1)
	}
	return nil
}
func (m *messages) WithAttrs([]slog.Attr) slog.Handler { return m }
func (m *messages) WithGroup(string) slog.Handler      { return m }

// TestFailedJoinIsNoPartition: kgo reports a failed join as an error on a
// partition of no topic; observers (and so the lag monitor) must never
// count it as an owned partition.
func TestFailedJoinIsNoPartition(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic)
	var hold atomic.Pointer[string]
	var held atomic.Int64
	cluster.ControlKey(int16(kmsg.JoinGroup), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if m := hold.Load(); m == nil || req.(*kmsg.JoinGroupRequest).MemberID != *m || held.Add(1) > 1 {
			return nil, nil, false
		}
		return nil, nil, true // the first rejoin times out
	})
	obs := &topicless{}
	logs := &messages{}
	assigned := make(chan struct{}, 4)
	c, err := consumer.New(nop, testOpts(cluster, "g",
		consumer.WithLogger(slog.New(logs)),
		consumer.ClientOpts(kgo.RebalanceTimeout(500*time.Millisecond)),
		consumer.RevokeTimeout(400*time.Millisecond),
		consumer.OnAssigned(func(context.Context, map[string][]int32) { assigned <- struct{}{} }),
		consumer.With(consumer.PluginFunc(func(a *consumer.Attachment) error { a.Observe(obs); return nil })),
	)...)
	if err != nil {
		t.Fatal(err)
	}
	kafkatest.Run(t, c)
	<-assigned
	member, _ := c.Client().GroupMetadata()
	hold.Store(&member)
	other := cluster.Client(t, kgo.ConsumerGroup("g"), kgo.ConsumeTopics(topic))
	go other.PollFetches(t.Context())
	kafkatest.WaitFor(t, 30*time.Second, "the failed join reported", func() bool { return logs.group.Load() > 0 })
	if n := obs.n.Load(); n != 0 {
		t.Errorf("observer shown %d partitions without a topic", n)
	}
}
