package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/examples/internal/svctest"
	"github.com/kconsumer/kconsumer/examples/internal/telemetry"
)

func reading(sensor string, i int) telemetry.Telemetry {
	return telemetry.Telemetry{
		SensorID: sensor, TimestampMs: 1_772_000_000_000 + int64(i)*60_000,
		Odometry: telemetry.Odometry{HoursTot: 10 + float64(i), KmTot: 100 + float64(i)},
		GPS:      telemetry.GPS{Lat: 48.135, Lon: 11.57 + float64(i)/1000},
	}
}

func TestCurrentServesTheLastReadingOfEachSensor(t *testing.T) {
	stack := svctest.Stack(t, true, true, false)
	var last []telemetry.Telemetry
	for _, s := range []string{"s1", "s2", "s3"} {
		for i := range 5 {
			svctest.Produce(t, stack, reading(s, i))
		}
		last = append(last, reading(s, 4))
	}
	svctest.ProduceRaw(t, stack, &kgo.Record{Topic: telemetry.Topic, Key: []byte("s1"), Value: []byte("not avro")})

	addr := svctest.FreeAddr(t)
	base := "http://" + addr
	snap := filepath.Join(t.TempDir(), "snapshot.json")
	args := []string{"-brokers", stack.Brokers, "-registry", stack.RegistryURL, "-http", addr, "-snapshot", snap, "-snapshot-every", "1h"}
	svc := svctest.Start(t, run, args...)
	svc.WaitFor(t, 30*time.Second, "readiness", func() bool { return svctest.Status(base+"/readyz") == http.StatusOK })

	var all []telemetry.Telemetry
	if code := svctest.GetJSON(t, base+"/sensors", &all); code != http.StatusOK || len(all) != 3 {
		t.Fatalf("GET /sensors: %d %+v", code, all)
	}
	for i := range all {
		if all[i] != last[i] {
			t.Errorf("sensor %d: %+v, want %+v", i, all[i], last[i])
		}
	}
	var one telemetry.Telemetry
	if code := svctest.GetJSON(t, base+"/sensors/s2", &one); code != http.StatusOK || one != last[1] {
		t.Errorf("GET /sensors/s2: %d %+v", code, one)
	}
	if code := svctest.Status(base + "/sensors/nope"); code != http.StatusNotFound {
		t.Errorf("GET /sensors/nope: %d, want 404", code)
	}
	var st status
	if code := svctest.GetJSON(t, base+"/status", &st); code != http.StatusOK || !st.Ready || st.Sensors != 3 || st.Skipped != 1 {
		t.Errorf("GET /status: %d %+v, want ready, 3 sensors, the malformed record skipped", code, st)
	}
	var end int64
	for _, next := range st.Positions[telemetry.Topic] {
		end += next
	}
	if end != 16 {
		t.Errorf("positions %v add up to %d, want all 16 records", st.Positions, end)
	}
	if code := svctest.Status(base + "/metrics"); code != http.StatusOK {
		t.Errorf("GET /metrics: %d", code)
	}

	// A clean stop saves a last snapshot; a restart restores it and replays
	// only what came after.
	if err := svc.Stop(); err != nil {
		t.Fatalf("stopping: %v", err)
	}
	if _, err := os.Stat(snap); err != nil {
		t.Fatalf("no snapshot after a clean stop: %v", err)
	}
	svctest.Produce(t, stack, reading("s3", 5))
	svc = svctest.Start(t, run, args...)
	svc.WaitFor(t, 30*time.Second, "readiness after a restart", func() bool { return svctest.Status(base+"/readyz") == http.StatusOK })
	if code := svctest.GetJSON(t, base+"/sensors/s3", &one); code != http.StatusOK || one != reading("s3", 5) {
		t.Errorf("after the restart, GET /sensors/s3: %d %+v", code, one)
	}
	if code := svctest.GetJSON(t, base+"/sensors/s1", &one); code != http.StatusOK || one != last[0] {
		t.Errorf("after the restart, GET /sensors/s1: %d %+v", code, one)
	}
	// The malformed record is older than the snapshot: not read again.
	if code := svctest.GetJSON(t, base+"/status", &st); code != http.StatusOK || st.Skipped != 0 {
		t.Errorf("after the restart, GET /status: %d %+v, want nothing skipped", code, st)
	}
}

func TestCurrentFailsClearlyWithoutItsDependencies(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-brokers", "127.0.0.1:1", "-dial-timeout", "200ms"}, "cannot reach Kafka at 127.0.0.1:1"},
		{[]string{"-snapshot", "x", "-snapshot-every", "0s"}, "-snapshot-every must be positive"},
		{[]string{"-log-format", "yaml"}, "-log-format"},
	} {
		err := run(t.Context(), append(c.args, "-http", ""), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("current %v: %v, want an error saying %q", c.args, err, c.want)
		}
	}
}
