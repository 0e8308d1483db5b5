package kafkatest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
)

var shared struct {
	mu      sync.Mutex
	cluster *kfake.Cluster
	topics  map[string][]int64 // end offsets by partition
}

// SharedTopic returns the addresses of a broker that lives as long as the
// test process and holds topic with records records of valueSize bytes,
// keyed "k<i mod keys>", over partitions partitions, and the topic's end
// offsets by partition. The topic is produced on first use, so benchmarks
// that share it pay for it once.
func SharedTopic(tb testing.TB, topic string, partitions int32, records, valueSize, keys int) ([]string, []int64) {
	tb.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.cluster == nil {
		c, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			tb.Fatalf("starting kfake: %v", err)
		}
		shared.cluster, shared.topics = c, make(map[string][]int64)
	}
	addrs := shared.cluster.ListenAddrs()
	if ends, ok := shared.topics[topic]; ok {
		return addrs, ends
	}
	ends, err := produceShared(addrs, topic, partitions, records, valueSize, keys)
	if err != nil {
		tb.Fatalf("producing %s: %v", topic, err)
	}
	shared.topics[topic] = ends
	return addrs, ends
}

func produceShared(addrs []string, topic string, partitions int32, records, valueSize, keys int) ([]int64, error) {
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, partitions, 1, nil, topic); err != nil {
		return nil, err
	}
	value := make([]byte, valueSize)
	var (
		wg      sync.WaitGroup
		once    sync.Once
		produce error
	)
	for i := range records {
		wg.Add(1)
		r := &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i%keys), Value: value}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				once.Do(func() { produce = err })
			}
			wg.Done()
		})
	}
	wg.Wait()
	if produce != nil {
		return nil, produce
	}
	listed, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	ends := make([]int64, partitions)
	listed.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
	return ends, nil
}

// UntilEnd returns a handler that only counts, and calls done once every
// partition reached its end offset in ends. It is for benchmarks of
// PartitionOrder: each partition counts on its own cache line, as a raw poll
// loop counts in a local variable, so the handler costs what a no-op costs.
func UntilEnd(ends []int64, done func()) consumer.Handler {
	counts := make([]struct {
		n int64
		_ [56]byte
	}, len(ends))
	var remaining atomic.Int64
	remaining.Store(int64(len(ends)))
	return consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
		c := &counts[r.Partition]
		if c.n++; c.n == ends[r.Partition] && remaining.Add(-1) == 0 {
			done()
		}
		return nil
	})
}
