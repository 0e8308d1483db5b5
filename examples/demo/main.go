// Command demo proves, by killing real processes, that a kconsumer consumer
// loses nothing: it starts an in-process Kafka broker, produces records,
// runs consumer child processes that log every record they handle, SIGKILLs
// them at random moments, restarts them, stops the last one with SIGTERM,
// and checks the log against what was produced.
//
//	go run ./demo -records 20000 -kills 5
//
// It exits non-zero if any record was never handled or the group's committed
// offsets do not reach the end of the topic.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
)

const (
	topic = "sensor-data"
	group = "demo"
	// roleEnv makes the binary run as a consumer child process.
	roleEnv = "KCONSUMER_DEMO_CONSUMER"
)

type config struct {
	records    int
	partitions int
	kills      int
	work       time.Duration
	seed       uint64
	dir        string
}

func main() {
	if os.Getenv(roleEnv) != "" {
		work, _ := time.ParseDuration(os.Getenv("DEMO_WORK"))
		if err := runConsumer(os.Getenv("KAFKA_BROKERS"), os.Getenv(roleEnv), work); err != nil {
			fmt.Fprintln(os.Stderr, "consumer:", err)
			os.Exit(1)
		}
		return
	}
	var cfg config
	flag.IntVar(&cfg.records, "records", 20_000, "records to produce")
	flag.IntVar(&cfg.partitions, "partitions", 8, "partitions of the topic")
	flag.IntVar(&cfg.kills, "kills", 5, "times to SIGKILL the consumer")
	flag.DurationVar(&cfg.work, "work", 500*time.Microsecond, "time the handler spends on each record")
	flag.Uint64Var(&cfg.seed, "seed", uint64(time.Now().UnixNano()), "seed for the kill moments")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "kconsumer-demo")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	cfg.dir = dir
	res, err := run(ctx, cfg, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	if !res.ok() {
		os.Exit(1)
	}
}

// runConsumer is the child process: it appends "partition offset" to the
// log for every record before returning nil, so the log is the ground truth
// of what was handled, and stops gracefully on SIGTERM.
func runConsumer(brokers, logPath string, work time.Duration) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	h := consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
		time.Sleep(work) // stands in for the handler's I/O
		_, err := fmt.Fprintf(f, "%d %d\n", r.Partition, r.Offset)
		return err
	})
	c, err := consumer.New(h,
		consumer.SeedBrokers(brokers),
		consumer.Topics(topic),
		consumer.Group(group),
		consumer.CommitInterval(200*time.Millisecond),
		// A SIGKILLed member holds its partitions until its session
		// expires; a short session lets the restart take them over soon.
		consumer.ClientOpts(kgo.SessionTimeout(2*time.Second), kgo.HeartbeatInterval(200*time.Millisecond)),
		consumer.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))),
	)
	if err != nil {
		return err
	}
	return c.Run(ctx)
}

type result struct {
	produced, handled, unique, duplicates, missing int
	committedOK                                    bool
	kills                                          int
	// belowCommit counts records a restarted consumer handled although
	// they were below the offsets committed when its predecessor died.
	belowCommit int
}

func (r result) ok() bool {
	return r.missing == 0 && r.committedOK && r.unique == r.produced && r.belowCommit == 0
}

func run(ctx context.Context, cfg config, out *os.File) (result, error) {
	var res result
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(cfg.partitions), topic),
		kfake.GroupMinSessionTimeout(time.Second))
	if err != nil {
		return res, err
	}
	defer cluster.Close()
	addr := cluster.ListenAddrs()[0]
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return res, err
	}
	defer cl.Close()

	fmt.Fprintf(out, "broker on %s; producing %d records to %d partitions\n", addr, cfg.records, cfg.partitions)
	recs := make([]*kgo.Record, cfg.records)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "sensor-%03d", i%100), Value: fmt.Appendf(nil, "%d", i)}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return res, fmt.Errorf("producing: %w", err)
	}
	produced := make(map[[2]int64]bool, len(recs))
	for _, r := range recs {
		produced[[2]int64{int64(r.Partition), r.Offset}] = true
	}
	res.produced = len(produced)

	rng := rand.New(rand.NewPCG(cfg.seed, cfg.seed))
	adm := kadm.NewClient(cl)
	var logs []string // one log per consumer process, in start order
	uniqueHandled := func() int { u, _ := readLogs(logs, produced); return u }
	// committedAtStart[i] holds the group's commits when consumer i started:
	// it must not handle anything below them.
	var committedAtStart []kadm.OffsetResponses
	start := func() (*exec.Cmd, error) {
		committed, err := adm.FetchOffsets(ctx, group)
		if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
			return nil, err
		}
		committedAtStart = append(committedAtStart, committed)
		logs = append(logs, filepath.Join(cfg.dir, fmt.Sprintf("handled-%d.log", len(logs))))
		return startChild(addr, logs[len(logs)-1], cfg.work)
	}
	for i := range cfg.kills {
		// Kill i lands at a random point of the i-th slice of the topic,
		// so the kills spread over the whole run.
		slice := cfg.records / (cfg.kills + 1)
		target := i*slice + 1 + rng.IntN(max(1, slice))
		child, err := start()
		if err != nil {
			return res, err
		}
		if err := waitFor(ctx, 60*time.Second, func() bool { return uniqueHandled() >= target }); err != nil {
			_ = child.Process.Kill()
			return res, fmt.Errorf("consumer %d made no progress: %w", i+1, err)
		}
		if err := child.Process.Signal(syscall.SIGKILL); err != nil {
			return res, err
		}
		_ = child.Wait()
		res.kills++
		fmt.Fprintf(out, "kill %d: SIGKILL with %d of %d records handled\n", res.kills, uniqueHandled(), len(produced))
	}

	child, err := start()
	if err != nil {
		return res, err
	}
	finished := func() bool {
		ok, err := committedToEnd(ctx, adm)
		return err == nil && ok && uniqueHandled() == len(produced)
	}
	if err := waitFor(ctx, 120*time.Second, finished); err != nil {
		_ = child.Process.Kill()
		return res, fmt.Errorf("the last consumer did not finish the topic: %w", err)
	}
	if err := child.Process.Signal(syscall.SIGTERM); err != nil {
		return res, err
	}
	if err := child.Wait(); err != nil {
		return res, fmt.Errorf("graceful stop: %w", err)
	}

	res.unique, res.handled = readLogs(logs, produced)
	for i, path := range logs {
		forEachLine(path, func(p int32, o int64) {
			if c, ok := committedAtStart[i].Lookup(topic, p); ok && c.Err == nil && o < c.At {
				res.belowCommit++
			}
		})
	}
	res.duplicates = res.handled - res.unique
	res.missing = len(produced) - res.unique
	res.committedOK, err = committedToEnd(ctx, adm)
	if err != nil {
		return res, err
	}
	fmt.Fprintf(out, "\n%-32s %10s\n", "check", "result")
	fmt.Fprintf(out, "%-32s %10d\n", "records produced", res.produced)
	fmt.Fprintf(out, "%-32s %10d\n", "consumer processes SIGKILLed", res.kills)
	fmt.Fprintf(out, "%-32s %10d\n", "records handled (with repeats)", res.handled)
	fmt.Fprintf(out, "%-32s %10d\n", "records never handled (lost)", res.missing)
	fmt.Fprintf(out, "%-32s %10d\n", "re-deliveries after kills", res.duplicates)
	fmt.Fprintf(out, "%-32s %10d\n", "re-deliveries below a commit", res.belowCommit)
	fmt.Fprintf(out, "%-32s %10v\n", "commits reach the end", res.committedOK)
	if res.ok() {
		fmt.Fprintln(out, "\nOK: nothing lost, and nothing below a commit handled again")
	} else {
		fmt.Fprintln(out, "\nFAIL")
	}
	return res, nil
}

func startChild(brokers, logPath string, work time.Duration) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, childArgs()...)
	cmd.Env = append(os.Environ(), roleEnv+"="+logPath, "KAFKA_BROKERS="+brokers, "DEMO_WORK="+work.String())
	cmd.Stderr = os.Stderr
	return cmd, cmd.Start()
}

// childArgs is what the child is started with; a test binary overrides it
// to select its own TestMain path.
var childArgs = func() []string { return nil }

// readLogs returns how many distinct produced records the logs hold and
// how many lines they have.
func readLogs(paths []string, produced map[[2]int64]bool) (unique, lines int) {
	seen := make(map[[2]int64]bool, len(produced))
	for _, path := range paths {
		forEachLine(path, func(p int32, o int64) {
			lines++
			k := [2]int64{int64(p), o}
			if produced[k] && !seen[k] {
				seen[k] = true
				unique++
			}
		})
	}
	return unique, lines
}

// forEachLine calls fn with the partition and offset of every whole line of
// the log at path.
func forEachLine(path string, fn func(partition int32, offset int64)) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var p int32
		var o int64
		if _, err := fmt.Sscan(sc.Text(), &p, &o); err != nil {
			continue // a line cut short by SIGKILL
		}
		fn(p, o)
	}
}

func committedToEnd(ctx context.Context, adm *kadm.Client) (bool, error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return false, err
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return false, err
	}
	ok := true
	ends.Each(func(e kadm.ListedOffset) {
		c, found := committed.Lookup(topic, e.Partition)
		if !found || c.At != e.Offset {
			ok = false
		}
	})
	return ok, nil
}

func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}
