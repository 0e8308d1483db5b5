package lag_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/lag"
)

// A Monitor attached to a Consumer observes it, and serves its metrics and
// probes.
func Example() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "sensor-data"))
	if err != nil {
		panic(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	produce(brokers, "km_tot=17", "km_tot=18", "km_tot=19")

	reg := prometheus.NewRegistry()
	monitor, err := lag.NewMonitor(lag.Registerer(reg))
	if err != nil {
		panic(err)
	}
	handler := consumer.HandlerFunc(func(context.Context, *kgo.Record) error { return nil })
	c, err := consumer.New(handler,
		consumer.SeedBrokers(brokers...),
		consumer.Topics("sensor-data"),
		consumer.Group("usage"),
		consumer.With(monitor),
		consumer.WithLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- c.Run(ctx) }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	served := make(chan error, 1)
	go func() { served <- monitor.Serve(ctx, ln, reg) }()

	waitFor(func() bool {
		s := monitor.Snapshot()
		return len(s.Partitions) == 1 && s.Partitions[0].Committed == 3
	})
	url := "http://" + ln.Addr().String()
	code, body := fetch(url + "/readyz")
	fmt.Println("readyz:", code, body)
	_, metrics := fetch(url + "/metrics")
	sc := bufio.NewScanner(strings.NewReader(metrics))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "kafka_consumergroup_group_lag{") {
			fmt.Println(sc.Text())
		}
	}

	cancel()
	if err := <-ran; err != nil {
		panic(err)
	}
	if err := <-served; err != nil {
		panic(err)
	}
	// Output:
	// readyz: 200 ok
	// kafka_consumergroup_group_lag{group="usage",partition="0",topic="sensor-data"} 0
}

// Snapshot says how far behind each partition is, and why its status is
// what it is. Here a handler stops on the fifth of ten records; the
// example plays the part of the Consumer, which does not run.
func ExampleMonitor_Snapshot() {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	m, err := lag.NewMonitor(lag.StuckAfter(time.Minute), lag.Clock(func() time.Time { return now }))
	if err != nil {
		panic(err)
	}
	handler := consumer.HandlerFunc(func(context.Context, *kgo.Record) error { return nil })
	if _, err := consumer.New(handler, consumer.Topics("sensor-data"), consumer.Group("usage"), consumer.With(m)); err != nil {
		panic(err)
	}
	m.Rebalanced(consumer.Assigned, map[string][]int32{"sensor-data": {0}})
	// Offsets 100 to 109, produced a second apart, the last 30 s ago.
	fp := kgo.FetchTopicPartition{Topic: "sensor-data", FetchPartition: kgo.FetchPartition{HighWatermark: 110}}
	for i := range 10 {
		fp.Records = append(fp.Records, &kgo.Record{
			Topic: "sensor-data", Offset: 100 + int64(i),
			Timestamp: now.Add(-30*time.Second - time.Duration(9-i)*time.Second),
		})
	}
	m.Polled(fp)
	for _, r := range fp.Records[:4] {
		m.Handled(r, time.Millisecond, nil)
	}
	m.Committed(map[string]map[int32]int64{"sensor-data": {0: 104}}, nil)

	p := m.Snapshot().Partitions[0]
	fmt.Printf("lag %d records, %v, %v\n", p.Lag, p.LagTime, p.Status)
	now = now.Add(2 * time.Minute)
	p = m.Snapshot().Partitions[0]
	fmt.Printf("lag %d records, %v, %v: %s\n", p.Lag, p.LagTime, p.Status, p.Reason)
	fmt.Println(m.Healthy() != nil)
	// Output:
	// lag 6 records, 35s, OK
	// lag 6 records, 2m35s, STOP: 6 records waiting; no handler call returned and no commit accepted for 2m0s
	// true
}

// Readyz waits for the group's assignment and for the Consumer's
// readiness, which its plugins add to: here a stand-in for a recovery
// strategy that replays the topic. The example plays the part of the
// Consumer, which does not run.
func ExampleMonitor_Readyz() {
	caughtUp := false
	strategy := consumer.PluginFunc(func(a *consumer.Attachment) error {
		a.Ready(func() error {
			if !caughtUp {
				return errors.New("replaying")
			}
			return nil
		})
		return nil
	})
	m, err := lag.NewMonitor()
	if err != nil {
		panic(err)
	}
	handler := consumer.HandlerFunc(func(context.Context, *kgo.Record) error { return nil })
	if _, err := consumer.New(handler, consumer.Topics("sensor-data"), consumer.Group("current"), consumer.With(strategy, m)); err != nil {
		panic(err)
	}
	probe := func() {
		rec := httptest.NewRecorder()
		m.Readyz().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		fmt.Print(rec.Code, " ", rec.Body.String())
	}
	probe()
	m.Rebalanced(consumer.Assigned, map[string][]int32{"sensor-data": {0, 1}})
	probe()
	caughtUp = true
	probe()
	// Output:
	// 503 lag: not ready: no partitions assigned by group "current" yet
	// 503 lag: not ready: replaying
	// 200 ok
}

func produce(brokers []string, values ...string) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		panic(err)
	}
	defer cl.Close()
	for _, v := range values {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "sensor-data", Value: []byte(v)}).FirstErr(); err != nil {
			panic(err)
		}
	}
}

// waitFor polls cond until it holds, for up to 20 s.
func waitFor(cond func() bool) {
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			panic("timed out")
		}
	}
}

func fetch(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		b.WriteString(sc.Text())
		b.WriteByte('\n')
	}
	return resp.StatusCode, strings.TrimSuffix(b.String(), "\n")
}
