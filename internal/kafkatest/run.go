package kafkatest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kconsumer/kconsumer/consumer"
)

// Run starts c.Run in the background, waits until it is running, and
// returns a stop function that cancels it and returns Run's error. The test
// fails at once if Run returns before running; stop is called at cleanup.
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
			case <-time.After(30 * time.Second):
				err = errors.New("Run did not return within 30s of cancel")
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
