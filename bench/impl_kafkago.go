package main

import (
	"context"
	"errors"
	"time"

	"github.com/segmentio/kafka-go"
)

// runKafkaGo reads through a kafka-go Reader with a group. ReadMessage
// commits each message; with a CommitInterval the commits are batched in
// the background, as the other clients' autocommits are. MaxWait, how long
// the broker may hold a fetch with nothing to return, is 500 ms as in sarama
// and librdkafka instead of kafka-go's 10 s, which Close waits out.
func runKafkaGo(ctx context.Context, e *env) error {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:           []string{e.addr},
		GroupID:           e.group,
		Topic:             e.topic,
		StartOffset:       kafka.FirstOffset,
		CommitInterval:    commitInterval,
		SessionTimeout:    sessionTimeout,
		HeartbeatInterval: heartbeat,
		RebalanceTimeout:  rebalanceTimeout,
		MaxWait:           500 * time.Millisecond,
	})
	var runErr error
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() == nil {
				runErr = err
			}
			break
		}
		e.tally.add(int32(m.Partition))
	}
	return errors.Join(runErr, r.Close())
}
