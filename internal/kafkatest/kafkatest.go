// Package kafkatest starts an in-process Kafka cluster (kfake) for tests and
// gives the helpers the project's tests share: producing records, reading a
// group's committed offsets, and waiting on conditions with a deadline.
package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Cluster is an in-process Kafka cluster that lives as long as its test.
type Cluster struct {
	*kfake.Cluster
	Addrs []string
	Admin *kadm.Client
}

// NewCluster starts a cluster with one broker and the given topics, each
// with partitions partitions. It is closed when the test ends.
func NewCluster(t testing.TB, partitions int32, topics ...string) *Cluster {
	t.Helper()
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.GroupMinSessionTimeout(100 * time.Millisecond),
		// Next-generation (KIP-848) members heartbeat and expire as fast
		// as the classic members of the tests.
		kfake.BrokerConfigs(map[string]string{
			"group.consumer.heartbeat.interval.ms": "100",
			"group.consumer.session.timeout.ms":    "1000",
		}),
	}
	if len(topics) > 0 {
		opts = append(opts, kfake.SeedTopics(partitions, topics...))
	}
	kc, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	c := &Cluster{Cluster: kc, Addrs: kc.ListenAddrs()}
	adm := c.Client(t)
	c.Admin = kadm.NewClient(adm)
	t.Cleanup(kc.Close)
	return c
}

// Client returns a client of the cluster, closed when the test ends.
func (c *Cluster) Client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.Addrs...)}, opts...)...)
	if err != nil {
		t.Fatalf("creating client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Produce writes the records synchronously and fails the test on error.
func (c *Cluster) Produce(t testing.TB, recs ...*kgo.Record) {
	t.Helper()
	if len(recs) == 0 {
		return
	}
	cl := c.Client(t, kgo.ProducerLinger(0))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing: %v", err)
	}
}

// ProduceSeq writes n records to topic, spread over its partitions by key
// ("k<i mod keys>"), with the value "<i>", and returns them in produce order
// with their offsets filled in.
func (c *Cluster) ProduceSeq(t testing.TB, topic string, n, keys int) []*kgo.Record {
	t.Helper()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{
			Topic: topic,
			Key:   fmt.Appendf(nil, "k%d", i%keys),
			Value: fmt.Appendf(nil, "%d", i),
		}
	}
	c.Produce(t, recs...)
	return recs
}

// Committed returns the group's committed offsets for topic by partition;
// partitions without a commit are absent.
func (c *Cluster) Committed(t testing.TB, group, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Admin.FetchOffsets(ctx, group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return map[int32]int64{}
	}
	if err != nil {
		t.Fatalf("fetching offsets of %s: %v", group, err)
	}
	out := make(map[int32]int64)
	for p, o := range resp[topic] {
		if o.Err == nil && o.At >= 0 {
			out[p] = o.At
		}
	}
	return out
}

// EndOffsets returns topic's high watermarks by partition.
func (c *Cluster) EndOffsets(t testing.TB, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := c.Admin.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("listing end offsets: %v", err)
	}
	out := make(map[int32]int64)
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// ReadAll returns every record of topic up to the end offsets seen when it
// is called, from the start of each partition.
func (c *Cluster) ReadAll(t testing.TB, topic string) []*kgo.Record {
	t.Helper()
	var want int64
	for _, end := range c.EndOffsets(t, topic) {
		want += end
	}
	if want == 0 {
		return nil
	}
	cl := c.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []*kgo.Record
	for int64(len(out)) < want {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("reading %s: got %d of %d records: %v", topic, len(out), want, err)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

// WaitFor polls cond until it is true, failing the test with msg when
// timeout passes first.
func WaitFor(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// WaitClosed waits up to timeout for ch to be closed, failing the test
// with msg after that.
func WaitClosed(t testing.TB, timeout time.Duration, msg string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(timeout):
		t.Fatalf("timed out after %v waiting for %s", timeout, msg)
	}
}
