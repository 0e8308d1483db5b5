package kafkatest

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
)

// Run starts c.Run in the background, waits until it is running, and
// returns a stop function that cancels it and returns Run's error. The test
// fails at once if Run returns before running; stop is called at cleanup.
// stop gives up after two minutes, longer than any test's ShutdownTimeout.
func Run(t testing.TB, c *consumer.Consumer) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-errc:
			case <-time.After(2 * time.Minute):
				err = errors.New("Run did not return within 2 minutes of cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	select {
	case <-c.Running():
	case err := <-errc:
		errc <- err
		t.Fatalf("Run returned before running: %v", err)
	}
	return stop
}

// ConsumerOpts returns the options every test consumer of the cluster
// starts from: its brokers, the topic, quiet logs, group timings and retries
// fast enough that rebalances and retries take milliseconds. Options in
// extra come after them and win.
func (c *Cluster) ConsumerOpts(topic string, extra ...consumer.Opt) []consumer.Opt {
	opts := []consumer.Opt{
		consumer.SeedBrokers(c.Addrs...),
		consumer.Topics(topic),
		consumer.WithLogger(slog.New(slog.DiscardHandler)),
		consumer.ClientOpts(
			kgo.HeartbeatInterval(50*time.Millisecond),
			kgo.SessionTimeout(3*time.Second),
			kgo.FetchMaxWait(50*time.Millisecond),
		),
		consumer.RetryBackoff(time.Millisecond, 10*time.Millisecond),
	}
	return append(opts, extra...)
}
