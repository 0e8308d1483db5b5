package dlq_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/dlq"
	"github.com/kconsumer/kconsumer/fault"
)

func ExampleMarkPoison() {
	decode := func(b []byte) (int, error) {
		n, err := strconv.Atoi(string(b))
		if err != nil {
			return 0, fault.MarkPoison(fmt.Errorf("decoding reading: %w", err))
		}
		return n, nil
	}
	_, err := decode([]byte("12x"))
	err = fmt.Errorf("handling sensor-data/0@42: %w", err)
	fmt.Println(fault.ClassOf(err), errors.Is(err, fault.ErrPoison))
	// Output: poison true
}

// A record that fails validation lands in sensor-data.dlq with its headers
// and the partition moves on.
func ExampleRouter() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "sensor-data", "sensor-data.dlq"))
	if err != nil {
		panic(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	quiet := slog.New(slog.DiscardHandler)
	produce(brokers, &kgo.Record{Topic: "sensor-data", Value: []byte("17")},
		&kgo.Record{Topic: "sensor-data", Value: []byte("-3")},
		&kgo.Record{Topic: "sensor-data", Value: []byte("18")})

	router, err := dlq.New() // writes with the Consumer's brokers and group
	if err != nil {
		panic(err)
	}
	last := make(chan struct{})
	handler := consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
		km, _ := strconv.Atoi(string(r.Value))
		if km < 0 {
			return fault.MarkPoison(fmt.Errorf("km_tot %d is negative", km))
		}
		fmt.Println("handled", km)
		if r.Offset == 2 {
			close(last)
		}
		return nil
	})
	c, err := consumer.New(handler,
		consumer.SeedBrokers(brokers...),
		consumer.Topics("sensor-data"),
		consumer.Group("usage"),
		consumer.WithLogger(quiet),
		consumer.With(router),
	)
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	<-last
	stop()
	if err := <-done; err != nil { // dead letters are flushed once Run returns
		panic(err)
	}

	l, err := dlq.Parse(consumeOne(brokers, "sensor-data.dlq"))
	if err != nil {
		panic(err)
	}
	fmt.Printf("dead letter of %s/%d@%d: %s after %d attempt: %s\n", l.Topic, l.Partition, l.Offset, l.Class, l.Attempts, l.Error)
	// Output:
	// handled 17
	// handled 18
	// dead letter of sensor-data/0@1: poison after 1 attempt: poison: km_tot -3 is negative
}

// Redrive copies a dead letter back to the group that wrote it, on the
// group's redrive topic; a second run finds nothing left to copy.
func ExampleRedrive() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "sensor-data", "sensor-data.dlq"))
	if err != nil {
		panic(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	// A dead letter as a Router writes it.
	h := func(k, v string) kgo.RecordHeader { return kgo.RecordHeader{Key: k, Value: []byte(v)} }
	produce(brokers, &kgo.Record{Topic: "sensor-data.dlq", Value: []byte("17"), Headers: []kgo.RecordHeader{
		h("trace-id", "abc"),
		h(dlq.HeaderTopic, "sensor-data"), h(dlq.HeaderPartition, "0"), h(dlq.HeaderOffset, "41"),
		h(dlq.HeaderTimestamp, "1700000000000"), h(dlq.HeaderGroup, "usage"), h(dlq.HeaderClass, "unclassified"),
		h(dlq.HeaderError, "mongo: no reachable servers"), h(dlq.HeaderAttempts, "5"), h(dlq.HeaderFailedAt, "1700000000500"),
	}})

	for range 2 {
		stats, err := dlq.Redrive(context.Background(), "sensor-data.dlq",
			dlq.SeedBrokers(brokers...),
			dlq.Classes(fault.Unclassified),
		)
		if err != nil {
			panic(err)
		}
		fmt.Println("copied", stats.Copied)
	}
	// Only group usage reads it again; a Router of usage reads this topic.
	topic := dlq.RedriveTopic("sensor-data", "usage")
	r := consumeOne(brokers, topic)
	fmt.Printf("%s: %s with headers %s=%s at %d\n", topic, r.Value, r.Headers[0].Key, r.Headers[0].Value, r.Timestamp.UnixMilli())
	// Output:
	// copied 1
	// copied 0
	// sensor-data.redrive.usage: 17 with headers trace-id=abc at 1700000000000
}

func produce(brokers []string, recs ...*kgo.Record) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		panic(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		panic(err)
	}
}

func consumeOne(brokers []string, topic string) *kgo.Record {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic))
	if err != nil {
		panic(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		fs := cl.PollRecords(ctx, 1)
		if ctx.Err() != nil {
			panic(ctx.Err())
		}
		if recs := fs.Records(); len(recs) > 0 {
			return recs[0]
		}
	}
}
