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

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/examples/internal/telemetry"
	"github.com/kconsumer/kconsumer/fault"
	"github.com/kconsumer/kconsumer/recovery"
	"github.com/kconsumer/kconsumer/serde"
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
// read: a batch's readings become their partitions' state, and their
// offsets the partitions' offsets, only once the batch's insert returned. After a restart or a rebalance, the partition resumes after the
// offset with that state: the records in between are handled again,
// produce the same usage records, and their inserts are no-ops. No crash
// point (between two inserts, between the inserts and the checkpoint, in a
// rebalance) can lose a delta or count one twice, and neither needs a
// multi-document transaction, which FerretDB does not have.
type store struct {
	usage       *mongo.Collection
	checkpoints *mongo.Collection
	timeout     time.Duration // of one insert

	written    prometheus.Counter
	inserted   prometheus.Counter
	duplicates prometheus.Counter
	batches    prometheus.Histogram

	mu    sync.Mutex
	parts map[partKey]*partition // partitions owned, with their state

	writeMu sync.Mutex // one checkpoint writer at a time
}

type partKey struct {
	topic     string
	partition int32
}

// partition is the state of one owned partition. Only the handler of the
// partition's records changes it (one batch or record of a partition is in
// hand at a time); the checkpoint writer reads it under mu.
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

// duplicateKey is MongoDB's error code for a second document with an _id.
const duplicateKey = 11000

func newStore(db *mongo.Database, reg prometheus.Registerer) *store {
	s := &store{
		usage:       db.Collection("usage"),
		checkpoints: db.Collection("usage_checkpoints"),
		timeout:     30 * time.Second,
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "usage_checkpoints_written_total", Help: "Checkpoint documents written.",
		}),
		inserted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "usage_records_inserted_total", Help: "Usage records written.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "usage_records_duplicate_total", Help: "Usage records already written, by an earlier run or another member: replays that changed nothing.",
		}),
		batches: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "usage_insert_batch_records", Help: "Usage records per insert.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		parts: make(map[partKey]*partition),
	}
	reg.MustRegister(s.written, s.inserted, s.duplicates, s.batches)
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

// handler is the batch handler of the service: it decodes the readings of
// a batch with values and writes them with write. A record that does not
// decode is named in a *consumer.BatchError after the readings before it
// are written, so that it goes to the dead-letter router on its own.
func (s *store) handler(values serde.Decoder[telemetry.Telemetry]) consumer.BatchHandler {
	return consumer.BatchHandlerFunc(func(ctx context.Context, recs []*kgo.Record) error {
		ts := make([]telemetry.Telemetry, len(recs))
		for i, r := range recs {
			if err := values.Decode(ctx, r.Topic, r.Value, &ts[i]); err != nil {
				if werr := s.write(ctx, recs[:i], ts[:i]); werr != nil {
					return werr
				}
				return &consumer.BatchError{Index: i, Err: err}
			}
		}
		return s.write(ctx, recs, ts)
	})
}

// step is what a reading of a batch does to its partition's state once the
// batch's usage records are written.
type step struct {
	index int // in the batch
	part  *partition
	last  lastReading
	off   int64
}

// write handles a batch of readings, ts[i] decoded from recs[i]: it
// computes the delta of each against the previous reading of its sensor
// (in the batch, or its partition's state), writes the usage records of
// those that count in one unordered insert, and only then makes each
// reading its sensor's last and its offset its partition's. A reading
// that cannot be handled, or whose usage record failed to write, is named
// in a *consumer.BatchError: the readings before it are done, and no state
// changes for it or any reading after it.
func (s *store) write(ctx context.Context, recs []*kgo.Record, ts []telemetry.Telemetry) error {
	stop, stopErr := len(recs), error(nil) // the first reading that cannot be handled
	var steps []step
	var docs []any
	var docIndex []int // batch index of each doc
	pending := make(map[*partition]map[string]lastReading)
	for i, r := range recs {
		t := ts[i]
		if err := t.Validate(); err != nil {
			stop, stopErr = i, fault.MarkPoison(err)
			break
		}
		if string(r.Key) != t.SensorID {
			// Per-sensor order holds only if the sensor id picks the partition.
			stop, stopErr = i, fault.MarkPoison(fmt.Errorf("key %q is not the sensor id %q", r.Key, t.SensorID))
			break
		}
		part, err := s.partition(ctx, r.Topic, r.Partition)
		if err != nil {
			stop, stopErr = i, fault.MarkRetriable(err)
			break
		}
		if r.Offset <= part.offset {
			continue // applied before this partition was last loaded
		}
		lasts := pending[part]
		if lasts == nil {
			lasts = make(map[string]lastReading)
			pending[part] = lasts
		}
		prev, ok := lasts[t.SensorID]
		if !ok {
			prev, ok = part.last[t.SensorID]
		}
		if ok {
			hours, km, counted := telemetry.Delta(telemetry.Odometry{HoursTot: prev.HoursTot, KmTot: prev.KmTot}, t.Odometry)
			if counted {
				docs = append(docs, usageRecord{
					ID:         recovery.CheckpointOf(r).String(),
					SensorID:   t.SensorID,
					Date:       telemetry.Date(t.TimestampMs),
					DeltaHours: hours,
					DeltaKm:    km,
				})
				docIndex = append(docIndex, i)
			}
		}
		last := lastReading{SensorID: t.SensorID, TimestampMs: t.TimestampMs, HoursTot: t.Odometry.HoursTot, KmTot: t.Odometry.KmTot}
		lasts[t.SensorID] = last
		steps = append(steps, step{index: i, part: part, last: last, off: r.Offset})
	}

	failed, failErr := len(recs), error(nil) // the first reading whose usage record is not written
	if len(docs) > 0 {
		if d, err := s.insert(ctx, docs); d >= 0 {
			failed, failErr = docIndex[d], fault.MarkRetriable(err)
		}
	}
	for _, st := range steps {
		if st.index >= failed {
			break
		}
		st.part.mu.Lock()
		st.part.last[st.last.SensorID] = st.last
		st.part.offset = st.off
		st.part.mu.Unlock()
	}
	switch {
	case failed < stop:
		return &consumer.BatchError{Index: failed, Err: failErr}
	case stop < len(recs):
		return &consumer.BatchError{Index: stop, Err: stopErr}
	}
	return nil
}

// insert writes docs in one unordered insert. It returns the index of the
// first document that is not written (now or before) and why, or -1 when
// every document is written.
func (s *store) insert(ctx context.Context, docs []any) (int, error) {
	s.batches.Observe(float64(len(docs)))
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	_, err := s.usage.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err == nil {
		s.inserted.Add(float64(len(docs)))
		return -1, nil
	}
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil {
		return 0, fmt.Errorf("inserting usage records: %w", err)
	}
	first, firstErr := -1, error(nil)
	failed := 0
	for _, we := range bwe.WriteErrors {
		if we.Index < 0 || we.Index >= len(docs) {
			continue
		}
		failed++
		if we.Code == duplicateKey {
			s.duplicates.Inc()
			continue
		}
		if first < 0 || we.Index < first {
			first, firstErr = we.Index, fmt.Errorf("inserting usage record %s: %w", docs[we.Index].(usageRecord).ID, we)
		}
	}
	s.inserted.Add(float64(len(docs) - failed))
	return first, firstErr
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
