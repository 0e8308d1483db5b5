package dlq_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/dlq"
	"github.com/kconsumer/kconsumer/fault"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
)

// With KeyOrder, records of one partition fail at the same time: a
// retrying record parks only its key, and each failing record keeps its own
// attempt count until it is dead-lettered, while the rest of the partition
// flows.
func TestKeyOrderParksAKeyAndDeadLettersPoison(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic, dlqTopic)
	const n = 200
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i%10), Value: fmt.Appendf(nil, "%d", i)}
	}
	cluster.Produce(t, recs...)
	const failA, failB, parkedAt = 23, 27, 45 // keys k3, k7 and k5
	h := newHandler(func(r *kgo.Record, call int) error {
		switch r.Offset {
		case failA, failB:
			return errors.New("unexpected reading")
		case parkedAt:
			if call <= 3 {
				return fault.MarkRetriable(errors.New("sink down"))
			}
		}
		return nil
	})
	router := newRouter(t, cluster, dlq.MaxAttempts(3), dlq.NoBreaker())
	stop := start(t, cluster, router, h, consumer.Order(consumer.KeyOrder), consumer.Workers(8))
	kafkatest.WaitFor(t, 30*time.Second, "every record handled or dead-lettered", func() bool {
		return cluster.Committed(t, group, topic)[0] == n
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := h.callsOf(recs[parkedAt]); got != 4 {
		t.Errorf("the parked record was called %d times, want 4 (3 failures, 1 success)", got)
	}
	for _, o := range []int64{failA, failB} {
		if got := h.callsOf(recs[o]); got != 3 {
			t.Errorf("record %d was called %d times, want MaxAttempts 3", o, got)
		}
	}
	if letters := cluster.ReadAll(t, dlqTopic); len(letters) != 2 {
		t.Fatalf("%d dead letters, want the 2 failing records", len(letters))
	}
	// Per key, records were handled in offset order: the parked key's
	// later records waited for it, the failing keys' went on after them.
	last := make(map[string]int64)
	for _, hid := range h.handled() {
		var p int32
		var o int64
		if _, err := fmt.Sscanf(hid, "%d/%d", &p, &o); err != nil {
			t.Fatal(err)
		}
		k := string(recs[o].Key)
		if prev, ok := last[k]; ok && o < prev {
			t.Fatalf("key %s: offset %d handled after %d", k, o, prev)
		}
		last[k] = o
	}
	if len(h.handled()) != n-2 {
		t.Fatalf("handled %d records, want %d (all but the failing ones)", len(h.handled()), n-2)
	}
}
