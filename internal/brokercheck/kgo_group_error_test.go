package brokercheck

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestJoinFailureSurfacesAsTopiclessFetchError pins how kgo v1.22.2 reports
// a failed JoinGroup to a poll loop: not as an error of its own but as a
// fake fetch, topic "" partition 0, whose error is a *kgo.ErrGroupSession
// wrapping the cause (manageFailWait, consumer_group.go:449-457, via
// addFakeReadyForDraining, consumer.go:475-487). kgo has already called
// OnPartitionsLost and will rejoin by itself after a backoff; the poll loop
// needs to do nothing but not mistake it for a partition error.
//
// The failure here is the one the field sees when a rebalance is stuck: the
// JoinGroup is never answered and hits kgo's read deadline (rebalance timeout
// + RequestTimeoutOverhead), a net timeout error.
//
// Client close and poll-context cancellation come as a different fake fetch,
// topic "" partition -1 (NewErrFetch, consumer.go:491-501), which
// IsClientClosed recognises.
func TestJoinFailureSurfacesAsTopiclessFetchError(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	h := holdJoins(c)
	cs := newConsumer(t, c, "g")
	cs.waitAssigned(t, "first join")

	h.on.Store(true)
	cs.ForceRebalance()
	heldAt := h.waitHeld(t)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var (
		found   bool
		foundAt time.Time
	)
	for !found {
		fs := cs.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("no group error fetch within 10s: %v", ctx.Err())
		}
		fs.EachError(func(tp string, p int32, err error) {
			gs, ok := errors.AsType[*kgo.ErrGroupSession](err)
			if !ok {
				t.Logf("other fetch error: topic %q partition %d: %v", tp, p, err)
				return
			}
			found, foundAt = true, time.Now()
			t.Logf("fetch error topic %q partition %d, %v after the held join (read deadline %v): %v",
				tp, p, foundAt.Sub(heldAt), joinDeadline, err)
			if tp != "" || p != 0 {
				t.Errorf("group error came as topic %q partition %d, want topic \"\" partition 0", tp, p)
			}
			var ne net.Error
			if !errors.As(gs.Err, &ne) || !ne.Timeout() {
				t.Errorf("group error cause %v (%T), want a net timeout", gs.Err, gs.Err)
			}
			if fs.IsClientClosed() {
				t.Error("IsClientClosed is true for a group error")
			}
		})
	}
	if since := foundAt.Sub(heldAt); since < joinDeadline-250*time.Millisecond {
		t.Errorf("group error %v after the held join, before its read deadline %v", since, joinDeadline)
	}
	if cs.lost.Load() == 0 {
		t.Error("OnPartitionsLost was not called before the group error was injected")
	}

	// kgo rejoins by itself once JoinGroup is answered again.
	h.on.Store(false)
	cs.waitAssigned(t, "rejoin after the group error")

	// Closing is reported as topic "" partition -1.
	cs.close()
	fs := cs.PollFetches(context.Background())
	if !fs.IsClientClosed() {
		t.Fatalf("after Close: IsClientClosed is false: %v", fs.Err0())
	}
	fs.EachError(func(tp string, p int32, err error) {
		if tp != "" || p != -1 || !errors.Is(err, kgo.ErrClientClosed) {
			t.Errorf("after Close: topic %q partition %d err %v, want topic \"\" partition -1 ErrClientClosed", tp, p, err)
		}
	})
}
