package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync/atomic"
	"syscall"
	"time"
)

// env is what a client implementation is given.
type env struct {
	addr     string
	registry string
	topic    string
	group    string // a fresh group for implementations that use one
	tally    *tally
	// slow is how long the handler of a memory case takes per record; a
	// negative value blocks it until the run ends.
	slow time.Duration
	// maxInFlight and maxPerPartition, when positive, set the in-flight
	// limits of the kconsumer implementations.
	maxInFlight, maxPerPartition int

	// notes are figures an implementation reports, set before it returns.
	notes map[string]int64
}

// An impl reads records through one client library and counts each in
// e.tally until ctx is done, then closes its client and returns.
type impl struct {
	name string
	desc string
	run  func(ctx context.Context, e *env) error
}

// tally counts the records of each partition and notes when the first one
// arrived and when the last expected one did.
type tally struct {
	want      []int64
	parts     []partCount
	remaining atomic.Int64
	done      chan struct{}
	last      time.Time // set before done is closed
}

// partCount is one partition's count, padded to a cache line of its own:
// the partitions are counted on different goroutines by most clients.
type partCount struct {
	n     int64
	first int64 // Unix nanoseconds of the first record
	_     [48]byte
}

func newTally(records, partitions int) *tally {
	t := &tally{want: make([]int64, partitions), parts: make([]partCount, partitions), done: make(chan struct{})}
	for p := range partitions {
		t.want[p] = perPartition(records, partitions, p)
		if t.want[p] > 0 {
			t.remaining.Add(1)
		}
	}
	if t.remaining.Load() == 0 {
		t.last = time.Now()
		close(t.done)
	}
	return t
}

// add counts a record of partition p. Records of one partition must be
// counted on one goroutine at a time, as every client here delivers them.
func (t *tally) add(p int32) {
	c := &t.parts[p]
	c.n++
	if c.n == 1 {
		c.first = time.Now().UnixNano()
	}
	if c.n == t.want[p] && t.remaining.Add(-1) == 0 {
		t.last = time.Now()
		close(t.done)
	}
}

// counted returns the records counted and those counted beyond what a
// partition holds (delivered twice). Call it once the counting goroutines
// are done, or after done is closed for a lower bound.
func (t *tally) counted() (total, extra int64) {
	for p := range t.parts {
		n := t.parts[p].n
		total += n
		extra += max(0, n-t.want[p])
	}
	return total, extra
}

// first returns when the first record of any partition arrived.
func (t *tally) first() time.Time {
	var first int64
	for p := range t.parts {
		if f := t.parts[p].first; f != 0 && (first == 0 || f < first) {
			first = f
		}
	}
	return time.Unix(0, first)
}

// clientResult is what a client process prints as one JSON line.
type clientResult struct {
	Impl       string           `json:"impl"`
	Topic      string           `json:"topic"`
	Records    int64            `json:"records"`
	Duplicates int64            `json:"duplicates"`
	TotalNs    int64            `json:"total_ns"`    // client start to the last record
	SteadyNs   int64            `json:"steady_ns"`   // first record to the last
	ShutdownNs int64            `json:"shutdown_ns"` // the last record to the client closed
	Mallocs    uint64           `json:"mallocs"`     // heap allocations, client start to the last record
	AllocBytes uint64           `json:"alloc_bytes"`
	GCs        uint32           `json:"gcs"`
	CPUNs      int64            `json:"cpu_ns"`  // user plus system time, client start to the last record
	HWMKiB     int64            `json:"hwm_kib"` // peak resident set, VmHWM
	Notes      map[string]int64 `json:"notes,omitempty"`
	Err        string           `json:"error,omitempty"`
}

// clientMain runs `bench client`: it reads a topic through one
// implementation and prints a clientResult.
func clientMain(args []string) error {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	var (
		name       = fs.String("impl", "franz-go", "implementation: "+implNames())
		e          = env{notes: make(map[string]int64)}
		records    = fs.Int("n", 200_000, "records in the topic, spread over the partitions as the broker spreads them")
		partitions = fs.Int("partitions", 12, "partitions of the topic")
		timeout    = fs.Duration("timeout", 2*time.Minute, "give up when the records are not read by then")
		hold       = fs.Duration("hold", 0, "with a duration, read for that long and stop, whether or not all records were read")
		cpuprofile = fs.String("cpuprofile", "", "write a CPU profile of the reading, client start to the last record, to this file")
	)
	fs.StringVar(&e.addr, "addr", "127.0.0.1:9092", "broker address")
	fs.StringVar(&e.registry, "registry", "", "schema registry URL (Avro implementations)")
	fs.StringVar(&e.topic, "topic", sizeTopic(100), "topic to read")
	fs.StringVar(&e.group, "group", "bench", "consumer group, for implementations that use one")
	fs.DurationVar(&e.slow, "slow", time.Millisecond, "handler time per record of kconsumer-slow (negative: block until stopped)")
	fs.IntVar(&e.maxInFlight, "max-in-flight", 0, "consumer.MaxInFlight of the kconsumer implementations (0: the default)")
	fs.IntVar(&e.maxPerPartition, "max-per-partition", 0, "consumer.MaxInFlightPerPartition of the kconsumer implementations (0: the default)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	im, ok := lookupImpl(*name)
	if !ok {
		return fmt.Errorf("unknown implementation %q; known: %s", *name, implNames())
	}
	if *records < 1 || *partitions < 1 {
		return errors.New("-n and -partitions must be positive")
	}
	e.tally = newTally(*records, *partitions)
	res := readAll(im, &e, *timeout, *hold, *cpuprofile)
	return json.NewEncoder(os.Stdout).Encode(res)
}

// readAll runs im until its tally is complete (or, with hold, until hold
// passed), and measures it.
func readAll(im impl, e *env, timeout, hold time.Duration, cpuprofile string) clientResult {
	res := clientResult{Impl: im.name, Topic: e.topic, Notes: e.notes}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			res.Err = err.Error()
			return res
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			res.Err = err.Error()
			return res
		}
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpuBefore := processCPU()
	start := time.Now()
	errc := make(chan error, 1)
	go func() { errc <- im.run(ctx, e) }()

	var (
		runErr   error
		returned bool
		end      = timeout
	)
	if hold > 0 {
		end = hold
	}
	deadline := time.NewTimer(end)
	defer deadline.Stop()
	select {
	case <-e.tally.done:
	case runErr = <-errc:
		returned = true
	case <-deadline.C:
	}
	runtime.ReadMemStats(&after)
	res.CPUNs = (processCPU() - cpuBefore).Nanoseconds()
	stopped := time.Now()
	if cpuprofile != "" {
		pprof.StopCPUProfile()
	}
	cancel()
	if !returned {
		select {
		case runErr = <-errc:
		case <-time.After(time.Minute):
			runErr = errors.Join(runErr, errors.New("the client did not close within a minute"))
		}
	}
	closed := time.Now()

	res.Records, res.Duplicates = e.tally.counted()
	res.Mallocs = after.Mallocs - before.Mallocs
	res.AllocBytes = after.TotalAlloc - before.TotalAlloc
	res.GCs = after.NumGC - before.NumGC
	select {
	case <-e.tally.done:
		res.TotalNs = e.tally.last.Sub(start).Nanoseconds()
		res.SteadyNs = e.tally.last.Sub(e.tally.first()).Nanoseconds()
		res.ShutdownNs = closed.Sub(e.tally.last).Nanoseconds()
	default:
		res.TotalNs = stopped.Sub(start).Nanoseconds()
		if res.Records > 0 {
			res.SteadyNs = stopped.Sub(e.tally.first()).Nanoseconds()
		}
		res.ShutdownNs = closed.Sub(stopped).Nanoseconds()
		if hold == 0 {
			runErr = errors.Join(runErr, fmt.Errorf("read %d records in %v, not all", res.Records, stopped.Sub(start).Round(time.Millisecond)))
		}
	}
	if runErr != nil {
		res.Err = runErr.Error()
	}
	if hwm, err := statusKiB(os.Getpid(), "VmHWM"); err == nil {
		res.HWMKiB = hwm
	}
	return res
}

// implementations lists every implementation this binary has.
func implementations() []impl {
	ims := []impl{
		{name: "idle", desc: "a franz-go client that connects and reads nothing", run: runIdle},
		{name: "franz-go", desc: "hand-written franz-go poll loop, consumer group, autocommit", run: runFranz},
		{name: "franz-go-direct", desc: "hand-written franz-go poll loop, no group", run: runFranzDirect},
		{name: "kconsumer-stateless", desc: "kconsumer, no-op handler, recovery.NewStateless, group", run: runStateless},
		{name: "kconsumer-checkpoint", desc: "kconsumer, no-op handler, recovery.NewCheckpointSkip with an empty store, group", run: runCheckpoint},
		{name: "kconsumer-replay", desc: "kconsumer, no-op handler, recovery.NewFullReplay, no group", run: runReplay},
		{name: "kconsumer-lag", desc: "kconsumer-stateless observed by a lag.Monitor", run: runLag},
		{name: "sarama", desc: "IBM/sarama consumer group", run: runSarama},
		{name: "kafka-go", desc: "segmentio/kafka-go Reader with a group", run: runKafkaGo},
		{name: "franz-go-hamba", desc: "franz-go poll loop decoding each value with hamba/avro", run: runFranzHamba},
		{name: "kconsumer-avro", desc: "kconsumer-stateless with serde.Handle and an Avro codec", run: runAvro},
		{name: "kconsumer-slow", desc: "kconsumer-stateless whose handler takes -slow per record", run: runSlow},
	}
	if im, ok := confluentImpl(); ok {
		ims = append(ims, im)
	}
	return ims
}

func lookupImpl(name string) (impl, bool) {
	i := slices.IndexFunc(implementations(), func(im impl) bool { return im.name == name })
	if i < 0 {
		return impl{}, false
	}
	return implementations()[i], true
}

func implNames() string {
	var s string
	for i, im := range implementations() {
		if i > 0 {
			s += ", "
		}
		s += im.name
	}
	return s
}

// processCPU returns the user plus system CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
