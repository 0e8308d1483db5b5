package consumer

import (
	"context"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func (c *Consumer) onAssigned(ctx context.Context, cl *kgo.Client, assigned map[string][]int32) {
	if stale := c.forgetOldMembership(ctx, cl); stale != nil {
		c.reposition(ctx, cl, stale)
		assigned = union(assigned, stale)
	}
	c.own(assigned, true)
	c.cfg.logger.Info("partitions assigned", "partitions", assigned)
	c.rebalanced(Assigned, assigned)
	if c.cfg.onAssigned != nil {
		c.cfg.onAssigned(ctx, assigned)
	}
}

func (c *Consumer) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	var stale map[string][]int32
	if stale = c.forgetOldMembership(ctx, cl); stale != nil {
		// What the new membership takes was lost already; what it keeps
		// starts again at the group's commits.
		if kept := minus(stale, revoked); len(kept) > 0 {
			c.reposition(ctx, cl, kept)
			c.onAssigned(ctx, cl, kept)
		}
		revoked = minus(revoked, stale)
	}
	c.own(revoked, false)
	c.stopWorkers(c.takeWorkers(revoked), c.cfg.revokeTimeout, false)
	c.settleDraining(revoked, c.cfg.revokeTimeout)
	if !c.closing.Load() {
		cctx, cancel := context.WithTimeout(ctx, c.cfg.revokeTimeout)
		if err := c.commit(cctx, stale); err != nil {
			c.cfg.logger.Error("commit on revoke failed", "err", err)
		}
		cancel()
	}
	c.cfg.logger.Info("partitions revoked", "partitions", revoked)
	c.rebalanced(Revoked, revoked)
	if c.cfg.onRevoked != nil {
		c.cfg.onRevoked(ctx, revoked)
	}
}

// settleDraining waits up to timeout for the runners of the given
// partitions that the shutdown took and still drains, then abandons them: a
// revoke during the drain commits what they stored, and nothing they would
// store later can bring a partition another member owns now back into the
// last commit.
func (c *Consumer) settleDraining(partitions map[string][]int32, timeout time.Duration) {
	ws := c.drainingOf(partitions)
	if len(ws) == 0 {
		return
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for _, w := range ws {
		select {
		case <-w.part().done:
		case <-deadline.C:
		}
		w.part().abandon()
	}
}

func (c *Consumer) onLost(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
	c.own(lost, false)
	c.abandonDraining(lost)
	c.stopWorkers(c.takeWorkers(lost), c.cfg.revokeTimeout, true)
	c.cfg.logger.Warn("partitions lost; their offsets are not committed", "partitions", lost)
	c.rebalanced(Lost, lost)
	if c.cfg.onLost != nil {
		c.cfg.onLost(ctx, lost)
	}
}

// own adds partitions to the owned set, or removes them.
func (c *Consumer) own(partitions map[string][]int32, add bool) {
	c.ownMu.Lock()
	defer c.ownMu.Unlock()
	for topic, ps := range partitions {
		for _, p := range ps {
			if add {
				c.owned[tp{topic, p}] = struct{}{}
			} else {
				delete(c.owned, tp{topic, p})
			}
		}
	}
}

// forgetOldMembership handles a rebalance callback made under a member ID
// other than the one the held partitions were assigned to. kgo answers a
// JoinGroup refused with UNKNOWN_MEMBER_ID (the group expired the member) by
// joining as a new member that still claims its old partitions, with their
// positions and marks, and without calling OnPartitionsLost; meanwhile the
// group gave them to others. Those partitions are reported lost and
// returned, so that none of their marks is committed and the ones the
// group lets the member keep start again at the group's commits.
func (c *Consumer) forgetOldMembership(ctx context.Context, cl *kgo.Client) map[string][]int32 {
	stale := c.rejoined(cl)
	if stale != nil {
		c.cfg.logger.Warn("rejoined the group as a new member; partitions kept from the old membership are lost", "partitions", stale)
		c.onLost(ctx, cl, stale)
	}
	return stale
}

// rejoined returns the partitions still owned from before, if the callback
// runs under a member ID other than the last one seen; nil otherwise.
func (c *Consumer) rejoined(cl *kgo.Client) map[string][]int32 {
	member, _ := cl.GroupMetadata()
	c.ownMu.Lock()
	defer c.ownMu.Unlock()
	last := c.member
	c.member = member
	if last == "" || member == last || len(c.owned) == 0 {
		return nil
	}
	stale := make(map[string][]int32)
	for k := range c.owned {
		stale[k.topic] = append(stale[k.topic], k.partition)
	}
	return stale
}

// reposition moves partitions to where a fresh assignment would start them:
// the group's commits, through the plugin that sets StartOffsets if there is
// one. Failing that,
// they go on from where they are, which may handle records again but skips
// none.
func (c *Consumer) reposition(ctx context.Context, cl *kgo.Client, partitions map[string][]int32) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.revokeTimeout)
	defer cancel()
	fetched, err := kadm.NewClient(cl).FetchOffsets(ctx, c.cfg.group)
	if err == nil {
		err = fetched.Error()
	}
	if err != nil {
		c.cfg.logger.Error("reading the group's commits to reposition partitions failed; they go on from their positions", "partitions", partitions, "err", err)
		return
	}
	// Where kgo starts a partition without a commit: a fresh assignment
	// would pass StartOffsets the same.
	first, _ := cl.OptValue(kgo.ConsumeStartOffset).(kgo.Offset)
	start := make(map[string]map[int32]kgo.Offset, len(partitions))
	for topic, ps := range partitions {
		start[topic] = make(map[int32]kgo.Offset, len(ps))
		for _, p := range ps {
			start[topic][p] = first
			if o, ok := fetched.Lookup(topic, p); ok && o.At >= 0 {
				start[topic][p] = kgo.NewOffset().At(o.At).WithEpoch(o.LeaderEpoch)
			}
		}
	}
	if c.startOffsets != nil {
		if start, err = c.startOffsets(ctx, start); err != nil {
			c.cfg.logger.Error("positioning partitions after rejoining failed; they go on from their positions", "partitions", partitions, "err", err)
			return
		}
	}
	set := make(map[string]map[int32]kgo.EpochOffset, len(start))
	for topic, ps := range start {
		set[topic] = make(map[int32]kgo.EpochOffset, len(ps))
		for p, o := range ps {
			set[topic][p] = o.EpochOffset()
		}
	}
	cl.SetOffsets(set)
}

// minus returns the partitions of a that are not in b.
func minus(a, b map[string][]int32) map[string][]int32 {
	out := make(map[string][]int32)
	for topic, ps := range a {
		for _, p := range ps {
			if !slices.Contains(b[topic], p) {
				out[topic] = append(out[topic], p)
			}
		}
	}
	return out
}

// union returns the partitions in a or b.
func union(a, b map[string][]int32) map[string][]int32 {
	out := make(map[string][]int32, len(a)+len(b))
	for _, m := range []map[string][]int32{a, b} {
		for topic, ps := range m {
			for _, p := range ps {
				if !slices.Contains(out[topic], p) {
					out[topic] = append(out[topic], p)
				}
			}
		}
	}
	return out
}

// rebalanced tells the observers and the plugins of a rebalance.
func (c *Consumer) rebalanced(e Event, partitions map[string][]int32) {
	if o := c.observer; o != nil {
		o.Rebalanced(e, partitions)
	}
	for _, fn := range c.onRebalance {
		fn(e, partitions)
	}
}
