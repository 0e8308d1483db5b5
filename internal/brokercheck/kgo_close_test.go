package brokercheck

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestCloseWithPendingJoin pins how long kgo v1.22.2 takes to shut a group
// consumer down while its JoinGroup is unanswered, and which shutdown
// sequences are bounded.
//
// Why Close blocks: Close leaves the group (client.go:1389-1407), the leave
// waits for the group management goroutine to finish (<-g.manageDone,
// consumer_group.go:593-601), and that goroutine is inside joinAndSync,
// whose JoinGroup uses the *client* context, not the group context, so that
// a final commit in OnPartitionsRevoked can still run
// (consumer_group.go:1506-1523). Leaving cancels only the group context, so
// the join ends only with an answer or at its read deadline, rebalance
// timeout + RequestTimeoutOverhead (client.go:878-885): with the library's
// defaults, 5m + 10s. LeaveGroupContext's ctx bounds only the caller's wait
// (consumer_group.go:316-321); Close waits on g.left regardless
// (client.go:1403-1407). Canceling the context given to kgo.WithContext
// cancels the client context, which the join selects on
// (consumer_group.go:1519-1523), so Close returns at once; kgo then sends no
// LeaveGroup (its request uses the leave ctx, consumer_group.go:654), and the
// member stays until its session timeout unless it is removed with a
// LeaveGroup sent before the cancel. An expired LeaveGroupContext ctx loses
// the LeaveGroup the same way.
func TestCloseWithPendingJoin(t *testing.T) {
	t.Parallel()

	type outcome struct {
		leaveErr error // from LeaveGroupContext, when the case calls it
	}
	cases := []struct {
		name string
		// noHold: the join is answered normally (baseline).
		noHold bool
		// shutdown runs the shutdown sequence. cancel cancels the
		// context the client was built with (kgo.WithContext).
		shutdown func(t *testing.T, cs *consumer, cancel context.CancelFunc) outcome
		// blocked: Close is expected to wait for the join's read
		// deadline; otherwise it is expected to be quick.
		blocked bool
		// leaves is how many LeaveGroup requests kfake should see.
		leaves int32
		// gone: for a quick shutdown, the member is expected to be
		// out of the group right after it, not only at its session
		// timeout. Not checked for a blocked one: the consumer's
		// session timeout passes while Close waits.
		gone bool
	}{
		{
			name:   "baseline Close, no pending join",
			noHold: true,
			shutdown: func(_ *testing.T, cs *consumer, _ context.CancelFunc) outcome {
				cs.close()
				return outcome{}
			},
			leaves: 1, gone: true,
		},
		{
			name: "Close",
			shutdown: func(_ *testing.T, cs *consumer, _ context.CancelFunc) outcome {
				cs.close()
				return outcome{}
			},
			blocked: true, leaves: 1,
		},
		{
			name: "CloseAllowingRebalance",
			shutdown: func(_ *testing.T, cs *consumer, _ context.CancelFunc) outcome {
				cs.once.Do(cs.CloseAllowingRebalance)
				return outcome{}
			},
			blocked: true, leaves: 1,
		},
		{
			// The Close docs suggest this for "a speedy shutdown".
			// With a join pending it is not speedy, and the expired
			// ctx also makes the eventual LeaveGroup fail unsent.
			name: "LeaveGroupContext with 100ms deadline, then Close",
			shutdown: func(_ *testing.T, cs *consumer, _ context.CancelFunc) outcome {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer cancel()
				err := cs.LeaveGroupContext(ctx)
				cs.close()
				return outcome{leaveErr: err}
			},
			blocked: true, leaves: 0,
		},
		{
			name: "cancel WithContext, then Close",
			shutdown: func(_ *testing.T, cs *consumer, cancel context.CancelFunc) outcome {
				cancel()
				cs.close()
				return outcome{}
			},
			blocked: false, leaves: 0, gone: false,
		},
		{
			// Recommended: give the normal leave a bounded time; if it
			// does not finish, send the LeaveGroup ourselves (it goes
			// on kgo's ordinary connection, not the one the join
			// holds), then cancel the client context so the join
			// returns, then Close.
			name: "bounded LeaveGroupContext, raw LeaveGroup, cancel, Close",
			shutdown: func(t *testing.T, cs *consumer, cancel context.CancelFunc) outcome {
				ctx, cancelLeave := context.WithTimeout(context.Background(), 50*time.Millisecond)
				err := cs.LeaveGroupContext(ctx)
				cancelLeave()
				if err != nil {
					if memberID, _ := cs.GroupMetadata(); memberID != "" {
						if lerr := rawLeave(cs.Client, "g", memberID, time.Second); lerr != nil {
							t.Errorf("raw LeaveGroup: %v", lerr)
						}
					}
					cancel()
				}
				cs.close()
				return outcome{leaveErr: err}
			},
			blocked: false, leaves: 1, gone: true,
		},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t)
			h := holdJoins(c)
			parent, cancelParent := context.WithCancel(context.Background())
			t.Cleanup(cancelParent)
			cs := newConsumer(t, c, "g", kgo.WithContext(parent))
			cs.waitAssigned(t, "first join")
			memberID, _ := cs.GroupMetadata()

			var heldAt time.Time
			if !tc.noHold {
				h.on.Store(true)
				cs.ForceRebalance()
				heldAt = h.waitHeld(t)
			}

			start := time.Now()
			out := tc.shutdown(t, cs, cancelParent)
			took := time.Since(start)
			if tc.noHold {
				t.Logf("shutdown took %v; LeaveGroup requests seen: %d", took, h.leaves.Load())
			} else {
				t.Logf("shutdown took %v, returning %v after the held JoinGroup (read deadline %v); LeaveGroupContext: %v; LeaveGroup requests seen: %d",
					took, time.Since(heldAt), joinDeadline, out.leaveErr, h.leaves.Load())
			}

			switch {
			case tc.blocked:
				// The join's read deadline runs from its write, a
				// moment before kfake took it; allow for that.
				if since := time.Since(heldAt); since < joinDeadline-250*time.Millisecond {
					t.Errorf("shutdown returned %v after the held join, before its read deadline %v", since, joinDeadline)
				}
				if took > joinDeadline+3*time.Second {
					t.Errorf("shutdown took %v, far beyond the join's read deadline %v", took, joinDeadline)
				}
			default:
				if took > joinDeadline/2 {
					t.Errorf("shutdown took %v, want it quick", took)
				}
			}
			if out.leaveErr != nil && !errors.Is(out.leaveErr, context.DeadlineExceeded) {
				t.Errorf("LeaveGroupContext: %v, want nil or context.DeadlineExceeded", out.leaveErr)
			}
			if got := h.leaves.Load(); got != tc.leaves {
				t.Errorf("kfake saw %d LeaveGroup requests, want %d", got, tc.leaves)
			}

			// Is the member still holding its place in the group?
			if tc.blocked {
				return
			}
			v := describe(testCtx(t), t, newClient(t, c), "g")
			if gone := !v.has(memberID); gone != tc.gone {
				t.Errorf("member gone from the group right after shutdown: %v, want %v (group %s with %v)", gone, tc.gone, v.state, v.members)
			}
		})
	}
}

// rawLeave sends a LeaveGroup for memberID, bounded by timeout.
func rawLeave(cl *kgo.Client, group, memberID string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Group = group
	m := kmsg.NewLeaveGroupRequestMember()
	m.MemberID = memberID
	m.Reason = kmsg.StringPtr("shutting down with a join pending")
	req.Members = append(req.Members, m)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return err
	}
	for _, m := range resp.Members {
		if err := kerr.ErrorForCode(m.ErrorCode); err != nil {
			return err
		}
	}
	return nil
}
