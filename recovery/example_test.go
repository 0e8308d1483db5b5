package recovery_test

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/recovery"
)

// startBroker starts an in-process broker with a one-partition
// "sensor-data" topic, standing in for a real cluster, and writes the
// readings to it as "sensor=value".
func startBroker(readings ...[2]string) (*kfake.Cluster, error) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "sensor-data"))
	if err != nil {
		return nil, err
	}
	if err := produceReadings(cluster, readings...); err != nil {
		cluster.Close()
		return nil, err
	}
	return cluster, nil
}

func produceReadings(cluster *kfake.Cluster, readings ...[2]string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
	if err != nil {
		return err
	}
	defer cl.Close()
	recs := make([]*kgo.Record, len(readings))
	for i, r := range readings {
		recs[i] = &kgo.Record{Topic: "sensor-data", Key: []byte(r[0]), Value: []byte(r[1])}
	}
	return cl.ProduceSync(context.Background(), recs...).FirstErr()
}

func ExampleFullReplay() {
	cluster, err := startBroker([2]string{"s1", "10"}, [2]string{"s2", "20"}, [2]string{"s1", "11"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cluster.Close()

	// The state is the last reading per sensor: overwriting is idempotent,
	// so it is rebuilt by replaying the topic on every start.
	var mu sync.Mutex
	last := make(map[string]string)
	replay := recovery.NewFullReplay()
	c, err := consumer.New(
		consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
			mu.Lock()
			defer mu.Unlock()
			last[string(r.Key)] = string(r.Value)
			return nil
		}),
		consumer.SeedBrokers(cluster.ListenAddrs()...),
		consumer.Topics("sensor-data"),
		consumer.With(replay), // no Group: a replay reads every partition
		consumer.WithLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	<-replay.CaughtUp() // serve queries from here on; replay.Ready() says the same
	mu.Lock()
	fmt.Println("s1:", last["s1"], "s2:", last["s2"])
	mu.Unlock()
	stop()
	if err := <-done; err != nil {
		fmt.Println(err)
	}
	// Output: s1: 11 s2: 20
}

func ExampleCheckpointSkip() {
	cluster, err := startBroker([2]string{"s1", "5"}, [2]string{"s2", "7"}, [2]string{"s1", "3"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cluster.Close()

	// The state is a total per sensor: adding is not idempotent, so each
	// reading is added together with its checkpoint, in one step.
	store := recovery.NewMemoryStore(make(map[string]int))
	run := func(records int) {
		ctx, stop := context.WithCancel(context.Background())
		var mu sync.Mutex
		handled := 0
		c, err := consumer.New(
			consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
				v, err := strconv.Atoi(string(r.Value))
				if err != nil {
					return err
				}
				err = store.Apply(ctx, recovery.CheckpointOf(r), func(totals *map[string]int) {
					(*totals)[string(r.Key)] += v
				})
				mu.Lock()
				defer mu.Unlock()
				if handled++; handled == records {
					stop()
				}
				return err
			}),
			consumer.SeedBrokers(cluster.ListenAddrs()...),
			consumer.Topics("sensor-data"),
			consumer.Group("usage"),
			consumer.With(recovery.NewCheckpointSkip(store,
				recovery.StartWithoutCheckpoint(kgo.NewOffset().AtStart()))),
			consumer.WithLogger(slog.New(slog.DiscardHandler)),
		)
		if err != nil {
			fmt.Println(err)
			return
		}
		if err := c.Run(ctx); err != nil {
			fmt.Println(err)
		}
		store.Read(func(totals map[string]int) { fmt.Println("s1:", totals["s1"], "s2:", totals["s2"]) })
	}

	run(3)
	// A restart resumes after the checkpoint: only the new reading counts.
	if err := produceReadings(cluster, [2]string{"s2", "1"}); err != nil {
		fmt.Println(err)
		return
	}
	run(1)
	// Output:
	// s1: 8 s2: 7
	// s1: 8 s2: 8
}

func ExampleStateless() {
	cluster, err := startBroker([2]string{"s1", "on"}, [2]string{"s2", "off"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cluster.Close()

	// Nothing is kept: each reading is forwarded, at least once, and the
	// group's committed offsets say where to resume.
	ctx, stop := context.WithCancel(context.Background())
	strategy := recovery.NewStateless()
	c, err := consumer.New(
		consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
			fmt.Printf("%s is %s\n", r.Key, r.Value)
			if r.Offset == 1 {
				stop()
			}
			return nil
		}),
		consumer.SeedBrokers(cluster.ListenAddrs()...),
		consumer.Topics("sensor-data"),
		consumer.Group("query"),
		consumer.With(strategy),
		consumer.WithLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := c.Run(ctx); err != nil {
		fmt.Println(err)
	}
	fmt.Println("ready:", strategy.Ready() == nil)
	// Output:
	// s1 is on
	// s2 is off
	// ready: true
}

func ExampleCheckpointOf() {
	// A record's checkpoint doubles as the ID of its effect: writing the
	// effect under this ID again on a replay changes nothing.
	r := &kgo.Record{Topic: "sensor-data", Partition: 3, Offset: 1042}
	fmt.Println(recovery.CheckpointOf(r))
	// Output: sensor-data/3/1042
}
