package recovery_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
	"github.com/kconsumer/kconsumer/recovery"
)

// BenchmarkCheckpointSkipRestart measures a restart of a CheckpointSkip
// consumer, from New to the first record after the checkpoint, with 10k and
// 1M records before the checkpoint. The time must not grow with the number.
func BenchmarkCheckpointSkipRestart(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		b.Run("records="+strconv.Itoa(n), func(b *testing.B) {
			cluster := kafkatest.NewCluster(b, 1, topic)
			produceMany(b, cluster, n)
			produceTo(b, cluster, 0, 1)
			store := recovery.NewMemoryStore(0)
			store.SetCheckpoint(recovery.Checkpoint{Topic: topic, Partition: 0, Offset: int64(n - 1)})
			for b.Loop() {
				first := make(chan int64, 1)
				h := consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
					select {
					case first <- r.Offset:
					default:
					}
					return nil
				})
				s := recovery.NewCheckpointSkip(store, recovery.WithLogger(quiet))
				stop := kafkatest.Run(b, newConsumer(b, h, testOpts(cluster, "bench", s)...))
				select {
				case o := <-first:
					if o != int64(n) {
						b.Fatalf("first record at offset %d, want %d", o, n)
					}
				case <-time.After(30 * time.Second):
					b.Fatal("no record after the checkpoint within 30s")
				}
				b.StopTimer()
				if err := stop(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// produceMany writes n tiny records to partition 0 in large batches.
func produceMany(b *testing.B, c *kafkatest.Cluster, n int) {
	b.Helper()
	cl := c.Client(b,
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchMaxBytes(8<<20),
		kgo.MaxBufferedRecords(1_000_000),
		kgo.ProducerLinger(50*time.Millisecond),
	)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	promise := kgo.AbortingFirstErrPromise(cl)
	for i := range n {
		cl.Produce(ctx, &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, "%d", i)}, promise.Promise())
	}
	if err := promise.Err(); err != nil {
		b.Fatal(err)
	}
}
