package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/recovery"
)

// The group modes of the recovery benchmark.
const (
	modeDynamic = "dynamic"  // classic protocol, a fresh member ID at each start
	modeStatic  = "static"   // classic protocol, consumer.InstanceID (KIP-345)
	modeNextGen = "next-gen" // consumer.ServerSideBalancer (KIP-848)
	// modeNextGenStatic is consumer.ServerSideBalancer with
	// consumer.InstanceID; not in the default run.
	modeNextGenStatic = "next-gen-static"
)

var recoveryModes = []string{modeDynamic, modeStatic, modeNextGen, modeNextGenStatic}

// reportEvery is how often a member reports a partition it keeps handling
// records of; the first record after an assignment is always reported.
const reportEvery = 50 * time.Millisecond

// memberMain runs `bench member`: one consumer of the recovery benchmark.
// It runs kconsumer with recovery.NewStateless and a handler that only
// notes the time, and reports on stdout, one line each, with the Unix time
// in nanoseconds of the event:
//
//	start <ns>                     main started
//	running <ns>                   the client exists (Consumer.Running)
//	assigned <ns> <p>,<p>,...      OnAssigned, partitions of the topic
//	revoked <ns> <p>,...           OnRevoked
//	lost <ns> <p>,...              OnLost
//	rec <ns> <partition> <offset>  a record handled (the first after an
//	                               assignment, then at most one per partition
//	                               every 50 ms)
//	exit <ns> <error or ok>        Run returned
//
// It stops when stdin closes (the parent closes it, or dies).
func memberMain(args []string) error {
	start := time.Now()
	fs := flag.NewFlagSet("member", flag.ContinueOnError)
	var (
		addr       = fs.String("addr", "127.0.0.1:9092", "broker address")
		topic      = fs.String("topic", "recovery", "topic to read")
		group      = fs.String("group", "recovery", "consumer group")
		mode       = fs.String("mode", modeStatic, "group mode: "+strings.Join(recoveryModes, ", "))
		id         = fs.String("id", "", "this member's name; its InstanceID in the static modes")
		partitions = fs.Int("partitions", 12, "partitions of the topic")
		heartbeat  = fs.Duration("heartbeat", 0, "kgo.HeartbeatInterval (0: the Consumer's default, 3s, 500ms for static members)")
		session    = fs.Duration("session-timeout", 0, "kgo.SessionTimeout (0: the Consumer's default, 45s)")
		logFile    = fs.String("log", "", "append kgo's debug log and the Consumer's log to this file")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *partitions < 1 {
		return errors.New("-partitions must be positive")
	}
	out := &lineWriter{w: os.Stdout}
	out.printf("start %d", start.UnixNano())

	opts := []consumer.Opt{
		consumer.SeedBrokers(*addr),
		consumer.Topics(*topic),
		consumer.Group(*group),
		consumer.With(recovery.NewStateless()),
		consumer.WithLogger(slog.New(slog.DiscardHandler)),
	}
	switch *mode {
	case modeDynamic:
	case modeStatic:
		if *id == "" {
			return errors.New("static mode needs -id")
		}
		opts = append(opts, consumer.InstanceID(*id))
	case modeNextGen:
		opts = append(opts, consumer.ServerSideBalancer())
	case modeNextGenStatic:
		if *id == "" {
			return errors.New("next-gen-static mode needs -id")
		}
		opts = append(opts, consumer.ServerSideBalancer(), consumer.InstanceID(*id))
	default:
		return fmt.Errorf("unknown mode %q; known: %s", *mode, strings.Join(recoveryModes, ", "))
	}
	var kopts []kgo.Opt
	if *heartbeat > 0 {
		kopts = append(kopts, kgo.HeartbeatInterval(*heartbeat))
	}
	if *session > 0 {
		kopts = append(kopts, kgo.SessionTimeout(*session))
	}
	if *logFile != "" {
		f, err := os.OpenFile(*logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		fmt.Fprintf(f, "%s member %s (pid %d) started, args %q\n", start.Format(logTime), *id, os.Getpid(), args)
		kopts = append(kopts, kgo.WithLogger(kgo.BasicLogger(f, kgo.LogLevelDebug, func() string {
			return time.Now().Format(logTime) + " "
		})))
		opts = append(opts, consumer.WithLogger(slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	}
	if len(kopts) > 0 {
		opts = append(opts, consumer.ClientOpts(kopts...))
	}

	// last[p] is when partition p was last reported, 0 after an
	// assignment so that the first record is reported.
	last := make([]atomic.Int64, *partitions)
	hook := func(kind string, reset bool) consumer.PartitionsFunc {
		return func(_ context.Context, ps map[string][]int32) {
			now := time.Now().UnixNano()
			got := slices.Sorted(slices.Values(ps[*topic]))
			if reset {
				for _, p := range got {
					if int(p) < len(last) {
						last[p].Store(0)
					}
				}
			}
			out.printf("%s %d %s", kind, now, joinPartitions(got))
		}
	}
	opts = append(opts,
		consumer.OnAssigned(hook("assigned", true)),
		consumer.OnRevoked(hook("revoked", false)),
		consumer.OnLost(hook("lost", false)),
	)
	h := consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
		now := time.Now().UnixNano()
		if int(r.Partition) >= len(last) {
			return nil
		}
		l := &last[r.Partition]
		if prev := l.Load(); prev == 0 || now-prev >= int64(reportEvery) {
			l.Store(now)
			out.printf("rec %d %d %d", now, r.Partition, r.Offset)
		}
		return nil
	})
	c, err := consumer.New(h, opts...)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	go func() {
		<-c.Running()
		if c.Client() != nil {
			out.printf("running %d", time.Now().UnixNano())
		}
	}()
	err = c.Run(ctx)
	status := "ok"
	if err != nil {
		status = strings.ReplaceAll(err.Error(), "\n", " ")
	}
	out.printf("exit %d %s", time.Now().UnixNano(), status)
	return err
}

const logTime = "15:04:05.000000"

func joinPartitions(ps []int32) string {
	if len(ps) == 0 {
		return "-"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

// lineWriter writes whole lines, each in one write, from any goroutine.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) printf(format string, args ...any) {
	b := fmt.Appendf(nil, format+"\n", args...)
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.w.Write(b)
}
