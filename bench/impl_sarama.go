package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/IBM/sarama"
)

// runSarama reads through a sarama consumer group, marking each message
// and committing marks every commitInterval (sarama's autocommit).
func runSarama(ctx context.Context, e *env) error {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_9_0_0
	cfg.ClientID = "bench"
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = true
	cfg.Consumer.Offsets.AutoCommit.Interval = commitInterval
	cfg.Consumer.Group.Session.Timeout = sessionTimeout
	cfg.Consumer.Group.Heartbeat.Interval = heartbeat
	cfg.Consumer.Group.Rebalance.Timeout = rebalanceTimeout
	cfg.Consumer.Return.Errors = true
	g, err := sarama.NewConsumerGroup([]string{e.addr}, e.group, cfg)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		for err := range g.Errors() {
			select {
			case errc <- err:
			default:
			}
		}
	}()
	var runErr error
	for ctx.Err() == nil {
		if err := g.Consume(ctx, []string{e.topic}, saramaHandler{e}); err != nil && !errors.Is(err, sarama.ErrClosedConsumerGroup) {
			runErr = fmt.Errorf("sarama: %w", err)
			break
		}
		select {
		case err := <-errc:
			runErr = fmt.Errorf("sarama: %w", err)
		default:
		}
		if runErr != nil {
			break
		}
	}
	return errors.Join(runErr, g.Close())
}

type saramaHandler struct{ e *env }

func (saramaHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (saramaHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h saramaHandler) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			h.e.tally.add(m.Partition)
			s.MarkMessage(m, "")
		case <-s.Context().Done():
			return nil
		}
	}
}
