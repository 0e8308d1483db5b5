package dlq_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/dlq"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
)

const (
	topic    = "events"
	dlqTopic = "events.dlq"
	group    = "g"
)

var quiet = slog.New(slog.DiscardHandler)

// newRouter returns a Router on the cluster for group, closed when the test
// ends.
func newRouter(t testing.TB, c *kafkatest.Cluster, opts ...dlq.RouterOpt) *dlq.Router {
	t.Helper()
	base := []dlq.RouterOpt{dlq.SeedBrokers(c.Addrs...), dlq.WithLogger(quiet)}
	r, err := dlq.New(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// consumerOpts are the options of every test consumer: fast group timings,
// quick retries and commits, quiet logs, and the router attached.
func consumerOpts(c *kafkatest.Cluster, r *dlq.Router, extra ...consumer.Opt) []consumer.Opt {
	return c.ConsumerOpts(topic, append([]consumer.Opt{
		consumer.Group(group),
		consumer.CommitInterval(100 * time.Millisecond),
		consumer.With(r),
	}, extra...)...)
}

// start creates and runs a consumer with h behind the router.
func start(t testing.TB, c *kafkatest.Cluster, r *dlq.Router, h consumer.Handler, extra ...consumer.Opt) (stop func() error) {
	t.Helper()
	cons, err := consumer.New(h, consumerOpts(c, r, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	return kafkatest.Run(t, cons)
}

// handler calls fail for every call and remembers the calls and the
// records handled successfully.
type handler struct {
	fail func(r *kgo.Record, call int) error

	mu    sync.Mutex
	calls map[string]int
	ok    []string // "partition/offset" of successes, in order
}

func newHandler(fail func(r *kgo.Record, call int) error) *handler {
	return &handler{fail: fail, calls: make(map[string]int)}
}

func id(r *kgo.Record) string { return fmt.Sprintf("%d/%d", r.Partition, r.Offset) }

func (h *handler) Handle(_ context.Context, r *kgo.Record) error {
	h.mu.Lock()
	h.calls[id(r)]++
	n := h.calls[id(r)]
	h.mu.Unlock()
	if err := h.fail(r, n); err != nil {
		return err
	}
	h.mu.Lock()
	h.ok = append(h.ok, id(r))
	h.mu.Unlock()
	return nil
}

func (h *handler) callsOf(r *kgo.Record) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls[id(r)]
}

func (h *handler) handled() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.ok...)
}

func (h *handler) tried() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.calls)
}

// produceValues writes one record per value to partition 0 of topic and
// returns them with their offsets.
func produceValues(t *testing.T, c *kafkatest.Cluster, values ...string) []*kgo.Record {
	t.Helper()
	recs := make([]*kgo.Record, len(values))
	for i, v := range values {
		recs[i] = &kgo.Record{Topic: topic, Key: []byte("k"), Value: []byte(v)}
	}
	c.Produce(t, recs...)
	return recs
}

// total sums offsets over partitions.
func total(m map[int32]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// failProduceTo makes the cluster reject every produce request to topic
// with TOPIC_AUTHORIZATION_FAILED while failing returns true; it counts the
// rejections.
func failProduceTo(t *testing.T, c *kafkatest.Cluster, topic string, failing func() bool, rejected *atomic.Int64) {
	t.Helper()
	info := c.TopicInfo(topic)
	if info == nil {
		t.Fatalf("no topic %s", topic)
	}
	c.ControlKey(kmsg.Produce.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		preq := req.(*kmsg.ProduceRequest)
		hit := false
		for _, rt := range preq.Topics {
			hit = hit || rt.Topic == topic || rt.TopicID == info.TopicID
		}
		if !hit || !failing() {
			return nil, nil, false
		}
		resp := preq.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range preq.Topics {
			st := kmsg.NewProduceResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewProduceResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.TopicAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		rejected.Add(1)
		return resp, nil, true
	})
}
