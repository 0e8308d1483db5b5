package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/examples/internal/devstack"
	"github.com/kconsumer/kconsumer/examples/internal/svc"
	"github.com/kconsumer/kconsumer/examples/internal/telemetry"
)

// demo is one run.
type demo struct {
	cfg   config
	out   io.Writer
	began time.Time
	rng   *rand.Rand

	brokers, registryURL, mongoURI string
	cl                             *kgo.Client
	adm                            *kadm.Client

	current, naive, alerts, query, queryNaive *service
	usage                                     []*service // usage#1, then usage#2 from the rebalance on

	malformed *kgo.Record // the record that must end in the DLQ
	total     int64       // records on sensor-data once the producer is done

	rounds   []*stallRound  // the stalls of each kill round
	watchers sync.WaitGroup // measuring them
}

// logf prints a progress line with the time since the start.
func (d *demo) logf(format string, args ...any) {
	fmt.Fprintf(d.out, "[%6.1fs] %s\n", time.Since(d.began).Seconds(), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, cfg config, out io.Writer) (result, error) {
	d := &demo{cfg: cfg, out: out, began: time.Now(), rng: rand.New(rand.NewPCG(cfg.seed, cfg.seed^0x9e3779b97f4a7c15))}
	fmt.Fprintf(out, "kconsumer crash-recovery demo: %d sensors × %d readings, %d partitions, %d kill rounds, seed %d\n",
		cfg.sensors, cfg.messages, cfg.partitions, cfg.kills, cfg.seed)
	logs := filepath.Join(cfg.dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return result{}, err
	}

	stack, err := d.startStack()
	if err != nil {
		return result{}, err
	}
	defer stack.Close()
	if d.cl, err = kgo.NewClient(kgo.SeedBrokers(d.brokers), kgo.ProducerLinger(0)); err != nil {
		return result{}, err
	}
	defer d.cl.Close()
	d.adm = kadm.NewClient(d.cl)
	if err := d.prepare(ctx); err != nil {
		return result{}, err
	}

	bin := cfg.bin
	if bin == "" {
		bin = filepath.Join(cfg.dir, "bin")
		d.logf("building the services (%s)", strings.Join(services, ", "))
		if err := build(ctx, bin, cfg.race); err != nil {
			return result{}, err
		}
	}
	if err := binaries(bin); err != nil {
		return result{}, err
	}

	all, err := d.defineServices(bin, logs)
	if err != nil {
		return result{}, err
	}
	defer func() {
		for _, s := range all {
			s.kill()
		}
	}()
	res, err := d.scenario(ctx, bin, logs)
	if err != nil {
		return res, err
	}
	if cfg.keep {
		// The checks stopped the consumers; they come back to serve.
		for _, s := range all {
			if s.starts > 0 && !s.running() {
				if err := s.start(); err != nil {
					return res, err
				}
			}
		}
		d.printEndpoints()
		<-ctx.Done()
	}
	for _, s := range all {
		_ = s.stop(30 * time.Second)
	}
	return res, nil
}

// startStack starts the in-process servers the environment does not name.
func (d *demo) startStack() (*devstack.Stack, error) {
	cfg := devstack.Config{Partitions: int32(d.cfg.partitions), SessionFloor: 500 * time.Millisecond, DataDir: filepath.Join(d.cfg.dir, "mongo")}
	if d.cfg.brokers == "" {
		cfg.KafkaAddr = d.cfg.kafkaAddr
	}
	if d.cfg.registryURL == "" {
		cfg.RegistryAddr = d.cfg.registryAddr
	}
	if d.cfg.mongoURI == "" {
		cfg.MongoAddr = d.cfg.mongoAddr
	}
	stack, err := devstack.Start(cfg)
	if err != nil {
		return nil, fmt.Errorf("starting the dev stack (is another one running? try -free-ports): %w", err)
	}
	d.brokers = firstOf(d.cfg.brokers, stack.Brokers)
	d.registryURL = firstOf(d.cfg.registryURL, stack.RegistryURL)
	d.mongoURI = firstOf(d.cfg.mongoURI, stack.MongoURI)
	where := func(external string) string {
		if external != "" {
			return "external"
		}
		return "in process"
	}
	d.logf("kafka %s (%s), schema registry %s (%s), mongodb %s (%s)",
		d.brokers, where(d.cfg.brokers), d.registryURL, where(d.cfg.registryURL), d.mongoURI, where(d.cfg.mongoURI))
	return stack, nil
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// prepare makes sure the topics exist and sensor-data is empty, and drops
// the demo's databases.
func (d *demo) prepare(ctx context.Context) error {
	if err := svc.PingKafka(ctx, []string{d.brokers}, 10*time.Second); err != nil {
		return err
	}
	for _, t := range []string{telemetry.Topic, telemetry.DLQTopic, telemetry.AlertsTopic} {
		if _, err := d.adm.CreateTopic(ctx, int32(d.cfg.partitions), -1, nil, t); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("creating topic %s: %w", t, err)
		}
	}
	ends, err := d.adm.ListEndOffsets(ctx, telemetry.Topic)
	if err != nil {
		return err
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	if n > 0 {
		return fmt.Errorf("%s already holds %d records: the demo needs an empty topic", telemetry.Topic, n)
	}
	mc, err := svc.ConnectMongo(ctx, d.mongoURI, 10*time.Second)
	if err != nil {
		return err
	}
	defer mc.Disconnect(context.Background())
	for _, db := range []string{exactDB, naiveDB} {
		if err := mc.Database(db).Drop(ctx); err != nil {
			return fmt.Errorf("dropping database %s: %w", db, err)
		}
	}
	return nil
}

// defineServices sets up the service processes, each on a free port.
func (d *demo) defineServices(bin, logs string) ([]*service, error) {
	var all []*service
	def := func(name, binary string, args ...string) (*service, error) {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		s := &service{name: name, bin: filepath.Join(bin, binary), args: append(args, "-log-format", "json"), addr: addr, logs: logs}
		all = append(all, s)
		return s, nil
	}
	kafka := func(more ...string) []string {
		return append([]string{"-brokers", d.brokers, "-registry", d.registryURL}, more...)
	}
	session := d.cfg.session.String()
	var err error
	if d.current, err = def("current", "current", kafka()...); err != nil {
		return nil, err
	}
	d.current.group = "current"
	for i := 1; i <= 2; i++ {
		u, err := def(fmt.Sprintf("usage#%d", i), "usage", kafka("-mongo", d.mongoURI, "-database", exactDB,
			"-session-timeout", session, "-commit-interval", "200ms")...)
		if err != nil {
			return nil, err
		}
		u.group = "usage"
		d.usage = append(d.usage, u)
	}
	if d.alerts, err = def("alerts", "alerts", kafka("-session-timeout", session)...); err != nil {
		return nil, err
	}
	d.alerts.group = "alerts"
	if d.query, err = def("query", "query", "-mongo", d.mongoURI, "-database", exactDB); err != nil {
		return nil, err
	}
	if d.cfg.naive {
		if d.naive, err = def("usage-naive", "usage", kafka("-naive", "-mongo", d.mongoURI, "-database", naiveDB, "-session-timeout", session)...); err != nil {
			return nil, err
		}
		if d.queryNaive, err = def("query-naive", "query", "-mongo", d.mongoURI, "-database", naiveDB); err != nil {
			return nil, err
		}
	}
	return all, nil
}

// scenario runs the services through the kills and checks the outcome.
func (d *demo) scenario(ctx context.Context, bin, logs string) (result, error) {
	var res result
	// The stalls are measured in the background until they end, or until
	// the scenario does.
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		d.watchers.Wait()
	}()
	first := []*service{d.current, d.usage[0], d.alerts, d.query}
	if d.naive != nil {
		first = append(first, d.naive, d.queryNaive)
	}
	for _, s := range first {
		if err := s.start(); err != nil {
			return res, err
		}
	}
	for _, s := range first {
		if err := s.waitReady(ctx, 60*time.Second); err != nil {
			return res, err
		}
	}
	d.logf("services ready: current, usage, alerts, query%s", map[bool]string{true: ", usage-naive, query-naive"}[d.naive != nil])

	if err := d.sendMalformed(ctx); err != nil {
		return res, err
	}
	truthPath := filepath.Join(d.cfg.dir, "ground-truth.json")
	producer, err := d.startProducer(ctx, bin, logs, truthPath)
	if err != nil {
		return res, err
	}
	defer producer.kill()
	expected := int64(d.cfg.sensors*d.cfg.messages) + 1 // and the malformed record

	rebalanceAt := d.cfg.kills / 2
	var last int64 // usage's progress at the previous kill
	for i := range d.cfg.kills {
		target := killTarget(i, d.cfg.kills, last, expected, d.rng.Float64())
		if err := d.waitProgress(ctx, target, expected); err != nil {
			return res, fmt.Errorf("before kill %d: %w", i+1, err)
		}
		// Each kill hits services that came back from the last one, so
		// that every stall has an end.
		d.awaitStalls(ctx)
		if i == rebalanceAt {
			if err := d.killDuringRebalance(ctx, i+1); err != nil {
				return res, err
			}
			res.rebalanceKills++
		} else if err := d.killRound(ctx, i+1); err != nil {
			return res, err
		}
		res.kills++
		if last, err = d.committed(ctx, "usage"); err != nil {
			return res, err
		}
	}

	for waiting := true; waiting; {
		select {
		case <-producer.done:
			waiting = false
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(50 * time.Millisecond):
			d.reportStalls()
		}
	}
	if err := producer.exitError(); err != nil {
		return res, err
	}
	truth, err := telemetry.ReadTruth(truthPath)
	if err != nil {
		return res, err
	}
	d.logf("producer done: %d readings of %d sensors; waiting for every service to catch up", truth.Messages, len(truth.Sensors))
	d.total = int64(truth.Messages) + 1
	if err := d.waitCaughtUp(ctx); err != nil {
		return res, err
	}
	d.awaitStalls(ctx)
	res.stalls = d.rounds
	for _, r := range d.rounds {
		for _, st := range r.stalls {
			if !st.over() {
				res.fail("after kill %d, partitions %v of %s were not back within %v", r.kill, st.left, st.service, stallLimit)
			}
		}
	}
	return d.check(ctx, truth, res)
}

// killTarget returns how many records usage must have committed before
// kill i of n: a point in the i-th slice of its progress between 5% and 90%
// of the expected records (placed by u in [0, 1)), after the processes
// restarted by the last kill (at progress last) made some progress of their
// own, and never past 90%, which usage always reaches, however far a slow
// restart let it fall behind the producer.
func killTarget(i, n int, last, expected int64, u float64) int64 {
	lo, hi := 0.05, 0.90
	slice := (hi - lo) / float64(n)
	target := int64((lo + slice*(float64(i)+0.2+0.6*u)) * float64(expected))
	target = max(target, last+int64(slice*float64(expected)/4))
	return min(target, int64(hi*float64(expected)))
}

// sendMalformed writes a record no service can decode, with a header of
// its own that its dead letter must keep.
func (d *demo) sendMalformed(ctx context.Context) error {
	r := &kgo.Record{
		Topic:   telemetry.Topic,
		Key:     []byte("sensor-000"),
		Value:   []byte("this is not Avro"),
		Headers: []kgo.RecordHeader{{Key: "origin", Value: []byte("kconsumer-demo")}},
	}
	if err := d.cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		return fmt.Errorf("sending the malformed record: %w", err)
	}
	d.malformed = r
	d.logf("sent a malformed record to %s/%d at offset %d", r.Topic, r.Partition, r.Offset)
	return nil
}

func (d *demo) startProducer(ctx context.Context, bin, logs, truth string) (*service, error) {
	p := &service{name: "producer", bin: filepath.Join(bin, "producer"), logs: logs, args: []string{
		"-brokers", d.brokers, "-registry", d.registryURL, "-log-format", "json",
		"-sensors", strconv.Itoa(d.cfg.sensors), "-count", strconv.Itoa(d.cfg.messages),
		"-interval", d.cfg.interval.String(), "-step", "1m", "-seed", strconv.FormatUint(d.cfg.seed, 10),
		"-partitions", strconv.Itoa(d.cfg.partitions), "-truth", truth,
	}}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	p.addr = addr
	if err := p.start(); err != nil {
		return nil, err
	}
	d.logf("producing %d readings", d.cfg.sensors*d.cfg.messages)
	return p, nil
}

// committed returns the sum of the offsets group committed on sensor-data.
func (d *demo) committed(ctx context.Context, group string) (int64, error) {
	resp, err := d.adm.FetchOffsets(ctx, group)
	if err != nil {
		if errors.Is(err, kerr.GroupIDNotFound) {
			return 0, nil
		}
		return 0, err
	}
	var n int64
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == telemetry.Topic && o.Err == nil && o.At > 0 {
			n += o.At
		}
	})
	return n, nil
}

// waitProgress waits until usage committed target records, printing
// progress every few seconds.
func (d *demo) waitProgress(ctx context.Context, target, expected int64) error {
	deadline := time.Now().Add(5 * time.Minute)
	lastPrint := time.Now()
	for {
		n, err := d.committed(ctx, "usage")
		if err != nil {
			return err
		}
		if n >= target {
			return nil
		}
		d.reportStalls()
		if time.Since(lastPrint) > 5*time.Second {
			d.logf("usage has committed %d of %d records (%.0f%%)", n, expected, 100*float64(n)/float64(expected))
			lastPrint = time.Now()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("usage stopped at %d of %d records; logs in %s", n, expected, d.usage[0].logs)
		}
		for _, u := range d.usage {
			if u.starts > 0 && !u.running() {
				return u.exitError()
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// victims are the processes a kill round kills: every usage instance
// running, the naive usage, current and alerts.
func (d *demo) victims() []*service {
	var out []*service
	for _, u := range d.usage {
		if u.running() {
			out = append(out, u)
		}
	}
	if d.naive != nil {
		out = append(out, d.naive)
	}
	return append(out, d.current, d.alerts)
}

func (d *demo) killRound(ctx context.Context, n int) error {
	victims := d.victims()
	done, _ := d.committed(ctx, "usage")
	names := make([]string, len(victims))
	for i, s := range victims {
		names[i] = fmt.Sprintf("%s (pid %d)", s.name, s.cmd.Process.Pid)
	}
	owned := d.beforeKill(ctx)
	killed := killAll(victims)
	d.logf("kill %d/%d: SIGKILL %s with usage at %d records committed", n, d.cfg.kills, strings.Join(names, ", "), done)
	if err := restart(victims); err != nil {
		return err
	}
	d.watchStalls(ctx, n, false, owned, killed)
	return nil
}

// killDuringRebalance starts a second usage instance and kills the first
// as soon as the group sees the newcomer, while the partitions move.
func (d *demo) killDuringRebalance(ctx context.Context, n int) error {
	second := d.usage[1]
	if err := second.start(); err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	state := ""
	for {
		groups, err := d.adm.DescribeGroups(ctx, "usage")
		if err == nil {
			if g, ok := groups["usage"]; ok && g.Err == nil && len(g.Members) >= 2 {
				state = g.State
				break
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s never joined the group; last log lines:\n%s", second.name, second.tail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-second.done:
			return second.exitError()
		case <-time.After(5 * time.Millisecond):
		}
	}
	victims := []*service{d.usage[0], d.current, d.alerts}
	if d.naive != nil {
		victims = append(victims, d.naive)
	}
	owned := d.beforeKill(ctx)
	killed := killAll(victims)
	d.logf("kill %d/%d: %s joined the group (state %s); SIGKILL usage#1, current, alerts%s during the rebalance",
		n, d.cfg.kills, second.name, state, map[bool]string{true: ", usage-naive"}[d.naive != nil])
	if err := restart(victims); err != nil {
		return err
	}
	d.watchStalls(ctx, n, true, owned, killed)
	return nil
}

func restart(ss []*service) error {
	for _, s := range ss {
		if err := s.start(); err != nil {
			return err
		}
	}
	return nil
}

// waitCaughtUp waits until the groups committed the end of sensor-data and
// current handled it, then stops the consumers gracefully.
func (d *demo) waitCaughtUp(ctx context.Context) error {
	deadline := time.Now().Add(5 * time.Minute)
	lastPrint := time.Now()
	groups := []string{"usage", "alerts"}
	if d.naive != nil {
		groups = append(groups, "usage-naive")
	}
	for {
		state := make([]string, 0, len(groups)+1)
		behind := false
		for _, g := range groups {
			n, err := d.committed(ctx, g)
			if err != nil {
				return err
			}
			behind = behind || n < d.total
			state = append(state, fmt.Sprintf("%s %d", g, n))
		}
		var st struct {
			Positions map[string]map[string]int64 `json:"positions"`
		}
		var cur int64
		if err := getJSON(ctx, d.current.url("/status"), &st); err == nil {
			for _, next := range st.Positions[telemetry.Topic] {
				cur += next
			}
		}
		behind = behind || cur < d.total
		state = append(state, fmt.Sprintf("current %d", cur))
		d.reportStalls()
		if !behind {
			d.logf("all caught up with %d records (%s)", d.total, strings.Join(state, ", "))
			return nil
		}
		if time.Since(lastPrint) > 5*time.Second {
			d.logf("of %d records: %s", d.total, strings.Join(state, ", "))
			lastPrint = time.Now()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("services did not catch up with %d records: %s", d.total, strings.Join(state, ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (d *demo) printEndpoints() {
	fmt.Fprintln(d.out, "\nstill running (Ctrl-C stops everything):")
	fmt.Fprintf(d.out, "  KAFKA_BROKERS=%s SCHEMA_REGISTRY_URL=%s MONGODB_URI=%s\n", d.brokers, d.registryURL, d.mongoURI)
	fmt.Fprintf(d.out, "  current      %s\n", d.current.url("/sensors"))
	fmt.Fprintf(d.out, "  query        %s\n", d.query.url("/usage"))
	if d.queryNaive != nil {
		fmt.Fprintf(d.out, "  query-naive  %s\n", d.queryNaive.url("/usage"))
	}
	fmt.Fprintf(d.out, "  logs         %s\n", filepath.Join(d.cfg.dir, "logs"))
}
