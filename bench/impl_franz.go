package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Group timings shared by every client that joins a group, so that none
// joins faster for being configured differently: kgo's and kconsumer's
// defaults, which the other clients are set to.
const (
	sessionTimeout   = 45 * time.Second
	heartbeat        = 3 * time.Second
	rebalanceTimeout = time.Minute
	commitInterval   = time.Second
)

func groupOpts(group string) []kgo.Opt {
	return []kgo.Opt{
		kgo.ConsumerGroup(group),
		kgo.SessionTimeout(sessionTimeout),
		kgo.HeartbeatInterval(heartbeat),
		kgo.RebalanceTimeout(rebalanceTimeout),
		kgo.AutoCommitInterval(commitInterval),
	}
}

// runIdle connects and waits: the resident set of a process that has a
// client but consumes nothing.
func runIdle(ctx context.Context, e *env) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.addr))
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.Ping(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// runFranz is the baseline: the poll loop a franz-go user writes, with a
// group and autocommit.
func runFranz(ctx context.Context, e *env) error {
	return pollLoop(ctx, e, append(groupOpts(e.group), kgo.ConsumeTopics(e.topic)), func(r *kgo.Record) error {
		e.tally.add(r.Partition)
		return nil
	})
}

// runFranzDirect reads every partition without a group, as FullReplay
// does.
func runFranzDirect(ctx context.Context, e *env) error {
	return pollLoop(ctx, e, []kgo.Opt{kgo.ConsumeTopics(e.topic)}, func(r *kgo.Record) error {
		e.tally.add(r.Partition)
		return nil
	})
}

// runFranzHamba is the baseline of the Avro path: the poll loop decoding
// each value, past its five-byte Confluent header, with hamba/avro and the
// schema it was written with.
func runFranzHamba(ctx context.Context, e *env) error {
	schema, err := avro.Parse(telemetrySchema)
	if err != nil {
		return err
	}
	return pollLoop(ctx, e, append(groupOpts(e.group), kgo.ConsumeTopics(e.topic)), func(r *kgo.Record) error {
		if len(r.Value) < 5 || r.Value[0] != 0 {
			return fmt.Errorf("record %d/%d is not in the Confluent wire format", r.Partition, r.Offset)
		}
		var v telemetry
		if err := avro.Unmarshal(schema, r.Value[5:], &v); err != nil {
			return err
		}
		e.tally.add(r.Partition)
		return nil
	})
}

func pollLoop(ctx context.Context, e *env, opts []kgo.Opt, each func(*kgo.Record) error) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(e.addr)}, opts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for {
		fetches := cl.PollFetches(ctx)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		var errs []error
		fetches.EachError(func(topic string, p int32, err error) {
			errs = append(errs, fmt.Errorf("fetching %s/%d: %w", topic, p, err))
		})
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
		for it := fetches.RecordIter(); !it.Done(); {
			if err := each(it.Next()); err != nil {
				return err
			}
		}
	}
}
