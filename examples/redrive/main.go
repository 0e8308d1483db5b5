// Command redrive copies the records of a dead-letter topic back to the
// topics and partitions they came from, as written by a dlq.Router, so that
// they are consumed again once the bug or outage that failed them is fixed.
// Its progress is kept as a consumer group's offsets on the dead-letter
// topic, so running it again copies nothing twice; a run that is interrupted
// copies its last batch again on the next run.
//
// Usage:
//
//	redrive -topic sensor-data.dlq [flags]
//
// Flags:
//
//	-brokers     comma-separated seed brokers (default $KAFKA_BROKERS, else localhost:9092)
//	-topic       dead-letter topic to re-drive (required)
//	-group       consumer group holding the progress (default <topic>.redrive)
//	-class       comma-separated error classes to copy: poison, unclassified, retriable (default all)
//	-from, -to   copy only dead-letter offsets from <= offset < to; -to -1 means the end (default 0, -1)
//	-partitions  comma-separated dead-letter partitions to read (default all)
//	-batch       dead letters copied per progress commit (default 500)
//	-timeout     give up after this long (default 0, no limit)
//
// It stops cleanly on SIGINT or SIGTERM, keeping the progress of the batches
// it finished.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kconsumer/kconsumer/dlq"
	"github.com/kconsumer/kconsumer/fault"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "redrive:", err)
		}
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("redrive", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokers := os.Getenv("KAFKA_BROKERS")
	if brokers == "" {
		brokers = "localhost:9092"
	}
	fs.StringVar(&brokers, "brokers", brokers, "comma-separated seed brokers")
	topic := fs.String("topic", "", "dead-letter topic to re-drive (required)")
	group := fs.String("group", "", "consumer group holding the progress (default <topic>.redrive)")
	classes := fs.String("class", "", "comma-separated error classes to copy (default all)")
	from := fs.Int64("from", 0, "first dead-letter offset to copy")
	to := fs.Int64("to", -1, "dead-letter offset to stop before; -1 means the end")
	partitions := fs.String("partitions", "", "comma-separated dead-letter partitions to read (default all)")
	batch := fs.Int("batch", 500, "dead letters copied per progress commit")
	timeout := fs.Duration("timeout", 0, "give up after this long; 0 means no limit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *topic == "" {
		return errors.New("-topic is required")
	}

	opts := []dlq.RedriveOpt{
		dlq.SeedBrokers(split(brokers)...),
		dlq.WithLogger(slog.New(slog.NewTextHandler(stderr, nil))),
		dlq.Offsets(*from, *to),
		dlq.BatchSize(*batch),
	}
	if *group != "" {
		opts = append(opts, dlq.ProgressGroup(*group))
	}
	for _, s := range split(*classes) {
		var c fault.Class
		if err := c.UnmarshalText([]byte(s)); err != nil {
			return err
		}
		opts = append(opts, dlq.Classes(c))
	}
	for _, s := range split(*partitions) {
		p, err := strconv.ParseInt(s, 10, 32)
		if err != nil || p < 0 {
			return fmt.Errorf("-partitions: %q is not a partition number", s)
		}
		opts = append(opts, dlq.Partitions(int32(p)))
	}
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}

	began := time.Now()
	stats, err := dlq.Redrive(ctx, *topic, opts...)
	fmt.Fprintf(stdout, "copied %d, skipped %d, invalid %d in %v\n",
		stats.Copied, stats.Skipped, stats.Invalid, time.Since(began).Round(time.Millisecond))
	topics := make([]string, 0, len(stats.Topics))
	for t := range stats.Topics {
		topics = append(topics, t)
	}
	sort.Strings(topics)
	for _, t := range topics {
		fmt.Fprintf(stdout, "  %s: %d\n", t, stats.Topics[t])
	}
	return err
}

// split splits a comma-separated list, dropping empty items.
func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
