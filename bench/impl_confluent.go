//go:build cgo

package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// confluentImpl is the confluent-kafka-go consumer, linked with the
// librdkafka the Go module bundles; it needs cgo.
func confluentImpl() (impl, bool) {
	_, version := kafka.LibraryVersion()
	return impl{
		name: "confluent-kafka-go",
		desc: "confluent-kafka-go/v2 consumer (librdkafka " + version + ", cgo), group, Poll loop",
		run:  runConfluent,
	}, true
}

// runConfluent reads through a confluent-kafka-go consumer with a group,
// librdkafka's autocommit and the Poll loop its documentation shows.
func runConfluent(ctx context.Context, e *env) error {
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":       e.addr,
		"group.id":                e.group,
		"auto.offset.reset":       "earliest",
		"enable.auto.commit":      true,
		"auto.commit.interval.ms": int(commitInterval.Milliseconds()),
		"session.timeout.ms":      int(sessionTimeout.Milliseconds()),
		"heartbeat.interval.ms":   int(heartbeat.Milliseconds()),
		"max.poll.interval.ms":    int(rebalanceTimeout.Milliseconds()),
		"log_level":               3,
	})
	if err != nil {
		return err
	}
	var runErr error
	if err := c.SubscribeTopics([]string{e.topic}, nil); err != nil {
		runErr = err
	}
	for runErr == nil && ctx.Err() == nil {
		switch ev := c.Poll(100).(type) {
		case *kafka.Message:
			if ev.TopicPartition.Error != nil {
				runErr = fmt.Errorf("confluent-kafka-go: %w", ev.TopicPartition.Error)
				break
			}
			e.tally.add(ev.TopicPartition.Partition)
		case kafka.Error:
			if ev.IsFatal() {
				runErr = fmt.Errorf("confluent-kafka-go: %w", ev)
			}
		}
	}
	return errors.Join(runErr, c.Close())
}
