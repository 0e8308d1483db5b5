package lag_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
	"github.com/kconsumer/kconsumer/lag"
)

const (
	topic = "events"
	group = "g"
)

// base is the time the fake clocks start at; produced records get
// timestamps relative to it.
var base = time.UnixMilli(1_700_000_000_000)

// clock is a fake clock that moves only when told.
type clock struct{ ns atomic.Int64 }

func newClock(at time.Time) *clock {
	c := new(clock)
	c.ns.Store(at.UnixNano())
	return c
}

func (c *clock) Now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) Add(d time.Duration) { c.ns.Add(int64(d)) }

func newMonitor(t testing.TB, opts ...lag.Opt) *lag.Monitor {
	t.Helper()
	m, err := lag.NewMonitor(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// attached returns a Monitor attached to a Consumer of group ("" for none)
// that never runs, for tests that call the Monitor's observer methods
// themselves.
func attached(t testing.TB, group string, opts ...lag.Opt) (*lag.Monitor, *consumer.Consumer) {
	t.Helper()
	m := newMonitor(t, opts...)
	copts := []consumer.Opt{consumer.Topics(topic), consumer.With(m)}
	if group != "" {
		copts = append(copts, consumer.Group(group))
	}
	c, err := consumer.New(consumer.HandlerFunc(func(context.Context, *kgo.Record) error { return nil }), copts...)
	if err != nil {
		t.Fatal(err)
	}
	return m, c
}

// partitionOf returns the snapshot of one partition, and false if the
// Monitor does not track it.
func partitionOf(m *lag.Monitor, topic string, partition int32) (lag.PartitionLag, bool) {
	for _, p := range m.Snapshot().Partitions {
		if p.Topic == topic && p.Partition == partition {
			return p, true
		}
	}
	return lag.PartitionLag{}, false
}

// fetched builds what a poll hands the observer: the records [from, to) of
// a partition with a high watermark, each stamped ts(offset).
func fetched(partition int32, hwm, from, to int64, ts func(int64) time.Time) kgo.FetchTopicPartition {
	fp := kgo.FetchTopicPartition{Topic: topic, FetchPartition: kgo.FetchPartition{
		Partition: partition, HighWatermark: hwm, LastStableOffset: hwm, LogStartOffset: 0,
	}}
	for o := from; o < to; o++ {
		fp.Records = append(fp.Records, &kgo.Record{Topic: topic, Partition: partition, Offset: o, Timestamp: ts(o)})
	}
	return fp
}

// consumerOpts are the options of every test consumer: the cluster's test
// defaults, the group, quick commits, and the monitor attached.
func consumerOpts(c *kafkatest.Cluster, m *lag.Monitor, extra ...consumer.Opt) []consumer.Opt {
	return c.ConsumerOpts(topic, append([]consumer.Opt{
		consumer.Group(group),
		consumer.CommitInterval(100 * time.Millisecond),
		consumer.With(m),
	}, extra...)...)
}

// produceStamped writes n records spread over the topic's partitions by key,
// the i-th stamped base+i seconds, and returns them with their partitions
// and offsets filled in.
func produceStamped(t *testing.T, c *kafkatest.Cluster, n int) []*kgo.Record {
	t.Helper()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{
			Topic:     topic,
			Key:       []byte{byte('a' + i%4)},
			Value:     []byte{byte(i)},
			Timestamp: base.Add(time.Duration(i) * time.Second),
		}
	}
	c.Produce(t, recs...)
	return recs
}

// get requests path from h and returns the status code and body.
func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}
