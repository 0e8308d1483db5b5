package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/examples/internal/devstack"
	"github.com/kconsumer/kconsumer/examples/internal/telemetry"
	"github.com/kconsumer/kconsumer/fault"
)

// startMongo starts an in-process MongoDB for the test.
func startMongo(t *testing.T) *mongo.Client {
	t.Helper()
	s, err := devstack.Start(devstack.Config{MongoAddr: "127.0.0.1:0", DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	mc, err := mongo.Connect(options.Client().ApplyURI(s.MongoURI))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mc.Disconnect(context.Background()) })
	return mc
}

// testStore returns a store on db.
func testStore(t *testing.T, db *mongo.Database) *store {
	t.Helper()
	return newStore(db, prometheus.NewRegistry())
}

// apply handles one reading as a batch of one, and returns the error of
// the reading.
func (s *store) apply(ctx context.Context, r *kgo.Record, t telemetry.Telemetry) error {
	err := s.write(ctx, []*kgo.Record{r}, []telemetry.Telemetry{t})
	if be, ok := errors.AsType[*consumer.BatchError](err); ok && be.Index == 0 {
		return be.Err
	}
	return err
}

// readings returns n rounds of readings of three sensors on partition 0,
// in offset order: some rounds add nothing (an idle machine), the last
// ones fall on the next UTC day.
func readings(rounds int) ([]*kgo.Record, []telemetry.Telemetry) {
	var recs []*kgo.Record
	var ts []telemetry.Telemetry
	start := time.Date(2026, 3, 1, 23, 59, 0, 0, time.UTC).Add(-time.Duration(rounds/2) * time.Minute)
	for i := range rounds {
		for s := range 3 {
			id := fmt.Sprintf("sensor-%d", s)
			t := telemetry.Telemetry{
				SensorID:    id,
				TimestampMs: start.Add(time.Duration(i) * time.Minute).UnixMilli(),
				Odometry:    telemetry.Odometry{HoursTot: 100 + float64(i/2)*0.02*float64(s+1), KmTot: 2000 + float64(i)*0.37},
			}
			if s == 2 && i%3 == 0 && i > 0 {
				t.Odometry = ts[len(ts)-3].Odometry // idle: nothing grew
			}
			recs = append(recs, &kgo.Record{Topic: telemetry.Topic, Partition: 0, Offset: int64(len(recs)), Key: []byte(id)})
			ts = append(ts, t)
		}
	}
	return recs, ts
}

type sensorTotals struct {
	hours, km int64 // cents
	records   int
}

// totalsOf sums the usage records in db per sensor.
func totalsOf(t *testing.T, db *mongo.Database) map[string]sensorTotals {
	t.Helper()
	cur, err := db.Collection("usage").Find(context.Background(), bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var recs []usageRecord
	if err := cur.All(context.Background(), &recs); err != nil {
		t.Fatal(err)
	}
	out := make(map[string]sensorTotals)
	hours, km := make(map[string]float64), make(map[string]float64)
	for _, r := range recs {
		hours[r.SensorID] += r.DeltaHours
		km[r.SensorID] += r.DeltaKm
		s := out[r.SensorID]
		s.records++
		out[r.SensorID] = s
	}
	for id, s := range out {
		s.hours, s.km = telemetry.Cents(hours[id]), telemetry.Cents(km[id])
		out[id] = s
	}
	return out
}

// truthOf is what the usage of ts must add up to.
func truthOf(ts []telemetry.Telemetry) map[string]sensorTotals {
	tally := telemetry.NewTally(telemetry.Topic, telemetry.DefaultSite)
	for _, t := range ts {
		tally.Add(t)
	}
	out := make(map[string]sensorTotals)
	for _, s := range tally.Truth().Sensors {
		if s.Records > 0 {
			out[s.SensorID] = sensorTotals{telemetry.Cents(s.TotalHours), telemetry.Cents(s.TotalKm), s.Records}
		}
	}
	return out
}

func sameTotals(got, want map[string]sensorTotals) bool {
	if len(got) != len(want) {
		return false
	}
	for id, w := range want {
		if got[id] != w {
			return false
		}
	}
	return true
}

// resume does what a new owner of partition 0 does: load the checkpoint
// and handle every record after it.
func resume(t *testing.T, s *store, recs []*kgo.Record, ts []telemetry.Telemetry) {
	t.Helper()
	ctx := context.Background()
	cps, err := s.Checkpoints(ctx, telemetry.Topic, []int32{0})
	if err != nil {
		t.Fatal(err)
	}
	next := int64(0)
	if cp, ok := cps[0]; ok {
		next = cp + 1
	}
	for i := next; i < int64(len(recs)); i++ {
		if err := s.apply(ctx, recs[i], ts[i]); err != nil {
			t.Fatalf("offset %d: %v", i, err)
		}
	}
}

// TestUsageIsExactWhateverACrashLeftBehind builds every state a crash can
// leave in MongoDB — a checkpoint at any offset (or none), every usage
// record up to it, and any subset of the later ones (a batch cut short, a
// checkpoint not yet written, or one overwritten by a slower former owner)
// — and resumes from it: the totals must be exact each time.
func TestUsageIsExactWhateverACrashLeftBehind(t *testing.T) {
	mc := startMongo(t)
	ctx := context.Background()
	recs, ts := readings(6)
	want := truthOf(ts)

	// A run without a crash records every checkpoint and usage record.
	golden := mc.Database("golden")
	g := testStore(t, golden)
	if _, err := g.Checkpoints(ctx, telemetry.Topic, []int32{0}); err != nil {
		t.Fatal(err)
	}
	checkpoints := make([]checkpointDoc, len(recs))
	for i := range recs {
		if err := g.apply(ctx, recs[i], ts[i]); err != nil {
			t.Fatal(err)
		}
		if err := g.writeCheckpoints(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if err := golden.Collection("usage_checkpoints").FindOne(ctx, bson.D{{Key: "_id", Value: checkpointID(telemetry.Topic, 0)}}).Decode(&checkpoints[i]); err != nil {
			t.Fatal(err)
		}
	}
	if got := totalsOf(t, golden); !sameTotals(got, want) {
		t.Fatalf("without a crash: %v, want %v", got, want)
	}
	cur, err := golden.Collection("usage").Find(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var written []usageRecord
	if err := cur.All(ctx, &written); err != nil {
		t.Fatal(err)
	}
	offsetOf := func(r usageRecord) int64 {
		var o int64
		var p int32
		if _, err := fmt.Sscanf(r.ID, telemetry.Topic+"/%d/%d", &p, &o); err != nil {
			t.Fatalf("usage record id %q: %v", r.ID, err)
		}
		return o
	}

	rng := rand.New(rand.NewPCG(1, 2))
	for c := int64(-1); c < int64(len(recs)); c++ {
		for trial := range 2 {
			db := mc.Database(fmt.Sprintf("crash_%d_%d", c+1, trial))
			if c >= 0 {
				if _, err := db.Collection("usage_checkpoints").InsertOne(ctx, checkpoints[c]); err != nil {
					t.Fatal(err)
				}
			}
			var left []any
			for _, r := range written {
				if o := offsetOf(r); o <= c || rng.IntN(2) == 0 {
					left = append(left, r)
				}
			}
			if len(left) > 0 {
				if _, err := db.Collection("usage").InsertMany(ctx, left); err != nil {
					t.Fatal(err)
				}
			}
			resume(t, testStore(t, db), recs, ts)
			if got := totalsOf(t, db); !sameTotals(got, want) {
				t.Errorf("checkpoint at %d, %d usage records left: totals %v, want %v", c, len(left), got, want)
			}
		}
	}
}

// TestUsageIsExactWithTwoOwners lets a partition's former owner go on
// handling and checkpointing it while the new owner, started from its
// checkpoint, does the same, in random interleavings; then a third resumes
// from whatever checkpoint was written last.
func TestUsageIsExactWithTwoOwners(t *testing.T) {
	mc := startMongo(t)
	ctx := context.Background()
	recs, ts := readings(5)
	want := truthOf(ts)
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 4 {
		db := mc.Database(fmt.Sprintf("owners_%d", trial))
		old := testStore(t, db)
		resumeUpTo := func(s *store, from, to int) {
			for i := from; i < to; i++ {
				if err := s.apply(ctx, recs[i], ts[i]); err != nil {
					t.Fatal(err)
				}
				if rng.IntN(3) == 0 {
					if err := s.writeCheckpoints(ctx, nil); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		if _, err := old.Checkpoints(ctx, telemetry.Topic, []int32{0}); err != nil {
			t.Fatal(err)
		}
		split := 1 + rng.IntN(len(recs)-2)
		resumeUpTo(old, 0, split)

		// The new owner starts from the checkpoint; the old one keeps going.
		next := testStore(t, db)
		cps, err := next.Checkpoints(ctx, telemetry.Topic, []int32{0})
		if err != nil {
			t.Fatal(err)
		}
		from := 0
		if cp, ok := cps[0]; ok {
			from = int(cp) + 1
		}
		oldAt, nextAt := split, from
		for oldAt < len(recs) || nextAt < len(recs) {
			if oldAt < len(recs) && (nextAt == len(recs) || rng.IntN(2) == 0) {
				resumeUpTo(old, oldAt, oldAt+1)
				oldAt++
			} else {
				resumeUpTo(next, nextAt, nextAt+1)
				nextAt++
			}
		}
		if got := totalsOf(t, db); !sameTotals(got, want) {
			t.Errorf("trial %d (old owner stopped at %d): totals %v, want %v", trial, split, got, want)
		}
		// Whoever checkpointed last, a third owner adds nothing.
		resume(t, testStore(t, db), recs, ts)
		if got := totalsOf(t, db); !sameTotals(got, want) {
			t.Errorf("trial %d after a third owner: totals %v, want %v", trial, got, want)
		}
	}
}

func TestUsageRecordsCountedDeltasByUTCDay(t *testing.T) {
	mc := startMongo(t)
	ctx := context.Background()
	db := mc.Database("days")
	s := testStore(t, db)
	if _, err := s.Checkpoints(ctx, telemetry.Topic, []int32{0}); err != nil {
		t.Fatal(err)
	}
	at := func(h, m int) int64 { return time.Date(2026, 3, 1, h, m, 0, 0, time.UTC).UnixMilli() }
	ts := []telemetry.Telemetry{
		{SensorID: "a", TimestampMs: at(23, 58), Odometry: telemetry.Odometry{HoursTot: 10, KmTot: 100}},     // first: nothing to compare
		{SensorID: "a", TimestampMs: at(23, 59), Odometry: telemetry.Odometry{HoursTot: 10, KmTot: 100}},     // nothing grew
		{SensorID: "a", TimestampMs: at(24, 0), Odometry: telemetry.Odometry{HoursTot: 10.5, KmTot: 100}},    // hours only, next day
		{SensorID: "a", TimestampMs: at(24, 1), Odometry: telemetry.Odometry{HoursTot: 10.5, KmTot: 101.25}}, // km only
	}
	for i, v := range ts {
		r := &kgo.Record{Topic: telemetry.Topic, Partition: 0, Offset: int64(i), Key: []byte(v.SensorID)}
		if err := s.apply(ctx, r, v); err != nil {
			t.Fatal(err)
		}
	}
	cur, err := db.Collection("usage").Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		t.Fatal(err)
	}
	var got []usageRecord
	if err := cur.All(ctx, &got); err != nil {
		t.Fatal(err)
	}
	want := []usageRecord{
		{ID: "sensor-data/0/2", SensorID: "a", Date: "2026-03-02", DeltaHours: 0.5, DeltaKm: 0},
		{ID: "sensor-data/0/3", SensorID: "a", Date: "2026-03-02", DeltaHours: 0, DeltaKm: 1.25},
	}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("usage records %+v, want %+v", got, want)
	}
}

func TestUsageRefusesReadingsItCannotOrder(t *testing.T) {
	mc := startMongo(t)
	s := testStore(t, mc.Database("poison"))
	ok := telemetry.Telemetry{SensorID: "a", Odometry: telemetry.Odometry{HoursTot: 1}}
	bad := ok
	bad.Odometry.KmTot = nan()
	for _, c := range []struct {
		key string
		t   telemetry.Telemetry
	}{
		{"b", ok},                   // keyed by another sensor: another partition's order
		{"a", bad},                  // not a number
		{"", telemetry.Telemetry{}}, // no sensor
	} {
		r := &kgo.Record{Topic: telemetry.Topic, Key: []byte(c.key)}
		if err := s.apply(context.Background(), r, c.t); !errors.Is(err, fault.ErrPoison) {
			t.Errorf("key %q, %+v: %v, want a poison error", c.key, c.t, err)
		}
	}
}

func nan() float64 {
	var zero float64
	return zero / zero
}

// fakeDecoder decodes a record's value as the index of a reading in ts,
// and refuses the values "garbage".
type fakeDecoder []telemetry.Telemetry

func (d fakeDecoder) Decode(_ context.Context, _ string, data []byte, v *telemetry.Telemetry) error {
	var i int
	if _, err := fmt.Sscan(string(data), &i); err != nil || i < 0 || i >= len(d) {
		return fault.MarkPoison(fmt.Errorf("cannot decode %q", data))
	}
	*v = d[i]
	return nil
}

// TestUsageBatchesNameTheRecordThatFails hands the handler the readings in
// batches, with a record that does not decode and one that is not valid in
// the middle: the handler writes what comes before each, names it in a
// BatchError, and the totals of the rest, handled after it, are exact.
func TestUsageBatchesNameTheRecordThatFails(t *testing.T) {
	mc := startMongo(t)
	ctx := context.Background()
	db := mc.Database("batches")
	s := testStore(t, db)
	if _, err := s.Checkpoints(ctx, telemetry.Topic, []int32{0}); err != nil {
		t.Fatal(err)
	}
	recs, ts := readings(8)
	want := truthOf(ts)
	for i, r := range recs {
		r.Value = fmt.Appendf(nil, "%d", i)
	}
	// Two bad records, at offsets after the readings, in the batch.
	garbage := &kgo.Record{Topic: telemetry.Topic, Partition: 0, Key: []byte("sensor-0"), Value: []byte("garbage")}
	invalid := &kgo.Record{Topic: telemetry.Topic, Partition: 0, Key: []byte("sensor-1"), Value: []byte("0")}
	all := append([]*kgo.Record(nil), recs[:7]...)
	all = append(all, garbage)
	all = append(all, recs[7:15]...)
	all = append(all, invalid)
	all = append(all, recs[15:]...)
	for i, r := range all {
		r.Offset = int64(i)
	}
	h := s.handler(fakeDecoder(ts))
	var failed []int64
	for len(all) > 0 {
		err := h.HandleBatch(ctx, all[:min(10, len(all))])
		if err == nil {
			all = all[min(10, len(all)):]
			continue
		}
		be, ok := errors.AsType[*consumer.BatchError](err)
		if !ok || !errors.Is(err, fault.ErrPoison) {
			t.Fatalf("batch at offset %d: %v, want a poison BatchError", all[0].Offset, err)
		}
		failed = append(failed, all[be.Index].Offset)
		all = all[be.Index+1:] // dead-lettered; the rest come again
	}
	if len(failed) != 2 || failed[0] != garbage.Offset || failed[1] != invalid.Offset {
		t.Errorf("failed offsets %v, want %d and %d", failed, garbage.Offset, invalid.Offset)
	}
	if got := totalsOf(t, db); !sameTotals(got, want) {
		t.Errorf("totals %v, want %v", got, want)
	}
}
