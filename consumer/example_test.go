package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/fault"
)

// startBroker starts an in-process broker with a "greetings" topic holding
// three records, standing in for a real cluster.
func startBroker() (*kfake.Cluster, error) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "greetings"))
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
	if err != nil {
		cluster.Close()
		return nil, err
	}
	defer cl.Close()
	err = cl.ProduceSync(context.Background(),
		&kgo.Record{Topic: "greetings", Value: []byte("hello")},
		&kgo.Record{Topic: "greetings", Value: []byte("hallo")},
		&kgo.Record{Topic: "greetings", Value: []byte("ciao")},
	).FirstErr()
	return cluster, err
}

func ExampleNew() {
	cluster, err := startBroker()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cluster.Close()

	ctx, stop := context.WithCancel(context.Background())
	var seen atomic.Int64
	c, err := consumer.New(
		consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
			fmt.Printf("offset %d: %s\n", r.Offset, r.Value)
			if seen.Add(1) == 3 {
				stop() // Run drains, commits and leaves the group
			}
			return nil
		}),
		consumer.SeedBrokers(cluster.ListenAddrs()...),
		consumer.Topics("greetings"),
		consumer.Group("greeter"),
		consumer.WithLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := c.Run(ctx); err != nil {
		fmt.Println(err)
	}
	// Output:
	// offset 0: hello
	// offset 1: hallo
	// offset 2: ciao
}

func ExampleHandlerFunc() {
	// Any function with the Handle signature is a Handler. An error keeps
	// the record's offset and retries the record; nil lets it commit.
	var h consumer.Handler = consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
		if len(r.Value) == 0 {
			return fmt.Errorf("record %d: empty value", r.Offset)
		}
		return nil
	})
	fmt.Println(h.Handle(context.Background(), &kgo.Record{Offset: 7}))
	fmt.Println(h.Handle(context.Background(), &kgo.Record{Offset: 8, Value: []byte("ok")}))
	// Output:
	// record 7: empty value
	// <nil>
}

func ExampleMiddleware() {
	logOffsets := consumer.Middleware(func(next consumer.Handler) consumer.Handler {
		return consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
			err := next.Handle(ctx, r)
			fmt.Printf("handled %s/%d@%d: %v\n", r.Topic, r.Partition, r.Offset, err)
			return err
		})
	})
	h := logOffsets(consumer.HandlerFunc(func(context.Context, *kgo.Record) error { return nil }))
	_ = h.Handle(context.Background(), &kgo.Record{Topic: "t", Partition: 1, Offset: 2})
	// Output:
	// handled t/1@2: <nil>
}

func ExampleNewBatch() {
	cluster, err := startBroker()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cluster.Close()

	ctx, stop := context.WithCancel(context.Background())
	var seen atomic.Int64
	c, err := consumer.NewBatch(
		consumer.BatchHandlerFunc(func(_ context.Context, recs []*kgo.Record) error {
			// One write for the whole batch, e.g. a bulk insert. nil: every
			// record's offset may commit; an error without an index: the
			// records are handled again one at a time.
			fmt.Printf("batch of %d:", len(recs))
			for _, r := range recs {
				fmt.Printf(" %s", r.Value)
			}
			fmt.Println()
			if seen.Add(int64(len(recs))) == 3 {
				stop() // Run handles what it gathered, commits and leaves
			}
			return nil
		}),
		consumer.SeedBrokers(cluster.ListenAddrs()...),
		consumer.Topics("greetings"),
		consumer.Group("greeter"),
		consumer.BatchMaxRecords(100),
		consumer.BatchLinger(100*time.Millisecond), // wait a little for a fuller batch
		consumer.WithLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := c.Run(ctx); err != nil {
		fmt.Println(err)
	}
	// Output:
	// batch of 3: hello hallo ciao
}

func ExampleBatchError() {
	// A sink that writes records in order and stops at the first it
	// refuses says which one: the records before it are stored, the
	// failing one is retried or dead-lettered on its own, and the rest
	// come again in the next batch.
	write := consumer.BatchHandlerFunc(func(_ context.Context, recs []*kgo.Record) error {
		for i, r := range recs {
			if len(r.Value) == 0 {
				return &consumer.BatchError{Index: i, Err: fault.MarkPoison(errors.New("empty value"))}
			}
		}
		return nil
	})
	err := write.HandleBatch(context.Background(), []*kgo.Record{
		{Offset: 7, Value: []byte("a")},
		{Offset: 8},
		{Offset: 9, Value: []byte("c")},
	})
	fmt.Println(err)
	var be *consumer.BatchError
	if errors.As(err, &be) {
		fmt.Println("failing index:", be.Index, "poison:", fault.ClassOf(err) == fault.Poison)
	}
	// Output:
	// consumer: batch record 1: poison: empty value
	// failing index: 1 poison: true
}
