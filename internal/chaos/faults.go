//go:build unix

package chaos

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/kconsumer/kconsumer/internal/kafkatest"
)

// Fault is a kind of fault a Scenario injects. Faults combine with |.
type Fault uint32

const (
	// Kill SIGKILLs member processes at random moments and starts new ones.
	Kill Fault = 1 << iota
	// Storm makes members join and leave every few hundred milliseconds.
	Storm
	// FetchErrors answers fetches with partition errors.
	FetchErrors
	// CommitErrors answers offset commits with NOT_COORDINATOR,
	// REBALANCE_IN_PROGRESS and the like.
	CommitErrors
	// GroupErrors answers JoinGroup, SyncGroup and Heartbeat with
	// NOT_COORDINATOR, REBALANCE_IN_PROGRESS and the like.
	GroupErrors
	// DLQErrors answers writes to the dead-letter topic with errors.
	DLQErrors
	// SlowResponses delays broker responses by up to 400 ms.
	SlowResponses
	// Timeouts answers with REQUEST_TIMED_OUT (after applying commits and
	// dead-letter writes), drops connections, and leaves requests
	// unanswered until the client gives up.
	Timeouts
	// RegistryErrors answers the Schema Registry with 5xx, drops its
	// connections and makes it slower than the client waits, while
	// producers keep introducing new schema IDs.
	RegistryErrors
	// SinkFaults makes the sink refuse writes, slow down, or lose the
	// answer of a write it applied.
	SinkFaults
	// SessionExpiry stalls a member's heartbeats past its session timeout,
	// so that the group moves its partitions while it still works on them.
	SessionExpiry
	// BadInput mixes bad records into the workload: random bytes,
	// truncated frames, wrong magic bytes, unknown schema IDs, huge
	// records, empty and null keys, null values.
	BadInput

	// AllFaults is every fault at once.
	AllFaults = Kill | Storm | FetchErrors | CommitErrors | GroupErrors | DLQErrors | SlowResponses |
		Timeouts | RegistryErrors | SinkFaults | SessionExpiry | BadInput
)

var faultNames = []string{"kill", "storm", "fetch-errors", "commit-errors", "group-errors", "dlq-errors",
	"slow-responses", "timeouts", "registry-errors", "sink-faults", "session-expiry", "bad-input"}

func (f Fault) String() string {
	var names []string
	for i, n := range faultNames {
		if f&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, "+")
}

// bursts alternates stormy and calm periods, with on set while stormy,
// until ctx is done; it leaves on false. Calm periods are stretched by the
// scenario's pace.
func (r *run) bursts(ctx context.Context, rng *rand.Rand, on *atomic.Bool, stormy, calm [2]time.Duration) {
	defer on.Store(false)
	for {
		on.Store(true)
		if !sleep(ctx, between(rng, stormy)) {
			return
		}
		on.Store(false)
		if !sleep(ctx, r.paced(between(rng, calm))) {
			return
		}
	}
}

// paced stretches a pause between faults by the scenario's pace.
func (r *run) paced(d time.Duration) time.Duration {
	return time.Duration(float64(d) * max(1, r.sc.Pace))
}

func between(rng *rand.Rand, d [2]time.Duration) time.Duration {
	return d[0] + time.Duration(rng.Int64N(int64(d[1]-d[0])+1))
}

// sleep waits for d or until ctx is done, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// brokerError is a kind of request answered with one of errs.
type brokerError struct {
	key   kmsg.Key
	topic string // "" for requests without topics, or all topics
	errs  []*kerr.Error
}

// injectBrokerErrors answers a share of the requests of each kind with its
// errors, in bursts, through kfake's fault injection: the broker rejects a
// faulted entity before acting on it, except REQUEST_TIMED_OUT on commits
// and produce requests, which it applies first, as a real broker may.
func (r *run) injectBrokerErrors(ctx context.Context, rng *rand.Rand, share float64, kinds []brokerError) {
	var on atomic.Bool
	type installed struct {
		label string
		h     *kfake.FaultHandle
	}
	var hs []installed
	for _, k := range kinds {
		p := share / float64(len(k.errs))
		for _, e := range k.errs {
			h := r.cluster.Fault(kfake.Fault{
				Keys:  []kmsg.Key{k.key},
				Topic: k.topic,
				Err:   e,
				Count: -1,
				When:  func(kmsg.Request) bool { return on.Load() && rand.Float64() < p },
			})
			hs = append(hs, installed{fmt.Sprintf("broker %s %s", k.key.Name(), e.Message), h})
		}
	}
	r.bursts(ctx, rng, &on, [2]time.Duration{300 * time.Millisecond, 800 * time.Millisecond}, [2]time.Duration{200 * time.Millisecond, 700 * time.Millisecond})
	for _, i := range hs {
		i.h.Remove()
		r.hist.fault(i.label, int64(i.h.Hits()))
	}
}

// groupKeys are the requests of group membership.
var groupKeys = []kmsg.Key{kmsg.JoinGroup, kmsg.SyncGroup, kmsg.Heartbeat}

// faultable reports whether a request may be delayed or dropped: produce
// requests only if they write to the dead-letter topic, so that the
// workload's own producer is spared.
func (r *run) faultable(req kmsg.Request) bool {
	pr, ok := req.(*kmsg.ProduceRequest)
	if !ok {
		return true
	}
	return slices.ContainsFunc(pr.Topics, func(t kmsg.ProduceRequestTopic) bool {
		return t.Topic == r.dlqTopic || t.TopicID == r.dlqTopicID
	})
}

// control installs a control function for each key that calls fn for
// requests while on is set, and removes itself once off is set.
func (r *run) control(keys []kmsg.Key, on, off *atomic.Bool, fn func(kmsg.Request) (kmsg.Response, error, bool)) {
	for _, key := range keys {
		r.cluster.ControlKey(key.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
			if off.Load() {
				r.cluster.DropControl()
				return nil, nil, false
			}
			if !on.Load() || !r.faultable(req) {
				return nil, nil, false
			}
			return fn(req)
		})
	}
}

// sleep holds req for d without holding up the broker's other connections.
// A request is held at most once: kfake races with itself when a second
// control function sleeps a request that a first one already slept.
func (r *run) sleep(req kmsg.Request, d time.Duration) {
	r.sleptMu.Lock()
	_, again := r.slept[req]
	if !again {
		now := time.Now()
		if len(r.slept) > 1024 {
			maps.DeleteFunc(r.slept, func(_ kmsg.Request, at time.Time) bool { return now.Sub(at) > time.Minute })
		}
		r.slept[req] = now
	}
	r.sleptMu.Unlock()
	if !again {
		r.cluster.SleepControl(func() { time.Sleep(d) })
	}
}

// injectSlow delays a share of the responses to the members' requests by
// 50 to 400 ms, in bursts.
func (r *run) injectSlow(ctx context.Context, rng *rand.Rand) {
	var on, off atomic.Bool
	var n atomic.Int64
	keys := append([]kmsg.Key{kmsg.Fetch, kmsg.OffsetCommit, kmsg.OffsetFetch, kmsg.ListOffsets, kmsg.Produce}, groupKeys...)
	r.control(keys, &on, &off, func(req kmsg.Request) (kmsg.Response, error, bool) {
		if rand.Float64() >= 0.25 {
			return nil, nil, false
		}
		n.Add(1)
		r.sleep(req, time.Duration(50+rand.IntN(351))*time.Millisecond)
		return nil, nil, false
	})
	r.bursts(ctx, rng, &on, [2]time.Duration{400 * time.Millisecond, time.Second}, [2]time.Duration{200 * time.Millisecond, 600 * time.Millisecond})
	off.Store(true)
	r.hist.fault("slow response", n.Load())
}

var errDisconnect = errors.New("injected disconnect")

// injectTimeouts answers with REQUEST_TIMED_OUT, closes connections in the
// middle of requests, and now and then leaves a request unanswered, so
// that the client times it out.
func (r *run) injectTimeouts(ctx context.Context, rng *rand.Rand) {
	var on, off atomic.Bool
	var drops, hangs atomic.Int64
	var lastHang atomic.Int64
	drop := append([]kmsg.Key{kmsg.Fetch, kmsg.OffsetCommit, kmsg.Produce}, groupKeys...)
	r.control(drop, &on, &off, func(req kmsg.Request) (kmsg.Response, error, bool) {
		x := rand.Float64()
		switch {
		case x < 0.05:
			r.cluster.KeepControl()
			drops.Add(1)
			return nil, errDisconnect, true
		case x < 0.08 && req.Key() != kmsg.JoinGroup.Int16() && req.Key() != kmsg.SyncGroup.Int16():
			// Joins wait for the rebalance timeout; leave them be.
			now := time.Now().UnixNano()
			if last := lastHang.Load(); now-last > int64(1500*time.Millisecond) && lastHang.CompareAndSwap(last, now) {
				r.cluster.KeepControl()
				hangs.Add(1)
				return nil, nil, true
			}
		}
		return nil, nil, false
	})
	done := make(chan struct{})
	errRng := rand.New(rand.NewPCG(rng.Uint64(), 1))
	go func() {
		defer close(done)
		r.injectBrokerErrors(ctx, errRng, 0.15, []brokerError{
			{key: kmsg.Fetch, topic: r.topic, errs: []*kerr.Error{kerr.RequestTimedOut}},
			{key: kmsg.OffsetCommit, errs: []*kerr.Error{kerr.RequestTimedOut}},
			{key: kmsg.Produce, topic: r.dlqTopic, errs: []*kerr.Error{kerr.RequestTimedOut}},
		})
	}()
	r.bursts(ctx, rng, &on, [2]time.Duration{400 * time.Millisecond, time.Second}, [2]time.Duration{300 * time.Millisecond, 800 * time.Millisecond})
	off.Store(true)
	<-done
	r.hist.fault("dropped connection", drops.Load())
	r.hist.fault("unanswered request", hangs.Load())
}

// injectExpiry stalls the heartbeats of a random member of a random group
// for twice the session timeout, so that the group expires it and moves
// its partitions while it still handles their records.
func (r *run) injectExpiry(ctx context.Context, rng *rand.Rand) {
	stall := 2 * r.sc.Timing.Session
	for sleep(ctx, r.paced(between(rng, [2]time.Duration{time.Second, 2500 * time.Millisecond}))) {
		group := r.groups[rng.IntN(len(r.groups))]
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		described, err := r.cluster.Admin.DescribeGroups(dctx, group)
		cancel()
		if err != nil {
			continue
		}
		ms := described[group].Members
		if len(ms) == 0 {
			continue
		}
		target := ms[rng.IntN(len(ms))].MemberID
		var used atomic.Bool
		r.cluster.ControlKey(kmsg.Heartbeat.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
			if req.(*kmsg.HeartbeatRequest).MemberID != target {
				return nil, nil, false
			}
			r.cluster.DropControl()
			if used.CompareAndSwap(false, true) {
				r.sleep(req, stall)
			}
			return nil, nil, false
		})
		r.hist.fault("session expiry", 1)
	}
}

// injectRegistry fails the registry in bursts: 5xx answers, connections
// closed without an answer, and answers slower than the client waits.
func (r *run) injectRegistry(ctx context.Context, rng *rand.Rand) {
	modes := []struct {
		name  string
		fault srfake.Interceptor
	}{
		{"registry 503", kafkatest.Status(http.StatusServiceUnavailable, 50003)},
		{"registry 500", kafkatest.Status(http.StatusInternalServerError, 50001)},
		{"registry outage", func(w http.ResponseWriter, _ *http.Request) bool {
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
			return true
		}},
		{"registry too slow", func(w http.ResponseWriter, req *http.Request) bool {
			select {
			case <-time.After(1500 * time.Millisecond):
			case <-req.Context().Done():
			}
			return false
		}},
	}
	counts := make([]atomic.Int64, len(modes))
	defer r.registry.SetFault(nil)
	for {
		i := rng.IntN(len(modes))
		r.registry.SetFault(func(w http.ResponseWriter, req *http.Request) bool {
			counts[i].Add(1)
			return modes[i].fault(w, req)
		})
		if !sleep(ctx, between(rng, [2]time.Duration{300 * time.Millisecond, 900 * time.Millisecond})) {
			break
		}
		r.registry.SetFault(nil)
		if !sleep(ctx, r.paced(between(rng, [2]time.Duration{200 * time.Millisecond, 700 * time.Millisecond}))) {
			break
		}
	}
	for i, m := range modes {
		r.hist.fault(m.name, counts[i].Load())
	}
}

// injectSink cycles the sink through refusing, slow and lost-answer
// periods with calm ones in between.
func (r *run) injectSink(ctx context.Context, rng *rand.Rand) {
	modes := []sinkMode{sinkFail, sinkSlow, sinkLostAck}
	defer func() {
		if err := setSinkMode(r.dir, sinkOK); err != nil {
			r.hist.problem("resetting the sink: %v", err)
		}
	}()
	for {
		m := modes[rng.IntN(len(modes))]
		if err := setSinkMode(r.dir, m); err != nil {
			r.hist.problem("setting the sink: %v", err)
			return
		}
		r.hist.fault("sink period "+string(m), 1)
		if !sleep(ctx, between(rng, [2]time.Duration{200 * time.Millisecond, 600 * time.Millisecond})) {
			return
		}
		if err := setSinkMode(r.dir, sinkOK); err != nil {
			r.hist.problem("setting the sink: %v", err)
			return
		}
		if !sleep(ctx, r.paced(between(rng, [2]time.Duration{300 * time.Millisecond, 800 * time.Millisecond}))) {
			return
		}
	}
}

// injectKills SIGKILLs a random member process of each group in turn every
// 300 to 900 ms and starts another in its place.
func (r *run) injectKills(ctx context.Context, rng *rand.Rand) {
	for i := 0; sleep(ctx, r.paced(between(rng, [2]time.Duration{300 * time.Millisecond, 900 * time.Millisecond}))); i++ {
		c := r.members.randomChild(r.groups[i%len(r.groups)], rng)
		if c == nil {
			continue
		}
		c.kill()
		r.hist.fault("kill", 1)
		sleep(ctx, between(rng, [2]time.Duration{0, 300 * time.Millisecond}))
		if err := r.members.startChild(c.log.group); err != nil {
			r.hist.problem("%v", err)
		}
	}
}

// injectStorm makes in-process members join and leave every 100 to 400 ms,
// keeping between one and stormMax members per group.
func (r *run) injectStorm(ctx context.Context, rng *rand.Rand) {
	const stormMax = 4
	for sleep(ctx, r.paced(between(rng, [2]time.Duration{100 * time.Millisecond, 400 * time.Millisecond}))) {
		group := r.groups[rng.IntN(len(r.groups))]
		n := r.members.inprocCount(group)
		if n <= 1 || n < stormMax && rng.IntN(2) == 0 {
			r.members.startInproc(group)
			r.hist.fault("storm join", 1)
			continue
		}
		r.members.stopRandomInproc(group, rng)
		r.hist.fault("storm leave", 1)
	}
}
