package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kconsumer/kconsumer/examples/internal/svctest"
)

func TestQuerySumsUsagePerSensor(t *testing.T) {
	stack := svctest.Stack(t, false, false, true)
	mc, err := mongo.Connect(options.Client().ApplyURI(stack.MongoURI))
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Disconnect(context.Background())
	rec := func(id, sensor, date string, h, km float64) bson.D {
		return bson.D{{Key: "_id", Value: id}, {Key: "sensor_id", Value: sensor}, {Key: "date", Value: date}, {Key: "delta_hours", Value: h}, {Key: "delta_km", Value: km}}
	}
	_, err = mc.Database("t").Collection("usage").InsertMany(context.Background(), []any{
		rec("1", "b", "2026-03-01", 0.25, 1.5),
		rec("2", "a", "2026-03-01", 0.5, 0),
		rec("3", "b", "2026-03-02", 0.25, 2.25),
		rec("4", "a", "2026-03-03", 1, 10),
	})
	if err != nil {
		t.Fatal(err)
	}
	if split, err := accumulatorBug(context.Background(), mc.Database("t")); err != nil || !split {
		t.Errorf("FerretDB v1 not recognised: %v %v", split, err)
	}

	addr := svctest.FreeAddr(t)
	svc := svctest.Start(t, run, "-mongo", stack.MongoURI, "-database", "t", "-http", addr)
	base := "http://" + addr
	svc.WaitFor(t, 30*time.Second, "readiness", func() bool { return svctest.Status(base+"/readyz") == http.StatusOK })

	for _, c := range []struct {
		query string
		want  []SensorUsage
	}{
		{"", []SensorUsage{{"a", 1.5, 10, 2}, {"b", 0.5, 3.75, 2}}},
		{"?sensor=b", []SensorUsage{{"b", 0.5, 3.75, 2}}},
		{"?from=2026-03-02", []SensorUsage{{"a", 1, 10, 1}, {"b", 0.25, 2.25, 1}}},
		{"?from=2026-03-01&to=2026-03-01", []SensorUsage{{"a", 0.5, 0, 1}, {"b", 0.25, 1.5, 1}}},
		{"?sensor=nope", []SensorUsage{}},
	} {
		var got []SensorUsage
		if code := svctest.GetJSON(t, base+"/usage"+c.query, &got); code != http.StatusOK {
			t.Fatalf("GET /usage%s: %d", c.query, code)
		}
		if len(got) != len(c.want) {
			t.Errorf("GET /usage%s: %+v, want %+v", c.query, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("GET /usage%s: %+v, want %+v", c.query, got, c.want)
				break
			}
		}
	}
	if code := svctest.Status(base + "/usage?from=yesterday"); code != http.StatusBadRequest {
		t.Errorf("a bad date: %d, want 400", code)
	}
	if code := svctest.Status(base + "/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz: %d", code)
	}
}

func TestQueryFailsClearlyWithoutMongoDB(t *testing.T) {
	err := run(context.Background(), []string{"-mongo", "mongodb://127.0.0.1:1/", "-dial-timeout", "300ms", "-http", ""}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "cannot reach MongoDB at mongodb://127.0.0.1:1/") {
		t.Errorf("without MongoDB: %v", err)
	}
}
