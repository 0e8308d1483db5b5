package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// throughputClients are the implementations measured on the value-size
// topics, in the order each repetition runs them.
var throughputClients = []string{
	"franz-go", "franz-go-direct",
	"kconsumer-stateless", "kconsumer-checkpoint", "kconsumer-replay", "kconsumer-lag",
	"sarama", "kafka-go", "confluent-kafka-go",
}

// avroClients are the implementations measured on the Avro topic.
var avroClients = []string{"franz-go-hamba", "kconsumer-avro"}

// options are the flags of a full run.
type options struct {
	records    int
	avro       int
	sizes      []int
	partitions int
	reps       int
	clients    []string
	memory     bool
	backlog    int
	hold       time.Duration
	timeout    time.Duration
	out        string
	svg        string
	profile    string
	recovery   recoveryOptions
}

// runMain runs the whole benchmark: a broker process, every client in a
// process of its own, repeated and interleaved, then the memory cases.
func runMain(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var o options
	var sizes, clients string
	fs.IntVar(&o.records, "n", 500_000, "records per value-size topic")
	fs.IntVar(&o.avro, "avro-n", 500_000, "records of the Avro topic (0: skip the Avro runs)")
	fs.StringVar(&sizes, "sizes", "100,1024", "value sizes in bytes, one topic each, comma separated")
	fs.IntVar(&o.partitions, "partitions", 12, "partitions per topic")
	fs.IntVar(&o.reps, "reps", 5, "repetitions of each client; medians are reported")
	fs.StringVar(&clients, "clients", strings.Join(throughputClients, ","), "clients to measure on the value-size topics, comma separated")
	fs.BoolVar(&o.memory, "memory", true, "run the memory cases (kconsumer with a slow handler against a backlog)")
	fs.IntVar(&o.backlog, "backlog", 1_000_000, "records of the backlog topic of the memory cases")
	fs.DurationVar(&o.hold, "hold", 20*time.Second, "how long the memory cases run")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "give up on a client that has not read its topic by then")
	fs.StringVar(&o.out, "out", "results", "directory for the raw results (JSON), the table (Markdown) and the memory samples (CSV)")
	fs.StringVar(&o.svg, "svg", filepath.Join("..", "docs", "bench-throughput.svg"), "file for the bar chart (empty: none)")
	fs.StringVar(&o.profile, "profile", "", "directory for a CPU profile of every client run (empty: none)")
	addRecoveryFlags(fs, &o.recovery)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q; subcommands are broker, client, member and render", fs.Args())
	}
	if o.recovery.enabled {
		o.recovery.partitions, o.recovery.out = o.partitions, o.out
		return recoveryMain(context.Background(), o.recovery, os.Args[1:])
	}
	var err error
	if o.sizes, err = parseSizes(sizes); err != nil {
		return err
	}
	if o.records < 1 || o.partitions < 1 || o.reps < 1 || o.avro < 0 || o.backlog < 0 {
		return errors.New("-n, -partitions and -reps must be positive, -avro-n and -backlog not negative")
	}
	for _, c := range strings.Split(clients, ",") {
		if c = strings.TrimSpace(c); c == "" {
			continue
		}
		if _, ok := lookupImpl(c); !ok && c != "confluent-kafka-go" {
			return fmt.Errorf("unknown client %q; known: %s", c, implNames())
		}
		o.clients = append(o.clients, c)
	}
	return benchmark(context.Background(), o, os.Args[1:])
}

// benchmark runs everything o asks for and writes the results.
func benchmark(ctx context.Context, o options, cmdline []string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if o.profile != "" {
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			return err
		}
	}
	rep := report{
		Started:  time.Now().UTC(),
		Command:  strings.TrimSpace("go run . " + strings.Join(cmdline, " ")),
		Go:       runtime.Version(),
		CPUs:     runtime.NumCPU(),
		LoadFrom: loadAvg(),
		Options: reportOptions{
			Records: o.records, Avro: o.avro, Sizes: o.sizes, Partitions: o.partitions,
			Reps: o.reps, Backlog: o.backlog, Hold: o.hold.String(),
		},
		Clients: make(map[string]string),
	}
	for _, im := range implementations() {
		rep.Clients[im.name] = im.desc
	}
	if _, ok := confluentImpl(); !ok {
		rep.Missing = append(rep.Missing, "confluent-kafka-go: this binary was built without cgo (CGO_ENABLED=0), which confluent-kafka-go needs to link librdkafka")
	}
	backlog := 0
	if o.memory {
		backlog = o.backlog
	}
	b, err := startBrokerProcess(ctx, exe, brokerSpec{records: o.records, sizes: o.sizes, partitions: o.partitions, avro: o.avro, backlog: backlog})
	if err != nil {
		return err
	}
	defer b.stop()
	rep.Seeding = b.info.Seeding
	logf("broker %s (pid %d), registry %s, seeded in %.1fs; load %s", b.info.Addr, b.pid, b.info.Registry, b.info.Seeding, loadAvg())

	type job struct{ client, topic string }
	var jobs []job
	jobs = append(jobs, job{"idle", sizeTopic(o.sizes[0])})
	for _, size := range o.sizes {
		for _, c := range o.clients {
			if _, ok := lookupImpl(c); ok {
				jobs = append(jobs, job{c, sizeTopic(size)})
			}
		}
	}
	if o.avro > 0 {
		for _, c := range avroClients {
			jobs = append(jobs, job{c, avroTopic})
		}
	}
	// One unrecorded read of each topic first: the broker's first fetches
	// of freshly produced data cost it more than later ones, and that
	// would be charged to whichever client ran first.
	var warm []string
	for _, j := range jobs {
		if j.client != "idle" && !slices.Contains(warm, j.topic) {
			warm = append(warm, j.topic)
			res := b.runClient(ctx, exe, o, "franz-go-direct", j.topic, -1)
			logf("warm-up %-15s %s", j.topic, res.line())
		}
	}
	for r := range o.reps {
		for _, j := range jobs {
			res := b.runClient(ctx, exe, o, j.client, j.topic, r)
			rep.Runs = append(rep.Runs, res)
			logf("rep %d %-21s %-15s %s", r+1, j.client, j.topic, res.line())
		}
		rep.Loads = append(rep.Loads, loadAvg())
	}
	if o.memory && o.backlog > 0 {
		rep.Memory = b.memoryCases(ctx, exe, o)
	}
	rep.BrokerHWMKiB, _ = statusKiB(b.pid, "VmHWM")
	rep.LoadTo = loadAvg()
	rep.Finished = time.Now().UTC()
	rep.summarize(b.info.Topics)
	return rep.write(o)
}

// brokerProcess is the broker running as a child process.
type brokerProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	pid   int
	info  brokerInfo
}

func startBrokerProcess(ctx context.Context, exe string, spec brokerSpec) (*brokerProcess, error) {
	sizes := make([]string, len(spec.sizes))
	for i, s := range spec.sizes {
		sizes[i] = strconv.Itoa(s)
	}
	cmd := exec.CommandContext(ctx, exe, "broker",
		"-n", strconv.Itoa(spec.records), "-sizes", strings.Join(sizes, ","),
		"-partitions", strconv.Itoa(spec.partitions), "-avro", strconv.Itoa(spec.avro),
		"-backlog", strconv.Itoa(spec.backlog))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	b := &brokerProcess{cmd: cmd, stdin: stdin, pid: cmd.Process.Pid}
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &b.info)
	}
	if err != nil {
		b.stop()
		return nil, fmt.Errorf("broker did not start: %w", err)
	}
	return b, nil
}

func (b *brokerProcess) stop() {
	b.stdin.Close()
	_ = b.cmd.Wait()
}

// run is one client process's run.
type run struct {
	Client string `json:"client"`
	Topic  string `json:"topic"`
	Rep    int    `json:"rep"`
	clientResult
	MaxRSSKiB    int64  `json:"maxrss_kib"`     // the child's rusage
	ProcessCPUNs int64  `json:"process_cpu_ns"` // the child's user plus system time, exec to exit
	BrokerCPUNs  int64  `json:"broker_cpu_ns"`  // the broker's while the child ran
	Load         string `json:"load"`           // /proc/loadavg when the child exited
}

func (r run) line() string {
	if r.Err != "" {
		return "FAILED: " + r.Err
	}
	rate := func(ns int64) float64 { return float64(r.Records) / (float64(ns) / 1e9) }
	return fmt.Sprintf("%9.0f rec/s (steady %9.0f), %5.2f allocs/rec, %6.1f MiB peak, cpu %.2fs, broker cpu %.2fs",
		rate(r.TotalNs), rate(r.SteadyNs), float64(r.Mallocs)/float64(max(r.Records, 1)), float64(r.HWMKiB)/1024,
		float64(r.CPUNs)/1e9, float64(r.BrokerCPUNs)/1e9)
}

// runClient runs one client process on topic and collects its result.
func (b *brokerProcess) runClient(ctx context.Context, exe string, o options, client, topic string, rep int) run {
	n := o.records
	if topic == avroTopic {
		n = o.avro
	}
	args := []string{"client", "-impl", client, "-addr", b.info.Addr, "-registry", b.info.Registry,
		"-topic", topic, "-n", strconv.Itoa(n), "-partitions", strconv.Itoa(o.partitions),
		"-group", fmt.Sprintf("%s-%s-%d", client, topic, rep), "-timeout", o.timeout.String()}
	if client == "idle" {
		args = append(args, "-hold", "300ms")
	}
	if o.profile != "" && rep >= 0 {
		args = append(args, "-cpuprofile", filepath.Join(o.profile, fmt.Sprintf("%s-%s-%d.pprof", client, topic, rep+1)))
	}
	r, _ := b.child(ctx, exe, args, nil)
	r.Client, r.Topic, r.Rep = client, topic, rep
	return r
}

// child runs a client process; sample, if not nil, is called with its pid
// once it started and must return when the process is gone.
func (b *brokerProcess) child(ctx context.Context, exe string, args []string, sample func(pid int)) (run, error) {
	var r run
	cmd := exec.CommandContext(ctx, exe, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	brokerBefore, _ := cpuTime(b.pid)
	if err := cmd.Start(); err != nil {
		r.Err = err.Error()
		return r, err
	}
	var wg sync.WaitGroup
	if sample != nil {
		wg.Go(func() { sample(cmd.Process.Pid) })
	}
	waitErr := cmd.Wait()
	wg.Wait()
	brokerAfter, _ := cpuTime(b.pid)
	r.BrokerCPUNs = (brokerAfter - brokerBefore).Nanoseconds()
	r.Load = loadAvg()
	if ps := cmd.ProcessState; ps != nil {
		r.ProcessCPUNs = (ps.UserTime() + ps.SystemTime()).Nanoseconds()
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			r.MaxRSSKiB = ru.Maxrss // kilobytes on Linux
		}
	}
	if err := json.Unmarshal(stdout.Bytes(), &r.clientResult); err != nil {
		r.Err = fmt.Sprintf("no result (%v): %v; stderr: %s", waitErr, err, tail(stderr.String(), 600))
		return r, errors.New(r.Err)
	}
	if r.Err != "" && stderr.Len() > 0 {
		r.Err += "; stderr: " + tail(stderr.String(), 600)
	}
	if r.Err != "" {
		return r, errors.New(r.Err)
	}
	return r, nil
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// memoryCase is one memory measurement: a client held for a while against
// a topic with more records than it can read in that time.
type memoryCase struct {
	Name    string  `json:"name"`
	Desc    string  `json:"desc"`
	Run     run     `json:"run"`
	Samples []int64 `json:"rss_kib"` // VmRSS every sampleEvery
	PeakKiB int64   `json:"peak_kib"`
	// FirstKiB and SecondKiB are the largest samples of the first and the
	// second half of the run: a resident set that keeps growing has a
	// second half well above its first.
	FirstKiB  int64 `json:"first_half_kib"`
	SecondKiB int64 `json:"second_half_kib"`
}

const sampleEvery = 100 * time.Millisecond

type memorySpec struct {
	name, desc, client, topic string
	n                         int // records in topic
	extra                     []string
}

// memoryCases runs kconsumer with a slow or a blocked handler against the
// backlog topic, next to the processes to compare it with. They run at the
// same time: the handlers mostly wait, and the idle process then shows
// what the machine's load does to a process that consumes nothing.
func (b *brokerProcess) memoryCases(ctx context.Context, exe string, o options) []memoryCase {
	limits4 := []string{"-max-in-flight", "40000", "-max-per-partition", "4000"}
	cases := []memorySpec{
		{"idle", "franz-go client connected, consuming nothing", "idle", backlogTopic, o.backlog, nil},
		{"slow-backlog", fmt.Sprintf("kconsumer, handler 1 ms per record, %d records waiting, default limits (MaxInFlight 10000, per partition 1000)", o.backlog),
			"kconsumer-slow", backlogTopic, o.backlog, []string{"-slow", "1ms"}},
		{"slow-small", fmt.Sprintf("the same against the %d-record topic of 100-byte values", o.records),
			"kconsumer-slow", sizeTopic(100), o.records, []string{"-slow", "1ms"}},
		{"blocked-backlog", "kconsumer, handler blocked until the end, backlog topic, default limits",
			"kconsumer-slow", backlogTopic, o.backlog, []string{"-slow", "-1ns"}},
		{"slow-backlog-4x", "kconsumer, handler 1 ms per record, backlog topic, limits ×4 (MaxInFlight 40000, per partition 4000)",
			"kconsumer-slow", backlogTopic, o.backlog, append([]string{"-slow", "1ms"}, limits4...)},
	}
	if !slices.Contains(o.sizes, 100) {
		cases = slices.DeleteFunc(cases, func(c memorySpec) bool { return c.name == "slow-small" })
	}
	out := make([]memoryCase, len(cases))
	var wg sync.WaitGroup
	for i, c := range cases {
		wg.Go(func() {
			args := append([]string{"client", "-impl", c.client, "-addr", b.info.Addr, "-topic", c.topic,
				"-n", strconv.Itoa(c.n), "-partitions", strconv.Itoa(o.partitions),
				"-group", "memory-" + c.name, "-hold", o.hold.String()}, c.extra...)
			mc := memoryCase{Name: c.name, Desc: c.desc}
			r, err := b.child(ctx, exe, args, func(pid int) {
				t := time.NewTicker(sampleEvery)
				defer t.Stop()
				for range t.C {
					kib, err := statusKiB(pid, "VmRSS")
					if err != nil {
						return // the process is gone
					}
					mc.Samples = append(mc.Samples, kib)
				}
			})
			if err != nil {
				logf("memory %s: %v", c.name, err)
			}
			r.Client, r.Topic = c.client, c.topic
			mc.Run = r
			mc.PeakKiB = r.HWMKiB
			if n := len(mc.Samples); n > 1 {
				mc.FirstKiB = slices.Max(mc.Samples[:n/2])
				mc.SecondKiB = slices.Max(mc.Samples[n/2:])
			}
			out[i] = mc
		})
	}
	wg.Wait()
	for _, mc := range out {
		logf("memory %-16s peak %6.1f MiB, first half %6.1f MiB, second half %6.1f MiB, %d records read, peak in flight %d",
			mc.Name, kib(mc.PeakKiB), kib(mc.FirstKiB), kib(mc.SecondKiB), mc.Run.Records, mc.Run.Notes["peak_in_flight"])
	}
	return out
}

func kib(k int64) float64 { return float64(k) / 1024 }

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

func parseSizes(s string) ([]int, error) {
	var sizes []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad value size %q: want a positive number of bytes", f)
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}
