package consumer_test

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
)

const (
	benchTopic      = "bench"
	benchPartitions = 12
	benchRecords    = 200_000
	benchValueSize  = 100
)

var benchGroups atomic.Int64

// benchBroker returns the broker of the benchmarks' topic: benchRecords
// records of benchValueSize bytes over benchPartitions partitions, and its
// end offsets.
func benchBroker(b *testing.B) ([]string, []int64) {
	return kafkatest.SharedTopic(b, benchTopic, benchPartitions, benchRecords, benchValueSize, 1000)
}

func nextGroup() string { return fmt.Sprintf("bench-%d", benchGroups.Add(1)) }

// The readers below return how long they took from creating the client to
// handling the last record. The shutdown after it is left out: it is the
// same kgo leave-group code on both sides.

// rawPollLoop reads the whole topic with a hand-written franz-go group
// consumer that autocommits, the baseline kconsumer is measured against.
func rawPollLoop(b *testing.B, addrs []string) time.Duration {
	start := time.Now()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(benchTopic), kgo.ConsumerGroup(nextGroup()))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	for n := 0; n < benchRecords; {
		fetches := cl.PollFetches(context.Background())
		if err := fetches.Err0(); err != nil {
			b.Fatal(err)
		}
		fetches.EachRecord(func(*kgo.Record) { n++ })
	}
	return time.Since(start)
}

// consumerNoop reads the whole topic through a Consumer with a handler that
// does nothing but count.
func consumerNoop(b *testing.B, addrs []string, ends []int64, opts ...consumer.Opt) time.Duration {
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

// BenchmarkNoopHandler reads benchRecords records per iteration; records/s
// is measured from creating the client to handling the last record. Compare
// raw-franz-go with consumer-group.
func BenchmarkNoopHandler(b *testing.B) {
	addrs, ends := benchBroker(b)
	run := func(b *testing.B, read func() time.Duration) {
		b.ReportAllocs()
		var reading time.Duration
		for b.Loop() {
			reading += read()
		}
		b.ReportMetric(float64(benchRecords)*float64(b.N)/reading.Seconds(), "records/s")
	}
	b.Run("raw-franz-go", func(b *testing.B) { run(b, func() time.Duration { return rawPollLoop(b, addrs) }) })
	b.Run("consumer-group", func(b *testing.B) {
		run(b, func() time.Duration { return consumerNoop(b, addrs, ends, consumer.Group(nextGroup())) })
	})
	b.Run("consumer-direct", func(b *testing.B) {
		run(b, func() time.Duration { return consumerNoop(b, addrs, ends) })
	})
}

// BenchmarkNoopHandlerRatio alternates the raw loop and the Consumer in each
// iteration, so both see the same machine load, and reports the Consumer's
// throughput as a fraction of the raw loop's.
func BenchmarkNoopHandlerRatio(b *testing.B) {
	addrs, ends := benchBroker(b)
	var raw, ours time.Duration
	for b.Loop() {
		raw += rawPollLoop(b, addrs)
		ours += consumerNoop(b, addrs, ends, consumer.Group(nextGroup()))
	}
	b.ReportMetric(raw.Seconds()/ours.Seconds(), "throughput-ratio")
}

const (
	slowTopic   = "slow"
	slowRecords = 2000
)

// BenchmarkSlowHandler reads slowRecords records per iteration with a
// handler that waits 2 ms, as one on a database would: PartitionOrder is
// bound by the 4 partitions, KeyOrder by its 64 workers.
func BenchmarkSlowHandler(b *testing.B) {
	addrs, _ := kafkatest.SharedTopic(b, slowTopic, 4, slowRecords, 1, 1000)
	for _, o := range []consumer.Ordering{consumer.PartitionOrder, consumer.KeyOrder} {
		b.Run(o.String(), func(b *testing.B) {
			for b.Loop() {
				ctx, cancel := context.WithCancel(context.Background())
				var n atomic.Int64
				h := consumer.HandlerFunc(func(context.Context, *kgo.Record) error {
					time.Sleep(2 * time.Millisecond)
					if n.Add(1) == slowRecords {
						cancel()
					}
					return nil
				})
				c, err := consumer.New(h,
					consumer.SeedBrokers(addrs...),
					consumer.Topics(slowTopic),
					consumer.Group(nextGroup()),
					consumer.Order(o),
					consumer.Workers(64),
					consumer.WithLogger(slog.New(slog.DiscardHandler)),
				)
				if err != nil {
					b.Fatal(err)
				}
				if err := c.Run(ctx); err != nil {
					b.Fatal(err)
				}
				cancel()
			}
			b.ReportMetric(float64(slowRecords)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// The batch benchmarks read a topic of their own, larger than the others:
// the ratio is measured against the same raw loop, and short reads hide
// per-record cost behind the group join.
const (
	batchBenchTopic   = "bench-batch"
	batchBenchRecords = 2_000_000
)

// rawPollLoopOf is rawPollLoop over the first n records of topic.
func rawPollLoopOf(b *testing.B, addrs []string, topic string, n int) time.Duration {
	start := time.Now()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic), kgo.ConsumerGroup(nextGroup()))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	for seen := 0; seen < n; {
		fetches := cl.PollFetches(context.Background())
		if err := fetches.Err0(); err != nil {
			b.Fatal(err)
		}
		fetches.EachRecord(func(*kgo.Record) { seen++ })
	}
	return time.Since(start)
}

// untilEndBatch returns a batch handler that only counts, and calls done
// once every partition reached its end offset in ends. Each partition
// counts on its own cache line.
func untilEndBatch(ends []int64, done func()) consumer.BatchHandler {
	counts := make([]struct {
		n int64
		_ [56]byte
	}, len(ends))
	var remaining atomic.Int64
	remaining.Store(int64(len(ends)))
	return consumer.BatchHandlerFunc(func(_ context.Context, recs []*kgo.Record) error {
		for _, r := range recs {
			c := &counts[r.Partition]
			if c.n++; c.n == ends[r.Partition] && remaining.Add(-1) == 0 {
				done()
			}
		}
		return nil
	})
}

// batchNoop reads the whole batch topic through a batch Consumer whose
// handler only counts.
func batchNoop(b *testing.B, addrs []string, ends []int64, opts ...consumer.Opt) time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var last time.Time
	h := untilEndBatch(ends, func() {
		last = time.Now()
		cancel()
	})
	start := time.Now()
	c, err := consumer.NewBatch(h, append([]consumer.Opt{
		consumer.SeedBrokers(addrs...),
		consumer.Topics(batchBenchTopic),
		consumer.Group(nextGroup()),
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

// BenchmarkBatchNoopHandlerRatio alternates the raw loop and a batch
// Consumer with a no-op batch handler over batchBenchRecords records of
// benchValueSize bytes, and reports the Consumer's throughput as a
// fraction of the raw loop's (throughput-ratio) and both rates. The two
// take turns at going first, and each read starts after a garbage
// collection, so that neither side pays for the garbage the other left.
func BenchmarkBatchNoopHandlerRatio(b *testing.B) {
	addrs, ends := kafkatest.SharedTopic(b, batchBenchTopic, benchPartitions, batchBenchRecords, benchValueSize, 1000)
	for _, mode := range []struct {
		name string
		opts []consumer.Opt
	}{
		{"per-partition", nil},
		{"across-partitions", []consumer.Opt{consumer.BatchAcrossPartitions()}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			var raw, ours time.Duration
			for i := 0; b.Loop(); i++ {
				reads := []func(){
					func() { raw += rawPollLoopOf(b, addrs, batchBenchTopic, batchBenchRecords) },
					func() { ours += batchNoop(b, addrs, ends, mode.opts...) },
				}
				if i%2 == 1 {
					reads[0], reads[1] = reads[1], reads[0]
				}
				for _, read := range reads {
					runtime.GC()
					read()
				}
			}
			b.ReportMetric(raw.Seconds()/ours.Seconds(), "throughput-ratio")
			b.ReportMetric(float64(batchBenchRecords)*float64(b.N)/raw.Seconds(), "raw-records/s")
			b.ReportMetric(float64(batchBenchRecords)*float64(b.N)/ours.Seconds(), "batch-records/s")
		})
	}
}
