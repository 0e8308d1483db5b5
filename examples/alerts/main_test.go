package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/dlq"
	"github.com/kconsumer/kconsumer/examples/internal/svctest"
	"github.com/kconsumer/kconsumer/examples/internal/telemetry"
	"github.com/kconsumer/kconsumer/fault"
)

func TestAlertsFlagsPositionsOutsideTheSiteAndDeadLettersPoison(t *testing.T) {
	stack := svctest.Stack(t, true, true, false)
	inside, outside := telemetry.DefaultSite.Center(), telemetry.GPS{Lat: 48.2, Lon: 11.6}
	reading := func(sensor string, i int, p telemetry.GPS) telemetry.Telemetry {
		return telemetry.Telemetry{SensorID: sensor, TimestampMs: int64(i), GPS: p}
	}
	svctest.Produce(t, stack,
		reading("s1", 1, inside), reading("s1", 2, outside), reading("s2", 3, outside), reading("s2", 4, inside))
	// Bytes that are no Confluent frame at all: poison, dead-lettered at
	// once. (A schema ID the registry does not know is uncertain instead,
	// retried for dlq.UncertainFor first.)
	malformed := &kgo.Record{Topic: telemetry.Topic, Key: []byte("s1"), Value: []byte(`{"sensor_id":"s1"}`),
		Headers: []kgo.RecordHeader{{Key: "origin", Value: []byte("test")}}}
	svctest.ProduceRaw(t, stack, malformed)

	addr := svctest.FreeAddr(t)
	svc := svctest.Start(t, run, "-brokers", stack.Brokers, "-registry", stack.RegistryURL, "-http", addr, "-session-timeout", "1s")
	svc.WaitFor(t, 30*time.Second, "readiness", func() bool { return svctest.Status("http://"+addr+"/readyz") == http.StatusOK })

	alerts := svctest.ReadAll(t, stack, telemetry.AlertsTopic, 2)
	got := map[string]Alert{}
	for _, r := range alerts {
		var a Alert
		if err := json.Unmarshal(r.Value, &a); err != nil {
			t.Fatal(err)
		}
		if string(r.Key) != a.SensorID || a.Lat != outside.Lat || a.Lon != outside.Lon || !strings.HasPrefix(a.Source, telemetry.Topic+"/") {
			t.Errorf("alert %s: %+v", r.Key, a)
		}
		got[a.SensorID] = a
	}
	if len(got) != 2 || got["s1"].TimestampMs != 2 || got["s2"].TimestampMs != 3 {
		t.Errorf("alerts %+v, want one for s1 at 2 and one for s2 at 3", got)
	}

	letters := svctest.ReadAll(t, stack, telemetry.DLQTopic, 1)
	l, err := dlq.Parse(letters[0])
	if err != nil {
		t.Fatal(err)
	}
	if l.Topic != telemetry.Topic || l.Partition != malformed.Partition || l.Offset != malformed.Offset ||
		l.Group != "alerts" || l.Class != fault.Poison || l.Attempts != 1 {
		t.Errorf("dead letter %+v, want the malformed record's origin, group alerts, class poison, one attempt", l)
	}
	if !bytes.Equal(letters[0].Value, malformed.Value) || len(l.Headers) != 1 || l.Headers[0].Key != "origin" {
		t.Errorf("dead letter %q with headers %v, want the record unchanged", letters[0].Value, l.Headers)
	}
	// The partition moved on: a reading after the poison is handled.
	svctest.Produce(t, stack, reading("s1", 5, outside))
	svctest.ReadAll(t, stack, telemetry.AlertsTopic, 3)
}

func TestAlertsRefusesABadSite(t *testing.T) {
	for _, site := range []string{"1,2;3,4", "a,b;1,2;3,4", "91,0;1,1;2,2"} {
		err := run(context.Background(), []string{"-site", site, "-http", ""}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "site") {
			t.Errorf("-site %q: %v", site, err)
		}
	}
}
