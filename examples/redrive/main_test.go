package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/dlq"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
)

func TestRedriveCommand(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, "sensor-data", "sensor-data.dlq")
	letter := func(value, class string) *kgo.Record {
		h := func(k, v string) kgo.RecordHeader { return kgo.RecordHeader{Key: k, Value: []byte(v)} }
		return &kgo.Record{Topic: "sensor-data.dlq", Value: []byte(value), Headers: []kgo.RecordHeader{
			h(dlq.HeaderTopic, "sensor-data"), h(dlq.HeaderPartition, "0"), h(dlq.HeaderOffset, "7"),
			h(dlq.HeaderTimestamp, "1700000000000"), h(dlq.HeaderGroup, "usage"), h(dlq.HeaderClass, class),
			h(dlq.HeaderError, "boom"), h(dlq.HeaderAttempts, "1"), h(dlq.HeaderFailedAt, "1700000000001"),
		}}
	}
	cluster.Produce(t, letter("a", "unclassified"), letter("b", "poison"), &kgo.Record{Topic: "sensor-data.dlq", Value: []byte("stray")})

	redrive := func(args ...string) string {
		t.Helper()
		var out, errs bytes.Buffer
		args = append([]string{"-brokers", strings.Join(cluster.Addrs, ","), "-topic", "sensor-data.dlq"}, args...)
		if err := run(context.Background(), args, &out, &errs); err != nil {
			t.Fatalf("redrive %v: %v\n%s", args, err, errs.String())
		}
		return out.String()
	}
	if out := redrive("-class", "unclassified"); !strings.HasPrefix(out, "copied 1, skipped 1, invalid 1 ") || !strings.Contains(out, "sensor-data: 1") {
		t.Errorf("first run printed %q", out)
	}
	if out := redrive("-class", "unclassified"); !strings.HasPrefix(out, "copied 0, skipped 0, invalid 0 ") {
		t.Errorf("second run printed %q, want nothing copied", out)
	}
	if out := redrive("-group", "other", "-class", "poison,unclassified", "-from", "1", "-to", "2"); !strings.HasPrefix(out, "copied 1, skipped 0, invalid 0 ") {
		t.Errorf("run of another group over offset 1 printed %q", out)
	}
	if n := cluster.EndOffsets(t, "sensor-data")[0]; n != 2 {
		t.Errorf("sensor-data holds %d records, want the 2 copies", n)
	}
}

func TestRedriveCommandRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-topic", "x.dlq", "-class", "fatal"},
		{"-topic", "x.dlq", "-partitions", "one"},
		{"-topic", "x.dlq", "-from", "5", "-to", "2"},
		{"-topic", "x.dlq", "extra"},
	} {
		var out, errs bytes.Buffer
		if err := run(context.Background(), args, &out, &errs); err == nil {
			t.Errorf("redrive %v succeeded", args)
		}
	}
}
