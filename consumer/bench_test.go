package consumer_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kconsumer/kconsumer/consumer"
)

const (
	benchTopic      = "bench"
	benchPartitions = 12
	benchRecords    = 200_000
	benchValueSize  = 100
)

var (
	benchOnce    sync.Once
	benchCluster *kfake.Cluster
	benchErr     error
	benchGroups  atomic.Int64
	benchEnds    [benchPartitions]int64 // records per partition
)

// benchBroker starts, once per process, an in-process broker holding
// benchRecords records of benchValueSize bytes over benchPartitions
// partitions; every benchmark reads the same topic.
func benchBroker(b *testing.B) []string {
	b.Helper()
	benchOnce.Do(func() {
		benchCluster, benchErr = kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(benchPartitions, benchTopic))
		if benchErr != nil {
			return
		}
		var cl *kgo.Client
		cl, benchErr = kgo.NewClient(kgo.SeedBrokers(benchCluster.ListenAddrs()...), kgo.ProducerBatchMaxBytes(1<<20))
		if benchErr != nil {
			return
		}
		defer cl.Close()
		value := make([]byte, benchValueSize)
		var wg sync.WaitGroup
		var once sync.Once
		for i := range benchRecords {
			wg.Add(1)
			cl.Produce(context.Background(), &kgo.Record{Topic: benchTopic, Key: fmt.Appendf(nil, "k%d", i%1000), Value: value},
				func(_ *kgo.Record, err error) {
					if err != nil {
						once.Do(func() { benchErr = err })
					}
					wg.Done()
				})
		}
		wg.Wait()
		if benchErr != nil {
			return
		}
		var ends kadm.ListedOffsets
		ends, benchErr = kadm.NewClient(cl).ListEndOffsets(context.Background(), benchTopic)
		ends.Each(func(o kadm.ListedOffset) { benchEnds[o.Partition] = o.Offset })
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchCluster.ListenAddrs()
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
func consumerNoop(b *testing.B, addrs []string, opts ...consumer.Opt) time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Each partition counts on its own cache line, as the raw loop counts
	// in a local variable: the handler should cost what a no-op costs.
	var counts [benchPartitions]struct {
		n int64
		_ [56]byte
	}
	var remaining atomic.Int64
	remaining.Store(benchPartitions)
	var last time.Time
	h := consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
		c := &counts[r.Partition]
		if c.n++; c.n == benchEnds[r.Partition] && remaining.Add(-1) == 0 {
			last = time.Now()
			cancel()
		}
		return nil
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
	if remaining.Load() != 0 {
		b.Fatalf("%d partitions not read to the end", remaining.Load())
	}
	return last.Sub(start)
}

// BenchmarkNoopHandler reads benchRecords records per iteration; records/s
// is measured from creating the client to handling the last record. Compare
// raw-franz-go with consumer-group.
func BenchmarkNoopHandler(b *testing.B) {
	addrs := benchBroker(b)
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
		run(b, func() time.Duration { return consumerNoop(b, addrs, consumer.Group(nextGroup())) })
	})
	b.Run("consumer-direct", func(b *testing.B) {
		run(b, func() time.Duration { return consumerNoop(b, addrs) })
	})
}

// BenchmarkNoopHandlerRatio alternates the raw loop and the Consumer in each
// iteration, so both see the same machine load, and reports the Consumer's
// throughput as a fraction of the raw loop's.
func BenchmarkNoopHandlerRatio(b *testing.B) {
	addrs := benchBroker(b)
	var raw, ours time.Duration
	for b.Loop() {
		raw += rawPollLoop(b, addrs)
		ours += consumerNoop(b, addrs, consumer.Group(nextGroup()))
	}
	b.ReportMetric(raw.Seconds()/ours.Seconds(), "throughput-ratio")
}

const (
	slowTopic   = "slow"
	slowRecords = 2000
)

var (
	slowOnce sync.Once
	slowErr  error
)

// slowBroker adds, once per process, a topic of slowRecords records with
// 1,000 keys over 4 partitions to the benchmark broker.
func slowBroker(b *testing.B) []string {
	b.Helper()
	addrs := benchBroker(b)
	slowOnce.Do(func() {
		var cl *kgo.Client
		cl, slowErr = kgo.NewClient(kgo.SeedBrokers(addrs...))
		if slowErr != nil {
			return
		}
		defer cl.Close()
		ctx := context.Background()
		req := kmsg.NewPtrCreateTopicsRequest()
		t := kmsg.NewCreateTopicsRequestTopic()
		t.Topic, t.NumPartitions, t.ReplicationFactor = slowTopic, 4, 1
		req.Topics = append(req.Topics, t)
		if _, slowErr = req.RequestWith(ctx, cl); slowErr != nil {
			return
		}
		recs := make([]*kgo.Record, slowRecords)
		for i := range recs {
			recs[i] = &kgo.Record{Topic: slowTopic, Key: fmt.Appendf(nil, "k%d", i%1000), Value: []byte("v")}
		}
		slowErr = cl.ProduceSync(ctx, recs...).FirstErr()
	})
	if slowErr != nil {
		b.Fatal(slowErr)
	}
	return addrs
}

// BenchmarkSlowHandler reads slowRecords records per iteration with a
// handler that waits 2 ms, as one on a database would: PartitionOrder is
// bound by the 4 partitions, KeyOrder by its 64 workers.
func BenchmarkSlowHandler(b *testing.B) {
	addrs := slowBroker(b)
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
