package lag_test

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
	"github.com/kconsumer/kconsumer/lag"
	"github.com/kconsumer/kconsumer/recovery"
)

// The wiring users write: /readyz follows a FullReplay strategy, false
// while the replay has not reached the start-time end of the topic.
func TestReadyzFollowsAFullReplay(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 2, topic)
	produced := produceStamped(t, cluster, 40)
	replay := recovery.NewFullReplay()
	m := newMonitor(t, lag.GroupLabel("current"))
	release := make(chan struct{})
	var (
		mu      sync.Mutex // both partitions' workers see the count at half and wait
		handled atomic.Int64
	)
	h := consumer.HandlerFunc(func(ctx context.Context, _ *kgo.Record) error {
		mu.Lock()
		hold := handled.Load() == int64(len(produced))/2
		if !hold {
			handled.Add(1)
		}
		mu.Unlock()
		if hold {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
			handled.Add(1)
		}
		return nil
	})
	c, err := consumer.New(h, cluster.ConsumerOpts(topic, consumer.With(replay, m))...)
	if err != nil {
		t.Fatal(err)
	}
	stop := kafkatest.Run(t, c)
	readyz := m.Readyz()
	kafkatest.WaitFor(t, 20*time.Second, "the replay to reach the held record", func() bool {
		return handled.Load() == int64(len(produced))/2 && len(m.Snapshot().Partitions) > 0
	})
	if code, body := get(t, readyz, "/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("readyz %d %q halfway through the replay, want 503", code, body)
	}
	close(release)
	kafkatest.WaitFor(t, 20*time.Second, "readyz after the replay caught up", func() bool {
		code, _ := get(t, readyz, "/readyz")
		return code == http.StatusOK
	})
	if n := handled.Load(); n != int64(len(produced)) {
		t.Fatalf("ready after %d of %d records", n, len(produced))
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}
