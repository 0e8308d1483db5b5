package svc

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
)

// Observer is a consumer.Observer that exports a consumer's progress as
// Prometheus metrics and reports it unhealthy when records wait on a
// partition that has not moved for a while. Package lag's Monitor does the
// same and more (lag in seconds, a status per partition); this small one
// keeps the services' probes and metrics in one place:
//
//	kconsumer_records_handled_total{group,topic,result}  handler calls, result ok or error
//	kconsumer_handle_seconds{group,topic}                handler latency
//	kconsumer_partition_lag_records{group,topic,partition}  high watermark − next offset to handle
//	kconsumer_partitions_assigned{group}                 partitions owned
//	kconsumer_commits_total{group,result}                commits, result ok or error
type Observer struct {
	group string
	stuck time.Duration
	now   func() time.Time

	handled  *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	lag      *prometheus.GaugeVec
	assigned prometheus.Gauge
	commits  *prometheus.CounterVec

	mu    sync.Mutex
	parts map[partKey]*partProgress
}

type partKey struct {
	topic     string
	partition int32
}

type partProgress struct {
	hw, next int64 // high watermark; offset after the last handled record, -1 before any
	moved    time.Time
}

var _ consumer.Observer = (*Observer)(nil)

// NewObserver returns an Observer registering its metrics with reg, labelled
// with group (a service name for a consumer without one). A partition is
// stuck when records wait on it and it has not moved for stuck.
func NewObserver(reg prometheus.Registerer, group string, stuck time.Duration) *Observer {
	o := &Observer{
		group: group,
		stuck: stuck,
		now:   time.Now,
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kconsumer_records_handled_total", Help: "Handler calls by result (ok or error).",
		}, []string{"group", "topic", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kconsumer_handle_seconds", Help: "Time spent in the handler.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9),
		}, []string{"group", "topic"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kconsumer_partition_lag_records", Help: "High watermark minus the next offset to handle.",
		}, []string{"group", "topic", "partition"}),
		assigned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kconsumer_partitions_assigned", Help: "Partitions this consumer owns.", ConstLabels: prometheus.Labels{"group": group},
		}),
		commits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kconsumer_commits_total", Help: "Offset commits by result (ok or error).",
		}, []string{"group", "result"}),
		parts: make(map[partKey]*partProgress),
	}
	reg.MustRegister(o.handled, o.latency, o.lag, o.assigned, o.commits)
	return o
}

func (o *Observer) part(topic string, partition int32) *partProgress {
	k := partKey{topic, partition}
	p, ok := o.parts[k]
	if !ok {
		p = &partProgress{next: -1, moved: o.now()}
		o.parts[k] = p
	}
	return p
}

// Polled implements consumer.Observer.
func (o *Observer) Polled(fp kgo.FetchTopicPartition) {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.part(fp.Topic, fp.Partition)
	if p.next < 0 || p.hw <= p.next {
		p.moved = o.now() // nothing was waiting: the wait starts now
	}
	p.hw = fp.HighWatermark
	if p.next < 0 && len(fp.Records) > 0 {
		p.next = fp.Records[0].Offset
	}
	o.setLag(fp.Topic, fp.Partition, p)
}

// Handled implements consumer.Observer.
func (o *Observer) Handled(r *kgo.Record, took time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	o.handled.WithLabelValues(o.group, r.Topic, result).Inc()
	o.latency.WithLabelValues(o.group, r.Topic).Observe(took.Seconds())
	if err != nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.part(r.Topic, r.Partition)
	if r.Offset+1 > p.next {
		p.next = r.Offset + 1
		p.moved = o.now()
	}
	o.setLag(r.Topic, r.Partition, p)
}

func (o *Observer) setLag(topic string, partition int32, p *partProgress) {
	if p.next >= 0 {
		o.lag.WithLabelValues(o.group, topic, strconv.Itoa(int(partition))).Set(float64(max(0, p.hw-p.next)))
	}
}

// Committed implements consumer.Observer.
func (o *Observer) Committed(_ map[string]map[int32]int64, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	o.commits.WithLabelValues(o.group, result).Inc()
}

// Rebalanced implements consumer.Observer: partitions that leave are
// forgotten, so they neither count as stuck nor export a stale lag.
func (o *Observer) Rebalanced(e consumer.Event, partitions map[string][]int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for topic, ps := range partitions {
		for _, p := range ps {
			k := partKey{topic, p}
			if e == consumer.Assigned {
				o.part(topic, p)
				continue
			}
			delete(o.parts, k)
			o.lag.DeleteLabelValues(o.group, topic, strconv.Itoa(int(p)))
		}
	}
	o.assigned.Set(float64(len(o.parts)))
}

// Paused implements consumer.Observer.
func (o *Observer) Paused(string, int32, bool) {}

// Positions returns, for each partition the consumer owns, the offset
// after the last record handled without error.
func (o *Observer) Positions() map[string]map[int32]int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[string]map[int32]int64)
	for k, p := range o.parts {
		if p.next < 0 {
			continue
		}
		if out[k.topic] == nil {
			out[k.topic] = make(map[int32]int64)
		}
		out[k.topic][k.partition] = p.next
	}
	return out
}

// Healthy returns an error naming the partitions on which records have
// waited without progress for longer than the stuck duration.
func (o *Observer) Healthy() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.now()
	var stuck []string
	for k, p := range o.parts {
		if p.next >= 0 && p.hw > p.next && now.Sub(p.moved) > o.stuck {
			stuck = append(stuck, fmt.Sprintf("%s/%d", k.topic, k.partition))
		}
	}
	if len(stuck) > 0 {
		return fmt.Errorf("no progress for %v on %v", o.stuck, stuck)
	}
	return nil
}
