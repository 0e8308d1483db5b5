package brokerfix

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Defaults of the options.
const (
	DefaultInterval        = 500 * time.Millisecond
	DefaultGrace           = time.Second
	DefaultFallbackSession = 45 * time.Second // Kafka's and kgo's default session.timeout.ms
)

// Option configures Start.
type Option func(*config)

type config struct {
	interval time.Duration
	grace    time.Duration
	fallback time.Duration
	logger   *slog.Logger
	onKick   func(Kick)
	now      func() time.Time
}

// WithInterval sets how often the janitor looks at the groups
// (DefaultInterval). Each look is one DescribeGroups of the tracked groups.
func WithInterval(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.interval = d
		}
	}
}

// WithGrace sets how much longer than its session timeout a member must be
// silent before the janitor removes it (DefaultGrace). It gives kfake's own
// timer, where it has one, the first go. A grace below the interval is
// raised to the interval, which the removal bound in the package doc needs.
func WithGrace(d time.Duration) Option {
	return func(c *config) {
		if d >= 0 {
			c.grace = d
		}
	}
}

// WithFallbackSessionTimeout sets the session timeout assumed for a member
// whose JoinGroup the janitor did not see (DefaultFallbackSession): one
// that joined before Start, or whose requests another control answered.
func WithFallbackSessionTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.fallback = d
		}
	}
}

// WithLogger sets where the janitor logs: each removal at Info, failed
// looks and removals at Warn, members already gone at Debug. The default
// discards.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.logger = l
		}
	}
}

// WithOnKick calls fn after each LeaveGroup the janitor sends, once per
// member, from the janitor's goroutine. fn must not block for long.
func WithOnKick(fn func(Kick)) Option {
	return func(c *config) { c.onKick = fn }
}

// Start starts a session janitor for cluster c and returns the function
// that stops it. See the package doc for what it does and why.
//
// It installs observe-only control functions for JoinGroup, SyncGroup,
// Heartbeat, OffsetCommit, TxnOffsetCommit and LeaveGroup. Controls run in
// the order they were added and one that answers a request hides it from
// the ones after it, so start the janitor before installing controls that
// answer or sleep group requests.
//
// The janitor runs until ctx is done or stop is called. stop is idempotent
// and waits for the janitor's goroutine, which it cuts short. Call it
// before c.Close: until then, the janitor's looks at a closed cluster fail
// and are logged. After stop the control functions drop themselves on
// their next call. Start itself must be called while c is running.
func Start(ctx context.Context, c *kfake.Cluster, opts ...Option) (stop func(), err error) {
	cfg := config{
		interval: DefaultInterval,
		grace:    DefaultGrace,
		fallback: DefaultFallbackSession,
		logger:   slog.New(slog.DiscardHandler),
		now:      time.Now,
	}
	for _, o := range opts {
		o(&cfg)
	}
	cfg.grace = max(cfg.grace, cfg.interval)

	cl, err := kgo.NewClient(
		kgo.SeedBrokers(c.ListenAddrs()...),
		kgo.ClientID("kconsumer-brokerfix"),
		kgo.DisableClientMetrics(),
	)
	if err != nil {
		return nil, fmt.Errorf("brokerfix: creating the janitor's client: %w", err)
	}
	j := &janitor{
		cfg: cfg,
		c:   c,
		cl:  cl,
		tr:  newTracker(cfg.grace, cfg.fallback),
	}
	for _, key := range []kmsg.Key{kmsg.JoinGroup, kmsg.SyncGroup, kmsg.Heartbeat, kmsg.OffsetCommit, kmsg.TxnOffsetCommit, kmsg.LeaveGroup} {
		c.ControlKey(int16(key), j.control)
	}

	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		j.run(ctx)
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			j.stopped.Store(true)
			cancel()
			<-done
			cl.Close()
		})
	}, nil
}

type janitor struct {
	cfg     config
	c       *kfake.Cluster
	cl      *kgo.Client
	tr      *tracker
	stopped atomic.Bool
}

// control observes a group request and lets kfake handle it. It runs on a
// goroutine kfake starts while its run loop waits for the result, so it
// only takes the tracker's lock, which nothing holds across I/O, and never
// sends a request (kfake would not read it until this returns).
//
// Returning handled=false never drops a control (maybePopControl,
// cluster.go:1067: only handled && !keep, or drop), so KeepControl is not
// needed; DropControl removes it once the janitor has stopped. Both act on
// the control kfake is currently running, which during this call is this
// one.
func (j *janitor) control(req kmsg.Request) (kmsg.Response, error, bool) {
	if j.stopped.Load() {
		j.c.DropControl()
		return nil, nil, false
	}
	j.tr.observe(req, j.cfg.now())
	return nil, nil, false
}

func (j *janitor) run(ctx context.Context) {
	tick := time.NewTicker(j.cfg.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			j.poll(ctx)
		}
	}
}

// requestTimeout bounds each DescribeGroups and LeaveGroup.
func (j *janitor) requestTimeout() time.Duration { return max(5*time.Second, 2*j.cfg.interval) }

// poll takes one look at the tracked groups and removes the members whose
// session has run out.
func (j *janitor) poll(ctx context.Context) {
	names := j.tr.groupNames()
	if len(names) == 0 {
		return
	}
	// The snapshot is a DescribeGroups over the wire, not
	// Cluster.GroupInfo: kfake serves requests one at a time in its run
	// loop and takes the next one only after it has finished the current
	// one, so a DescribeGroups sent now is answered after every request a
	// control function saw before now has been handled. GroupInfo runs as
	// an admin function, which kfake also runs while a control function
	// is in progress (tryControlKey, cluster.go:944-966), so it may see
	// the group before the request just observed; and it blocks forever
	// once the cluster is closed (admin, cluster.go:1299-1305).
	pollStart := j.cfg.now()
	rctx, cancel := context.WithTimeout(ctx, j.requestTimeout())
	defer cancel()
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = names
	resp, err := req.RequestWith(rctx, j.cl)
	if err != nil {
		if ctx.Err() == nil {
			j.cfg.logger.Warn("brokerfix: describing groups failed; no member is judged this round", "groups", names, "err", err)
		}
		return
	}
	answered := j.cfg.now()

	kicks := make(map[string][]Kick)
	for _, rg := range resp.Groups {
		var snap snapshot
		if err := kerr.ErrorForCode(rg.ErrorCode); err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
			j.cfg.logger.Warn("brokerfix: describing a group failed; its members are not judged this round", "group", rg.Group, "err", err)
			continue
		}
		snap.state = rg.State // a group that is gone is "Dead" with no members
		for _, m := range rg.Members {
			snap.members = append(snap.members, snapMember{id: m.MemberID, instanceID: m.InstanceID})
		}
		if ks := j.tr.evaluate(rg.Group, snap, pollStart, answered); len(ks) > 0 {
			kicks[rg.Group] = ks
		}
	}
	for group, ks := range kicks {
		j.leave(ctx, group, ks)
	}
}

// leave removes ks from group with one LeaveGroup (v3+, one entry per
// member).
//
// The entries carry the member ID only, not the instance ID: kfake's
// handleLeave (groups.go:1137-1146) resolves an instance ID to whichever
// member holds it now and ignores the member ID, so if a static member
// restarted between our look and this request, naming its instance would
// remove the live replacement. (Kafka fences a mismatched pair with
// FENCED_INSTANCE_ID instead.) By member ID alone kfake removes exactly
// that member and also drops its instance mapping (removeMember).
func (j *janitor) leave(ctx context.Context, group string, ks []Kick) {
	rctx, cancel := context.WithTimeout(ctx, j.requestTimeout())
	defer cancel()
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Group = group
	for _, k := range ks {
		m := kmsg.NewLeaveGroupRequestMember()
		m.MemberID = k.MemberID
		m.Reason = kmsg.StringPtr(fmt.Sprintf("kconsumer brokerfix: silent for %v, session timeout %v", k.At.Sub(k.LastAlive).Round(time.Millisecond), k.Session))
		req.Members = append(req.Members, m)
	}
	resp, err := req.RequestWith(rctx, j.cl)
	errs := make(map[string]error, len(ks))
	switch {
	case err != nil:
	case resp.ErrorCode != 0:
		err = kerr.ErrorForCode(resp.ErrorCode)
	default:
		for _, m := range resp.Members {
			errs[m.MemberID] = kerr.ErrorForCode(m.ErrorCode)
		}
	}
	for _, k := range ks {
		k.Err = err
		if k.Err == nil {
			k.Err = errs[k.MemberID]
		}
		attrs := []any{
			"group", k.Group, "member", k.MemberID,
			"silent", k.At.Sub(k.LastAlive).Round(time.Millisecond), "session", k.Session,
		}
		if k.InstanceID != nil {
			attrs = append(attrs, "instance", *k.InstanceID)
		}
		switch {
		case k.Err == nil:
			j.cfg.logger.Info("brokerfix: removed a group member silent past its session timeout that kfake did not expire", attrs...)
		case errors.Is(k.Err, kerr.UnknownMemberID):
			j.cfg.logger.Debug("brokerfix: member already gone", attrs...)
		default:
			j.cfg.logger.Warn("brokerfix: removing a silent group member failed; retrying next round", append(attrs, "err", k.Err)...)
			j.tr.restore(k)
		}
		if j.cfg.onKick != nil {
			j.cfg.onKick(k)
		}
	}
}
