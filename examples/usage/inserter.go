package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// inserter writes usage records for all partitions' handlers together: a
// handler hands over its record and waits until the batch holding it is
// written, so it returns (and its offset is stored) only once the record is
// durable, while one insert carries the records of many partitions.
type inserter struct {
	coll     *mongo.Collection
	reqs     chan insertReq
	maxBatch int
	timeout  time.Duration

	inserted   prometheus.Counter
	duplicates prometheus.Counter
	batches    prometheus.Histogram
}

type insertReq struct {
	rec  usageRecord
	done chan error
}

// duplicateKey is MongoDB's error code for a second document with an _id.
const duplicateKey = 11000

func newInserter(coll *mongo.Collection, maxBatch int, reg prometheus.Registerer) *inserter {
	w := &inserter{
		coll:     coll,
		reqs:     make(chan insertReq),
		maxBatch: maxBatch,
		timeout:  30 * time.Second,
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
	}
	reg.MustRegister(w.inserted, w.duplicates, w.batches)
	return w
}

// insert writes rec and returns once it is written, or already was.
func (w *inserter) insert(ctx context.Context, rec usageRecord) error {
	req := insertReq{rec: rec, done: make(chan error, 1)}
	select {
	case w.reqs <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err() // the record may still be written; a replay finds it
	}
}

// run writes batches until ctx is done: it waits for a first record, takes
// whatever else is waiting up to the batch size, and writes them in one
// unordered insert.
func (w *inserter) run(ctx context.Context) {
	batch := make([]insertReq, 0, w.maxBatch)
	for {
		batch = batch[:0]
		select {
		case req := <-w.reqs:
			batch = append(batch, req)
		case <-ctx.Done():
			return
		}
	more:
		for len(batch) < w.maxBatch {
			select {
			case req := <-w.reqs:
				batch = append(batch, req)
			default:
				break more
			}
		}
		errs := w.write(batch)
		for i, req := range batch {
			req.done <- errs[i]
		}
	}
}

// write inserts the batch and returns each record's error: nil when it was
// written now or before.
func (w *inserter) write(batch []insertReq) []error {
	docs := make([]any, len(batch))
	for i, req := range batch {
		docs[i] = req.rec
	}
	w.batches.Observe(float64(len(batch)))
	ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
	defer cancel()
	_, err := w.coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	errs := make([]error, len(batch))
	if err == nil {
		w.inserted.Add(float64(len(batch)))
		return errs
	}
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil {
		for i := range errs {
			errs[i] = fmt.Errorf("inserting usage records: %w", err)
		}
		return errs
	}
	failed := 0
	for _, we := range bwe.WriteErrors {
		if we.Index < 0 || we.Index >= len(errs) {
			continue
		}
		failed++
		if we.Code == duplicateKey {
			w.duplicates.Inc()
			continue
		}
		errs[we.Index] = fmt.Errorf("inserting usage record %s: %w", batch[we.Index].rec.ID, we)
	}
	w.inserted.Add(float64(len(batch) - failed))
	return errs
}
