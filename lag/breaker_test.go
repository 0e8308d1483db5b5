package lag_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/fault"
	"github.com/kconsumer/kconsumer/lag"
)

// breakerState stands in for a dead-letter router whose breaker the test
// opens and closes.
type breakerState struct {
	mu sync.Mutex
	st fault.RouterStats
}

func (*breakerState) Attach(*consumer.Attachment) error { return nil }

func (b *breakerState) RouterStats() fault.RouterStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.st
}

func (b *breakerState) set(st fault.RouterStats) {
	b.mu.Lock()
	b.st = st
	b.mu.Unlock()
}

// TestBreakerHoldsAreVisible: a record the open breaker holds is no handler
// error, marks its partition paused, and the open breaker fails readiness
// with its reason while health holds (a restart would not mend a sink).
func TestBreakerHoldsAreVisible(t *testing.T) {
	m := newMonitor(t)
	dead := &breakerState{}
	_, err := consumer.New(consumer.HandlerFunc(func(context.Context, *kgo.Record) error { return nil }),
		consumer.Topics(topic), consumer.Group(group), consumer.With(dead, m))
	if err != nil {
		t.Fatal(err)
	}
	m.Rebalanced(consumer.Assigned, map[string][]int32{topic: {0, 1}})
	at := func(int64) time.Time { return base }
	m.Polled(fetched(0, 2, 0, 2, at))
	m.Polled(fetched(1, 2, 0, 2, at))
	if err := m.Ready(); err != nil {
		t.Fatalf("Ready with the breaker closed = %v", err)
	}

	dead.set(fault.RouterStats{Breaker: fault.BreakerOpen, Held: 1, Reason: "20 of the last 20 records failed after retries"})
	held := &kgo.Record{Topic: topic, Partition: 0, Offset: 0, Timestamp: base}
	m.Handled(held, time.Millisecond, errors.Join(errors.New("dlq: circuit breaker open"), fault.ErrHeld))
	m.Handled(&kgo.Record{Topic: topic, Partition: 1, Offset: 0, Timestamp: base}, time.Millisecond, nil)
	p0, _ := partitionOf(m, topic, 0)
	p1, _ := partitionOf(m, topic, 1)
	if !p0.BreakerHeld || !p0.Paused || p1.BreakerHeld || p1.Paused {
		t.Errorf("held partition: BreakerHeld %v Paused %v; other: BreakerHeld %v Paused %v; want only the held one marked",
			p0.BreakerHeld, p0.Paused, p1.BreakerHeld, p1.Paused)
	}
	if err := m.Ready(); !errors.Is(err, lag.ErrNotReady) || !strings.Contains(err.Error(), "20 of the last 20") {
		t.Errorf("Ready with the breaker open = %v, want ErrNotReady with the breaker's reason", err)
	}
	if err := m.Healthy(); err != nil {
		t.Errorf("Healthy with the breaker open = %v, want nil", err)
	}

	dead.set(fault.RouterStats{})
	m.Handled(held, time.Millisecond, nil)
	if p0, _ := partitionOf(m, topic, 0); p0.BreakerHeld || p0.Paused {
		t.Errorf("partition still held after its record was handled: %+v", p0)
	}
	if err := m.Ready(); err != nil {
		t.Errorf("Ready after the breaker closed = %v", err)
	}
}
