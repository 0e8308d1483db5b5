package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/lag"
	"github.com/kconsumer/kconsumer/recovery"
	"github.com/kconsumer/kconsumer/serde"
)

// consume runs a Consumer with h and opts until ctx is done and notes its
// buffer figures.
func consume(ctx context.Context, e *env, h consumer.Handler, opts ...consumer.Opt) error {
	if e.maxInFlight > 0 {
		opts = append(opts, consumer.MaxInFlight(e.maxInFlight))
	}
	if e.maxPerPartition > 0 {
		opts = append(opts, consumer.MaxInFlightPerPartition(e.maxPerPartition))
	}
	c, err := consumer.New(h, append([]consumer.Opt{
		consumer.SeedBrokers(e.addr),
		consumer.Topics(e.topic),
		consumer.CommitInterval(commitInterval),
		consumer.ClientOpts(
			kgo.SessionTimeout(sessionTimeout),
			kgo.HeartbeatInterval(heartbeat),
			kgo.RebalanceTimeout(rebalanceTimeout),
		),
		consumer.WithLogger(slog.New(slog.DiscardHandler)),
	}, opts...)...)
	if err != nil {
		return err
	}
	err = c.Run(ctx)
	s := c.Stats()
	e.notes["peak_in_flight"] = s.PeakInFlight
	return err
}

// noop is the handler of the throughput runs: it counts the record.
func noop(e *env) consumer.Handler {
	return consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
		e.tally.add(r.Partition)
		return nil
	})
}

func runStateless(ctx context.Context, e *env) error {
	return consume(ctx, e, noop(e), consumer.Group(e.group), consumer.With(recovery.NewStateless()))
}

// noCheckpoints is a CheckpointStore that holds none, so every partition
// starts where StartWithoutCheckpoint says.
type noCheckpoints struct{}

func (noCheckpoints) Checkpoints(context.Context, string, []int32) (map[int32]int64, error) {
	return map[int32]int64{}, nil
}

func runCheckpoint(ctx context.Context, e *env) error {
	skip := recovery.NewCheckpointSkip(noCheckpoints{}, recovery.StartWithoutCheckpoint(kgo.NewOffset().AtStart()))
	return consume(ctx, e, noop(e), consumer.Group(e.group), consumer.With(skip))
}

func runReplay(ctx context.Context, e *env) error {
	return consume(ctx, e, noop(e), consumer.With(recovery.NewFullReplay()))
}

// runLag is runStateless with lag accounting: a lag.Monitor observes the
// Consumer and exports to a registry of its own.
func runLag(ctx context.Context, e *env) error {
	m, err := lag.NewMonitor(lag.Registerer(prometheus.NewRegistry()))
	if err != nil {
		return err
	}
	return consume(ctx, e, noop(e), consumer.Group(e.group), consumer.With(recovery.NewStateless(), m))
}

// runAvro decodes each value with serde's Avro codec through serde.Handle,
// the path a user of the library takes.
func runAvro(ctx context.Context, e *env) error {
	reg, err := serde.NewRegistry(e.registry)
	if err != nil {
		return err
	}
	codec, err := serde.NewAvro[telemetry](reg, telemetrySchema)
	if err != nil {
		return err
	}
	h := serde.Handle(codec, func(_ context.Context, r *kgo.Record, _ telemetry) error {
		e.tally.add(r.Partition)
		return nil
	})
	return consume(ctx, e, h, consumer.Group(e.group), consumer.With(recovery.NewStateless()))
}

// runSlow is the memory case: a handler that takes e.slow per record, as
// one writing to a slow database would, or blocks until the run ends.
func runSlow(ctx context.Context, e *env) error {
	h := consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
		if e.slow < 0 {
			<-ctx.Done()
			return nil
		}
		time.Sleep(e.slow)
		e.tally.add(r.Partition)
		return nil
	})
	return consume(ctx, e, h, consumer.Group(e.group), consumer.With(recovery.NewStateless()))
}
