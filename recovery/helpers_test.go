package recovery_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
	"github.com/kconsumer/kconsumer/recovery"
)

const topic = "events"

var quiet = slog.New(slog.DiscardHandler)

// testOpts are the options every test consumer uses: fast group timings so
// rebalances take milliseconds, and quiet logs.
func testOpts(c *kafkatest.Cluster, group string, s recovery.Strategy, extra ...consumer.Opt) []consumer.Opt {
	opts := []consumer.Opt{
		consumer.With(s),
		consumer.CommitInterval(100 * time.Millisecond),
		consumer.ShutdownTimeout(5 * time.Second),
	}
	if group != "" {
		opts = append(opts, consumer.Group(group))
	}
	return c.ConsumerOpts(topic, append(opts, extra...)...)
}

// newConsumer builds a consumer and fails the test on error.
func newConsumer(t testing.TB, h consumer.Handler, opts ...consumer.Opt) *consumer.Consumer {
	t.Helper()
	c, err := consumer.New(h, opts...)
	if err != nil {
		t.Fatalf("consumer.New: %v", err)
	}
	return c
}

// crash stops a consumer with the broker refusing commits, so nothing it
// handled since its last commit is committed, as if its process had died.
func crash(c *kafkatest.Cluster, stop func() error) {
	restore := c.RejectCommits()
	_ = stop()
	restore()
}

// wait blocks until ch is closed or fails the test after timeout.
func wait(t testing.TB, ch <-chan struct{}, timeout time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(timeout):
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// ready is the readiness method every strategy has.
type ready interface {
	recovery.Strategy
	Ready() error
}

var (
	_ ready = (*recovery.FullReplay)(nil)
	_ ready = (*recovery.CheckpointSkip)(nil)
	_ ready = (*recovery.Stateless)(nil)
)

// produceTo writes n records with values "0".."n-1" to one partition and
// returns them with their offsets.
func produceTo(t testing.TB, c *kafkatest.Cluster, partition int32, n int) []*kgo.Record {
	t.Helper()
	cl := c.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
	defer cl.Close()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Partition: partition, Key: fmt.Appendf(nil, "k%d", i%10), Value: fmt.Appendf(nil, "%d", i)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing: %v", err)
	}
	return recs
}

// deleteBefore deletes the records of a partition below offset, as
// retention would.
func deleteBefore(t testing.TB, c *kafkatest.Cluster, partition int32, offset int64) {
	t.Helper()
	var os kadm.Offsets
	os.AddOffset(topic, partition, offset, -1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Admin.DeleteRecords(ctx, os)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("deleting records: %v", err)
	}
}

// offsetLog records the offsets a handler saw, by partition.
type offsetLog struct {
	mu   sync.Mutex
	offs map[int32][]int64
	n    int
}

func newOffsetLog() *offsetLog { return &offsetLog{offs: make(map[int32][]int64)} }

func (l *offsetLog) add(r *kgo.Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.offs[r.Partition] = append(l.offs[r.Partition], r.Offset)
	l.n++
}

func (l *offsetLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

func (l *offsetLog) of(p int32) []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.offs[p])
}

// handler returns a handler that logs every record.
func (l *offsetLog) handler() consumer.Handler {
	return consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
		l.add(r)
		return nil
	})
}

// span returns the offsets from..to-1.
func span(from, to int64) []int64 {
	var out []int64
	for o := from; o < to; o++ {
		out = append(out, o)
	}
	return out
}
