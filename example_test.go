package kconsumer_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/dlq"
	"github.com/kconsumer/kconsumer/fault"
	"github.com/kconsumer/kconsumer/lag"
	"github.com/kconsumer/kconsumer/recovery"
	"github.com/kconsumer/kconsumer/serde"
)

// Telemetry is one reading of a machine's odometer.
type Telemetry struct {
	Sensor string  `avro:"sensor"`
	KmTot  float64 `avro:"km_tot"`
}

const schema = `{"type": "record", "name": "Telemetry", "fields": [
	{"name": "sensor", "type": "string"}, {"name": "km_tot", "type": "double"}]}`

// A consumer of Avro telemetry that accumulates kilometres per sensor, with
// checkpoint-skip recovery, a dead-letter topic, lag metrics and health
// checks: each component is named once, and so is the group. This is the
// README's "Everything together".
func Example() {
	brokers, registry, stop := devStack("sensor-data", "sensor-data.dlq")
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())

	reg, err := serde.NewRegistry(registry)
	if err != nil {
		panic(err)
	}
	telemetry, err := serde.NewAvro[Telemetry](reg, schema) // decodes any compatible writer schema
	if err != nil {
		panic(err)
	}
	produce(ctx, brokers, telemetry, Telemetry{"s-1", 12.5}, Telemetry{"", -1}, Telemetry{"s-1", 30})

	// The state and its checkpoints live in one store and change together.
	store := recovery.NewMemoryStore(map[string]float64{})
	save := func(ctx context.Context, r *kgo.Record, t Telemetry) error {
		if t.Sensor == "" {
			return fault.MarkPoison(errors.New("reading without a sensor")) // to sensor-data.dlq
		}
		return store.Apply(ctx, recovery.CheckpointOf(r), func(km *map[string]float64) { (*km)[t.Sensor] += t.KmTot })
	}

	// Resume after the stored checkpoint; a partition without one starts
	// at its first record (the default is its end).
	strategy := recovery.NewCheckpointSkip(store, recovery.StartWithoutCheckpoint(kgo.NewOffset().AtStart()))
	router, err := dlq.New() // poison to sensor-data.dlq, retriable retried
	if err != nil {
		panic(err)
	}
	metrics := prometheus.NewRegistry()
	mon, err := lag.NewMonitor(lag.Registerer(metrics)) // lag, /healthz, /readyz
	if err != nil {
		panic(err)
	}
	c, err := consumer.New(serde.Handle(telemetry, save),
		consumer.SeedBrokers(brokers...),
		consumer.Topics("sensor-data"),
		consumer.Group("usage"),
		consumer.With(strategy, router, mon),
		consumer.WithLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go mon.Serve(ctx, ln, metrics) // /metrics, /healthz, /readyz
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	// Wait for the dead letter: both good readings are handled before it.
	dead := consumeOne(brokers, "sensor-data.dlq")
	l, err := dlq.Parse(dead)
	if err != nil {
		panic(err)
	}
	fmt.Printf("dead letter from %s/%d@%d, group %s: %s\n", l.Topic, l.Partition, l.Offset, l.Group, l.Error)
	if resp, err := http.Get("http://" + ln.Addr().String() + "/readyz"); err == nil {
		fmt.Println("readyz:", resp.Status)
		resp.Body.Close()
	}
	cancel() // as SIGTERM would: drain, commit, flush dead letters, leave
	if err := <-done; err != nil {
		panic(err)
	}
	store.Read(func(km map[string]float64) { fmt.Println("s-1 km:", km["s-1"]) })
	// Output:
	// dead letter from sensor-data/0@1, group usage: poison: reading without a sensor
	// readyz: 200 OK
	// s-1 km: 42.5
}

// devStack starts a broker with the topics and a Schema Registry in process.
func devStack(topics ...string) (brokers []string, registry string, stop func()) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topics...))
	if err != nil {
		panic(err)
	}
	sr := srfake.New()
	return cluster.ListenAddrs(), sr.URL(), func() { sr.Close(); cluster.Close() }
}

func produce(ctx context.Context, brokers []string, codec *serde.Avro[Telemetry], ts ...Telemetry) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("sensor-data"))
	if err != nil {
		panic(err)
	}
	defer cl.Close()
	for _, t := range ts {
		b, err := codec.Encode(ctx, "sensor-data", t)
		if err != nil {
			panic(err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(t.Sensor), Value: b}).FirstErr(); err != nil {
			panic(err)
		}
	}
}

func consumeOne(brokers []string, topic string) *kgo.Record {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic))
	if err != nil {
		panic(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			panic(err)
		}
		if recs := fs.Records(); len(recs) > 0 {
			return recs[0]
		}
	}
}
