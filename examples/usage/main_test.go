package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kconsumer/kconsumer/examples/internal/svc"
	"github.com/kconsumer/kconsumer/examples/internal/svctest"
	"github.com/kconsumer/kconsumer/examples/internal/telemetry"
)

func TestUsageServiceWritesUsageAndCheckpoints(t *testing.T) {
	stack := svctest.Stack(t, true, true, true)
	var readings []telemetry.Telemetry
	for i := range 4 {
		for _, s := range []string{"a", "b"} {
			readings = append(readings, telemetry.Telemetry{SensorID: s, TimestampMs: int64(i) * 60_000,
				Odometry: telemetry.Odometry{HoursTot: float64(i), KmTot: 10 * float64(i)}})
		}
	}
	svctest.Produce(t, stack, readings...)
	svctest.ProduceRaw(t, stack, &kgo.Record{Topic: telemetry.Topic, Key: []byte("a"), Value: []byte("garbage")})

	addr := svctest.FreeAddr(t)
	s := svctest.Start(t, run, "-brokers", stack.Brokers, "-registry", stack.RegistryURL, "-mongo", stack.MongoURI,
		"-http", addr, "-session-timeout", "1s", "-checkpoint-every", "50ms")
	s.WaitFor(t, 30*time.Second, "readiness", func() bool { return svctest.Status("http://"+addr+"/readyz") == http.StatusOK })

	mc, err := mongo.Connect(options.Client().ApplyURI(stack.MongoURI))
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Disconnect(context.Background())
	db := mc.Database("telemetry")
	count := func(coll string) int64 {
		n, err := db.Collection(coll).CountDocuments(context.Background(), bson.D{})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	s.WaitFor(t, 30*time.Second, "6 usage records", func() bool { return count("usage") == 6 })
	// The malformed record went to the dead-letter topic, the rest on.
	svctest.ReadAll(t, stack, telemetry.DLQTopic, 1)
	if err := s.Stop(); err != nil {
		t.Fatalf("stopping: %v\n%s", err, s.Log())
	}
	if got := totalsOf(t, db); got["a"] != (sensorTotals{300, 3000, 3}) || got["b"] != (sensorTotals{300, 3000, 3}) {
		t.Errorf("totals %v, want 3 h and 30 km in 3 records per sensor", got)
	}
	// After the graceful stop, each partition's checkpoint is its last record.
	cur, err := db.Collection("usage_checkpoints").Find(context.Background(), bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var cps []checkpointDoc
	if err := cur.All(context.Background(), &cps); err != nil {
		t.Fatal(err)
	}
	var sensors int
	for _, c := range cps {
		sensors += len(c.Last)
	}
	if len(cps) == 0 || sensors != 2 {
		t.Errorf("checkpoints %+v, want the partitions of a and b with their last readings", cps)
	}
}

func TestUsageFailsClearly(t *testing.T) {
	for _, c := range []struct {
		args  []string
		usage bool
		want  string
	}{
		{[]string{"-start", "middle"}, true, "-start"},
		{[]string{"-batch", "0"}, true, "-batch"},
		{[]string{"-checkpoint-every", "0s"}, true, "positive"},
		{[]string{"-brokers", "127.0.0.1:1", "-dial-timeout", "200ms"}, false, "cannot reach Kafka"},
	} {
		err := run(context.Background(), append(c.args, "-http", ""), io.Discard, io.Discard)
		var usage *svc.UsageError
		if err == nil || !strings.Contains(err.Error(), c.want) || errors.As(err, &usage) != c.usage {
			t.Errorf("usage %v: %v, want %q (a usage error: %v)", c.args, err, c.want, c.usage)
		}
	}
}
