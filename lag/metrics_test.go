package lag_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/dlq"
	"github.com/kconsumer/kconsumer/fault"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
	"github.com/kconsumer/kconsumer/lag"
)

// A dlq.Router is the dead-letter router a Monitor finds among its
// Consumer's plugins in production.
var (
	_ consumer.Plugin     = (*dlq.Router)(nil)
	_ fault.StatsReporter = (*dlq.Router)(nil)
)

// deadLetters stands in for a dlq.Router: a plugin that reports counters.
type deadLetters struct{ n atomic.Int64 }

func (d *deadLetters) Attach(*consumer.Attachment) error { return nil }

func (d *deadLetters) RouterStats() fault.RouterStats {
	n := d.n.Load()
	st := fault.RouterStats{DeadLettered: n, Breaker: fault.BreakerOpen, BreakerOpens: 1, Held: 1, Reason: "sink down"}
	st.DeadLetteredByClass[fault.Poison] = n
	return st
}

// scrape GETs /metrics from srv and parses it with the Prometheus text
// parser.
func scrape(t *testing.T, srv *httptest.Server) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("Content-Type %q, want the text format", ct)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the scrape: %v", err)
	}
	return mfs
}

func labelsOf(m *dto.Metric) map[string]string {
	out := make(map[string]string)
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// value returns the value of a gauge, counter or histogram count.
func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return 0
}

// series returns the series of a family whose labels include want.
func series(mfs map[string]*dto.MetricFamily, name string, want map[string]string) []*dto.Metric {
	var out []*dto.Metric
	for _, m := range mfs[name].GetMetric() {
		l := labelsOf(m)
		match := true
		for k, v := range want {
			match = match && l[k] == v
		}
		if match {
			out = append(out, m)
		}
	}
	return out
}

func TestScrapeParsesWithNamedSeries(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 2, topic)
	produced := cluster.ProduceSeq(t, topic, 60, 6)
	ends := cluster.EndOffsets(t, topic)

	reg := prometheus.NewRegistry()
	dead := new(deadLetters)
	dead.n.Store(2)
	m := newMonitor(t, lag.Registerer(reg))
	ready := consumer.PluginFunc(func(a *consumer.Attachment) error {
		a.Ready(func() error { return nil })
		return nil
	})
	var calls atomic.Int64
	poisoned, retried := errors.New("bad bytes"), errors.New("sink timeout")
	h := consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
		switch n := calls.Add(1); n {
		case 5:
			return fault.MarkPoison(poisoned)
		case 9:
			return fault.MarkRetriable(retried)
		}
		return nil
	})
	c, err := consumer.New(h, consumerOpts(cluster, m, consumer.With(dead, ready))...)
	if err != nil {
		t.Fatal(err)
	}
	stop := kafkatest.Run(t, c)
	kafkatest.WaitFor(t, 20*time.Second, "everything handled and committed", func() bool {
		s := m.Snapshot()
		done := len(s.Partitions) == 2
		for _, p := range s.Partitions {
			done = done && p.Committed == ends[p.Partition]
		}
		return done
	})
	srv := httptest.NewServer(m.Handler(reg))
	defer srv.Close()
	mfs := scrape(t, srv)

	perPartition := []string{
		"kafka_consumergroup_group_offset", "kafka_consumergroup_group_lag", "kafka_consumergroup_group_lag_seconds",
		"kconsumer_partition_high_watermark", "kconsumer_partition_processed_offset", "kconsumer_partition_status",
	}
	for _, name := range perPartition {
		for p, end := range ends {
			ms := series(mfs, name, map[string]string{"group": group, "topic": topic, "partition": fmt.Sprint(p)})
			if len(ms) != 1 {
				t.Errorf("%s{group=%q,topic=%q,partition=\"%d\"}: %d series, want 1", name, group, topic, p, len(ms))
				continue
			}
			want := 0.0
			switch name {
			case "kafka_consumergroup_group_offset", "kconsumer_partition_high_watermark", "kconsumer_partition_processed_offset":
				want = float64(end)
			}
			if got := value(ms[0]); got != want {
				t.Errorf("%s partition %d = %v, want %v", name, p, got, want)
			}
		}
	}
	for name, want := range map[string]float64{
		"kafka_consumergroup_group_max_lag":         0,
		"kafka_consumergroup_group_max_lag_seconds": 0,
		"kafka_consumergroup_group_sum_lag":         0,
		"kconsumer_group_status":                    0,
		"kconsumer_healthy":                         1,
		"kconsumer_ready":                           0, // the breaker is open
		"kconsumer_recovery_ready":                  1,
		"kconsumer_assigned_partitions":             2,
		"kconsumer_paused_partitions":               0,
		"kconsumer_dlq_breaker_state":               1,
		"kconsumer_dlq_breaker_held_partitions":     1,
		"kconsumer_dlq_breaker_opens_total":         1,
		"kconsumer_in_flight_records":               0,
		"kconsumer_in_flight_records_peak":          float64(c.Stats().PeakInFlight),
		"kconsumer_key_queue_max":                   0,
	} {
		ms := series(mfs, name, map[string]string{"group": group})
		if len(ms) != 1 || value(ms[0]) != want {
			t.Errorf("%s{group=%q}: %d series, want one of value %v", name, group, len(ms), want)
		}
	}
	checkCounter := func(name string, labels map[string]string, want float64) {
		t.Helper()
		ms := series(mfs, name, labels)
		if len(ms) != 1 || value(ms[0]) != want {
			got := "none"
			if len(ms) == 1 {
				got = fmt.Sprint(value(ms[0]))
			}
			t.Errorf("%s%v = %s (%d series), want %v", name, labels, got, len(ms), want)
		}
	}
	tl := func(kv ...string) map[string]string {
		l := map[string]string{"group": group, "topic": topic}
		for i := 0; i < len(kv); i += 2 {
			l[kv[i]] = kv[i+1]
		}
		return l
	}
	checkCounter("kconsumer_records_handled_total", tl(), float64(len(produced)))
	checkCounter("kconsumer_handler_errors_total", tl("class", "poison"), 1)
	checkCounter("kconsumer_handler_errors_total", tl("class", "retriable"), 1)
	checkCounter("kconsumer_handler_errors_total", tl("class", "unclassified"), 0)
	checkCounter("kconsumer_handler_errors_total", tl("class", "uncertain"), 0)
	checkCounter("kconsumer_breaker_holds_total", tl(), 0)
	checkCounter("kconsumer_dlq_records_total", map[string]string{"group": group, "class": "poison"}, 2)
	checkCounter("kconsumer_dlq_records_total", map[string]string{"group": group, "class": "retriable"}, 0)
	checkCounter("kconsumer_handler_retries_total", tl(), 2)
	checkCounter("kconsumer_handler_duration_seconds", tl(), float64(len(produced)+2))
	checkCounter("kconsumer_rebalances_total", map[string]string{"group": group, "event": "assigned"}, 1)
	if ms := series(mfs, "kconsumer_commits_total", map[string]string{"group": group}); len(ms) != 1 || value(ms[0]) < 1 {
		t.Errorf("kconsumer_commits_total: want at least one commit")
	}
	if ms := series(mfs, "kconsumer_commit_duration_seconds", map[string]string{"group": group}); len(ms) != 1 || value(ms[0]) < 1 {
		t.Errorf("kconsumer_commit_duration_seconds: want at least one commit timed")
	}
	var kgoFamilies []string
	for name, mf := range mfs {
		if strings.HasPrefix(name, "kconsumer_kgo_") {
			kgoFamilies = append(kgoFamilies, name)
			for _, m := range mf.GetMetric() {
				if labelsOf(m)["group"] != group {
					t.Errorf("%s has no group label", name)
				}
			}
		}
	}
	sort.Strings(kgoFamilies)
	if !slices.Contains(kgoFamilies, "kconsumer_kgo_connects_total") || !slices.Contains(kgoFamilies, "kconsumer_kgo_fetch_bytes_total") {
		t.Errorf("franz-go client metrics missing; found %v", kgoFamilies)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestMonitorsOfSeveralGroupsShareARegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	attached(t, "usage", lag.Registerer(reg))
	attached(t, "", lag.GroupLabel("current"), lag.Registerer(reg))
	second := newMonitor(t, lag.Registerer(reg))
	nop := consumer.HandlerFunc(func(context.Context, *kgo.Record) error { return nil })
	_, err := consumer.New(nop, consumer.Topics(topic), consumer.Group("usage"), consumer.With(second))
	var dup prometheus.AlreadyRegisteredError
	if !errors.Is(err, consumer.ErrInvalidOption) || !errors.As(err, &dup) {
		t.Fatalf("a second Monitor of the same group: New = %v, want ErrInvalidOption for the registration conflict", err)
	}
	first, _ := attached(t, "replay", lag.Registerer(reg))
	first.Unregister()
	attached(t, "replay", lag.Registerer(reg))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	groups := make(map[string]bool)
	for _, mf := range mfs {
		if mf.GetName() == "kafka_consumergroup_group_max_lag" {
			for _, m := range mf.GetMetric() {
				groups[labelsOf(m)["group"]] = true
			}
		}
	}
	if len(groups) != 3 || !groups["usage"] || !groups["current"] || !groups["replay"] {
		t.Fatalf("max lag series by group: %v, want usage, current and replay", groups)
	}
}

// A Monitor whose Consumer fails to build lets go of the Consumer and of
// its registration, so that it can be attached again.
func TestMonitorAttachesAgainAfterNewFails(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMonitor(t, lag.Registerer(reg))
	nop := consumer.HandlerFunc(func(context.Context, *kgo.Record) error { return nil })
	refuse := consumer.PluginFunc(func(*consumer.Attachment) error { return errors.New("refused") })
	// With a dead-letter router beside it, the Monitor's metrics describe
	// the dead-letter series too: they must go all the same.
	if _, err := consumer.New(nop, consumer.Topics(topic), consumer.Group(group), consumer.With(&deadLetters{}, m, refuse)); !errors.Is(err, consumer.ErrInvalidOption) {
		t.Fatalf("New with a plugin that refuses = %v, want ErrInvalidOption", err)
	}
	if _, err := consumer.New(nop, consumer.Topics(topic), consumer.Group(group), consumer.With(m)); err != nil {
		t.Fatalf("attaching the Monitor again: %v", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "kafka_consumergroup_group_max_lag" {
			if ms := mf.GetMetric(); len(ms) != 1 || labelsOf(ms[0])["group"] != group {
				t.Fatalf("max lag series after attaching again: %v, want one of group %q", ms, group)
			}
			return
		}
	}
	t.Fatal("no max lag series after attaching again")
}
