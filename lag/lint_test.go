package lag_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
	"github.com/kconsumer/kconsumer/lag"
)

// TestMetricsPassPromlint scrapes a running Consumer's registry, the
// Monitor's series and franz-go's client metrics, and checks it the way
// promtool check metrics does.
func TestMetricsPassPromlint(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 2, topic)
	cluster.ProduceSeq(t, topic, 100, 10)
	reg := prometheus.NewRegistry()
	m := newMonitor(t, lag.Registerer(reg))
	var handled atomic.Int64
	c, err := consumer.New(consumer.HandlerFunc(func(context.Context, *kgo.Record) error { handled.Add(1); return nil }),
		consumerOpts(cluster, m)...)
	if err != nil {
		t.Fatal(err)
	}
	kafkatest.Run(t, c)
	kafkatest.WaitFor(t, 20*time.Second, "records handled", func() bool { return handled.Load() >= 100 })
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var kgoSeries, buffered bool
	for _, mf := range mfs {
		kgoSeries = kgoSeries || strings.HasPrefix(mf.GetName(), "kconsumer_kgo_")
		buffered = buffered || mf.GetName() == "kconsumer_kgo_buffered_fetch_records"
	}
	if !kgoSeries || !buffered {
		t.Fatalf("scrape lacks the client metrics (kgo series %v, buffered fetch records %v)", kgoSeries, buffered)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}
