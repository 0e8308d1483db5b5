package brokercheck

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Timeouts of the kgo group consumers below. The JoinGroup read deadline kgo
// sets is overhead + rebalance (client.go:878-885 in kgo v1.22.2), 750ms here;
// kgo retries a failed JoinGroup only within the session timeout
// (retryTimeout, client.go:517-527), which a 750ms join always exceeds, as it
// does with the library's 45s session and 5m rebalance timeouts.
const (
	consumerSession   = 500 * time.Millisecond
	consumerRebalance = 500 * time.Millisecond
	consumerOverhead  = 250 * time.Millisecond
	joinDeadline      = consumerRebalance + consumerOverhead
)

// joinHold makes kfake stop answering JoinGroup while it is on: the control
// function takes the request and returns no response and no error, so kfake
// keeps the connection muted and the client waits until its read deadline
// (kfake ControlKey docs, cluster.go:810-818; the nil response is parked
// like a group request, cluster.go:760-777). It also counts LeaveGroups.
type joinHold struct {
	on     atomic.Bool
	held   chan time.Time // when each held JoinGroup arrived
	leaves atomic.Int32
}

func holdJoins(c *kfake.Cluster) *joinHold {
	h := &joinHold{held: make(chan time.Time, 16)}
	c.ControlKey(int16(kmsg.JoinGroup), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !h.on.Load() {
			return nil, nil, false
		}
		select {
		case h.held <- time.Now():
		default:
		}
		return nil, nil, true
	})
	c.ControlKey(int16(kmsg.LeaveGroup), func(kmsg.Request) (kmsg.Response, error, bool) {
		h.leaves.Add(1)
		return nil, nil, false // observe only; kfake handles it
	})
	return h
}

// waitHeld waits for a held JoinGroup.
func (h *joinHold) waitHeld(t *testing.T) time.Time {
	t.Helper()
	select {
	case at := <-h.held:
		return at
	case <-time.After(5 * time.Second):
		t.Fatal("no JoinGroup was held")
	}
	panic("unreachable")
}

// consumer is a kgo group consumer with the test timeouts. assigned receives
// every non-empty assignment.
type consumer struct {
	*closer
	assigned chan map[string][]int32
	lost     atomic.Int32
}

func newConsumer(t *testing.T, c *kfake.Cluster, group string, opts ...kgo.Opt) *consumer {
	t.Helper()
	cs := &consumer{assigned: make(chan map[string][]int32, 16)}
	opts = append([]kgo.Opt{
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.SessionTimeout(consumerSession),
		kgo.HeartbeatInterval(100 * time.Millisecond),
		kgo.RebalanceTimeout(consumerRebalance),
		kgo.RequestTimeoutOverhead(consumerOverhead),
		kgo.RetryBackoffFn(func(int) time.Duration { return 100 * time.Millisecond }),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			if len(m) > 0 {
				cs.assigned <- m
			}
		}),
		kgo.OnPartitionsLost(func(context.Context, *kgo.Client, map[string][]int32) {
			cs.lost.Add(1)
		}),
	}, opts...)
	cs.closer = newClient(t, c, opts...)
	return cs
}

// waitAssigned waits until the consumer is assigned partitions.
func (cs *consumer) waitAssigned(t *testing.T, what string) {
	t.Helper()
	select {
	case <-cs.assigned:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: consumer not assigned within 10s", what)
	}
}
