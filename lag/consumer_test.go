package lag_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
	"github.com/kconsumer/kconsumer/lag"
)

// holder is a handler that holds one record back: its first call fails (so
// the Consumer stores the offsets before it), the next blocks until
// released. Every other record is handled at once.
type holder struct {
	partition int32
	offset    int64
	failed    atomic.Bool
	blocked   chan struct{} // closed when the hold begins
	release   chan struct{}
	handled   atomic.Int64
}

func newHolder(partition int32, offset int64) *holder {
	return &holder{partition: partition, offset: offset, blocked: make(chan struct{}), release: make(chan struct{})}
}

func (h *holder) Handle(ctx context.Context, r *kgo.Record) error {
	if r.Partition == h.partition && r.Offset == h.offset {
		if h.failed.CompareAndSwap(false, true) {
			return errors.New("not yet")
		}
		close(h.blocked)
		select {
		case <-h.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	h.handled.Add(1)
	return nil
}

// waitBlocked waits until the held record's handler call has begun.
func (h *holder) waitBlocked(t *testing.T) {
	t.Helper()
	select {
	case <-h.blocked:
	case <-time.After(20 * time.Second):
		t.Fatal("the held record never reached the handler")
	}
}

func TestLagIsExactWhileHeldAndZeroAfter(t *testing.T) {
	for _, order := range []consumer.Ordering{consumer.PartitionOrder, consumer.KeyOrder} {
		t.Run(order.String(), func(t *testing.T) { testLagIsExact(t, order) })
	}
}

func testLagIsExact(t *testing.T, order consumer.Ordering) {
	cluster := kafkatest.NewCluster(t, 2, topic)
	produced := produceStamped(t, cluster, 40)
	ends := cluster.EndOffsets(t, topic)
	stampOf := make(map[int32]map[int64]time.Time)
	for _, r := range produced {
		if stampOf[r.Partition] == nil {
			stampOf[r.Partition] = make(map[int64]time.Time)
		}
		stampOf[r.Partition][r.Offset] = r.Timestamp
	}
	if len(stampOf) != 2 || ends[0] < 10 || ends[1] == 0 {
		t.Fatalf("records spread %v over the partitions; the test needs both, partition 0 with 10 or more", ends)
	}

	const hold = 6 // records 0..5 of partition 0 are handled, 6.. wait
	clk := newClock(base.Add(time.Hour))
	m := newMonitor(t, lag.Clock(clk.Now))
	h := newHolder(0, hold)
	c, err := consumer.New(h, consumerOpts(cluster, m, consumer.Order(order))...)
	if err != nil {
		t.Fatal(err)
	}
	stop := kafkatest.Run(t, c)
	h.waitBlocked(t)
	kafkatest.WaitFor(t, 20*time.Second, "offsets before the held record committed, partition 1 caught up", func() bool {
		p0, _ := partitionOf(m, topic, 0)
		p1, _ := partitionOf(m, topic, 1)
		return p0.Committed == hold && p1.Committed == ends[1]
	})
	committed := cluster.Committed(t, group, topic)
	s := m.Snapshot()
	if len(s.Partitions) != 2 {
		t.Fatalf("tracking %d partitions, want 2", len(s.Partitions))
	}
	for _, p := range s.Partitions {
		if p.HighWatermark != ends[p.Partition] || p.Committed != committed[p.Partition] {
			t.Fatalf("partition %d: high watermark %d, committed %d; the broker says %d, %d",
				p.Partition, p.HighWatermark, p.Committed, ends[p.Partition], committed[p.Partition])
		}
		if want := ends[p.Partition] - committed[p.Partition]; p.Lag != want {
			t.Errorf("partition %d: lag %d records, want %d", p.Partition, p.Lag, want)
		}
	}
	p0, p1 := s.Partitions[0], s.Partitions[1]
	if want := clk.Now().Sub(stampOf[0][hold]); p0.LagTime != want {
		t.Errorf("partition 0: lag %v, want %v (the age of offset %d)", p0.LagTime, want, hold)
	}
	if p0.Processed != hold {
		t.Errorf("partition 0: processed %d, want %d", p0.Processed, hold)
	}
	// With KeyOrder, the records of other keys after the held one finish
	// (partition 0 has two of the four keys).
	if held := int(ends[0] - hold); p0.Held < 1 || order == consumer.PartitionOrder && p0.Held != held || order == consumer.KeyOrder && p0.Held >= held {
		t.Errorf("partition 0 with %v: %d of the %d records from the held one on wait", order, p0.Held, held)
	}
	if p1.Lag != 0 || p1.LagTime != 0 {
		t.Errorf("partition 1 caught up but lags %d records, %v", p1.Lag, p1.LagTime)
	}
	if s.MaxLag != p0.Lag || s.MaxLagTime != p0.LagTime {
		t.Errorf("max lag %d, %v; want partition 0's %d, %v", s.MaxLag, s.MaxLagTime, p0.Lag, p0.LagTime)
	}

	close(h.release)
	kafkatest.WaitFor(t, 20*time.Second, "partition 0 caught up and committed", func() bool {
		p, _ := partitionOf(m, topic, 0)
		return p.Committed == ends[0]
	})
	s = m.Snapshot()
	for _, p := range s.Partitions {
		if p.Lag != 0 || p.LagTime != 0 || p.Held != 0 || p.Processed != ends[p.Partition] {
			t.Errorf("partition %d after catching up: %+v", p.Partition, p)
		}
	}
	if s.MaxLag != 0 || s.MaxLagTime != 0 || s.Status != lag.StatusOK {
		t.Errorf("group after catching up: max lag %d, %v, status %v", s.MaxLag, s.MaxLagTime, s.Status)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestHealthzFailsWhileHandlerBlocksWithRecordsWaiting(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 2, topic)
	produceStamped(t, cluster, 40)
	ends := cluster.EndOffsets(t, topic)
	clk := newClock(base)
	m := newMonitor(t, lag.StuckAfter(time.Minute), lag.Clock(clk.Now))
	healthz := m.Healthz()
	// Partition 0 holds its first record, so it has nothing to commit: a
	// commit landing after the clock moves would count as activity, and
	// kgo may repeat a commit that was in flight when its next tick came.
	h := newHolder(0, 0)
	c, err := consumer.New(h, consumerOpts(cluster, m)...)
	if err != nil {
		t.Fatal(err)
	}
	stop := kafkatest.Run(t, c)
	h.waitBlocked(t)
	kafkatest.WaitFor(t, 20*time.Second, "partition 1 committed to its end", func() bool {
		p1, _ := partitionOf(m, topic, 1)
		return p1.Committed == ends[1]
	})
	if code, body := get(t, healthz, "/healthz"); code != http.StatusOK {
		t.Fatalf("healthz %d %q before StuckAfter passed", code, body)
	}
	clk.Add(time.Minute)
	code, body := get(t, healthz, "/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, topic+"/0") {
		t.Fatalf("healthz %d %q while the handler blocks, want 503 naming %s/0", code, body, topic)
	}
	if p, _ := partitionOf(m, topic, 0); p.Status != lag.StatusStop {
		t.Fatalf("partition 0 status %v while blocked, want STOP", p.Status)
	}
	if p, _ := partitionOf(m, topic, 1); p.Status != lag.StatusOK {
		t.Fatalf("partition 1 status %v, caught up, want OK", p.Status)
	}

	close(h.release)
	kafkatest.WaitFor(t, 20*time.Second, "healthz healthy once the handler unblocks", func() bool {
		code, _ := get(t, healthz, "/healthz")
		return code == http.StatusOK
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	// The Monitor learnt that Run returned from the Consumer.
	if code, body := get(t, healthz, "/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "stopped") {
		t.Fatalf("healthz %d %q after Run returned, want 503", code, body)
	}
}

func TestReadyzFalseDuringCatchUpTrueAfter(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 2, topic)
	produced := produceStamped(t, cluster, 40)
	h := newHolder(0, 3)
	// The fake recovery strategy is caught up once every record is handled.
	strategy := consumer.PluginFunc(func(a *consumer.Attachment) error {
		a.Ready(func() error {
			if n := h.handled.Load(); n < int64(len(produced)) {
				return errors.New("replaying")
			}
			return nil
		})
		return nil
	})
	m := newMonitor(t)
	readyz := m.Readyz()
	c, err := consumer.New(h, consumerOpts(cluster, m, consumer.With(strategy))...)
	if err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, readyz, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "no partitions assigned") {
		t.Fatalf("readyz %d %q before the consumer joined, want 503", code, body)
	}
	stop := kafkatest.Run(t, c)
	h.waitBlocked(t)
	kafkatest.WaitFor(t, 20*time.Second, "partitions assigned", func() bool { return len(m.Snapshot().Partitions) == 2 })
	if code, body := get(t, readyz, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "replaying") {
		t.Fatalf("readyz %d %q during the catch-up, want 503 saying why", code, body)
	}
	close(h.release)
	kafkatest.WaitFor(t, 20*time.Second, "readyz ready after the catch-up", func() bool {
		code, _ := get(t, readyz, "/readyz")
		return code == http.StatusOK
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}
