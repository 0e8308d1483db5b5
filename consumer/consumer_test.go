package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
)

const topic = "events"

// recorder is a handler that remembers every record it saw, by partition.
type recorder struct {
	mu    sync.Mutex
	seen  map[int32][]int64 // offsets handled successfully, in order
	count int
}

func newRecorder() *recorder { return &recorder{seen: make(map[int32][]int64)} }

func (r *recorder) Handle(_ context.Context, rec *kgo.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen[rec.Partition] = append(r.seen[rec.Partition], rec.Offset)
	r.count++
	return nil
}

func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// offsets returns a copy of the offsets seen per partition.
func (r *recorder) offsets() map[int32][]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[int32][]int64, len(r.seen))
	for p, o := range r.seen {
		out[p] = append([]int64(nil), o...)
	}
	return out
}

// testOpts are the options every test consumer uses: fast group timings so
// rebalances take milliseconds, and quiet logs.
func testOpts(c *kafkatest.Cluster, group string, extra ...consumer.Opt) []consumer.Opt {
	if group != "" {
		extra = append([]consumer.Opt{consumer.Group(group)}, extra...)
	}
	return c.ConsumerOpts(topic, extra...)
}

func TestConsumesEveryRecordInPartitionOrder(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 4, topic)
	produced := cluster.ProduceSeq(t, topic, 2000, 50)
	rec := newRecorder()
	c, err := consumer.New(rec, testOpts(cluster, "g")...)
	if err != nil {
		t.Fatal(err)
	}
	stop := kafkatest.Run(t, c)
	kafkatest.WaitFor(t, 20*time.Second, "all records handled", func() bool { return rec.total() >= len(produced) })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rec.total() != len(produced) {
		t.Fatalf("handled %d records, produced %d", rec.total(), len(produced))
	}
	want := expectedOffsets(produced)
	for p, offs := range rec.offsets() {
		if fmt.Sprint(offs) != fmt.Sprint(want[p]) {
			t.Errorf("partition %d: handled offsets out of order or incomplete", p)
		}
	}
	committed := cluster.Committed(t, "g", topic)
	for p, offs := range want {
		if committed[p] != offs[len(offs)-1]+1 {
			t.Errorf("partition %d: committed %d, want %d", p, committed[p], offs[len(offs)-1]+1)
		}
	}
}

// expectedOffsets returns the offsets of recs by partition, ascending.
func expectedOffsets(recs []*kgo.Record) map[int32][]int64 {
	out := make(map[int32][]int64)
	for _, r := range recs {
		out[r.Partition] = append(out[r.Partition], r.Offset)
	}
	for p := range out {
		slices.Sort(out[p])
	}
	return out
}

func TestCommitNeverPassesAFailingRecord(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic)
	cluster.ProduceSeq(t, topic, 100, 1)
	const failAt = 40
	var attempts atomic.Int64
	var handledBefore atomic.Int64
	h := consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
		if r.Offset == failAt {
			attempts.Add(1)
			return errors.New("sink rejects this record")
		}
		if r.Offset > failAt {
			t.Errorf("offset %d handled past the failing record %d", r.Offset, failAt)
		}
		handledBefore.Add(1)
		return nil
	})
	c, err := consumer.New(h, testOpts(cluster, "g", consumer.CommitInterval(100*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	stop := kafkatest.Run(t, c)
	kafkatest.WaitFor(t, 20*time.Second, "records before the failing one committed", func() bool {
		return cluster.Committed(t, "g", topic)[0] == failAt
	})
	// Several more background commits happen while the record keeps failing.
	kafkatest.WaitFor(t, 20*time.Second, "retries of the failing record", func() bool { return attempts.Load() >= 10 })
	if got := cluster.Committed(t, "g", topic)[0]; got != failAt {
		t.Fatalf("committed %d while record %d fails, want %d", got, failAt, failAt)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := cluster.Committed(t, "g", topic)[0]; got != failAt {
		t.Fatalf("committed %d after shutdown, want %d", got, failAt)
	}
	if handledBefore.Load() != failAt {
		t.Fatalf("handled %d records before the failing one, want %d", handledBefore.Load(), failAt)
	}
}

func TestRecordsBeforeAHungHandlerAreCommitted(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic)
	cluster.ProduceSeq(t, topic, 100, 1)
	const hangAt = 40
	release := make(chan struct{})
	h := consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
		if r.Offset == hangAt {
			<-release
		}
		return nil
	})
	c, err := consumer.New(h, testOpts(cluster, "g", consumer.CommitInterval(100*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	stop := kafkatest.Run(t, c)
	// The records before the hung call were handled in one burst; their
	// offsets must not wait for the call to return.
	kafkatest.WaitFor(t, 20*time.Second, "records before the hung call committed", func() bool {
		return cluster.Committed(t, "g", topic)[0] == hangAt
	})
	close(release)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestCrashRedeliversOnlyRecordsAfterLastCommit(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 4, topic)
	produced := cluster.ProduceSeq(t, topic, 4000, 100)

	// First run: handle records, with commits going through, then crash:
	// the broker stops accepting commits, more records are handled, and the
	// consumer stops without any of those reaching the broker.
	first := newRecorder()
	var gate atomic.Bool
	slow := consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		if gate.Load() {
			time.Sleep(time.Millisecond) // keep the backlog from draining before the crash
		}
		return first.Handle(ctx, r)
	})
	gate.Store(true)
	c1, err := consumer.New(slow, testOpts(cluster, "g", consumer.CommitInterval(100*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	stop1 := kafkatest.Run(t, c1)
	kafkatest.WaitFor(t, 20*time.Second, "some commits", func() bool { return len(cluster.Committed(t, "g", topic)) == 4 })
	restore := cluster.RejectCommits()
	n := first.total()
	kafkatest.WaitFor(t, 20*time.Second, "records handled after the last commit", func() bool { return first.total() >= n+200 })
	if err := stop1(); err == nil {
		t.Fatal("Run returned nil although its final commit was rejected")
	}
	restore()
	committed := cluster.Committed(t, "g", topic)

	// Second run in the same group: it must start exactly at the last
	// commit of every partition.
	second := newRecorder()
	c2, err := consumer.New(second, testOpts(cluster, "g")...)
	if err != nil {
		t.Fatal(err)
	}
	stop2 := kafkatest.Run(t, c2)
	want := expectedOffsets(produced)
	remaining := 0
	for p, offs := range want {
		remaining += int(offs[len(offs)-1] + 1 - committed[p])
	}
	kafkatest.WaitFor(t, 20*time.Second, "the rest handled", func() bool { return second.total() >= remaining })
	if err := stop2(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	firstSeen, secondSeen := first.offsets(), second.offsets()
	redelivered := 0
	for p, offs := range want {
		got := secondSeen[p]
		// A partition can be committed to its end before the crash.
		if end := offs[len(offs)-1] + 1; committed[p] < end && (len(got) == 0 || got[0] != committed[p]) {
			t.Fatalf("partition %d: restart began at %v, want the last commit %d", p, got[:min(1, len(got))], committed[p])
		}
		// Everything is handled at least once: before the crash up to
		// the commit, after it from the commit on.
		firstPart := firstSeen[p]
		for _, o := range firstPart {
			if o >= committed[p] {
				redelivered++
			}
		}
		union := append(slices.Clone(firstPart[:committedPrefix(firstPart, committed[p])]), got...)
		if fmt.Sprint(union) != fmt.Sprint(offs) {
			t.Fatalf("partition %d: records lost or out of order across the crash", p)
		}
	}
	if redelivered == 0 {
		t.Fatal("the crash re-delivered nothing: the scenario did not exercise a crash after uncommitted work")
	}
	t.Logf("re-delivered %d records handled after the last commit", redelivered)
}

// committedPrefix returns how many of offs are below the committed offset.
func committedPrefix(offs []int64, committed int64) int {
	n := 0
	for n < len(offs) && offs[n] < committed {
		n++
	}
	return n
}

func TestGracefulStopRedeliversNothing(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 4, topic)
	produced := cluster.ProduceSeq(t, topic, 3000, 100)
	rec := newRecorder()
	// Handlers wait after 500 records until the stop has begun, so that it
	// comes mid-stream, with records in hand.
	release := make(chan struct{})
	h := consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		if rec.total() >= 500 {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return rec.Handle(ctx, r)
	})
	c1, err := consumer.New(h, testOpts(cluster, "g", consumer.CommitInterval(time.Hour))...)
	if err != nil {
		t.Fatal(err)
	}
	stop1 := kafkatest.Run(t, c1)
	kafkatest.WaitFor(t, 20*time.Second, "part of the topic handled", func() bool { return rec.total() >= 500 })
	stopped := make(chan error, 1)
	go func() { stopped <- stop1() }()
	kafkatest.WaitFor(t, 20*time.Second, "the stop to take the workers", func() bool { return c1.Stats().Partitions == 0 })
	close(release)
	if err := <-stopped; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rec.total() >= len(produced) {
		t.Fatal("the first run handled everything; the stop did not happen mid-stream")
	}
	c2, err := consumer.New(rec, testOpts(cluster, "g")...)
	if err != nil {
		t.Fatal(err)
	}
	stop2 := kafkatest.Run(t, c2)
	kafkatest.WaitFor(t, 20*time.Second, "all records handled", func() bool { return rec.total() >= len(produced) })
	if err := stop2(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rec.total() != len(produced) {
		t.Fatalf("handled %d records in two runs for %d produced: a graceful stop re-delivered %d", rec.total(), len(produced), rec.total()-len(produced))
	}
	want := expectedOffsets(produced)
	for p, offs := range rec.offsets() {
		if fmt.Sprint(offs) != fmt.Sprint(want[p]) {
			t.Errorf("partition %d: records missing or out of order across the restart", p)
		}
	}
}
