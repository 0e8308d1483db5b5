package dlq_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/dlq"
	"github.com/kconsumer/kconsumer/fault"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
)

// deadLetter runs a consumer over the records until it committed them all,
// dead-lettering values starting with "p" as poison and with "u" as
// unclassified errors.
func deadLetter(t *testing.T, c *kafkatest.Cluster, recs []*kgo.Record) {
	t.Helper()
	c.Produce(t, recs...)
	h := newHandler(func(r *kgo.Record, _ int) error {
		switch {
		case bytes.HasPrefix(r.Value, []byte("p")):
			return fault.MarkPoison(errors.New("bad"))
		case bytes.HasPrefix(r.Value, []byte("u")):
			return errors.New("odd")
		}
		return nil
	})
	stop := start(t, c, newRouter(t, c, dlq.MaxAttempts(1)), h)
	ends := c.EndOffsets(t, topic)
	kafkatest.WaitFor(t, 20*time.Second, "the records committed", func() bool {
		got := c.Committed(t, group, topic)
		for p, end := range ends {
			if got[p] != end {
				return false
			}
		}
		return true
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// redriven is where Redrive returns the test group's dead letters.
var redriven = dlq.RedriveTopic(topic, group)

func redrive(t *testing.T, c *kafkatest.Cluster, opts ...dlq.RedriveOpt) dlq.RedriveStats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := []dlq.RedriveOpt{dlq.SeedBrokers(c.Addrs...), dlq.WithLogger(quiet)}
	s, err := dlq.Redrive(ctx, dlqTopic, append(base, opts...)...)
	if err != nil {
		t.Fatalf("Redrive: %v", err)
	}
	return s
}

// values returns the values of recs, as strings.
func values(recs []*kgo.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Value)
	}
	return out
}

func TestRedriveCopiesDeadLettersBackOnce(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 2, topic, dlqTopic)
	var recs []*kgo.Record
	for i := range 12 {
		v := fmt.Sprintf("ok%d", i)
		switch i % 4 {
		case 1:
			v = fmt.Sprintf("p%d", i)
		case 2:
			v = fmt.Sprintf("u%d", i)
		}
		recs = append(recs, &kgo.Record{
			Topic:     topic,
			Key:       fmt.Appendf(nil, "k%d", i),
			Value:     []byte(v),
			Headers:   []kgo.RecordHeader{{Key: "h", Value: fmt.Appendf(nil, "%d", i)}, {Key: "n"}},
			Timestamp: time.UnixMilli(1_700_000_000_000 + int64(i)),
		})
	}
	deadLetter(t, cluster, recs)
	before := cluster.EndOffsets(t, redriven)

	s := redrive(t, cluster)
	if s.Copied != 6 || s.Skipped != 0 || s.Invalid != 0 || s.Topics[redriven] != 6 {
		t.Fatalf("first run: %+v, want 6 copied to %s", s, redriven)
	}
	var copies []*kgo.Record
	for _, r := range cluster.ReadAll(t, redriven) {
		if r.Offset >= before[r.Partition] {
			copies = append(copies, r)
		}
	}
	if len(copies) != 6 {
		t.Fatalf("%d copies in %s, want 6", len(copies), redriven)
	}
	for _, c := range copies {
		var orig *kgo.Record
		for _, r := range recs {
			if bytes.Equal(r.Value, c.Value) {
				orig = r
			}
		}
		if orig == nil || !(bytes.HasPrefix(c.Value, []byte("p")) || bytes.HasPrefix(c.Value, []byte("u"))) {
			t.Fatalf("copy %q is not one of the failed records", c.Value)
		}
		if c.Partition != orig.Partition || !bytes.Equal(c.Key, orig.Key) || !c.Timestamp.Equal(orig.Timestamp) ||
			!slices.EqualFunc(c.Headers, orig.Headers, func(a, b kgo.RecordHeader) bool { return a.Key == b.Key && bytes.Equal(a.Value, b.Value) }) {
			t.Errorf("copy %q: partition %d key %q time %v headers %v; want the original's %d %q %v %v",
				c.Value, c.Partition, c.Key, c.Timestamp, c.Headers, orig.Partition, orig.Key, orig.Timestamp, orig.Headers)
		}
	}

	if s := redrive(t, cluster); s.Copied != 0 {
		t.Errorf("second run copied %d, want 0", s.Copied)
	}
	if got := total(cluster.EndOffsets(t, redriven)); got != total(before)+6 {
		t.Errorf("%s holds %d records after two runs, want %d", topic, got, total(before)+6)
	}
}

func TestRedriveFiltersByClassAndOffset(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic, dlqTopic)
	deadLetter(t, cluster, produceLater("p0", "u1", "ok", "p2", "u3"))
	// Something that is not a dead letter, at DLQ offset 4.
	cluster.Produce(t, &kgo.Record{Topic: dlqTopic, Value: []byte("stray")})
	n := total(cluster.EndOffsets(t, redriven))

	s := redrive(t, cluster, dlq.ProgressGroup("a"), dlq.Classes(fault.Unclassified))
	if s.Copied != 2 || s.Skipped != 2 || s.Invalid != 1 {
		t.Errorf("unclassified only: %+v, want 2 copied, 2 skipped, 1 invalid", s)
	}
	if s := redrive(t, cluster, dlq.ProgressGroup("a")); s.Copied != 0 || s.Skipped != 0 {
		t.Errorf("same group again: %+v, want nothing: the group read it all", s)
	}
	if s := redrive(t, cluster, dlq.ProgressGroup("b"), dlq.Classes(fault.Poison), dlq.Offsets(0, 1)); s.Copied != 1 || s.Skipped != 0 {
		t.Errorf("poison at DLQ offset 0: %+v, want 1 copied", s)
	}
	if s := redrive(t, cluster, dlq.ProgressGroup("b"), dlq.Classes(fault.Poison)); s.Copied != 1 || s.Skipped != 2 || s.Invalid != 1 {
		t.Errorf("poison from offset 1: %+v, want 1 copied, 2 skipped, 1 invalid", s)
	}
	var got []string
	for _, r := range cluster.ReadAll(t, redriven)[n:] {
		got = append(got, string(r.Value))
	}
	if want := []string{"u1", "u3", "p0", "p2"}; !slices.Equal(got, want) {
		t.Errorf("copies %v, want %v", got, want)
	}
}

func TestRedriveCrashRecopiesAtMostOneBatch(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic, dlqTopic)
	deadLetter(t, cluster, produceLater("p0", "p1", "p2", "p3", "p4"))
	n := total(cluster.EndOffsets(t, redriven))

	restore := cluster.RejectCommits()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := dlq.Redrive(ctx, dlqTopic, dlq.SeedBrokers(cluster.Addrs...), dlq.WithLogger(quiet), dlq.BatchSize(2))
	if err == nil || !strings.Contains(err.Error(), "committing progress") {
		t.Fatalf("Redrive with commits rejected returned %v, want a progress commit error", err)
	}
	if s.Copied < 1 || s.Copied > 2 {
		t.Fatalf("crashed run copied %d, want one batch of at most 2", s.Copied)
	}
	restore()
	if s2 := redrive(t, cluster, dlq.BatchSize(2)); s2.Copied != 5 {
		t.Errorf("run after the crash copied %d, want all 5 again", s2.Copied)
	}
	if s3 := redrive(t, cluster, dlq.BatchSize(2)); s3.Copied != 0 {
		t.Errorf("third run copied %d, want 0", s3.Copied)
	}
	got := values(cluster.ReadAll(t, redriven)[n:])
	want := append(values(produceLater("p0", "p1", "p2", "p3", "p4"))[:s.Copied], "p0", "p1", "p2", "p3", "p4")
	if !slices.Equal(got, want) {
		t.Errorf("copies %v, want the crashed batch once more and then each once: %v", got, want)
	}
}

func TestRedriveRefusesAMissingTopicOrPartition(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic)
	_, err := dlq.Redrive(context.Background(), "nope.dlq", dlq.SeedBrokers(cluster.Addrs...), dlq.WithLogger(quiet))
	if err == nil {
		t.Fatal("Redrive of a missing topic returned nil")
	}
	if !strings.Contains(err.Error(), "nope.dlq") {
		t.Errorf("error %q does not name the topic", err)
	}
	_, err = dlq.Redrive(context.Background(), topic, dlq.SeedBrokers(cluster.Addrs...), dlq.WithLogger(quiet), dlq.Partitions(3))
	if err == nil || !strings.Contains(err.Error(), "no partition 3") {
		t.Errorf("Redrive of a missing partition returned %v", err)
	}
}

// produceLater returns records of topic with the given values, not yet
// produced.
func produceLater(vs ...string) []*kgo.Record {
	out := make([]*kgo.Record, len(vs))
	for i, v := range vs {
		out[i] = &kgo.Record{Topic: topic, Key: []byte("k"), Value: []byte(v)}
	}
	return out
}

func TestRedriveSkipsWhatRetentionDeleted(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic, dlqTopic)
	deadLetter(t, cluster, produceLater("p0", "p1", "p2"))
	n := total(cluster.EndOffsets(t, redriven))
	if err := cluster.DeleteRecords(dlqTopic, 0, 2); err != nil {
		t.Fatal(err)
	}
	if s := redrive(t, cluster); s.Copied != 1 {
		t.Errorf("copied %d with two of three dead letters deleted, want 1", s.Copied)
	}
	if got := values(cluster.ReadAll(t, redriven)[n:]); !slices.Equal(got, []string{"p2"}) {
		t.Errorf("copies %v, want [p2]", got)
	}
	if err := cluster.DeleteRecords(dlqTopic, 0, 3); err != nil {
		t.Fatal(err)
	}
	if s := redrive(t, cluster, dlq.ProgressGroup("fresh")); s.Copied != 0 {
		t.Errorf("copied %d from an emptied topic, want 0", s.Copied)
	}
}

// TestRedriveCopiesARecordDeadLetteredTwiceOnce: a group may dead-letter a
// record again after a rebalance; one run copies it once.
func TestRedriveCopiesARecordDeadLetteredTwiceOnce(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic, dlqTopic)
	h := func(k, v string) kgo.RecordHeader { return kgo.RecordHeader{Key: k, Value: []byte(v)} }
	letter := func(failedAt string) *kgo.Record {
		return &kgo.Record{Topic: dlqTopic, Value: []byte("p7"), Headers: []kgo.RecordHeader{
			h(dlq.HeaderTopic, topic), h(dlq.HeaderPartition, "0"), h(dlq.HeaderOffset, "7"),
			h(dlq.HeaderTimestamp, "1700000000000"), h(dlq.HeaderGroup, group), h(dlq.HeaderClass, "poison"),
			h(dlq.HeaderError, "bad"), h(dlq.HeaderAttempts, "1"), h(dlq.HeaderFailedAt, failedAt),
		}}
	}
	cluster.Produce(t, letter("1700000000500"), letter("1700000009500"))
	s := redrive(t, cluster)
	if s.Copied != 1 || s.Duplicates != 1 {
		t.Fatalf("redrive: %+v, want 1 copied and 1 duplicate", s)
	}
	if got := values(cluster.ReadAll(t, redriven)); !slices.Equal(got, []string{"p7"}) {
		t.Errorf("redrive topic holds %v, want the record once", got)
	}
}

// letterFor returns a dead letter of the test group for the record of
// from at partition p, offset off, as a Router writes it; from is the topic
// the record was read from, the source or a redrive topic.
func letterFor(from string, p int32, off int64, v string) *kgo.Record {
	h := func(k, v string) kgo.RecordHeader { return kgo.RecordHeader{Key: k, Value: []byte(v)} }
	return &kgo.Record{Topic: dlqTopic, Value: []byte(v), Headers: []kgo.RecordHeader{
		h(dlq.HeaderTopic, from), h(dlq.HeaderPartition, strconv.FormatInt(int64(p), 10)),
		h(dlq.HeaderOffset, strconv.FormatInt(off, 10)), h(dlq.HeaderTimestamp, "1700000000000"),
		h(dlq.HeaderGroup, group), h(dlq.HeaderClass, "poison"), h(dlq.HeaderError, "bad"),
		h(dlq.HeaderAttempts, "1"), h(dlq.HeaderFailedAt, "1700000000500"),
	}}
}

// TestRedriveTellsASourceRecordFromARedriveRecordAtTheSameOffset: a letter
// written while consuming the redrive topic carries that topic's offset, a
// numbering of its own, so source p0@7 and redrive p0@7 are two records.
func TestRedriveTellsASourceRecordFromARedriveRecordAtTheSameOffset(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic, dlqTopic)
	cluster.Produce(t, letterFor(topic, 0, 7, "from-source"), letterFor(redriven, 0, 7, "from-redrive"))
	s := redrive(t, cluster)
	if s.Copied != 2 || s.Duplicates != 0 || s.Topics[redriven] != 2 {
		t.Fatalf("redrive: %+v, want both copied to %s, no duplicate", s, redriven)
	}
	if got, want := values(cluster.ReadAll(t, redriven)), []string{"from-source", "from-redrive"}; !slices.Equal(got, want) {
		t.Errorf("redrive topic holds %v, want %v", got, want)
	}
	if c := cluster.Committed(t, dlqTopic+".redrive", dlqTopic); c[0] != 2 {
		t.Errorf("progress at %d, want 2", c[0])
	}
}

// growSource adds partitions to the source topic, up to n.
func growSource(t *testing.T, c *kafkatest.Cluster, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resps, err := c.Admin.UpdatePartitions(ctx, n, topic)
	if err == nil {
		err = resps[topic].Err
	}
	if err != nil {
		t.Fatalf("adding partitions to %s: %v", topic, err)
	}
}

// partitionsOf returns how many partitions topic has. It asks with a client
// of its own: c.Admin caches metadata for a few seconds.
func partitionsOf(t *testing.T, c *kafkatest.Cluster, topic string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	details, err := kadm.NewClient(c.Client(t)).ListTopics(ctx, topic)
	if err == nil {
		err = details[topic].Err
	}
	if err != nil {
		t.Fatalf("listing %s: %v", topic, err)
	}
	return len(details[topic].Partitions)
}

// TestRedriveGrowsARedriveTopicBehindItsSource: a redrive topic created
// before its source gained partitions gets them when a dead letter of a new
// partition is re-driven.
func TestRedriveGrowsARedriveTopicBehindItsSource(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic, dlqTopic)
	cluster.Produce(t, letterFor(topic, 0, 0, "old"))
	if s := redrive(t, cluster); s.Copied != 1 {
		t.Fatalf("first run: %+v, want 1 copied", s)
	}
	if n := partitionsOf(t, cluster, redriven); n != 1 {
		t.Fatalf("%s has %d partitions, want 1", redriven, n)
	}
	growSource(t, cluster, 3)
	cluster.Produce(t, letterFor(topic, 2, 0, "new"))
	if s := redrive(t, cluster); s.Copied != 1 {
		t.Fatalf("run after the source grew: %+v, want 1 copied", s)
	}
	if n := partitionsOf(t, cluster, redriven); n != 3 {
		t.Errorf("%s has %d partitions, want the source's 3", redriven, n)
	}
	for _, r := range cluster.ReadAll(t, redriven) {
		if want := map[string]int32{"old": 0, "new": 2}[string(r.Value)]; r.Partition != want {
			t.Errorf("copy %q in partition %d, want %d", r.Value, r.Partition, want)
		}
	}
}

// TestRedriveCopiesADeadLetterOfANewSourcePartition: the source gains
// partitions after its redrive topic was created; a record of a new
// partition is dead-lettered and re-driven to the same partition of the
// redrive topic.
func TestRedriveCopiesADeadLetterOfANewSourcePartition(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic, dlqTopic)
	deadLetter(t, cluster, produceLater("p0"))
	if n := partitionsOf(t, cluster, redriven); n != 1 {
		t.Fatalf("%s has %d partitions, want 1", redriven, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resps, err := cluster.Admin.CreatePartitions(ctx, 2, topic)
	if err == nil {
		err = resps[topic].Err
	}
	if err != nil {
		t.Fatalf("adding partitions to %s: %v", topic, err)
	}
	cl := cluster.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: 2, Key: []byte("k"), Value: []byte("p-new")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// deadLetter's wait reads end offsets through c.Admin, whose metadata
	// of the source may predate its growth: wait for the dead letter.
	router := newRouter(t, cluster)
	stop := start(t, cluster, router, newHandler(func(*kgo.Record, int) error { return fault.MarkPoison(errors.New("bad")) }))
	kafkatest.WaitFor(t, 20*time.Second, "the record of partition 2 dead-lettered", func() bool {
		return router.RouterStats().DeadLettered == 1
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	// The Router grew the redrive topic when it started.
	if n := partitionsOf(t, cluster, redriven); n != 3 {
		t.Errorf("%s has %d partitions after the Router started, want the source's 3", redriven, n)
	}

	if s := redrive(t, cluster); s.Copied != 2 || s.Topics[redriven] != 2 {
		t.Fatalf("redrive: %+v, want 2 copied to %s", s, redriven)
	}
	if n := partitionsOf(t, cluster, redriven); n != 3 {
		t.Errorf("%s has %d partitions, want the source's 3", redriven, n)
	}
	for _, r := range cluster.ReadAll(t, redriven) {
		if want := map[string]int32{"p0": 0, "p-new": 2}[string(r.Value)]; r.Partition != want {
			t.Errorf("copy %q in partition %d, want %d", r.Value, r.Partition, want)
		}
	}
}
