package dlq

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/fault"
)

var discard = slog.New(slog.DiscardHandler)

// BenchmarkMiddleware measures what the Router adds to a record that is
// handled successfully, with one goroutine per partition as in a Consumer.
func BenchmarkMiddleware(b *testing.B) {
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	r, err := New(WithClient(cl), WithLogger(discard))
	if err != nil {
		b.Fatal(err)
	}
	noop := consumer.HandlerFunc(func(context.Context, *kgo.Record) error { return nil })
	for _, c := range []struct {
		name string
		h    consumer.Handler
	}{{"bare", noop}, {"router", r.middleware(noop)}} {
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

func TestRecordWithoutDeadLetterTopicIsKept(t *testing.T) {
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	r, err := New(WithClient(cl), WithLogger(discard),
		DeadLetterTopic(func(topic string) string { return "" }))
	if err != nil {
		t.Fatal(err)
	}
	h := r.middleware(consumer.HandlerFunc(func(context.Context, *kgo.Record) error {
		return fault.MarkPoison(errors.New("bad"))
	}))
	rec := &kgo.Record{Topic: "t", Offset: 1}
	for range 3 {
		if err := h.Handle(context.Background(), rec); err == nil || !strings.Contains(err.Error(), "no dead-letter topic for t") {
			t.Fatalf("Handle = %v, want an error naming the missing dead-letter topic", err)
		}
	}
}

// The Router's own producer does not linger: it waits for each dead letter
// before the next, so a linger would cap the rate of each partition.
func TestOwnProducerDoesNotLinger(t *testing.T) {
	for _, c := range []struct {
		opts []RouterOpt
		want time.Duration
	}{
		{[]RouterOpt{SeedBrokers("127.0.0.1:1")}, 0},
		{[]RouterOpt{SeedBrokers("127.0.0.1:1"), ClientOpts(kgo.ProducerLinger(5 * time.Millisecond))}, 5 * time.Millisecond},
	} {
		r, err := New(c.opts...)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.cl.OptValue(kgo.ProducerLinger); got != c.want {
			t.Errorf("linger %v, want %v", got, c.want)
		}
		r.Close()
	}
}
