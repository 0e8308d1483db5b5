package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/examples/internal/devstack"
	"github.com/kconsumer/kconsumer/examples/internal/telemetry"
	"github.com/kconsumer/kconsumer/serde"
)

func TestFleetIsDeterministicAndOdometryNeverFalls(t *testing.T) {
	start := time.Date(2026, 3, 1, 22, 0, 0, 0, time.UTC)
	a := newFleet(5, 7, telemetry.DefaultSite, start, time.Minute)
	b := newFleet(5, 7, telemetry.DefaultSite, start, time.Minute)
	prev := map[string]telemetry.Telemetry{}
	outside, counted, skipped := 0, 0, 0
	for round := range 500 {
		for i, m := range a.machines {
			r := a.reading(m, round)
			if r2 := b.reading(b.machines[i], round); r != r2 {
				t.Fatalf("round %d: the same seed gave %+v and %+v", round, r, r2)
			}
			if err := r.Validate(); err != nil {
				t.Fatal(err)
			}
			if p, ok := prev[r.SensorID]; ok {
				if r.Odometry.HoursTot < p.Odometry.HoursTot || r.Odometry.KmTot < p.Odometry.KmTot {
					t.Fatalf("%s went backwards: %+v then %+v", r.SensorID, p.Odometry, r.Odometry)
				}
				if r.TimestampMs-p.TimestampMs != time.Minute.Milliseconds() {
					t.Fatalf("%s: readings %d ms apart, want one step", r.SensorID, r.TimestampMs-p.TimestampMs)
				}
				if _, _, ok := telemetry.Delta(p.Odometry, r.Odometry); ok {
					counted++
				} else {
					skipped++
				}
			}
			if !telemetry.DefaultSite.Contains(r.GPS) {
				outside++
			}
			prev[r.SensorID] = r
		}
	}
	// The demo needs all three kinds of reading to show anything.
	if counted == 0 || skipped == 0 || outside == 0 {
		t.Fatalf("counted %d, skipped %d (idle), outside the site %d: want some of each", counted, skipped, outside)
	}
	if c := newFleet(5, 8, telemetry.DefaultSite, start, time.Minute); c.reading(c.machines[0], 0) == newFleet(5, 7, telemetry.DefaultSite, start, time.Minute).reading(a.machines[0], 0) {
		t.Error("another seed gave the same first reading")
	}
}

func TestProducerWritesWhatTheBrokerHolds(t *testing.T) {
	stack, err := devstack.Start(devstack.Config{KafkaAddr: "127.0.0.1:0", RegistryAddr: "127.0.0.1:0", Partitions: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer stack.Close()
	truthPath := filepath.Join(t.TempDir(), "truth.json")
	var out, errs bytes.Buffer
	args := []string{"-brokers", stack.Brokers, "-registry", stack.RegistryURL, "-http", "",
		"-sensors", "7", "-count", "20", "-interval", "0", "-seed", "3", "-truth", truthPath, "-start", "2026-03-01T23:50:00Z"}
	if err := run(context.Background(), args, &out, &errs); err != nil {
		t.Fatalf("producer: %v\n%s", err, errs.String())
	}
	if !strings.HasPrefix(out.String(), "produced 140 readings of 7 sensors") {
		t.Errorf("printed %q", out.String())
	}
	truth, err := telemetry.ReadTruth(truthPath)
	if err != nil {
		t.Fatal(err)
	}

	// Recompute the truth from the topic itself.
	reg, err := serde.NewRegistry(stack.RegistryURL)
	if err != nil {
		t.Fatal(err)
	}
	codec, err := serde.NewAvro[telemetry.Telemetry](reg, telemetry.Schema)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(stack.Brokers), kgo.ConsumeTopics(telemetry.Topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	tally := telemetry.NewTally(telemetry.Topic, telemetry.DefaultSite)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Per sensor, the records of one partition come in order.
	byPartition := map[int32][]telemetry.Telemetry{}
	for n := 0; n < 140; {
		fs := cl.PollFetches(ctx)
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			var v telemetry.Telemetry
			if err := codec.Decode(ctx, r.Topic, r.Value, &v); err != nil {
				t.Fatal(err)
			}
			if string(r.Key) != v.SensorID {
				t.Errorf("key %q for sensor %q", r.Key, v.SensorID)
			}
			byPartition[r.Partition] = append(byPartition[r.Partition], v)
			n++
		})
	}
	for _, rs := range byPartition {
		for _, r := range rs {
			tally.Add(r)
		}
	}
	got := tally.Truth()
	if len(got.Sensors) != len(truth.Sensors) || got.Messages != truth.Messages {
		t.Fatalf("topic holds %d readings of %d sensors, the truth says %d of %d", got.Messages, len(got.Sensors), truth.Messages, len(truth.Sensors))
	}
	for i := range got.Sensors {
		if got.Sensors[i] != truth.Sensors[i] {
			t.Errorf("from the topic: %+v\nin the truth:   %+v", got.Sensors[i], truth.Sensors[i])
		}
	}
	// The run crosses midnight UTC: usage dates must change.
	first, last := telemetry.Date(truth.Sensors[0].Last.TimestampMs-19*60_000), telemetry.Date(truth.Sensors[0].Last.TimestampMs)
	if first == last {
		t.Errorf("readings from %s to %s, want two dates", first, last)
	}
}

func TestProducerRefusesBadFlagsAndMissingBroker(t *testing.T) {
	for _, args := range [][]string{
		{"-sensors", "0"},
		{"-count", "-1"},
		{"-site", "1,2;3,4"},
		{"-log-format", "xml"},
		{"extra"},
	} {
		var out, errs bytes.Buffer
		if err := run(context.Background(), args, &out, &errs); err == nil {
			t.Errorf("producer %v succeeded", args)
		}
	}
	var out, errs bytes.Buffer
	err := run(context.Background(), []string{"-brokers", "127.0.0.1:1", "-dial-timeout", "300ms", "-http", ""}, &out, &errs)
	if err == nil || !strings.Contains(err.Error(), "cannot reach Kafka at 127.0.0.1:1") {
		t.Errorf("with no broker: %v", err)
	}
}
