package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kconsumer/kconsumer/examples/internal/telemetry"
	"github.com/kconsumer/kconsumer/fault"
	"github.com/kconsumer/kconsumer/recovery"
)

// The store keeps usage exact across any crash with two kinds of document.
//
// A usage record holds the delta of one reading against the previous
// reading of its sensor, under the reading's checkpoint
// ("sensor-data/<partition>/<offset>") as _id. Its content depends only on
// the reading and the one before it, so writing it again, after a crash or
// by a member that lost the partition, fails as a duplicate and changes
// nothing.
//
// A checkpoint document per partition holds an offset and, in the same
// document, the last reading of each sensor of the partition as of that
// offset: the state the next delta needs. It is written (replaced whole)
// every few hundred milliseconds, only ever with an offset whose records'
// usage records are all written, so the pair is consistent whenever it is
// read. After a restart or a rebalance, the partition resumes after the
// offset with that state: the records in between are handled again,
// produce the same usage records, and their inserts are no-ops. No crash
// point (between two inserts, between the inserts and the checkpoint, in a
// rebalance) can lose a delta or count one twice, and neither needs a
// multi-document transaction, which FerretDB does not have.
type store struct {
	usage       *mongo.Collection
	checkpoints *mongo.Collection
	inserts     *inserter
	written     prometheus.Counter

	mu    sync.Mutex
	parts map[partKey]*partition // partitions owned, with their state

	writeMu sync.Mutex // one checkpoint writer at a time
}

type partKey struct {
	topic     string
	partition int32
}

// partition is the state of one owned partition. Only the partition's
// handler goroutine changes it; the checkpoint writer reads it under mu.
type partition struct {
	id      string // _id of its checkpoint document
	topic   string
	number  int32
	mu      sync.Mutex
	offset  int64 // last record applied; -1 for none
	last    map[string]lastReading
	written int64 // offset of the last checkpoint written
}

// usageRecord is the document of one counted delta. It is kept small: the
// query scans every one of them, and the reading's topic, partition and
// offset are in its _id.
type usageRecord struct {
	ID         string  `bson:"_id"` // recovery.Checkpoint of the reading
	SensorID   string  `bson:"sensor_id"`
	Date       string  `bson:"date"` // UTC day of the reading
	DeltaHours float64 `bson:"delta_hours"`
	DeltaKm    float64 `bson:"delta_km"`
}

// checkpointDoc is the checkpoint and state of one partition.
type checkpointDoc struct {
	ID        string        `bson:"_id"` // "<topic>/<partition>"
	Topic     string        `bson:"topic"`
	Partition int32         `bson:"partition"`
	Offset    int64         `bson:"offset"`
	Last      []lastReading `bson:"last"` // sorted by sensor
}

// lastReading is what the next delta of a sensor needs.
type lastReading struct {
	SensorID    string  `bson:"sensor_id"`
	TimestampMs int64   `bson:"timestamp_ms"`
	HoursTot    float64 `bson:"hours_tot"`
	KmTot       float64 `bson:"km_tot"`
}

func newStore(db *mongo.Database, inserts *inserter, reg prometheus.Registerer) *store {
	s := &store{
		usage:       db.Collection("usage"),
		checkpoints: db.Collection("usage_checkpoints"),
		inserts:     inserts,
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "usage_checkpoints_written_total", Help: "Checkpoint documents written.",
		}),
		parts: make(map[partKey]*partition),
	}
	reg.MustRegister(s.written)
	return s
}

var _ recovery.CheckpointStore = (*store)(nil)

// Checkpoints implements recovery.CheckpointStore. It is called when
// partitions are assigned, and loads their state with their offsets.
func (s *store) Checkpoints(ctx context.Context, topic string, partitions []int32) (map[int32]int64, error) {
	cur, err := s.checkpoints.Find(ctx, bson.D{{Key: "topic", Value: topic}})
	if err != nil {
		return nil, fmt.Errorf("reading checkpoints: %w", err)
	}
	var docs []checkpointDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("reading checkpoints: %w", err)
	}
	byPartition := make(map[int32]checkpointDoc, len(docs))
	for _, d := range docs {
		byPartition[d.Partition] = d
	}
	out := make(map[int32]int64)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range partitions {
		part := &partition{id: checkpointID(topic, p), topic: topic, number: p, offset: -1, written: -1, last: make(map[string]lastReading)}
		if d, ok := byPartition[p]; ok {
			part.offset, part.written = d.Offset, d.Offset
			for _, l := range d.Last {
				part.last[l.SensorID] = l
			}
			out[p] = d.Offset
		}
		s.parts[partKey{topic, p}] = part
	}
	return out, nil
}

func checkpointID(topic string, partition int32) string {
	return fmt.Sprintf("%s/%d", topic, partition)
}

func (s *store) partition(ctx context.Context, topic string, p int32) (*partition, error) {
	s.mu.Lock()
	part, ok := s.parts[partKey{topic, p}]
	s.mu.Unlock()
	if ok {
		return part, nil
	}
	// Every assignment loads its partitions first; this only covers a
	// record arriving for a partition the store has not seen.
	if _, err := s.Checkpoints(ctx, topic, []int32{p}); err != nil {
		return nil, err
	}
	return s.partition(ctx, topic, p)
}

// apply handles one reading: it writes the usage record of its delta, if
// it counts, and then makes the reading its sensor's last.
func (s *store) apply(ctx context.Context, r *kgo.Record, t telemetry.Telemetry) error {
	if err := t.Validate(); err != nil {
		return fault.MarkPoison(err)
	}
	if string(r.Key) != t.SensorID {
		// Per-sensor order holds only if the sensor id picks the partition.
		return fault.MarkPoison(fmt.Errorf("key %q is not the sensor id %q", r.Key, t.SensorID))
	}
	part, err := s.partition(ctx, r.Topic, r.Partition)
	if err != nil {
		return fault.MarkRetriable(err)
	}
	if r.Offset <= part.offset {
		return nil // applied before this partition was last loaded
	}
	if prev, ok := part.last[t.SensorID]; ok {
		hours, km, counted := telemetry.Delta(telemetry.Odometry{HoursTot: prev.HoursTot, KmTot: prev.KmTot}, t.Odometry)
		if counted {
			rec := usageRecord{
				ID:         recovery.CheckpointOf(r).String(),
				SensorID:   t.SensorID,
				Date:       telemetry.Date(t.TimestampMs),
				DeltaHours: hours,
				DeltaKm:    km,
			}
			if err := s.inserts.insert(ctx, rec); err != nil {
				return fault.MarkRetriable(err)
			}
		}
	}
	part.mu.Lock()
	part.last[t.SensorID] = lastReading{SensorID: t.SensorID, TimestampMs: t.TimestampMs, HoursTot: t.Odometry.HoursTot, KmTot: t.Odometry.KmTot}
	part.offset = r.Offset
	part.mu.Unlock()
	return nil
}

// writeCheckpoints writes the checkpoint of each partition in parts (all
// owned partitions if nil) that moved since its last one.
func (s *store) writeCheckpoints(ctx context.Context, parts []*partition) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if parts == nil {
		s.mu.Lock()
		parts = slices.Collect(maps.Values(s.parts))
		s.mu.Unlock()
	}
	var errs []error
	for _, p := range parts {
		p.mu.Lock()
		if p.offset == p.written {
			p.mu.Unlock()
			continue
		}
		doc := checkpointDoc{ID: p.id, Topic: p.topic, Partition: p.number, Offset: p.offset}
		for _, l := range p.last {
			doc.Last = append(doc.Last, l)
		}
		p.mu.Unlock()
		slices.SortFunc(doc.Last, func(a, b lastReading) int { return cmp.Compare(a.SensorID, b.SensorID) })
		if _, err := s.checkpoints.ReplaceOne(ctx, bson.D{{Key: "_id", Value: doc.ID}}, doc, options.Replace().SetUpsert(true)); err != nil {
			errs = append(errs, fmt.Errorf("writing checkpoint %s: %w", doc.ID, err))
			continue
		}
		s.written.Inc()
		p.mu.Lock()
		p.written = doc.Offset
		p.mu.Unlock()
	}
	return errors.Join(errs...)
}

// take removes the given partitions from the owned ones and returns them.
func (s *store) take(partitions map[string][]int32) []*partition {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*partition
	for topic, ps := range partitions {
		for _, p := range ps {
			k := partKey{topic, p}
			if part, ok := s.parts[k]; ok {
				out = append(out, part)
				delete(s.parts, k)
			}
		}
	}
	return out
}

// revoked writes the checkpoints of revoked partitions, whose handlers have
// finished, so the next owner starts where this one stopped, and forgets
// them. A failed write only makes the next owner replay a little more.
func (s *store) revoked(ctx context.Context, partitions map[string][]int32) error {
	return s.writeCheckpoints(ctx, s.take(partitions))
}

// lost forgets lost partitions without writing: another member may own
// them already.
func (s *store) lost(_ context.Context, partitions map[string][]int32) { s.take(partitions) }

// checkpointEvery writes checkpoints every interval until ctx is done.
func (s *store) checkpointEvery(ctx context.Context, every time.Duration, onErr func(error)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.writeCheckpoints(ctx, nil); err != nil && ctx.Err() == nil {
				onErr(err)
			}
		}
	}
}
