package main

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/dlq"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
)

const (
	source   = "sensor-data"
	dlqTopic = "sensor-data.dlq"
)

// t0 is when the first test letter failed: 2023-11-14T22:13:20Z.
var t0 = time.UnixMilli(1_700_000_000_000).UTC()

// testLetter describes a dead letter of the test topic.
type testLetter struct {
	dlqPartition int32
	value        string
	group, class string
	failed       time.Duration // after t0
	srcPartition int32
	srcOffset    int64
	err          string
}

func (l testLetter) record() *kgo.Record {
	h := func(k, v string) kgo.RecordHeader { return kgo.RecordHeader{Key: k, Value: []byte(v)} }
	return &kgo.Record{
		Topic: dlqTopic, Partition: l.dlqPartition, Key: []byte("sensor-" + l.value), Value: []byte(l.value),
		Timestamp: t0.Add(l.failed),
		Headers: []kgo.RecordHeader{
			h("trace-id", "t-"+l.value), {Key: "raw", Value: []byte{0, 1, 0xfe}},
			h(dlq.HeaderTopic, source), h(dlq.HeaderPartition, strconv.Itoa(int(l.srcPartition))),
			h(dlq.HeaderOffset, strconv.FormatInt(l.srcOffset, 10)), h(dlq.HeaderTimestamp, strconv.FormatInt(t0.Add(-time.Minute).UnixMilli(), 10)),
			h(dlq.HeaderGroup, l.group), h(dlq.HeaderClass, l.class), h(dlq.HeaderError, l.err),
			h(dlq.HeaderAttempts, "3"), h(dlq.HeaderFailedAt, strconv.FormatInt(t0.Add(l.failed).UnixMilli(), 10)),
		},
	}
}

// deadLetters starts a cluster whose dead-letter topic holds, in partition 0:
// usage's poison letter (0/0), alerts' unclassified one (0/1) and a record
// that is not a dead letter (0/2); in partition 1: usage's unclassified
// letter (1/0) and one of a consumer without a group (1/1) with a binary
// value. They failed an hour apart, in the order 0/0, 0/1, 1/0, 1/1.
func deadLetters(t *testing.T) *kafkatest.Cluster {
	t.Helper()
	cluster := kafkatest.NewCluster(t, 2, source, dlqTopic)
	letters := []*kgo.Record{
		testLetter{0, "hello", "usage", "poison", 0, 1, 7, "serde: bad magic byte 0x7b"}.record(),
		testLetter{0, "world", "alerts", "unclassified", time.Hour, 0, 3, "mongo: insert: timeout after 10s\nwhile writing alert for sensor 42 at site north-east-7"}.record(),
		{Topic: dlqTopic, Partition: 0, Value: []byte("stray")},
		testLetter{1, "again", "usage", "unclassified", 2 * time.Hour, 0, 4, "sink down"}.record(),
		testLetter{1, "\x00\x01binary\xff", "", "poison", 3 * time.Hour, 1, 9, "bad"}.record(),
	}
	cl := cluster.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, letters...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return cluster
}

// command runs the command with -brokers and -topic added after the
// command's name, and returns what it printed.
func command(t *testing.T, cluster *kafkatest.Cluster, cmd string, args ...string) string {
	t.Helper()
	var out, errs bytes.Buffer
	all := []string{"-brokers", strings.Join(cluster.Addrs, ","), "-topic", dlqTopic, "-timeout", "30s"}
	if cmd != "" {
		all = append([]string{cmd}, all...)
	}
	all = append(all, args...)
	if err := run(context.Background(), all, &out, &errs); err != nil {
		t.Fatalf("redrive %v: %v\n%s", all, err, errs.String())
	}
	return out.String()
}

func TestListPrintsEveryDeadLetterAndCountsThem(t *testing.T) {
	cluster := deadLetters(t)
	want := `DLQ        SOURCE                   GROUP        CLASS        ATTEMPTS  FAILED-AT             ERROR
0@0        sensor-data/1@7          usage        poison              3  2023-11-14T22:13:20Z  serde: bad magic byte 0x7b
0@1        sensor-data/0@3          alerts       unclassified        3  2023-11-14T23:13:20Z  mongo: insert: timeout after 10s while …
0@2        (not a dead letter: dlq: record sensor-data.dlq/0@2 has 0 h…)
1@0        sensor-data/0@4          usage        unclassified        3  2023-11-15T00:13:20Z  sink down
1@1        sensor-data/1@9          (none)       poison              3  2023-11-15T01:13:20Z  bad

4 dead letters listed, 1 invalid (not dead letters)
GROUP   CLASS         COUNT  FIRST-FAILED          LAST-FAILED           REDRIVE-TOPIC
(none)  poison        1      2023-11-15T01:13:20Z  2023-11-15T01:13:20Z  -
alerts  unclassified  1      2023-11-14T23:13:20Z  2023-11-14T23:13:20Z  sensor-data.redrive.alerts
usage   poison        1      2023-11-14T22:13:20Z  2023-11-14T22:13:20Z  sensor-data.redrive.usage
usage   unclassified  1      2023-11-15T00:13:20Z  2023-11-15T00:13:20Z  sensor-data.redrive.usage
`
	if got := command(t, cluster, "list", "-width", "40"); got != want {
		t.Errorf("list printed\n%s\nwant\n%s", got, want)
	}
}

func TestListFilters(t *testing.T) {
	cluster := deadLetters(t)
	rfc := func(d time.Duration) string { return t0.Add(d).Format(time.RFC3339) }
	for _, tc := range []struct {
		args    []string
		want    []string // DLQ column
		summary string
	}{
		{[]string{"-group", "usage"}, []string{"0@0", "1@0"},
			"2 dead letters listed, 2 passed over by the filters, 1 invalid (not dead letters)"},
		{[]string{"-group", "usage,alerts", "-class", "unclassified"}, []string{"0@1", "1@0"},
			"2 dead letters listed, 2 passed over by the filters, 1 invalid (not dead letters)"},
		{[]string{"-partitions", "1"}, []string{"1@0", "1@1"},
			"2 dead letters listed"},
		{[]string{"-from", "1", "-to", "2"}, []string{"0@1", "1@1"},
			"2 dead letters listed"},
		{[]string{"-since", rfc(time.Hour), "-until", rfc(3 * time.Hour)}, []string{"0@1", "1@0"},
			"2 dead letters listed, 2 passed over by the filters, 1 invalid (not dead letters)"},
		{[]string{"-partitions", "0", "-class", "poison", "-since", rfc(0), "-until", rfc(time.Second)}, []string{"0@0"},
			"1 dead letter listed, 1 passed over by the filters, 1 invalid (not dead letters)"},
		{[]string{"-since", "1h"}, nil, // they failed in 2023
			"0 dead letters listed, 4 passed over by the filters, 1 invalid (not dead letters)"},
		{[]string{"-until", "1d"}, []string{"0@0", "0@1", "1@0", "1@1"},
			"4 dead letters listed, 1 invalid (not dead letters)"},
	} {
		out := command(t, cluster, "list", tc.args...)
		lines := strings.Split(out, "\n")
		var got []string
		for _, l := range lines[1:] {
			if l == "" {
				break
			}
			got = append(got, strings.Fields(l)[0])
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("list %v listed %v, want %v:\n%s", tc.args, got, tc.want, out)
		}
		if !slices.Contains(lines, tc.summary) {
			t.Errorf("list %v: no summary %q in\n%s", tc.args, tc.summary, out)
		}
	}
}

func TestListJSON(t *testing.T) {
	cluster := deadLetters(t)
	out := command(t, cluster, "list", "-json", "-group", "alerts")
	var l jsonLetter
	if err := json.Unmarshal([]byte(out), &l); err != nil || strings.Count(out, "\n") != 1 {
		t.Fatalf("list -json -group alerts printed %q (%v), want one JSON object", out, err)
	}
	want := jsonLetter{
		DLQPartition: 0, DLQOffset: 1, Topic: source, Partition: 0, Offset: 3, Timestamp: t0.Add(-time.Minute),
		Group: "alerts", Class: "unclassified", Attempts: 3, FailedAt: t0.Add(time.Hour),
		Error:        "mongo: insert: timeout after 10s\nwhile writing alert for sensor 42 at site north-east-7",
		RedriveTopic: "sensor-data.redrive.alerts",
	}
	if l != want {
		t.Errorf("list -json printed\n%+v\nwant\n%+v", l, want)
	}

	out = command(t, cluster, "list", "-json")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("list -json printed %d lines, want 5 (4 letters, 1 invalid):\n%s", len(lines), out)
	}
	var bad jsonInvalid
	if err := json.Unmarshal([]byte(lines[2]), &bad); err != nil || bad.DLQOffset != 2 || !strings.Contains(bad.Invalid, "headers") {
		t.Errorf("the record at 0@2 is printed as %s, want it invalid", lines[2])
	}
}

func TestPeekShowsOneDeadLetterInFull(t *testing.T) {
	cluster := deadLetters(t)
	want := `dead letter    sensor-data.dlq/0@1
written at     2023-11-14T23:13:20.000Z
source         sensor-data/0@3
timestamp      2023-11-14T22:12:20.000Z
group          alerts
class          unclassified
attempts       3
failed at      2023-11-14T23:13:20.000Z
redrive to     sensor-data.redrive.alerts/0
error          mongo: insert: timeout after 10s
               while writing alert for sensor 42 at site north-east-7
headers        2 of the original record
  trace-id: t-world
  raw: (hex) 0001fe
key            12 bytes, text
  sensor-world
value          5 bytes, text
  world
`
	if got := command(t, cluster, "peek", "-offset", "1"); got != want {
		t.Errorf("peek 0@1 printed\n%s\nwant\n%s", got, want)
	}

	got := command(t, cluster, "peek", "-partition", "1", "-offset", "1", "-max-bytes", "4")
	for _, line := range []string{
		"group          (none)",
		"redrive to     nowhere: a consumer without a group failed it",
		"  raw: (hex) 0001fe",
		"value          9 bytes, hex (truncated: first 4 of 9 bytes shown; -max-bytes 0 shows all)",
		"  00000000  00 01 62 69                                       |..bi|",
	} {
		if !slices.Contains(strings.Split(got, "\n"), line) {
			t.Errorf("peek 1@1 -max-bytes 4 has no line %q:\n%s", line, got)
		}
	}
	if got := command(t, cluster, "peek", "-offset", "1", "-max-bytes", "3"); !strings.Contains(got,
		"value          5 bytes, text (truncated: first 3 of 5 bytes shown; -max-bytes 0 shows all)\n  wor\n") {
		t.Errorf("peek 0@1 -max-bytes 3 printed\n%s", got)
	}
	if got := command(t, cluster, "peek", "-offset", "2"); !strings.Contains(got, "not a letter   dlq: record sensor-data.dlq/0@2 has 0 headers") ||
		!strings.HasSuffix(got, "value          5 bytes, text\n  stray\n") {
		t.Errorf("peek of a record that is no dead letter printed\n%s", got)
	}

	var out, errs bytes.Buffer
	err := run(context.Background(), []string{"peek", "-brokers", strings.Join(cluster.Addrs, ","), "-topic", dlqTopic, "-offset", "3"}, &out, &errs)
	if err == nil || !strings.Contains(err.Error(), "ends at 3") {
		t.Errorf("peek past the end returned %v", err)
	}
}

// readTopic returns the records of topic.
func readTopic(t *testing.T, cluster *kafkatest.Cluster, topic string) []*kgo.Record {
	t.Helper()
	ends := cluster.EndOffsets(t, topic)
	starts := make(map[int32]kgo.Offset)
	var n int64
	for p, end := range ends {
		starts[p] = kgo.NewOffset().AtStart()
		n += end
	}
	cl := cluster.Client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: starts}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []*kgo.Record
	for int64(len(out)) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("reading %s: %v", topic, err)
		}
		out = append(out, fs.Records()...)
	}
	slices.SortFunc(out, func(a, b *kgo.Record) int { return int(a.Partition-b.Partition)*1000 + int(a.Offset-b.Offset) })
	return out
}

func TestRunRedrivesTheSelectedGroupOnly(t *testing.T) {
	cluster := deadLetters(t)
	usage := dlq.RedriveTopic(source, "usage")

	out := command(t, cluster, "run", "-group", "usage")
	if want := "copied 2, skipped 2, no group 0, invalid 1 (progress group sensor-data.dlq.redrive.usage, "; !strings.HasPrefix(out, want) ||
		!strings.HasSuffix(out, ")\n  sensor-data.redrive.usage: 2\n") {
		t.Errorf("run -group usage printed %q, want %q… and 2 to %s", out, want, usage)
	}
	got := readTopic(t, cluster, usage)
	if len(got) != 2 {
		t.Fatalf("%s holds %d records, want usage's 2 letters", usage, len(got))
	}
	for i, want := range []struct {
		partition int32
		value     string
	}{{0, "again"}, {1, "hello"}} {
		r := got[i]
		if r.Partition != want.partition || string(r.Value) != want.value || string(r.Key) != "sensor-"+want.value ||
			len(r.Headers) != 2 || string(r.Headers[0].Value) != "t-"+want.value || !r.Timestamp.Equal(t0.Add(-time.Minute)) {
			t.Errorf("copy %d: %d %q %q %v %v, want the original of %q in partition %d", i, r.Partition, r.Key, r.Value, r.Headers, r.Timestamp, want.value, want.partition)
		}
	}
	if out := command(t, cluster, "run", "-group", "usage"); !strings.HasPrefix(out, "copied 0, skipped 0, no group 0, invalid 0 ") {
		t.Errorf("second run -group usage printed %q, want nothing copied", out)
	}

	// The form without a command is run; alerts' progress is its own.
	if out := command(t, cluster, "", "-group", "alerts"); !strings.HasPrefix(out, "copied 1, skipped 3, no group 0, invalid 1 (progress group sensor-data.dlq.redrive.alerts, ") ||
		!strings.Contains(out, "sensor-data.redrive.alerts: 1") {
		t.Errorf("redrive -group alerts printed %q", out)
	}
	if n := len(readTopic(t, cluster, usage)); n != 2 {
		t.Errorf("%s holds %d records after alerts' run, want 2", usage, n)
	}

	// By failure time, with a progress group of its own: [1h, 3h) holds
	// alerts' letter and usage's second; the letter without a group failed
	// at 3h.
	rfc := func(d time.Duration) string { return t0.Add(d).Format(time.RFC3339) }
	if out := command(t, cluster, "run", "-progress-group", "window", "-since", rfc(time.Hour), "-until", rfc(3*time.Hour)); !strings.HasPrefix(out,
		"copied 2, skipped 2, no group 0, invalid 1 (progress group window, ") ||
		!strings.Contains(out, "sensor-data.redrive.alerts: 1") || !strings.Contains(out, "sensor-data.redrive.usage: 1") {
		t.Errorf("run -since 1h -until 3h printed %q", out)
	}
	var values []string
	for _, r := range readTopic(t, cluster, usage) {
		values = append(values, string(r.Value))
	}
	if want := []string{"again", "again", "hello"}; !slices.Equal(values, want) {
		t.Errorf("%s holds %q, want %q: again once more", usage, values, want)
	}
}

func TestRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"frobnicate", "-topic", "x.dlq"},
		{"list"},
		{"list", "-topic", "x.dlq", "-since", "yesterday"},
		{"list", "-topic", "x.dlq", "-since", "2h", "-until", "3h"},
		{"list", "-topic", "x.dlq", "-class", "uncertain"},
		{"list", "-topic", "x.dlq", "-width", "-1"},
		{"peek", "-topic", "x.dlq"},
		{"peek", "-topic", "x.dlq", "-offset", "1", "-partition", "-1"},
		{"run", "-topic", "x.dlq", "-class", "fatal"},
		{"-topic", "x.dlq", "-partitions", "one"},
		{"-topic", "x.dlq", "-from", "5", "-to", "2"},
		{"-topic", "x.dlq", "extra"},
	} {
		var out, errs bytes.Buffer
		if err := run(context.Background(), args, &out, &errs); err == nil {
			t.Errorf("redrive %v succeeded", args)
		}
	}
}

func TestParseTime(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":                          {},
		"2024-04-30T10:00:00Z":      time.Date(2024, 4, 30, 10, 0, 0, 0, time.UTC),
		"2024-04-30T10:00:00+02:00": time.Date(2024, 4, 30, 8, 0, 0, 0, time.UTC),
		"90m":                       now.Add(-90 * time.Minute),
		"2h":                        now.Add(-2 * time.Hour),
		"3d":                        now.Add(-72 * time.Hour),
	} {
		if got, err := parseTime("-since", in, now); err != nil || !got.Equal(want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"yesterday", "-2h", "2024-04-30", "1.5d"} {
		if _, err := parseTime("-since", in, now); err == nil {
			t.Errorf("parseTime(%q) succeeded", in)
		}
	}
}
