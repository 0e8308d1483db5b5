package lag_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
	"github.com/kconsumer/kconsumer/lag"
)

// BenchmarkObserver measures what the Monitor costs a Consumer per record:
// one Polled per batch of 500 records and one Handled per record. "one"
// drives a single partition; "parallel" one partition per goroutine, as a
// Consumer's workers do.
func BenchmarkObserver(b *testing.B) {
	const batch = 500
	batches := func(partition int32) [][]*kgo.Record {
		var out [][]*kgo.Record
		for i := range 8 {
			var recs []*kgo.Record
			for j := range batch {
				recs = append(recs, &kgo.Record{Topic: topic, Partition: partition, Offset: int64(i*batch + j), Timestamp: base})
			}
			out = append(out, recs)
		}
		return out
	}
	// drive feeds n records of one partition through the observer; offsets
	// go round the prepared batches, which the Monitor sees as rewinds,
	// costing it nothing more.
	drive := func(m *lag.Monitor, partition int32, recs [][]*kgo.Record, n int) {
		for i := 0; i < n; {
			bt := recs[(i/batch)%len(recs)]
			m.Polled(kgo.FetchTopicPartition{Topic: topic, FetchPartition: kgo.FetchPartition{
				Partition: partition, HighWatermark: 1 << 20, Records: bt,
			}})
			for _, r := range bt {
				m.Handled(r, time.Microsecond, nil)
			}
			i += len(bt)
		}
	}
	b.Run("one", func(b *testing.B) {
		m, _ := attached(b, group, lag.Registerer(prometheus.NewRegistry()))
		recs := batches(0)
		b.ReportAllocs()
		b.ResetTimer()
		drive(m, 0, recs, b.N)
	})
	b.Run("parallel", func(b *testing.B) {
		m, _ := attached(b, group, lag.Registerer(prometheus.NewRegistry()))
		var next atomic.Int32
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			partition := next.Add(1)
			recs := batches(partition)
			n := 0
			for pb.Next() {
				n++
				if n == batch {
					drive(m, partition, recs, n)
					n = 0
				}
			}
			drive(m, partition, recs, n)
		})
	})
}

const (
	benchTopic      = "bench"
	benchPartitions = 12
	benchRecords    = 100_000
)

var benchGroups atomic.Int64

// readAll reads the whole topic in a new group with a handler that only
// counts, and returns how long it took from creating the client to handling
// the last record.
func readAll(b *testing.B, addrs []string, ends []int64, opts ...consumer.Opt) time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var last time.Time
	h := kafkatest.UntilEnd(ends, func() {
		last = time.Now()
		cancel()
	})
	start := time.Now()
	c, err := consumer.New(h, append([]consumer.Opt{
		consumer.SeedBrokers(addrs...),
		consumer.Topics(benchTopic),
		consumer.Group(fmt.Sprintf("bench-%d", benchGroups.Add(1))),
		consumer.WithLogger(slog.New(slog.DiscardHandler)),
	}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Run(ctx); err != nil {
		b.Fatal(err)
	}
	if last.IsZero() {
		b.Fatal("the topic was not read to the end")
	}
	return last.Sub(start)
}

// noopObserver is a consumer.Observer that does nothing: what remains is
// what the Consumer itself spends on observing, timing each handler call.
type noopObserver struct{}

func (noopObserver) Polled(kgo.FetchTopicPartition)                {}
func (noopObserver) Handled(*kgo.Record, time.Duration, error)     {}
func (noopObserver) Committed(map[string]map[int32]int64, error)   {}
func (noopObserver) Rebalanced(consumer.Event, map[string][]int32) {}
func (noopObserver) Paused(string, int32, bool)                    {}

// BenchmarkConsumerWithMonitorRatio alternates, in each iteration, a
// Consumer without an observer, one with an observer that does nothing, and
// one with a Monitor attached (metrics registered, client hooks on), so all
// see the same machine load. It reports their throughputs as fractions of the bare
// Consumer's: noop-ratio is the Consumer's own cost of observing,
// monitor-ratio adds the Monitor's.
func BenchmarkConsumerWithMonitorRatio(b *testing.B) {
	addrs, ends := kafkatest.SharedTopic(b, benchTopic, benchPartitions, benchRecords, 100, 1000)
	var bare, noop, monitored time.Duration
	for b.Loop() {
		bare += readAll(b, addrs, ends)
		noop += readAll(b, addrs, ends, consumer.With(consumer.PluginFunc(func(a *consumer.Attachment) error {
			a.Observe(noopObserver{})
			return nil
		})))
		m := newMonitor(b, lag.Registerer(prometheus.NewRegistry()))
		monitored += readAll(b, addrs, ends, consumer.With(m))
	}
	b.ReportMetric(bare.Seconds()/noop.Seconds(), "noop-ratio")
	b.ReportMetric(bare.Seconds()/monitored.Seconds(), "monitor-ratio")
}
