package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/dlq"
)

// listFormat is the column layout of list's lines, header included.
const listFormat = "%-10s %-24s %-12s %-12s %8s  %-20s  %s\n"

func list(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("redrive list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = usageOf(fs, "list -topic DLQ [filters] [-json] [-width N]",
		"Lists the dead letters of the topic, one line each, in partition and offset order, and then counts them by group and class.")
	var c common
	var sf selectionFlags
	addCommon(fs, &c)
	addSelection(fs, &sf)
	asJSON := fs.Bool("json", false, "one JSON object per dead letter, and no summary")
	width := fs.Int("width", 60, "cut the error message to this many characters; 0 means no limit")
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
	if *width < 0 {
		return fmt.Errorf("-width %d must not be negative", *width)
	}
	ctx, cancel := withTimeout(ctx, c.timeout)
	defer cancel()

	rd, err := newReader(&c)
	if err != nil {
		return err
	}
	defer rd.close()
	spans, err := rd.spans(ctx, sel.partitions, sel.from, sel.to)
	if err != nil {
		return err
	}

	var (
		enc    = json.NewEncoder(stdout)
		sum    = make(map[groupClass]*tally)
		listed int
		other  int // dead letters the filters passed over
		bad    int // records that are no dead letters
	)
	if !*asJSON {
		fmt.Fprintf(stdout, listFormat, "DLQ", "SOURCE", "GROUP", "CLASS", "ATTEMPTS", "FAILED-AT", "ERROR")
	}
	for _, s := range spans {
		err := rd.read(ctx, s, func(r *kgo.Record) (bool, error) {
			if r.Attrs.IsControl() {
				return true, nil
			}
			l, perr := dlq.Parse(r)
			switch {
			case perr != nil:
				bad++
				if sel.byHeaders() {
					return true, nil
				}
				if *asJSON {
					return true, enc.Encode(jsonInvalid{DLQPartition: r.Partition, DLQOffset: r.Offset, Invalid: perr.Error()})
				}
				fmt.Fprintf(stdout, "%-10s (not a dead letter: %s)\n", at(r.Partition, r.Offset), cut(perr.Error(), *width))
				return true, nil
			case !sel.matches(l):
				other++
				return true, nil
			}
			listed++
			k := groupClass{l.Group, l.Class.String()}
			if sum[k] == nil {
				sum[k] = &tally{first: l.FailedAt, last: l.FailedAt}
			}
			sum[k].add(l)
			if *asJSON {
				return true, enc.Encode(newJSONLetter(r, l))
			}
			fmt.Fprintf(stdout, listFormat, at(r.Partition, r.Offset), fmt.Sprintf("%s/%s", l.Topic, at(l.Partition, l.Offset)),
				orNone(l.Group), l.Class, fmt.Sprint(l.Attempts), l.FailedAt.UTC().Format(time.RFC3339), cut(l.Error, *width))
			return true, nil
		})
		if err != nil {
			return err
		}
	}
	if *asJSON {
		return nil
	}

	fmt.Fprintf(stdout, "\n%s listed", plural(listed, "dead letter"))
	if other > 0 {
		fmt.Fprintf(stdout, ", %d passed over by the filters", other)
	}
	if bad > 0 {
		fmt.Fprintf(stdout, ", %d invalid (not dead letters)", bad)
	}
	fmt.Fprintln(stdout)
	if len(sum) == 0 {
		return nil
	}
	keys := make([]groupClass, 0, len(sum))
	for k := range sum {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b groupClass) int {
		return cmp.Or(cmp.Compare(a.group, b.group), cmp.Compare(a.class, b.class))
	})
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tCLASS\tCOUNT\tFIRST-FAILED\tLAST-FAILED\tREDRIVE-TOPIC")
	for _, k := range keys {
		t := sum[k]
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", orNone(k.group), k.class, t.n,
			t.first.UTC().Format(time.RFC3339), t.last.UTC().Format(time.RFC3339), t.redriveTopics())
	}
	return tw.Flush()
}

type groupClass struct{ group, class string }

// tally counts the dead letters of a group and class.
type tally struct {
	n           int
	first, last time.Time
	targets     []string // redrive topics, in order of appearance
}

func (t *tally) add(l dlq.Letter) {
	t.n++
	if l.FailedAt.Before(t.first) {
		t.first = l.FailedAt
	}
	if l.FailedAt.After(t.last) {
		t.last = l.FailedAt
	}
	if to := redriveTopic(l); to != "" && !slices.Contains(t.targets, to) {
		t.targets = append(t.targets, to)
	}
}

// redriveTopics says where run copies the letters: "-" for nowhere.
func (t *tally) redriveTopics() string {
	if len(t.targets) == 0 {
		return "-"
	}
	return strings.Join(t.targets, ",")
}

// jsonLetter is list's -json line for a dead letter.
type jsonLetter struct {
	DLQPartition int32     `json:"dlq_partition"`
	DLQOffset    int64     `json:"dlq_offset"`
	Topic        string    `json:"topic"`
	Partition    int32     `json:"partition"`
	Offset       int64     `json:"offset"`
	Timestamp    time.Time `json:"timestamp"`
	Group        string    `json:"group"`
	Class        string    `json:"class"`
	Attempts     int       `json:"attempts"`
	FailedAt     time.Time `json:"failed_at"`
	Error        string    `json:"error"`
	RedriveTopic string    `json:"redrive_topic,omitempty"` // none without a group
}

// jsonInvalid is list's -json line for a record that is not a dead letter.
type jsonInvalid struct {
	DLQPartition int32  `json:"dlq_partition"`
	DLQOffset    int64  `json:"dlq_offset"`
	Invalid      string `json:"invalid"`
}

func newJSONLetter(r *kgo.Record, l dlq.Letter) jsonLetter {
	return jsonLetter{
		DLQPartition: r.Partition, DLQOffset: r.Offset,
		Topic: l.Topic, Partition: l.Partition, Offset: l.Offset, Timestamp: l.Timestamp.UTC(),
		Group: l.Group, Class: l.Class.String(), Attempts: l.Attempts, FailedAt: l.FailedAt.UTC(),
		Error: l.Error, RedriveTopic: redriveTopic(l),
	}
}

// redriveTopic returns where redrive copies l, "" for nowhere.
func redriveTopic(l dlq.Letter) string {
	if l.Group == "" {
		return ""
	}
	return dlq.RedriveTopic(dlq.SourceTopic(l.Topic, l.Group), l.Group)
}

// plural returns n and the noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// at formats a partition and offset as partition@offset.
func at(p int32, o int64) string { return fmt.Sprintf("%d@%d", p, o) }

func orNone(group string) string {
	if group == "" {
		return "(none)"
	}
	return group
}

// cut puts s on one line and cuts it to n characters (n = 0: no limit),
// ending with "…" where it was cut.
func cut(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if n == 0 || utf8.RuneCountInString(s) <= n {
		return s
	}
	if n == 1 {
		return "…"
	}
	rs := []rune(s)
	return string(rs[:n-1]) + "…"
}
