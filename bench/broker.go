package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/kconsumer/kconsumer/serde"
)

// topicInfo describes a topic the broker seeded.
type topicInfo struct {
	Name       string `json:"name"`
	Records    int    `json:"records"`
	ValueBytes int64  `json:"value_bytes"` // sum of the values' lengths
}

// brokerInfo is what the broker process prints, as one JSON line, once its
// topics are seeded.
type brokerInfo struct {
	Addr     string      `json:"addr"`
	Registry string      `json:"registry"`
	Seeding  float64     `json:"seeding_seconds"`
	Topics   []topicInfo `json:"topics"`
}

// brokerSpec says what the broker seeds.
type brokerSpec struct {
	records    int   // per value size
	sizes      []int // value sizes in bytes, one topic each
	partitions int
	avro       int // Avro telemetry records, 0 for none
	backlog    int // records of the backlog topic, 0 for none
}

func sizeTopic(size int) string { return fmt.Sprintf("values-%d", size) }

const (
	avroTopic    = "telemetry-avro"
	backlogTopic = "backlog"
	backlogValue = 100
)

// brokerMain runs `bench broker`: a kfake cluster and a schema registry on
// loopback, seeded with the benchmark's topics, until stdin is closed.
func brokerMain(args []string) error {
	fs := flag.NewFlagSet("broker", flag.ContinueOnError)
	var spec brokerSpec
	var sizes string
	fs.IntVar(&spec.records, "n", 200_000, "records per value size")
	fs.StringVar(&sizes, "sizes", "100,1024", "value sizes in bytes, comma separated")
	fs.IntVar(&spec.partitions, "partitions", 12, "partitions per topic")
	fs.IntVar(&spec.avro, "avro", 200_000, "Avro telemetry records (0: no Avro topic)")
	fs.IntVar(&spec.backlog, "backlog", 0, "records of 100 bytes in the backlog topic (0: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if spec.sizes, err = parseSizes(sizes); err != nil {
		return err
	}
	cluster, reg, info, err := startBroker(context.Background(), spec)
	if err != nil {
		return err
	}
	defer cluster.Close()
	defer reg.Close()
	if err := json.NewEncoder(os.Stdout).Encode(info); err != nil {
		return err
	}
	// The parent closes stdin to stop the broker, or dies, which closes it
	// too.
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// startBroker starts the cluster and the registry and seeds the topics.
func startBroker(ctx context.Context, spec brokerSpec) (*kfake.Cluster, *srfake.Registry, brokerInfo, error) {
	if spec.records < 1 || spec.partitions < 1 || spec.avro < 0 || spec.backlog < 0 {
		return nil, nil, brokerInfo{}, fmt.Errorf("broker: records and partitions must be positive, avro and backlog not negative")
	}
	start := time.Now()
	var topics []string
	for _, s := range spec.sizes {
		topics = append(topics, sizeTopic(s))
	}
	if spec.avro > 0 {
		topics = append(topics, avroTopic)
	}
	if spec.backlog > 0 {
		topics = append(topics, backlogTopic)
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(spec.partitions), topics...))
	if err != nil {
		return nil, nil, brokerInfo{}, err
	}
	reg := srfake.New()
	info := brokerInfo{Addr: cluster.ListenAddrs()[0], Registry: reg.URL()}
	fail := func(err error) (*kfake.Cluster, *srfake.Registry, brokerInfo, error) {
		reg.Close()
		cluster.Close()
		return nil, nil, brokerInfo{}, err
	}

	cl, err := kgo.NewClient(
		kgo.SeedBrokers(info.Addr),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		// Clients are measured, not decompressors.
		kgo.ProducerBatchCompression(kgo.NoCompression()),
	)
	if err != nil {
		return fail(err)
	}
	defer cl.Close()

	for _, size := range spec.sizes {
		value := make([]byte, size)
		for i := range value {
			value[i] = byte(rand.N(256))
		}
		t, err := produce(ctx, cl, sizeTopic(size), spec.records, spec.partitions, func(int) ([]byte, error) { return value, nil })
		if err != nil {
			return fail(err)
		}
		info.Topics = append(info.Topics, t)
	}
	if spec.avro > 0 {
		sreg, err := serde.NewRegistry(info.Registry)
		if err != nil {
			return fail(err)
		}
		codec, err := serde.NewAvro[telemetry](sreg, telemetrySchema)
		if err != nil {
			return fail(err)
		}
		t, err := produce(ctx, cl, avroTopic, spec.avro, spec.partitions, func(i int) ([]byte, error) {
			return codec.Encode(ctx, avroTopic, reading(i))
		})
		if err != nil {
			return fail(err)
		}
		info.Topics = append(info.Topics, t)
	}
	if spec.backlog > 0 {
		value := make([]byte, backlogValue)
		t, err := produce(ctx, cl, backlogTopic, spec.backlog, spec.partitions, func(int) ([]byte, error) { return value, nil })
		if err != nil {
			return fail(err)
		}
		info.Topics = append(info.Topics, t)
	}
	info.Seeding = time.Since(start).Seconds()
	return cluster, reg, info, nil
}

// produce writes n records to topic, record i to partition i mod
// partitions, so that a reader knows how many each partition holds.
func produce(ctx context.Context, cl *kgo.Client, topic string, n, partitions int, value func(i int) ([]byte, error)) (topicInfo, error) {
	t := topicInfo{Name: topic, Records: n}
	var (
		mu   sync.Mutex
		errs []error
	)
	for i := range n {
		v, err := value(i)
		if err != nil {
			return t, fmt.Errorf("broker: value %d of %s: %w", i, topic, err)
		}
		t.ValueBytes += int64(len(v))
		r := &kgo.Record{Topic: topic, Partition: int32(i % partitions), Key: fmt.Appendf(nil, "k%04d", i%1000), Value: v}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return t, err
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) > 0 {
		return t, fmt.Errorf("broker: producing %s: %d records failed, the first: %w", topic, len(errs), errs[0])
	}
	return t, nil
}

// perPartition returns how many of n records, spread as produce spreads
// them, partition p holds.
func perPartition(n, partitions, p int) int64 {
	c := n / partitions
	if p < n%partitions {
		c++
	}
	return int64(c)
}
