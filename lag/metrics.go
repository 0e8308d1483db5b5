package lag

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/fault"
)

// durationBuckets are the upper bounds, in seconds, of the handler duration
// histogram: from a fast in-memory handler to one waiting on a slow sink.
var durationBuckets = [...]float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// counts are a partition's handler counters. They are kept per partition,
// behind its lock, so that the handlers of different partitions never
// contend on them, and summed by topic at each scrape.
type counts struct {
	handled uint64
	errors  [fault.Uncertain + 1]uint64 // by fault.Class
	holds   uint64                      // calls the breaker held (fault.ErrHeld)
	retries uint64
	n       uint64  // handler calls, for the histogram
	sum     float64 // seconds in handler calls
	buckets [len(durationBuckets)]uint64
}

// record counts one handler call; held says the breaker held the record and
// the handler was not called, which is no handler error.
func (c *counts) record(took time.Duration, failed bool, class fault.Class, retry, held bool) {
	s := took.Seconds()
	c.n++
	c.sum += s
	if i, _ := slices.BinarySearch(durationBuckets[:], s); i < len(c.buckets) {
		c.buckets[i]++
	}
	if retry {
		c.retries++
	}
	switch {
	case !failed:
		c.handled++
	case held:
		c.holds++
	case class >= 0 && int(class) < len(c.errors):
		c.errors[class]++
	default:
		c.errors[fault.Unclassified]++
	}
}

func (c *counts) add(o *counts) {
	c.handled += o.handled
	c.holds += o.holds
	c.retries += o.retries
	c.n += o.n
	c.sum += o.sum
	for i := range c.errors {
		c.errors[i] += o.errors[i]
	}
	for i := range c.buckets {
		c.buckets[i] += o.buckets[i]
	}
}

// metrics is the Monitor's Prometheus collector. Every metric carries the
// group as a constant label, so the Monitors of several Consumers can share
// a registry.
type metrics struct {
	m *Monitor

	offset, lag, lagSeconds           *prometheus.Desc
	maxLag, maxLagSeconds, sumLag     *prometheus.Desc
	hwm, logStart, processed, held    *prometheus.Desc
	partStatus, groupStatus           *prometheus.Desc
	healthy, ready, recoveryReady     *prometheus.Desc
	handled, errors, retries, handler *prometheus.Desc
	holds, dlqHeld                    *prometheus.Desc
	rebalances, commits, commitFails  *prometheus.Desc
	paused, assigned                  *prometheus.Desc
	dlqRecords, dlqFailures           *prometheus.Desc
	dlqBreaker, dlqOpens              *prometheus.Desc
	inFlight, inFlightPeak, keyQueue  *prometheus.Desc
	bufferedFetch, bufferedProduce    *prometheus.Desc

	commitDuration prometheus.Histogram
	batchRecords   prometheus.Histogram // for a batch Consumer only; nil otherwise
}

// batchBuckets are the upper bounds of the batch size histogram, in records.
var batchBuckets = []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000}

func newMetrics(m *Monitor, batched bool) *metrics {
	group := prometheus.Labels{"group": m.group}
	tp := []string{"topic", "partition"}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, group)
	}
	x := &metrics{
		m:               m,
		offset:          desc("kafka_consumergroup_group_offset", "Offset the group lag counts from: the last committed offset (the next to read), or the processed offset for a consumer without a group.", tp...),
		lag:             desc("kafka_consumergroup_group_lag", "High watermark minus the group offset, in records.", tp...),
		lagSeconds:      desc("kafka_consumergroup_group_lag_seconds", "Age of the oldest record received and not yet handled, by its timestamp; 0 when none waits.", tp...),
		maxLag:          desc("kafka_consumergroup_group_max_lag", "Largest lag in records of the group's partitions."),
		maxLagSeconds:   desc("kafka_consumergroup_group_max_lag_seconds", "Largest lag in seconds of the group's partitions."),
		sumLag:          desc("kafka_consumergroup_group_sum_lag", "Sum of the lag in records of the group's partitions."),
		hwm:             desc("kconsumer_partition_high_watermark", "High watermark of the partition at its last fetch.", tp...),
		logStart:        desc("kconsumer_partition_log_start_offset", "First offset of the partition at its last fetch.", tp...),
		processed:       desc("kconsumer_partition_processed_offset", "Offset after the last handled record.", tp...),
		held:            desc("kconsumer_partition_held_records", "Records received and not yet handled.", tp...),
		partStatus:      desc("kconsumer_partition_status", "Status of the partition: 0 OK, 1 WARN, 2 REWIND, 3 ERR, 4 STALL, 5 STOP.", tp...),
		groupStatus:     desc("kconsumer_group_status", "Worst status of the group's partitions: 0 OK, 1 WARN, 2 REWIND, 3 ERR, 4 STALL, 5 STOP."),
		healthy:         desc("kconsumer_healthy", "1 while /healthz succeeds."),
		ready:           desc("kconsumer_ready", "1 while /readyz succeeds."),
		recoveryReady:   desc("kconsumer_recovery_ready", "1 while the consumer's plugins report it ready (a recovery strategy once caught up); 1 without such a condition."),
		handled:         desc("kconsumer_records_handled_total", "Records the handler returned nil for.", "topic"),
		errors:          desc("kconsumer_handler_errors_total", "Handler calls that returned an error, by error class.", "topic", "class"),
		holds:           desc("kconsumer_breaker_holds_total", "Records the open dead-letter circuit breaker held instead of handling.", "topic"),
		dlqHeld:         desc("kconsumer_dlq_breaker_held_partitions", "Partitions whose next record the open dead-letter circuit breaker holds."),
		retries:         desc("kconsumer_handler_retries_total", "Handler calls for a record whose previous call failed.", "topic"),
		handler:         desc("kconsumer_handler_duration_seconds", "Duration of handler calls.", "topic"),
		rebalances:      desc("kconsumer_rebalances_total", "Partition assignments, revocations and losses.", "event"),
		commits:         desc("kconsumer_commits_total", "Offset commits accepted by the broker."),
		commitFails:     desc("kconsumer_commit_failures_total", "Offset commits that failed in whole or in part."),
		paused:          desc("kconsumer_paused_partitions", "Partitions whose fetching is paused by backpressure, or whose next record the open dead-letter circuit breaker holds."),
		assigned:        desc("kconsumer_assigned_partitions", "Partitions the consumer owns."),
		dlqRecords:      desc("kconsumer_dlq_records_total", "Records written to a dead-letter topic and acknowledged, by the class of their error.", "class"),
		dlqFailures:     desc("kconsumer_dlq_write_failures_total", "Dead-letter writes that failed and are retried."),
		dlqBreaker:      desc("kconsumer_dlq_breaker_state", "State of the dead-letter circuit breaker: 0 closed, 1 open, 2 half-open."),
		dlqOpens:        desc("kconsumer_dlq_breaker_opens_total", "Times the dead-letter circuit breaker opened."),
		inFlight:        desc("kconsumer_in_flight_records", "Records fetched and not yet handled, or handled beyond the first unfinished one."),
		inFlightPeak:    desc("kconsumer_in_flight_records_peak", "The most records in flight since the consumer started."),
		keyQueue:        desc("kconsumer_key_queue_max", "The most records one key had waiting, with KeyOrder."),
		bufferedFetch:   desc("kconsumer_kgo_buffered_fetch_records", "Records the client fetched and the consumer has not polled yet."),
		bufferedProduce: desc("kconsumer_kgo_buffered_produce_records", "Records the consumer's client buffered to produce."),
		commitDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:        "kconsumer_commit_duration_seconds",
			Help:        "Duration of offset commit requests.",
			ConstLabels: group,
			Buckets:     []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
	}
	if batched {
		x.batchRecords = prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:        "kconsumer_batch_records",
			Help:        "Records per call of the batch handler.",
			ConstLabels: group,
			Buckets:     batchBuckets,
		})
	}
	return x
}

func (x *metrics) descs() []*prometheus.Desc {
	ds := []*prometheus.Desc{
		x.offset, x.lag, x.lagSeconds, x.maxLag, x.maxLagSeconds, x.sumLag,
		x.hwm, x.logStart, x.processed, x.held, x.partStatus, x.groupStatus,
		x.healthy, x.ready, x.recoveryReady, x.handled, x.errors, x.holds, x.retries, x.handler,
		x.rebalances, x.commits, x.commitFails, x.paused, x.assigned,
		x.inFlight, x.inFlightPeak, x.keyQueue, x.bufferedFetch, x.bufferedProduce,
		x.dlqRecords, x.dlqFailures, x.dlqBreaker, x.dlqOpens, x.dlqHeld,
	}
	return ds
}

// Describe implements prometheus.Collector.
func (x *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range x.descs() {
		ch <- d
	}
	x.commitDuration.Describe(ch)
	if x.batchRecords != nil {
		x.batchRecords.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (x *metrics) Collect(ch chan<- prometheus.Metric) {
	m := x.m
	s := m.Snapshot()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	var sum int64
	paused := 0
	for _, p := range s.Partitions {
		l := []string{p.Topic, strconv.Itoa(int(p.Partition))}
		gauge(x.lagSeconds, p.LagTime.Seconds(), l...)
		gauge(x.held, float64(p.Held), l...)
		gauge(x.partStatus, float64(p.Status), l...)
		if p.HighWatermark >= 0 {
			gauge(x.hwm, float64(p.HighWatermark), l...)
			gauge(x.lag, float64(p.Lag), l...)
			sum += p.Lag
		}
		if p.Offset >= 0 {
			gauge(x.offset, float64(p.Offset), l...)
		}
		if p.LogStart >= 0 {
			gauge(x.logStart, float64(p.LogStart), l...)
		}
		if p.Processed >= 0 {
			gauge(x.processed, float64(p.Processed), l...)
		}
		if p.Paused {
			paused++
		}
	}
	gauge(x.maxLag, float64(s.MaxLag))
	gauge(x.maxLagSeconds, s.MaxLagTime.Seconds())
	gauge(x.sumLag, float64(sum))
	gauge(x.groupStatus, float64(s.Status))
	gauge(x.healthy, boolValue(s.healthy() == nil))
	gauge(x.ready, boolValue(m.Ready() == nil))
	m.mu.Lock()
	cons, dead := m.cons, m.dead
	m.mu.Unlock()
	if cons != nil {
		gauge(x.recoveryReady, boolValue(cons.Ready() == nil))
	}
	gauge(x.paused, float64(paused))
	gauge(x.assigned, float64(len(s.Partitions)))

	for topic, c := range m.countsByTopic() {
		counter(x.handled, float64(c.handled), topic)
		for class, n := range c.errors {
			counter(x.errors, float64(n), topic, fault.Class(class).String())
		}
		counter(x.retries, float64(c.retries), topic)
		counter(x.holds, float64(c.holds), topic)
		buckets := make(map[float64]uint64, len(durationBuckets))
		var cum uint64
		for i, le := range durationBuckets {
			cum += c.buckets[i]
			buckets[le] = cum
		}
		ch <- prometheus.MustNewConstHistogram(x.handler, c.n, c.sum, buckets, topic)
	}
	for e := consumer.Assigned; e <= consumer.Lost; e++ {
		counter(x.rebalances, float64(m.rebalances[e].Load()), e.String())
	}
	counter(x.commits, float64(m.commits.Load()))
	counter(x.commitFails, float64(m.commitFailures.Load()))
	if d := dead; d != nil {
		st := d.RouterStats()
		for class, n := range st.DeadLetteredByClass {
			counter(x.dlqRecords, float64(n), fault.Class(class).String())
		}
		gauge(x.dlqHeld, float64(st.Held))
		counter(x.dlqFailures, float64(st.WriteFailures))
		gauge(x.dlqBreaker, breakerValue(st.Breaker))
		counter(x.dlqOpens, float64(st.BreakerOpens))
	}
	if cons == nil {
		return
	}
	st := cons.Stats()
	gauge(x.inFlight, float64(st.InFlight))
	gauge(x.inFlightPeak, float64(st.PeakInFlight))
	gauge(x.keyQueue, float64(st.MaxKeyQueue))
	if cl := cons.Client(); cl != nil {
		gauge(x.bufferedFetch, float64(cl.BufferedFetchRecords()))
		gauge(x.bufferedProduce, float64(cl.BufferedProduceRecords()))
	}
	x.commitDuration.Collect(ch)
	if x.batchRecords != nil {
		x.batchRecords.Collect(ch)
	}
}

// countsByTopic sums the handler counters of owned and former partitions.
func (m *Monitor) countsByTopic() map[string]*counts {
	out := make(map[string]*counts)
	at := func(topic string) *counts {
		c := out[topic]
		if c == nil {
			c = new(counts)
			out[topic] = c
		}
		return c
	}
	for k, p := range *m.parts.Load() {
		p.mu.Lock()
		at(k.topic).add(&p.counts)
		p.mu.Unlock()
	}
	m.mu.Lock()
	for topic, c := range m.retired {
		at(topic).add(c)
	}
	m.mu.Unlock()
	return out
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func breakerValue(s fault.BreakerState) float64 {
	switch s {
	case fault.BreakerOpen:
		return 1
	case fault.BreakerHalfOpen:
		return 2
	}
	return 0
}

// newKprom returns the franz-go client metrics, registered in the Monitor's
// registry when the client is created.
func newKprom(reg prometheus.Registerer, group string) *kprom.Metrics {
	return kprom.NewMetrics("kconsumer",
		kprom.Subsystem("kgo"),
		kprom.Registerer(lintRegisterer{reg}),
		kprom.WithStaticLabel(prometheus.Labels{"group": group}),
	)
}

// kpromMisnamed are kprom's gauges whose names end in _total, which
// Prometheus reserves for counters (promtool check metrics fails on them).
// The Monitor exports the same values as kconsumer_kgo_buffered_fetch_records
// and kconsumer_kgo_buffered_produce_records instead.
var kpromMisnamed = []string{"kconsumer_kgo_buffered_fetch_records_total", "kconsumer_kgo_buffered_produce_records_total"}

// lintRegisterer registers kprom's collectors except the misnamed ones.
type lintRegisterer struct{ prometheus.Registerer }

func misnamed(c prometheus.Collector) bool {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	found := false
	for d := range ch {
		for _, name := range kpromMisnamed {
			if strings.Contains(d.String(), `fqName: "`+name+`"`) {
				found = true
			}
		}
	}
	return found
}

func (r lintRegisterer) Register(c prometheus.Collector) error {
	if misnamed(c) {
		return nil
	}
	return r.Registerer.Register(c)
}

func (r lintRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r lintRegisterer) Unregister(c prometheus.Collector) bool {
	if misnamed(c) {
		return true
	}
	return r.Registerer.Unregister(c)
}

// clientHooks returns a kgo option that installs the Monitor's client
// hooks: the duration of offset commits (kconsumer_commit_duration_seconds)
// and, with a Registerer, franz-go's client metrics from plugin/kprom under
// kconsumer_kgo_* (connections, bytes and errors by broker, fetch bytes by
// topic, buffered records), registered when the client is created.
func (m *Monitor) clientHooks() kgo.Opt {
	hooks := []kgo.Hook{commitTimer{m.metrics.commitDuration}}
	if m.kprom != nil {
		hooks = append(hooks, m.kprom)
	}
	return kgo.WithHooks(hooks...)
}

// commitTimer observes the duration of OffsetCommit requests.
type commitTimer struct {
	h prometheus.Histogram
}

var _ kgo.HookBrokerE2E = commitTimer{}

// OnBrokerE2E implements kgo.HookBrokerE2E.
func (t commitTimer) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e2e kgo.BrokerE2E) {
	if key == kmsg.OffsetCommit.Int16() && e2e.Err() == nil {
		t.h.Observe(e2e.DurationE2E().Seconds())
	}
}
