// Command query serves usage totals from MongoDB over HTTP. It keeps no
// state of its own: each request runs an aggregation pipeline over the
// usage records the usage service wrote.
//
//	go run ./query
//
// Endpoints:
//
//	GET /usage     per sensor: sensor_id, total_hours, total_km, records,
//	               sorted by sensor; ?sensor=<id> for one sensor,
//	               ?from=<YYYY-MM-DD>&to=<YYYY-MM-DD> for a range of UTC days
//	GET /healthz   200 while MongoDB answers
//	GET /readyz    the same
//	GET /metrics   Prometheus metrics
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"golang.org/x/sync/errgroup"

	"github.com/kconsumer/kconsumer/examples/internal/svc"
)

func main() { svc.Main("query", run) }

func run(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("query", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg svc.Config
	cfg.Register(fs, "127.0.0.1:8080", svc.Mongo)
	database := fs.String("database", "telemetry", "MongoDB database holding the usage collection")
	timeout := fs.Duration("timeout", 2*time.Minute, "longest time a request may take")
	if err := svc.Parse(fs, args); err != nil {
		return err
	}
	if err := cfg.Check(); err != nil {
		return &svc.UsageError{Err: err}
	}
	if *timeout <= 0 {
		return svc.Usagef("-timeout must be positive")
	}
	ln, err := svc.Listen(cfg.HTTPAddr) // before the dependencies: see Listen
	if err != nil {
		return err
	}
	if ln != nil {
		defer ln.Close()
	}
	logger := cfg.Logger(stderr, "query")
	mc, err := svc.ConnectMongo(ctx, cfg.MongoURI, cfg.DialTimeout)
	if err != nil {
		return err
	}
	defer mc.Disconnect(context.Background())
	db := mc.Database(*database)
	split, err := accumulatorBug(ctx, db)
	if err != nil {
		return err
	}
	if split {
		logger.Info("the server is FerretDB v1, which computes only the first accumulator of a $group stage: running one pipeline per total")
	}

	web := svc.NewHTTP()
	q := &querier{usage: db.Collection("usage"), split: split, timeout: *timeout, logger: logger,
		took: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "query_request_seconds", Help: "Time to answer GET /usage, by status code.",
		}, []string{"code"}),
	}
	web.Registry.MustRegister(q.took)
	ping := func() error {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return mc.Ping(pctx, nil)
	}
	web.Health(ping)
	web.Ready(ping)
	web.Mux.HandleFunc("GET /usage", q.serve)
	return svc.Run(ctx, logger, web, ln, func(ctx context.Context) error {
		<-ctx.Done()
		return nil
	})
}

// accumulatorBug reports whether the server is FerretDB v1, whose $group
// stage computes only its first accumulator (FerretDB issue 4616). An
// embedded FerretDB reports its version as "unknown"; only a version from 2
// on is known to be free of the bug.
func accumulatorBug(ctx context.Context, db *mongo.Database) (bool, error) {
	var info bson.M
	if err := db.RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info); err != nil {
		return false, fmt.Errorf("asking MongoDB for buildInfo: %w", err)
	}
	v, ok := info["ferretdbVersion"].(string)
	if !ok {
		return false, nil
	}
	major, _, _ := strings.Cut(strings.TrimPrefix(v, "v"), ".")
	n, err := strconv.Atoi(major)
	return err != nil || n < 2, nil
}

// SensorUsage is one sensor's totals.
type SensorUsage struct {
	SensorID   string  `json:"sensor_id"`
	TotalHours float64 `json:"total_hours"`
	TotalKm    float64 `json:"total_km"`
	Records    int64   `json:"records"`
}

type querier struct {
	usage   *mongo.Collection
	split   bool
	timeout time.Duration
	logger  *slog.Logger
	took    *prometheus.HistogramVec
}

func (q *querier) serve(w http.ResponseWriter, r *http.Request) {
	began := time.Now()
	code := http.StatusOK
	defer func() { q.took.WithLabelValues(strconv.Itoa(code)).Observe(time.Since(began).Seconds()) }()
	match, err := matchStage(r)
	if err != nil {
		code = http.StatusBadRequest
		http.Error(w, err.Error(), code)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), q.timeout)
	defer cancel()
	out, err := q.totals(ctx, match)
	if err != nil {
		code = http.StatusServiceUnavailable
		q.logger.Error("aggregating usage", "err", err)
		http.Error(w, "aggregating usage: "+err.Error(), code)
		return
	}
	svc.WriteJSON(w, out)
}

// matchStage returns the filter of the request's query parameters.
func matchStage(r *http.Request) (bson.D, error) {
	var match bson.D
	if s := r.URL.Query().Get("sensor"); s != "" {
		match = append(match, bson.E{Key: "sensor_id", Value: s})
	}
	var days bson.D
	for _, p := range []struct{ param, op string }{{"from", "$gte"}, {"to", "$lte"}} {
		v := r.URL.Query().Get(p.param)
		if v == "" {
			continue
		}
		if _, err := time.Parse(time.DateOnly, v); err != nil {
			return nil, errors.New(p.param + ": want a date as YYYY-MM-DD")
		}
		days = append(days, bson.E{Key: p.op, Value: v})
	}
	if len(days) > 0 {
		match = append(match, bson.E{Key: "date", Value: days})
	}
	return match, nil
}

// totals runs the aggregation: a $group by sensor summing the deltas and
// counting the records, sorted by sensor. Against FerretDB v1 it runs one
// pipeline per total, concurrently, and joins them.
func (q *querier) totals(ctx context.Context, match bson.D) ([]SensorUsage, error) {
	sum := func(field string) bson.D { return bson.D{{Key: "$sum", Value: field}} }
	accumulators := bson.D{
		{Key: "total_hours", Value: sum("$delta_hours")},
		{Key: "total_km", Value: sum("$delta_km")},
		{Key: "records", Value: bson.D{{Key: "$sum", Value: 1}}},
	}
	pipeline := func(acc bson.D) mongo.Pipeline {
		var p mongo.Pipeline
		if len(match) > 0 {
			p = append(p, bson.D{{Key: "$match", Value: match}})
		}
		group := append(bson.D{{Key: "_id", Value: "$sensor_id"}}, acc...)
		return append(p, bson.D{{Key: "$group", Value: group}}, bson.D{{Key: "$sort", Value: bson.D{{Key: "_id", Value: 1}}}})
	}
	if !q.split {
		return q.run(ctx, pipeline(accumulators))
	}

	parts := make([][]SensorUsage, len(accumulators))
	g, gctx := errgroup.WithContext(ctx)
	for i, acc := range accumulators {
		g.Go(func() (err error) {
			parts[i], err = q.run(gctx, pipeline(bson.D{acc}))
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	bySensor := make(map[string]*SensorUsage)
	for _, part := range parts {
		for _, u := range part {
			s, ok := bySensor[u.SensorID]
			if !ok {
				s = &SensorUsage{SensorID: u.SensorID}
				bySensor[u.SensorID] = s
			}
			s.TotalHours += u.TotalHours
			s.TotalKm += u.TotalKm
			s.Records += u.Records
		}
	}
	out := make([]SensorUsage, 0, len(bySensor))
	for _, s := range bySensor {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b SensorUsage) int { return cmp.Compare(a.SensorID, b.SensorID) })
	return out, nil
}

func (q *querier) run(ctx context.Context, p mongo.Pipeline) ([]SensorUsage, error) {
	cur, err := q.usage.Aggregate(ctx, p)
	if err != nil {
		return nil, err
	}
	var rows []struct {
		ID         string  `bson:"_id"`
		TotalHours float64 `bson:"total_hours"`
		TotalKm    float64 `bson:"total_km"`
		Records    int64   `bson:"records"`
	}
	if err := cur.All(ctx, &rows); err != nil {
		return nil, err
	}
	out := make([]SensorUsage, len(rows))
	for i, r := range rows {
		out[i] = SensorUsage{SensorID: r.ID, TotalHours: r.TotalHours, TotalKm: r.TotalKm, Records: r.Records}
	}
	return out, nil
}
