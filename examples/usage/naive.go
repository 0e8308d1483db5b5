package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/kconsumer/kconsumer/examples/internal/svc"
	"github.com/kconsumer/kconsumer/examples/internal/telemetry"
	"github.com/kconsumer/kconsumer/serde"
)

// runNaive is the field's usage service, kept for comparison: a plain
// franz-go poll loop in a fixed group, offsets committed automatically
// every few seconds as soon as records are polled, a usage record with a fresh ObjectID per delta, and the last
// reading of each sensor written as its checkpoint after the records,
// separately. A kill loses the records polled but not yet written whose
// offsets were committed, and re-delivers those written since the last
// commit: their deltas are computed against a checkpoint that is already
// ahead or behind, and counted again.
func runNaive(ctx context.Context, cfg config, logger *slog.Logger, web *svc.HTTP, ln net.Listener, codec *serde.Avro[telemetry.Telemetry], db *mongo.Database) error {
	records := db.Collection("usage")
	checkpoints := db.Collection("sensor_checkpoints")
	handled := prometheus.NewCounter(prometheus.CounterOpts{Name: "usage_naive_readings_total", Help: "Readings handled."})
	failed := prometheus.NewCounter(prometheus.CounterOpts{Name: "usage_naive_write_errors_total", Help: "Failed writes, logged and dropped."})
	web.Registry.MustRegister(handled, failed)

	// The last reading per sensor, as the checkpoints say.
	last := make(map[string]telemetry.Telemetry)
	cur, err := checkpoints.Find(ctx, bson.D{})
	if err != nil {
		return fmt.Errorf("reading checkpoints: %w", err)
	}
	var saved []naiveCheckpoint
	if err := cur.All(ctx, &saved); err != nil {
		return fmt.Errorf("reading checkpoints: %w", err)
	}
	for _, c := range saved {
		last[c.SensorID] = c.Telemetry
	}

	opts := append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumerGroup(cfg.group),
		kgo.ConsumeTopics(telemetry.Topic),
		kgo.ConsumeResetOffset(startOffset(cfg.start)), // the field used "latest"
		kgo.GreedyAutoCommit(),
		kgo.AutoCommitInterval(cfg.naiveCommit),
	}, sessionOpts(cfg.session)...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()

	loop := func(ctx context.Context) error {
		// A poll's writes finish even when SIGTERM arrives meanwhile, so a
		// graceful stop loses nothing; kills are what this mode is about.
		wctx := context.WithoutCancel(ctx)
		for {
			fetches := cl.PollFetches(ctx)
			if ctx.Err() != nil || fetches.IsClientClosed() {
				return nil
			}
			fetches.EachError(func(t string, p int32, err error) {
				logger.Warn("fetch error", "topic", t, "partition", p, "err", err)
			})
			var docs []any
			touched := make(map[string]telemetry.Telemetry)
			fetches.EachRecord(func(r *kgo.Record) {
				var t telemetry.Telemetry
				if err := codec.Decode(wctx, r.Topic, r.Value, &t); err != nil {
					logger.Warn("skipping a record that cannot be read", "partition", r.Partition, "offset", r.Offset, "err", err)
					return
				}
				handled.Inc()
				if prev, ok := last[t.SensorID]; ok {
					if hours, km, counted := telemetry.Delta(prev.Odometry, t.Odometry); counted {
						docs = append(docs, bson.D{
							{Key: "_id", Value: bson.NewObjectID()},
							{Key: "sensor_id", Value: t.SensorID},
							{Key: "date", Value: telemetry.Date(t.TimestampMs)},
							{Key: "delta_hours", Value: hours},
							{Key: "delta_km", Value: km},
						})
					}
				}
				last[t.SensorID] = t
				touched[t.SensorID] = t
			})
			if len(docs) > 0 {
				if _, err := records.InsertMany(wctx, docs); err != nil {
					failed.Inc()
					logger.Error("inserting usage records", "err", err)
				}
			}
			var models []mongo.WriteModel
			for id, t := range touched {
				models = append(models, mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: id}}).
					SetReplacement(naiveCheckpoint{ID: id, Telemetry: t}).SetUpsert(true))
			}
			// FerretDB v1 keeps a connection per statement of an update
			// command until the command ends, from a pool of 100: a command
			// of 100 statements waits for itself forever. Chunks stay below.
			for chunk := range slices.Chunk(models, 50) {
				if _, err := checkpoints.BulkWrite(wctx, chunk, options.BulkWrite().SetOrdered(false)); err != nil {
					failed.Inc()
					logger.Error("writing checkpoints", "err", err)
				}
			}
		}
	}
	return svc.Run(ctx, logger, web, ln, loop)
}

// naiveCheckpoint is the last reading of a sensor, under its id.
type naiveCheckpoint struct {
	ID                  string `bson:"_id"`
	telemetry.Telemetry `bson:",inline"`
}
