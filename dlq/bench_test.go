package dlq_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/dlq"
)

// BenchmarkMiddleware measures what the Router adds to a record that is
// handled successfully, with one goroutine per partition as in a Consumer.
func BenchmarkMiddleware(b *testing.B) {
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	r, err := dlq.New(dlq.WithClient(cl), dlq.WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	noop := consumer.HandlerFunc(func(context.Context, *kgo.Record) error { return nil })
	for _, c := range []struct {
		name string
		h    consumer.Handler
	}{{"bare", noop}, {"router", r.Middleware()(noop)}} {
		b.Run(c.name, func(b *testing.B) {
			var p atomic.Int32
			b.RunParallel(func(pb *testing.PB) {
				rec := &kgo.Record{Topic: "t", Partition: p.Add(1)}
				ctx := context.Background()
				for pb.Next() {
					rec.Offset++
					if err := c.h.Handle(ctx, rec); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
