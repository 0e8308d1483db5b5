package lag_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
	"github.com/kconsumer/kconsumer/lag"
)

// A batch Consumer's lag is exact per record: a batch that fails at a record
// stores and reports the records before it, and the batch sizes are
// observed in kconsumer_batch_records.
func TestBatchLagIsExactPerRecordAndSizesObserved(t *testing.T) {
	for _, across := range []bool{false, true} {
		name := "per-partition"
		var opts []consumer.Opt
		if across {
			name, opts = "across-partitions", []consumer.Opt{consumer.BatchAcrossPartitions()}
		}
		t.Run(name, func(t *testing.T) { testBatchLag(t, opts) })
	}
}

func testBatchLag(t *testing.T, opts []consumer.Opt) {
	cluster := kafkatest.NewCluster(t, 2, topic)
	produceStamped(t, cluster, 40)
	ends := cluster.EndOffsets(t, topic)
	if ends[0] < 10 || ends[1] == 0 {
		t.Fatalf("records spread %v over the partitions; the test needs both, partition 0 with 10 or more", ends)
	}
	const hold = 6 // partition 0 fails at offset 6 until released
	var released atomic.Bool
	var calls atomic.Int64
	h := consumer.BatchHandlerFunc(func(_ context.Context, recs []*kgo.Record) error {
		calls.Add(1)
		for i, r := range recs {
			if r.Partition == 0 && r.Offset == hold && !released.Load() {
				return &consumer.BatchError{Index: i, Err: errors.New("sink busy")}
			}
		}
		return nil
	})
	reg := prometheus.NewRegistry()
	m := newMonitor(t, lag.Registerer(reg))
	c, err := consumer.NewBatch(h, consumerOpts(cluster, m, append(opts, consumer.BatchLinger(100*time.Millisecond))...)...)
	if err != nil {
		t.Fatal(err)
	}
	stop := kafkatest.Run(t, c)
	kafkatest.WaitFor(t, 20*time.Second, "the records before the failing one committed, partition 1 caught up", func() bool {
		p0, _ := partitionOf(m, topic, 0)
		p1, _ := partitionOf(m, topic, 1)
		return p0.Committed == hold && p1.Committed == ends[1]
	})
	p0, _ := partitionOf(m, topic, 0)
	if p0.Processed != hold || p0.Lag != ends[0]-hold || p0.Held != int(ends[0]-hold) {
		t.Fatalf("partition 0: processed %d, lag %d, held %d; want %d, %d, %d", p0.Processed, p0.Lag, p0.Held, hold, ends[0]-hold, ends[0]-hold)
	}
	released.Store(true)
	kafkatest.WaitFor(t, 20*time.Second, "lag zero", func() bool {
		s := m.Snapshot()
		return len(s.Partitions) == 2 && s.Partitions[0].Lag == 0 && s.Partitions[1].Lag == 0 &&
			s.Partitions[0].Held == 0 && s.Partitions[1].Held == 0
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, mf := range mfs {
		if mf.GetName() != "kconsumer_batch_records" {
			continue
		}
		found = true
		hist := mf.GetMetric()[0].GetHistogram()
		// Calls with one record are those of the failing record on its own,
		// which are not batches.
		if got, want := int64(hist.GetSampleCount()), calls.Load(); got > want || got == 0 {
			t.Errorf("kconsumer_batch_records counts %d batches; the handler had %d calls", got, want)
		}
	}
	if !found {
		t.Fatal("no kconsumer_batch_records histogram")
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

// A Consumer of single records exports no batch histogram.
func TestNoBatchHistogramWithoutBatches(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMonitor(t, lag.Registerer(reg))
	if _, err := consumer.New(consumer.HandlerFunc(func(context.Context, *kgo.Record) error { return nil }),
		consumer.Topics(topic), consumer.Group(group), consumer.With(m)); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "kconsumer_batch_records" {
			t.Fatal("a Consumer of single records exports kconsumer_batch_records")
		}
	}
}
