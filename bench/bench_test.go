package main

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/lag"
)

// TestEveryClientReadsTheWholeTopic runs each implementation in process
// against a small broker and checks that it counts every record once.
func TestEveryClientReadsTheWholeTopic(t *testing.T) {
	const records, partitions = 1200, 12
	spec := brokerSpec{records: records, sizes: []int{100}, partitions: partitions, avro: records}
	cluster, reg, info, err := startBroker(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	t.Cleanup(reg.Close)

	names := append(append([]string{}, throughputClients...), avroClients...)
	for _, name := range names {
		im, ok := lookupImpl(name)
		if !ok {
			t.Logf("%s is not in this build", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			topic := sizeTopic(100)
			if strings.Contains(name, "avro") || strings.Contains(name, "hamba") {
				topic = avroTopic
			}
			e := &env{addr: info.Addr, registry: info.Registry, topic: topic, group: "test-" + name,
				tally: newTally(records, partitions), notes: map[string]int64{}}
			res := readAll(im, e, time.Minute, 0, "")
			if res.Err != "" {
				t.Fatal(res.Err)
			}
			if res.Records != records || res.Duplicates != 0 {
				t.Fatalf("counted %d records, %d of them twice; want %d once", res.Records, res.Duplicates, records)
			}
			if res.SteadyNs <= 0 || res.TotalNs < res.SteadyNs {
				t.Fatalf("start to last %dns, first to last %dns: want 0 < first-to-last <= start-to-last", res.TotalNs, res.SteadyNs)
			}
		})
	}
}

func TestHoldStopsAClientThatCannotFinish(t *testing.T) {
	spec := brokerSpec{records: 120, sizes: []int{100}, partitions: 12}
	cluster, reg, info, err := startBroker(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	t.Cleanup(reg.Close)
	im, _ := lookupImpl("kconsumer-slow")
	e := &env{addr: info.Addr, topic: sizeTopic(100), group: "hold", slow: -1,
		tally: newTally(120, 12), notes: map[string]int64{}}
	res := readAll(im, e, time.Minute, 500*time.Millisecond, "")
	if res.Err != "" {
		t.Fatal(res.Err)
	}
	if res.Records != 0 {
		t.Fatalf("a blocked handler counted %d records", res.Records)
	}
}

func TestTallySpreadsRecordsAsTheBrokerDoes(t *testing.T) {
	tl := newTally(25, 12)
	var sum int64
	for p, w := range tl.want {
		sum += w
		if want := int64(2 + map[bool]int{true: 1}[p == 0]); w != want {
			t.Errorf("partition %d: want %d records, got %d", p, want, w)
		}
	}
	if sum != 25 {
		t.Fatalf("partitions hold %d records, want 25", sum)
	}
	for i := range 25 {
		select {
		case <-tl.done:
			t.Fatalf("done after %d of 25 records", i)
		default:
		}
		tl.add(int32(i % 12))
	}
	<-tl.done
	tl.add(3)
	if total, extra := tl.counted(); total != 26 || extra != 1 {
		t.Fatalf("counted %d records, %d extra; want 26 and 1", total, extra)
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

// TestReportRatiosAndOutput builds a report from made-up runs and checks
// the ratios, the Markdown and that the chart is well-formed SVG.
func TestReportRatiosAndOutput(t *testing.T) {
	mk := func(client string, rep int, records int64, totalMs, steadyMs int64, mallocs uint64, hwm int64) run {
		return run{Client: client, Topic: sizeTopic(100), Rep: rep, clientResult: clientResult{
			Records: records, TotalNs: totalMs * 1e6, SteadyNs: steadyMs * 1e6, Mallocs: mallocs, HWMKiB: hwm}}
	}
	r := report{Options: reportOptions{Reps: 2, Partitions: 12}, Runs: []run{
		mk("franz-go", 0, 1000, 100, 50, 100, 40960),
		mk("kconsumer-stateless", 0, 1000, 100, 100, 200, 40960),
		mk("franz-go", 1, 1000, 200, 100, 100, 40960),
		mk("kconsumer-stateless", 1, 1000, 100, 100, 200, 40960),
		{Client: "sarama", Topic: sizeTopic(100), Rep: 0, clientResult: clientResult{Err: "join failed"}},
		{Client: "idle", Topic: sizeTopic(100), Rep: 0, clientResult: clientResult{HWMKiB: 20480}},
	}}
	r.summarize([]topicInfo{{Name: sizeTopic(100), Records: 1000, ValueBytes: 100_000}})
	byClient := make(map[string]summary)
	for _, s := range r.Summary {
		byClient[s.Client] = s
	}
	kc := byClient["kconsumer-stateless"]
	// Repetition 0: 10k/s against 10k/s start to last, 10k/s against 20k/s
	// steady; repetition 1: 10k/s against 5k/s and 10k/s against 10k/s.
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"total ratio", kc.TotalRatio, 1.5},
		{"steady ratio", kc.SteadyRatio, 0.75},
		{"alloc ratio", kc.AllocRatio, 2},
		{"rss ratio", kc.RSSRatio, 1},
		{"steady MB/s", kc.SteadyMBps, 1},
		{"idle rss", byClient["idle"].PeakRSSMiB, 20},
	} {
		if math.Abs(c.got-c.want) > 1e-9 {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	if s := byClient["sarama"]; s.Failed != 1 || s.SteadyRate != 0 {
		t.Errorf("sarama: %d failed, %v records/s; want 1 and 0", s.Failed, s.SteadyRate)
	}
	md := r.markdown("chart.svg")
	for _, want := range []string{"| kconsumer-stateless | 10k | 1.50 |", "| sarama | failed: join failed", "peaks at 20.0 MiB",
		"kconsumer no-op ≥ 0.95 × raw franz-go: **missed** (first→last 0.75, start→last 1.50"} {
		if !strings.Contains(md, want) {
			t.Errorf("the Markdown lacks %q:\n%s", want, md)
		}
	}
	d := xml.NewDecoder(strings.NewReader(r.chart()))
	for {
		_, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the chart is not well-formed XML: %v", err)
		}
	}
}

// BenchmarkMonitor measures the lag accounting a lag.Monitor does for each
// record a Consumer handles: Polled once per fetched batch, Handled once
// per record. The Consumer also reads the clock twice per record for it.
func BenchmarkMonitor(b *testing.B) {
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			m, err := lag.NewMonitor()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := consumer.New(consumer.HandlerFunc(func(context.Context, *kgo.Record) error { return nil }),
				consumer.Topics("t"), consumer.Group("bench"), consumer.With(m)); err != nil {
				b.Fatal(err)
			}
			recs := make([]*kgo.Record, batch)
			for i := range recs {
				recs[i] = &kgo.Record{Topic: "t", Timestamp: time.Now()}
			}
			var offset int64
			b.ReportAllocs()
			for b.Loop() {
				for i, r := range recs {
					r.Offset = offset + int64(i)
				}
				offset += int64(batch)
				m.Polled(kgo.FetchTopicPartition{Topic: "t", FetchPartition: kgo.FetchPartition{
					Partition: 0, HighWatermark: offset + 1000, Records: recs}})
				for _, r := range recs {
					m.Handled(r, time.Microsecond, nil)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/record")
		})
	}
}
