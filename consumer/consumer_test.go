package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
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
	opts := []consumer.Opt{
		consumer.SeedBrokers(c.Addrs...),
		consumer.Topics(topic),
		consumer.WithLogger(slog.New(slog.DiscardHandler)),
		consumer.ClientOpts(
			kgo.HeartbeatInterval(50*time.Millisecond),
			kgo.SessionTimeout(3*time.Second),
			kgo.FetchMaxWait(50*time.Millisecond),
		),
		consumer.RetryBackoff(time.Millisecond, 10*time.Millisecond),
	}
	if group != "" {
		opts = append(opts, consumer.Group(group))
	}
	return append(opts, extra...)
}

// running starts c.Run in the background and returns a stop function that
// cancels it and returns Run's error.
func running(t *testing.T, c *consumer.Consumer) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-errc:
			case <-time.After(30 * time.Second):
				err = errors.New("Run did not return within 30s of cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func TestConsumesEveryRecordInPartitionOrder(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 4, topic)
	produced := cluster.ProduceSeq(t, topic, 2000, 50)
	rec := newRecorder()
	c, err := consumer.New(rec, testOpts(cluster, "g")...)
	if err != nil {
		t.Fatal(err)
	}
	stop := running(t, c)
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
