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
	"sync"
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
	// Stop SIGSTOPs a member process for 8 to 10 s, then SIGCONTs it.
	Stop
	// TermKill sends a member process SIGTERM and SIGKILL 100 ms later,
	// in the middle of its graceful shutdown, and starts another.
	TermKill
	// EarlyKill starts a member process and SIGKILLs it within 200 ms,
	// before or while it joins its group.
	EarlyKill

	// AllFaults is every fault the short scenarios and the soak combine.
	// It leaves out the process faults of the defaults scenario (Stop,
	// TermKill, EarlyKill), whose rhythm is tuned to the library's default
	// timeouts: an 8 s SIGSTOP outlives a short session many times over.
	AllFaults = Kill | Storm | FetchErrors | CommitErrors | GroupErrors | DLQErrors | SlowResponses |
		Timeouts | RegistryErrors | SinkFaults | SessionExpiry | BadInput
	// ProcessFaults are the faults of the defaults scenario's rhythm (see
	// injectProcessFaults).
	ProcessFaults = Kill | Stop | TermKill | EarlyKill
	// everyFault is every kind of fault.
	everyFault = AllFaults | ProcessFaults
)

var faultNames = []string{"kill", "storm", "fetch-errors", "commit-errors", "group-errors", "dlq-errors",
	"slow-responses", "timeouts", "registry-errors", "sink-faults", "session-expiry", "bad-input",
	"stop", "term-kill", "early-kill"}

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

// Kinds returns the single faults f combines, in the order of their bits.
func (f Fault) Kinds() []Fault {
	var out []Fault
	for i := range faultNames {
		if k := Fault(1) << i; f&k != 0 {
			out = append(out, k)
		}
	}
	return out
}

// formatFired formats fired faults by kind, in the order of their bits.
func formatFired(fired map[Fault]int64) string {
	var parts []string
	for _, k := range everyFault.Kinds() {
		if n := fired[k]; n > 0 {
			parts = append(parts, fmt.Sprintf("%v=%d", k, n))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// bursts alternates stormy and calm periods, with on set while stormy,
// until ctx is done; it leaves on false. Calm periods are stretched by the
// scenario's pace. begin, unless nil, runs before each stormy period.
func (r *run) bursts(ctx context.Context, rng *rand.Rand, on *atomic.Bool, stormy, calm [2]time.Duration, begin func()) {
	defer on.Store(false)
	for {
		if begin != nil {
			begin()
		}
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

// pauses returns the pauses of an injector that waits between its faults:
// the wait before its first fault is not stretched by the pace, which is
// for the pauses between faults, so that a scenario shorter than a paced
// pause still gets each fault it asks for.
func (r *run) pauses(rng *rand.Rand, d [2]time.Duration) func() time.Duration {
	first := true
	return func() time.Duration {
		p := between(rng, d)
		if first {
			first = false
			return p
		}
		return r.paced(p)
	}
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
// and produce requests, which it applies first, as a real broker may. Each
// burst answers the first request of each kind it meets with one of the
// kind's errors, picked at random, so that a kind of request that is rare
// (a commit, a dead-letter write) meets the fault in every burst it occurs
// in. The requests kfake answered with an error count as fault f.
func (r *run) injectBrokerErrors(ctx context.Context, rng *rand.Rand, f Fault, share float64, kinds []brokerError) {
	var on atomic.Bool
	type installed struct {
		label string
		h     *kfake.FaultHandle
	}
	var hs []installed
	// first[i] is 1 + the index of the error that answers the next
	// request of kinds[i] in this burst, 0 once one did.
	first := make([]atomic.Int32, len(kinds))
	for ki, k := range kinds {
		p := share / float64(len(k.errs))
		for ei, e := range k.errs {
			h := r.cluster.Fault(kfake.Fault{
				Keys:  []kmsg.Key{k.key},
				Topic: k.topic,
				Err:   e,
				Count: -1,
				When: func(kmsg.Request) bool {
					return on.Load() && (first[ki].CompareAndSwap(int32(ei+1), 0) || rand.Float64() < p)
				},
			})
			hs = append(hs, installed{fmt.Sprintf("broker %s %s", k.key.Name(), e.Message), h})
		}
	}
	r.bursts(ctx, rng, &on, [2]time.Duration{300 * time.Millisecond, 800 * time.Millisecond}, [2]time.Duration{200 * time.Millisecond, 700 * time.Millisecond}, func() {
		for ki, k := range kinds {
			first[ki].Store(int32(1 + rng.IntN(len(k.errs))))
		}
	})
	for _, i := range hs {
		i.h.Remove()
		r.hist.fault(f, i.label, int64(i.h.Hits()))
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

// claim reports whether req may be held, once for each request: kfake
// races with itself when a second control function sleeps a request that a
// first one already slept, and runs the control functions again for a
// request that a sleep released.
func (r *run) claim(req kmsg.Request) bool {
	r.sleptMu.Lock()
	defer r.sleptMu.Unlock()
	if _, again := r.slept[req]; again {
		return false
	}
	now := time.Now()
	if len(r.slept) > 1024 {
		maps.DeleteFunc(r.slept, func(_ kmsg.Request, at time.Time) bool { return now.Sub(at) > time.Minute })
	}
	r.slept[req] = now
	return true
}

// sleep holds req for d without holding up the broker's other connections,
// unless it was held before (see claim), and reports whether it held it.
func (r *run) sleep(req kmsg.Request, d time.Duration) bool {
	if !r.claim(req) {
		return false
	}
	r.cluster.SleepControl(func() { time.Sleep(d) })
	return true
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
		if r.sleep(req, time.Duration(50+rand.IntN(351))*time.Millisecond) {
			n.Add(1)
		}
		return nil, nil, false
	})
	r.bursts(ctx, rng, &on, [2]time.Duration{400 * time.Millisecond, time.Second}, [2]time.Duration{200 * time.Millisecond, 600 * time.Millisecond}, nil)
	off.Store(true)
	r.hist.fault(SlowResponses, "slow response", n.Load())
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
		r.injectBrokerErrors(ctx, errRng, Timeouts, 0.15, []brokerError{
			{key: kmsg.Fetch, topic: r.topic, errs: []*kerr.Error{kerr.RequestTimedOut}},
			{key: kmsg.OffsetCommit, errs: []*kerr.Error{kerr.RequestTimedOut}},
			{key: kmsg.Produce, topic: r.dlqTopic, errs: []*kerr.Error{kerr.RequestTimedOut}},
		})
	}()
	r.bursts(ctx, rng, &on, [2]time.Duration{400 * time.Millisecond, time.Second}, [2]time.Duration{300 * time.Millisecond, 800 * time.Millisecond}, nil)
	off.Store(true)
	<-done
	r.hist.fault(Timeouts, "dropped connection", drops.Load())
	r.hist.fault(Timeouts, "unanswered request", hangs.Load())
}

// injectExpiry stalls the heartbeats of a random member of a random group
// for twice the session timeout, so that the group expires it and moves
// its partitions while it still handles their records. A stall counts once
// the broker holds the member's heartbeat; a member that sends none within
// a session timeout (it left, or rejoined under a new ID) is given up, and
// another is picked soon after.
func (r *run) injectExpiry(ctx context.Context, rng *rand.Rand) {
	const retry = 250 * time.Millisecond // after a try that stalled nobody
	stall := 2 * r.sc.Timing.Session
	pauses := r.pauses(rng, [2]time.Duration{time.Second, 2500 * time.Millisecond})
	for pause := pauses(); sleep(ctx, pause); {
		pause = retry
		group, target, ok := r.expiryTarget(ctx, rng)
		if !ok {
			r.logf("session expiry: no member of %s to stall", group)
			continue
		}
		const armed, stalling, givenUp = 0, 1, 2
		var state atomic.Int32
		stalled := make(chan struct{})
		r.cluster.ControlKey(kmsg.Heartbeat.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
			if state.Load() != armed || ctx.Err() != nil {
				r.cluster.DropControl()
				return nil, nil, false
			}
			if req.(*kmsg.HeartbeatRequest).MemberID != target || !r.claim(req) {
				return nil, nil, false
			}
			r.cluster.DropControl()
			if state.CompareAndSwap(armed, stalling) {
				r.hist.fault(SessionExpiry, "session expiry", 1)
				close(stalled)
				r.cluster.SleepControl(func() { time.Sleep(stall) })
			}
			return nil, nil, false
		})
		select {
		case <-stalled:
			r.logf("session expiry: stalling member %s of %s", target, group)
			pause = pauses()
		case <-time.After(r.sc.Timing.Session):
			if !state.CompareAndSwap(armed, givenUp) {
				pause = pauses() // it stalled just now
			} else {
				r.logf("session expiry: member %s of %s sent no heartbeat", target, group)
			}
		case <-ctx.Done():
		}
	}
}

// expiryTarget picks a random group and returns it with the member ID of
// a random member.
func (r *run) expiryTarget(ctx context.Context, rng *rand.Rand) (group, member string, ok bool) {
	group = r.groups[rng.IntN(len(r.groups))]
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	described, err := r.cluster.Admin.DescribeGroups(dctx, group)
	cancel()
	if err != nil {
		return group, "", false
	}
	ms := described[group].Members
	if len(ms) == 0 {
		return group, "", false
	}
	return group, ms[rng.IntN(len(ms))].MemberID, true
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
		r.hist.fault(RegistryErrors, m.name, counts[i].Load())
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
		// The period counts as fired through the members' SinkFault
		// events, once a handler meets it.
		r.hist.note("sink period "+string(m), 1)
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
	pause := r.pauses(rng, [2]time.Duration{300 * time.Millisecond, 900 * time.Millisecond})
	for i := 0; sleep(ctx, pause()); i++ {
		c := r.members.randomChild(r.groups[i%len(r.groups)], rng)
		if c == nil {
			continue
		}
		c.kill()
		r.hist.fault(Kill, "kill", 1)
		sleep(ctx, between(rng, [2]time.Duration{0, 300 * time.Millisecond}))
		if _, err := r.members.startChild(c.log.group); err != nil {
			r.hist.problem("%v", err)
		}
	}
}

// injectStorm makes in-process members join and leave every 100 to 400 ms,
// keeping between one and stormMax members per group.
func (r *run) injectStorm(ctx context.Context, rng *rand.Rand) {
	const stormMax = 4
	pause := r.pauses(rng, [2]time.Duration{100 * time.Millisecond, 400 * time.Millisecond})
	for sleep(ctx, pause()) {
		group := r.groups[rng.IntN(len(r.groups))]
		n := r.members.inprocCount(group)
		if n <= 1 || n < stormMax && rng.IntN(2) == 0 {
			r.members.startInproc(group)
			r.hist.fault(Storm, "storm join", 1)
			continue
		}
		if r.members.stopRandomInproc(group, rng) {
			r.hist.fault(Storm, "storm leave", 1)
		}
	}
}

// The rhythm of the process faults.
var (
	processPause = [2]time.Duration{300 * time.Millisecond, 3 * time.Second}
	stopFor      = [2]time.Duration{8 * time.Second, 10 * time.Second}
	earlyWithin  = [2]time.Duration{0, 200 * time.Millisecond}
)

// termGrace is how long TermKill lets a member shut down before SIGKILL.
const termGrace = 100 * time.Millisecond

// injectProcessFaults hits the member processes every 0.3 to 3 s with one
// of the process faults the scenario asks for (ProcessFaults): a SIGKILL,
// a SIGTERM followed by SIGKILL 100 ms later, a SIGSTOP of 8 to 10 s, or a
// SIGKILL within 200 ms of a new member's start. It goes through the kinds
// in rounds, each in a random order, so that every kind comes once in
// each round. A killed member is replaced; a stopped one is continued
// and back in the set when its pause ends, which may be after ctx is done:
// injectProcessFaults returns once every pause is over. Each fault is
// counted once its signal was delivered, and r.lastFault records when the
// last one ended.
func (r *run) injectProcessFaults(ctx context.Context, rng *rand.Rand) {
	kinds := (r.sc.Faults & ProcessFaults).Kinds()
	var round []Fault
	var paused sync.WaitGroup
	defer paused.Wait()
	pause := r.pauses(rng, processPause)
	for i := 0; sleep(ctx, pause()); i++ {
		if len(round) == 0 {
			round = slices.Clone(kinds)
			rng.Shuffle(len(round), func(a, b int) { round[a], round[b] = round[b], round[a] })
		}
		kind := round[0]
		group := r.groups[i%len(r.groups)]
		switch kind {
		case EarlyKill:
			c, err := r.members.startChild(group)
			if err != nil {
				r.hist.problem("%v", err)
				continue
			}
			time.Sleep(between(rng, earlyWithin))
			r.members.remove(c)
			c.kill()
			r.hist.fault(EarlyKill, "kill at start", 1)
			r.logf("process faults: killed %s at its start", c.log.name)
		case Kill, TermKill:
			c := r.members.randomChild(group, rng)
			if c == nil {
				continue
			}
			switch {
			case kind == Kill:
				c.kill()
				r.hist.fault(Kill, "kill", 1)
			case c.termKill(termGrace):
				r.hist.fault(TermKill, "sigterm, sigkill 100 ms later", 1)
			default:
				r.hist.fault(TermKill, "sigterm, exited within 100 ms", 1)
			}
			r.logf("process faults: %v %s", kind, c.log.name)
			if _, err := r.members.startChild(group); err != nil {
				r.hist.problem("%v", err)
			}
		case Stop:
			c := r.members.randomChild(group, rng)
			if c == nil {
				continue
			}
			d := between(rng, stopFor)
			r.logf("process faults: SIGSTOP %s for %v", c.log.name, d.Round(time.Millisecond))
			paused.Go(func() {
				stopped := c.pause(d)
				r.members.add(c)
				if stopped {
					r.hist.fault(Stop, "sigstop", 1)
					r.faultEnded()
				}
			})
			round = round[1:]
			continue
		}
		round = round[1:]
		r.faultEnded()
	}
}

// faultEnded records that a fault ended now.
func (r *run) faultEnded() {
	now := time.Now().UnixNano()
	for {
		last := r.lastFault.Load()
		if now <= last || r.lastFault.CompareAndSwap(last, now) {
			return
		}
	}
}
