package main

// The recovery benchmark (`go run . -recovery`): how long the partitions of
// a consumer process stall after it is SIGKILLed and restarted a second
// later, for dynamic members, static members (KIP-345) and the
// next-generation protocol (KIP-848), each with the Consumer's and the
// broker's default timeouts.
//
// Each repetition gets a fresh topic and group. The parent produces to every
// partition at a steady rate and starts the member processes (`bench
// member`), which report their assignments and, per partition, the time of
// handled records on stdout. Once the group is stable it SIGKILLs one
// member, starts it again with the same arguments -recovery-restart later,
// and measures, from the SIGKILL, when each partition the killed member
// owned is handled again by anyone, and when the group is back to its
// pre-kill assignment.

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// recoveryOptions are the flags of the recovery benchmark.
type recoveryOptions struct {
	enabled    bool
	modes      string
	plan       []modePlan
	members    int
	partitions int
	rate       int
	restart    time.Duration
	timeout    time.Duration
	settle     time.Duration
	heartbeat  time.Duration
	// nextGenHeartbeat is the broker's group.consumer.heartbeat.interval.ms.
	nextGenHeartbeat time.Duration
	session          time.Duration
	logs             string
	out              string
}

// modePlan is a mode and how many repetitions it runs.
type modePlan struct {
	Mode string `json:"mode"`
	Reps int    `json:"reps"`
}

const defaultRecoveryModes = "dynamic:2,static:5,next-gen:2"

func addRecoveryFlags(fs *flag.FlagSet, r *recoveryOptions) {
	fs.BoolVar(&r.enabled, "recovery", false, "measure the time to recover after a SIGKILL (the -recovery-* flags, -partitions and -out apply) instead of throughput")
	fs.StringVar(&r.modes, "recovery-modes", defaultRecoveryModes, "group modes to measure and their repetitions, mode[:reps] comma separated; modes: "+strings.Join(recoveryModes, ", "))
	fs.IntVar(&r.members, "recovery-members", 3, "consumer processes in the group")
	fs.IntVar(&r.rate, "recovery-rate", 50, "records produced per second to each partition")
	fs.DurationVar(&r.restart, "recovery-restart", time.Second, "how long after the SIGKILL the member starts again")
	fs.DurationVar(&r.timeout, "recovery-timeout", 90*time.Second, "give up on a group that has not formed, or recovered after the kill, by then")
	fs.DurationVar(&r.heartbeat, "recovery-heartbeat", 0, "kgo.HeartbeatInterval of the members (0: the Consumer's default, 3s, 500ms for static members)")
	fs.DurationVar(&r.session, "recovery-session-timeout", 0, "kgo.SessionTimeout of the members (0: the Consumer's default, 45s)")
	fs.StringVar(&r.logs, "recovery-logs", "", "directory for kgo's debug log of every member (empty: none)")
}

func parseModes(s string) ([]modePlan, error) {
	var plan []modePlan
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		name, reps, hasReps := strings.Cut(f, ":")
		p := modePlan{Mode: name, Reps: 1}
		if !slices.Contains(recoveryModes, name) {
			return nil, fmt.Errorf("unknown recovery mode %q; known: %s", name, strings.Join(recoveryModes, ", "))
		}
		if hasReps {
			n, err := strconv.Atoi(reps)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("bad repetitions in %q: want mode:N with N ≥ 1", f)
			}
			p.Reps = n
		}
		if slices.ContainsFunc(plan, func(q modePlan) bool { return q.Mode == name }) {
			return nil, fmt.Errorf("recovery mode %q given twice", name)
		}
		plan = append(plan, p)
	}
	if len(plan) == 0 {
		return nil, errors.New("no recovery mode given")
	}
	return plan, nil
}

// recoveryMain runs the recovery benchmark and writes its results.
func recoveryMain(ctx context.Context, r recoveryOptions, cmdline []string) error {
	var err error
	if r.plan, err = parseModes(r.modes); err != nil {
		return err
	}
	if r.members < 2 || r.partitions < r.members || r.rate < 1 || r.restart < 0 || r.timeout <= 0 {
		return errors.New("-recovery-members must be at least 2 and at most -partitions, -recovery-rate and -recovery-timeout positive, -recovery-restart not negative")
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	rep, err := runRecovery(ctx, exe, r, strings.TrimSpace("go run . "+strings.Join(cmdline, " ")))
	if err != nil {
		return err
	}
	if err := rep.write(r.out); err != nil {
		return err
	}
	fmt.Print(rep.markdown())
	logf("wrote %s.json and %s.md", rep.basePath(r.out), rep.basePath(r.out))
	return nil
}

// runRecovery starts a broker process and runs every repetition; command
// is the command line to report.
func runRecovery(ctx context.Context, exe string, r recoveryOptions, command string) (*recoveryReport, error) {
	if r.logs != "" {
		if err := os.MkdirAll(r.logs, 0o755); err != nil {
			return nil, err
		}
	}
	if r.settle == 0 {
		r.settle = 2 * time.Second
	}
	rep := &recoveryReport{
		Started:  time.Now().UTC(),
		Command:  command,
		Go:       runtime.Version(),
		CPUs:     runtime.NumCPU(),
		LoadFrom: loadAvg(),
		Options: recoveryReportOptions{
			Modes: r.plan, Members: r.members, Partitions: r.partitions, Rate: r.rate,
			Restart: r.restart.String(), Timeout: r.timeout.String(), Settle: r.settle.String(),
			Heartbeat: durationOrDefault(r.heartbeat, "3s, 500ms for static members (Consumer defaults)"),
			Session:   durationOrDefault(r.session, "45s (Consumer default)"),
			Rebalance: "1m0s (Consumer default)", CommitInterval: "1s (Consumer default)",
		},
	}
	// The broker seeds a one-record topic it is never asked about; every
	// repetition creates a topic of its own.
	b, err := startBrokerProcess(ctx, exe, brokerSpec{records: 1, sizes: []int{1}, partitions: r.partitions})
	if err != nil {
		return nil, err
	}
	defer b.stop()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(b.info.Addr),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
	)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	rep.Broker, err = brokerGroupConfigs(ctx, cl)
	if err != nil {
		return nil, err
	}
	logf("recovery: broker %s (pid %d); group configs %v; load %s", b.info.Addr, b.pid, rep.Broker, loadAvg())
	r.nextGenHeartbeat = 5 * time.Second
	if v, err := strconv.Atoi(rep.Broker["group.consumer.heartbeat.interval.ms"]); err == nil && v > 0 {
		r.nextGenHeartbeat = time.Duration(v) * time.Millisecond
	}

	// Interleave the modes: repetition 1 of each, then 2 of each, and so on.
	for i := 0; ; i++ {
		ran := false
		for _, p := range r.plan {
			if i >= p.Reps {
				continue
			}
			ran = true
			run := r.repetition(ctx, exe, b, cl, p.Mode, i)
			rep.Runs = append(rep.Runs, run)
			logf("recovery: %s", run.line())
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
		}
		if !ran {
			break
		}
		rep.Loads = append(rep.Loads, loadAvg())
	}
	rep.LoadTo = loadAvg()
	rep.Finished = time.Now().UTC()
	rep.summarize()
	return rep, nil
}

func durationOrDefault(d time.Duration, def string) string {
	if d == 0 {
		return def
	}
	return d.String()
}

// brokerGroupConfigs returns the broker's group timeouts.
func brokerGroupConfigs(ctx context.Context, cl *kgo.Client) (map[string]string, error) {
	names := []string{
		"group.min.session.timeout.ms", "group.max.session.timeout.ms",
		"group.consumer.session.timeout.ms", "group.consumer.heartbeat.interval.ms",
	}
	req := kmsg.NewPtrDescribeConfigsRequest()
	res := kmsg.NewDescribeConfigsRequestResource()
	res.ResourceType = kmsg.ConfigResourceTypeBroker
	res.ConfigNames = names
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, fmt.Errorf("describing the broker's configs: %w", err)
	}
	out := make(map[string]string)
	for _, r := range resp.Resources {
		for _, c := range r.Configs {
			if c.Value != nil {
				out[c.Name] = *c.Value
			}
		}
	}
	return out, nil
}

func createTopic(ctx context.Context, cl *kgo.Client, topic string, partitions int) error {
	req := kmsg.NewPtrCreateTopicsRequest()
	t := kmsg.NewCreateTopicsRequestTopic()
	t.Topic = topic
	t.NumPartitions = int32(partitions)
	t.ReplicationFactor = 1
	req.Topics = append(req.Topics, t)
	req.TimeoutMillis = 10_000
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("creating %s: %w", topic, err)
	}
	for _, t := range resp.Topics {
		if t.ErrorCode != 0 {
			msg := ""
			if t.ErrorMessage != nil {
				msg = *t.ErrorMessage
			}
			return fmt.Errorf("creating %s: error code %d %s", topic, t.ErrorCode, msg)
		}
	}
	return nil
}

// producer writes one record to every partition of a topic rate times a
// second until stopped.
type producer struct {
	cancel   context.CancelFunc
	done     chan struct{}
	produced atomic.Int64
	failed   atomic.Int64
	firstErr atomic.Value
}

func startProducer(ctx context.Context, cl *kgo.Client, topic string, partitions, rate int) *producer {
	ctx, cancel := context.WithCancel(ctx)
	p := &producer{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		t := time.NewTicker(time.Second / time.Duration(rate))
		defer t.Stop()
		value := make([]byte, 100)
		for n := 0; ; n++ {
			for part := range partitions {
				r := &kgo.Record{Topic: topic, Partition: int32(part), Key: fmt.Appendf(nil, "k%d", n), Value: value}
				cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
					if err == nil {
						p.produced.Add(1)
					} else if !errors.Is(err, context.Canceled) {
						p.failed.Add(1)
						p.firstErr.CompareAndSwap(nil, err.Error())
					}
				})
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return p
}

func (p *producer) stop() {
	p.cancel()
	<-p.done
}

// member is one incarnation of a member process.
type member struct {
	name    string // member-N, the slot it fills; its InstanceID in static mode
	inc     int    // 1 for the first process of the slot, 2 for the restarted one
	args    []string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	pid     int
	started time.Time // before exec
	stderr  *tailWriter
	done    chan struct{} // closed when stdout is drained and the process waited
	exitErr error
}

func (m *member) String() string {
	if m.inc > 1 {
		return fmt.Sprintf("%s (restarted)", m.name)
	}
	return m.name
}

// memberEvent is a line a member printed.
type memberEvent struct {
	m         *member
	kind      string // start, running, assigned, revoked, lost, rec, exit; gone when the process ended
	at        time.Time
	parts     []int32
	partition int32
	offset    int64
	text      string
}

func startMember(ctx context.Context, exe, name string, inc int, args []string, events chan<- memberEvent, quit <-chan struct{}) (*member, error) {
	m := &member{name: name, inc: inc, args: args, stderr: &tailWriter{max: 4096}, done: make(chan struct{})}
	m.cmd = exec.CommandContext(ctx, exe, args...)
	m.cmd.Stderr = m.stderr
	var err error
	if m.stdin, err = m.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := m.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	m.started = time.Now()
	if err := m.cmd.Start(); err != nil {
		return nil, err
	}
	m.pid = m.cmd.Process.Pid
	send := func(ev memberEvent) {
		select {
		case events <- ev:
		case <-quit:
		}
	}
	go func() {
		defer close(m.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			ev, err := parseMemberLine(sc.Text())
			if err != nil {
				continue
			}
			ev.m = m
			send(ev)
		}
		m.exitErr = m.cmd.Wait()
		send(memberEvent{m: m, kind: "gone", at: time.Now()})
	}()
	return m, nil
}

func parseMemberLine(line string) (memberEvent, error) {
	f := strings.Fields(line)
	if len(f) < 2 {
		return memberEvent{}, fmt.Errorf("short line %q", line)
	}
	ns, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return memberEvent{}, fmt.Errorf("bad time in %q", line)
	}
	ev := memberEvent{kind: f[0], at: time.Unix(0, ns)}
	switch ev.kind {
	case "assigned", "revoked", "lost":
		if len(f) != 3 {
			return ev, fmt.Errorf("bad line %q", line)
		}
		if f[2] != "-" {
			for _, s := range strings.Split(f[2], ",") {
				p, err := strconv.Atoi(s)
				if err != nil {
					return ev, fmt.Errorf("bad partition in %q", line)
				}
				ev.parts = append(ev.parts, int32(p))
			}
		}
	case "rec":
		if len(f) != 4 {
			return ev, fmt.Errorf("bad line %q", line)
		}
		p, err1 := strconv.Atoi(f[2])
		o, err2 := strconv.ParseInt(f[3], 10, 64)
		if err1 != nil || err2 != nil {
			return ev, fmt.Errorf("bad line %q", line)
		}
		ev.partition, ev.offset = int32(p), o
	case "exit":
		ev.text = strings.Join(f[2:], " ")
	}
	return ev, nil
}

// stop closes the member's stdin, which stops it cleanly, and kills it if
// it has not exited within grace.
func (m *member) stop(grace time.Duration) {
	m.stdin.Close()
	select {
	case <-m.done:
	case <-time.After(grace):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}

// group is the parent's view of one repetition's members: who owns which
// partition, and the records they handled.
type group struct {
	partitions int
	members    []*member // current incarnation of each slot
	owned      map[*member]map[int32]bool
	assignedAt map[*member]map[int32]time.Time
	lastRec    []memberEvent // per partition, the latest record reported
	dead       map[*member]bool
	changed    time.Time // parent time of the last ownership change
	events     []memberEvent
}

func newGroup(partitions int) *group {
	return &group{
		partitions: partitions,
		owned:      make(map[*member]map[int32]bool),
		assignedAt: make(map[*member]map[int32]time.Time),
		lastRec:    make([]memberEvent, partitions),
		dead:       make(map[*member]bool),
	}
}

func (g *group) apply(ev memberEvent) {
	g.events = append(g.events, ev)
	m := ev.m
	if g.owned[m] == nil {
		g.owned[m] = make(map[int32]bool)
		g.assignedAt[m] = make(map[int32]time.Time)
	}
	switch ev.kind {
	case "assigned":
		for _, p := range ev.parts {
			g.owned[m][p] = true
			g.assignedAt[m][p] = ev.at
		}
		g.changed = time.Now()
	case "revoked", "lost":
		for _, p := range ev.parts {
			delete(g.owned[m], p)
		}
		g.changed = time.Now()
	case "rec":
		if int(ev.partition) < g.partitions && !g.dead[m] {
			g.lastRec[ev.partition] = ev
		}
	case "gone":
		g.dead[m] = true
		g.changed = time.Now()
	}
}

// stable tells whether every partition is owned by exactly one live
// member, the members own equal shares (±1), and every partition was
// handled by its owner since it was assigned.
func (g *group) stable() bool {
	owners := make([]*member, g.partitions)
	lo, hi := g.partitions/len(g.members), (g.partitions+len(g.members)-1)/len(g.members)
	for _, m := range g.members {
		if g.dead[m] {
			return false
		}
		n := len(g.owned[m])
		if n < lo || n > hi {
			return false
		}
		for p := range g.owned[m] {
			if int(p) >= g.partitions || owners[p] != nil {
				return false
			}
			owners[p] = m
		}
	}
	for p, m := range owners {
		if m == nil {
			return false
		}
		r := g.lastRec[p]
		if r.m != m || !r.at.After(g.assignedAt[m][int32(p)]) {
			return false
		}
	}
	return true
}

// assignment returns the partitions each slot's current member owns.
func (g *group) assignment() map[string][]int32 {
	out := make(map[string][]int32)
	for _, m := range g.members {
		if g.dead[m] {
			continue
		}
		out[m.name] = slices.Sorted(maps.Keys(g.owned[m]))
	}
	return out
}

// repetition runs one repetition of mode and measures it.
func (r recoveryOptions) repetition(ctx context.Context, exe string, b *brokerProcess, cl *kgo.Client, mode string, rep int) (run recoveryRun) {
	run = recoveryRun{Mode: mode, Rep: rep + 1, Members: r.members,
		ProcessUpMs: -1, RunningMs: -1, AssignedMs: -1, FirstRecordMs: -1, StallMs: -1, RebalancedMs: -1, OthersMaxGapMs: -1}
	fail := func(format string, args ...any) recoveryRun {
		run.Err = fmt.Sprintf(format, args...)
		return run
	}
	name := fmt.Sprintf("recovery-%s-%d-%d", mode, rep+1, time.Now().UnixMilli())
	if err := createTopic(ctx, cl, name, r.partitions); err != nil {
		return fail("%v", err)
	}
	prod := startProducer(ctx, cl, name, r.partitions, r.rate)
	defer func() {
		prod.stop()
		run.Produced = prod.produced.Load()
		if n := prod.failed.Load(); n > 0 && run.Err == "" {
			run.Err = fmt.Sprintf("%d records failed to produce, the first: %v", n, prod.firstErr.Load())
		}
	}()

	events := make(chan memberEvent, 4096)
	quit := make(chan struct{})
	g := newGroup(r.partitions)
	var all []*member
	defer func() {
		// Stop the members, still taking their events so that none
		// blocks writing one.
		var wg sync.WaitGroup
		for _, m := range all {
			wg.Go(func() { m.stop(20 * time.Second) })
		}
		stopped := make(chan struct{})
		go func() { wg.Wait(); close(stopped) }()
		for {
			select {
			case ev := <-events:
				if ev.kind == "exit" && ev.text != "ok" && run.Err == "" && !g.dead[ev.m] {
					run.Err = fmt.Sprintf("%s exited: %s", ev.m, ev.text)
				}
				continue
			case <-stopped:
			}
			break
		}
		close(quit)
	}()
	argsOf := func(slot string) []string {
		args := []string{"member", "-addr", b.info.Addr, "-topic", name, "-group", name, "-mode", mode,
			"-id", slot, "-partitions", strconv.Itoa(r.partitions)}
		if r.heartbeat > 0 {
			args = append(args, "-heartbeat", r.heartbeat.String())
		}
		if r.session > 0 {
			args = append(args, "-session-timeout", r.session.String())
		}
		if r.logs != "" {
			args = append(args, "-log", filepath.Join(r.logs, fmt.Sprintf("%s-%d-%s.log", mode, rep+1, slot)))
		}
		return args
	}
	formStart := time.Now()
	for i := range r.members {
		slot := fmt.Sprintf("member-%d", i)
		m, err := startMember(ctx, exe, slot, 1, argsOf(slot), events, quit)
		if err != nil {
			return fail("starting %s: %v", slot, err)
		}
		all = append(all, m)
		g.members = append(g.members, m)
	}

	// Wait for the group to form and settle.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(r.timeout)
	for {
		select {
		case ev := <-events:
			g.apply(ev)
			if ev.kind == "gone" {
				return fail("%s exited before the kill: %v; stderr: %s", ev.m, ev.m.exitErr, tail(ev.m.stderr.String(), 600))
			}
			continue
		case <-tick.C:
		case <-ctx.Done():
			return fail("%v", ctx.Err())
		}
		if g.stable() && time.Since(g.changed) >= r.settle {
			break
		}
		if time.Now().After(deadline) {
			return fail("the group did not settle within %v: assignment %v", r.timeout, g.assignment())
		}
	}
	run.FormedMs = ms(time.Since(formStart) - r.settle)

	// Kill at a random point of the members' heartbeat cycle: they
	// heartbeat in step from the moment the group formed, and how long a
	// rebalance waits for them depends on where in the cycle it starts.
	hb := r.heartbeat
	if hb == 0 {
		hb = 3 * time.Second // the Consumer's default
	}
	if mode == modeNextGen || mode == modeNextGenStatic {
		hb = r.nextGenHeartbeat
	}
	jitter := rand.N(hb)
	run.KillDelayMs = ms(jitter)
	wait := time.NewTimer(jitter)
	defer wait.Stop()
waiting:
	for {
		select {
		case ev := <-events:
			g.apply(ev)
			if ev.kind == "gone" {
				return fail("%s exited before the kill: %v; stderr: %s", ev.m, ev.m.exitErr, tail(ev.m.stderr.String(), 600))
			}
		case <-wait.C:
			break waiting
		case <-ctx.Done():
			return fail("%v", ctx.Err())
		}
	}
	if !g.stable() {
		return fail("the assignment changed before the kill: %v", g.assignment())
	}
	pre := g.assignment()
	run.Before = pre

	// Kill one member, restart it.
	vi := rep % r.members
	victim := g.members[vi]
	run.Victim = victim.name
	run.VictimPartitions = pre[victim.name]
	killed := time.Now()
	if err := syscall.Kill(victim.pid, syscall.SIGKILL); err != nil {
		return fail("killing %s: %v", victim, err)
	}
	g.dead[victim] = true
	run.KilledAt = killed.UTC()
	restartAt := time.NewTimer(r.restart)
	defer restartAt.Stop()
	var restarted *member
	deadline = killed.Add(r.timeout)
	var settledAt time.Time
	for {
		select {
		case ev := <-events:
			g.apply(ev)
			if ev.kind == "gone" && ev.m != victim {
				return fail("%s exited after the kill: %v; stderr: %s", ev.m, ev.m.exitErr, tail(ev.m.stderr.String(), 600))
			}
			continue
		case <-restartAt.C:
			m, err := startMember(ctx, exe, victim.name, 2, victim.args, events, quit)
			if err != nil {
				return fail("restarting %s: %v", victim.name, err)
			}
			all = append(all, m)
			g.members[vi] = m
			restarted = m
			run.RestartMs = ms(m.started.Sub(killed))
			continue
		case <-tick.C:
		case <-ctx.Done():
			return fail("%v", ctx.Err())
		}
		if restarted != nil && g.stable() && recoveredAll(g, run.VictimPartitions, killed) {
			// Watch a little longer: a pause of another partition
			// would show, and so would a late move.
			if settledAt.IsZero() {
				settledAt = time.Now()
			}
			if time.Since(settledAt) >= time.Second {
				break
			}
		} else {
			settledAt = time.Time{}
		}
		if time.Now().After(deadline) {
			run.measure(g, killed, victim, restarted, pre)
			return fail("not recovered %v after the kill: assignment %v", r.timeout, g.assignment())
		}
	}
	run.measure(g, killed, victim, restarted, pre)
	return run
}

// recoveredAll tells whether every partition of ps was handled by a live
// member after killed.
func recoveredAll(g *group, ps []int32, killed time.Time) bool {
	for _, p := range ps {
		r := g.lastRec[p]
		if r.m == nil || g.dead[r.m] || !r.at.After(killed) {
			return false
		}
	}
	return true
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
