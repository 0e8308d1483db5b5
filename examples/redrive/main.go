// Command redrive lists, shows and re-drives the dead letters a dlq.Router
// wrote. Dead letters are per consumer group: a dead-letter topic holds the
// letters of every group reading its source topic, each naming its group,
// and re-driving copies each letter back to the group that wrote it only,
// on that group's redrive topic (dlq.RedriveTopic:
// sensor-data.redrive.usage), which the group's Router reads.
//
// Usage:
//
//	redrive list -topic sensor-data.dlq [filters] [-json] [-width N]
//	redrive peek -topic sensor-data.dlq [-partition P] -offset O [-max-bytes N]
//	redrive run  -topic sensor-data.dlq [filters] [-progress-group G] [-batch N]
//	redrive      -topic sensor-data.dlq [filters] ...   (the same as run)
//
// list prints one line per dead letter, in partition and offset order:
// its place in the dead-letter topic (partition@offset), the record it holds
// (topic/partition@offset), the group that failed it, the error class, the
// attempts, when it failed (RFC3339, UTC) and the error, cut to -width
// characters; then a count by group and class, with the first and last
// failure and the redrive topic. -json prints one JSON object per dead letter
// instead (dlq_partition, dlq_offset, topic, partition, offset, timestamp,
// group, class, attempts, failed_at, error untruncated, redrive_topic) and no
// count; a record that is not a dead letter is {dlq_partition, dlq_offset,
// invalid}. Such records are listed only when no -group, -class, -since or
// -until is given, and counted always.
//
// peek prints one record of the dead-letter topic in full: the decoded
// dead-letter headers, the original record's own headers, its key and its
// value, each as text when it is printable UTF-8, else in hex, cut to
// -max-bytes with a note saying so.
//
// list and peek read the topic with a plain client that assigns itself the
// partitions (no consumer group), from the start up to the end offsets seen
// when they start: they move no progress, and a letter written meanwhile is
// not shown.
//
// run copies the selected dead letters back to their groups with
// dlq.Redrive and prints what it did: copied (and how many to each redrive
// topic), skipped (passed over by -group, -class, -since or -until), no group
// (letters of a consumer without a group, which nothing reads again) and
// invalid (records that are not dead letters). Its progress is kept as a
// consumer group's offsets on the dead-letter topic, so running it again
// with the same progress group copies nothing twice, and an interrupted run
// copies its last batch again. Letters passed over by the filters count as
// done for the progress group too: to re-drive them later, use another
// -progress-group. The default progress group is therefore one per
// selection of groups: <topic>.redrive without -group, and
// <topic>.redrive.<groups> (the -group list, sorted) with it, so re-driving
// the usage group's letters does not use up the alerts group's.
//
// Filters (list and run):
//
//	-group       comma-separated groups that wrote the letters (default all)
//	-class       comma-separated error classes: poison, unclassified, retriable (default all)
//	-partitions  comma-separated dead-letter partitions to read (default all)
//	-from, -to   dead-letter offsets from <= offset < to; -to -1 means the end (default 0, -1)
//	-since       failed at or after: RFC3339 (2024-05-01T12:00:00Z) or a duration ago (90m, 2h, 3d)
//	-until       failed before: the same forms
//
// Other flags:
//
//	-brokers         comma-separated seed brokers (default $KAFKA_BROKERS, else localhost:9092)
//	-topic           dead-letter topic (required)
//	-timeout         give up after this long (default 0, no limit)
//	-json            list: one JSON object per line
//	-width           list: characters of the error shown (default 60; 0, all)
//	-partition       peek: dead-letter partition (default 0)
//	-offset          peek: dead-letter offset (required)
//	-max-bytes       peek: bytes of the key, value and each header shown (default 4096; 0, all)
//	-progress-group  run: consumer group holding the progress (default above)
//	-batch           run: dead letters copied per progress commit (default 500)
//
// Before the commands, -group named the progress group; it now selects the
// letters of the groups that wrote them, and -progress-group names the
// progress group.
//
// It stops cleanly on SIGINT or SIGTERM; run keeps the progress of the
// batches it finished.
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
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/kconsumer/kconsumer/dlq"
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

const usage = `Usage:
  redrive list -topic DLQ [filters] [-json] [-width N]       list dead letters, count them by group and class
  redrive peek -topic DLQ [-partition P] -offset O           show one dead letter in full
  redrive run  -topic DLQ [filters] [-progress-group G]      copy dead letters back to their groups
  redrive      -topic DLQ [filters] ...                      the same as run

Filters: -group, -class, -partitions, -from, -to, -since, -until.
"redrive COMMAND -h" lists a command's flags.
`

// run dispatches to the command args name; args starting with a flag are
// run's, as before there were commands.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command")
	}
	switch cmd := args[0]; {
	case cmd == "list":
		return list(ctx, args[1:], stdout, stderr)
	case cmd == "peek":
		return peek(ctx, args[1:], stdout, stderr)
	case cmd == "run":
		return redrive(ctx, args[1:], stdout, stderr)
	case cmd == "help" || cmd == "-h" || cmd == "-help" || cmd == "--help":
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	case strings.HasPrefix(cmd, "-"):
		return redrive(ctx, args, stdout, stderr)
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

func redrive(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("redrive run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = usageOf(fs, "run -topic DLQ [filters] [-progress-group G] [-batch N]",
		"Copies the selected dead letters back to the groups that wrote them, each to its group's redrive topic.")
	var c common
	var sf selectionFlags
	addCommon(fs, &c)
	addSelection(fs, &sf)
	progress := fs.String("progress-group", "", "consumer group holding the progress (default <topic>.redrive, or <topic>.redrive.<groups> with -group)")
	batch := fs.Int("batch", 500, "dead letters copied per progress commit")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := c.check(); err != nil {
		return err
	}
	sel, err := sf.parse(time.Now())
	if err != nil {
		return err
	}
	group := *progress
	if group == "" {
		group = c.topic + ".redrive"
		if len(sel.groups) > 0 {
			gs := slices.Sorted(slices.Values(sel.groups))
			group += "." + strings.Join(slices.Compact(gs), ",")
		}
	}
	opts := append([]dlq.RedriveOpt{
		dlq.SeedBrokers(split(c.brokers)...),
		dlq.WithLogger(slog.New(slog.NewTextHandler(stderr, nil))),
		dlq.ProgressGroup(group),
		dlq.BatchSize(*batch),
	}, sel.redriveOpts()...)
	ctx, cancel := withTimeout(ctx, c.timeout)
	defer cancel()

	began := time.Now()
	stats, err := dlq.Redrive(ctx, c.topic, opts...)
	fmt.Fprintf(stdout, "copied %d, skipped %d, no group %d, invalid %d (progress group %s, %v)\n",
		stats.Copied, stats.Skipped, stats.NoGroup, stats.Invalid, group, time.Since(began).Round(time.Millisecond))
	topics := make([]string, 0, len(stats.Topics))
	for t := range stats.Topics {
		topics = append(topics, t)
	}
	sort.Strings(topics)
	for _, t := range topics {
		fmt.Fprintf(stdout, "  %s: %d\n", t, stats.Topics[t])
	}
	if stats.Skipped > 0 && (len(sel.classes) > 0 || !sel.since.IsZero() || !sel.until.IsZero()) {
		fmt.Fprintf(stderr, "note: the %d dead letters skipped count as done for progress group %s; re-drive them later with another -progress-group\n",
			stats.Skipped, group)
	}
	return err
}

// usageOf returns a flag.Usage for a command.
func usageOf(fs *flag.FlagSet, synopsis, what string) func() {
	return func() {
		fmt.Fprintf(fs.Output(), "Usage: redrive %s\n\n%s\n\nFlags:\n", synopsis, what)
		fs.PrintDefaults()
	}
}

// parseFlags parses a command's flags; it takes no arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return nil
}

// withTimeout bounds ctx by d, unless d is 0.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d > 0 {
		return context.WithTimeout(ctx, d)
	}
	return context.WithCancel(ctx)
}
