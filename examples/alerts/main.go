// Command alerts watches the machines' GPS positions and publishes an alert
// to sensor-alerts, as JSON keyed by sensor id, for every reading outside
// the construction site. It keeps no state, so it uses the Stateless
// strategy: a consumer group, resuming from its committed offsets; a crash
// may publish an alert twice, never lose one (each alert names its source
// record, for consumers that deduplicate).
//
// A record that cannot be decoded is poison: the dead-letter router sends
// it to sensor-data.dlq, with headers naming where it came from and why,
// and the partition moves on instead of retrying it forever.
//
//	go run ./alerts
//
// Endpoints: GET /readyz (200 once partitions are assigned), GET /healthz
// (503 when records wait on a partition that does not move), GET /metrics.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/dlq"
	"github.com/kconsumer/kconsumer/examples/internal/svc"
	"github.com/kconsumer/kconsumer/examples/internal/telemetry"
	"github.com/kconsumer/kconsumer/fault"
	"github.com/kconsumer/kconsumer/lag"
	"github.com/kconsumer/kconsumer/recovery"
	"github.com/kconsumer/kconsumer/serde"
)

func main() { svc.Main("alerts", run) }

// Alert is the JSON value of a record on sensor-alerts.
type Alert struct {
	SensorID    string  `json:"sensor_id"`
	TimestampMs int64   `json:"timestamp_ms"`
	Lat         float64 `json:"lat"`
	Lon         float64 `json:"lon"`
	// Source is the reading's checkpoint, "sensor-data/<partition>/<offset>":
	// the same for an alert published twice.
	Source string `json:"source"`
}

func run(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("alerts", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg svc.Config
	cfg.Register(fs, "127.0.0.1:8093", svc.Kafka|svc.Registry|svc.Group)
	group := fs.String("group", "alerts", "consumer group")
	topic := fs.String("topic", telemetry.AlertsTopic, "topic to publish alerts to")
	site := telemetry.DefaultSite
	fs.Var(&site, "site", "the site's boundary as lat,lon;lat,lon;...")
	session := fs.Duration("session-timeout", 45*time.Second, "group session timeout: how long a killed member keeps its partitions")
	if err := svc.Parse(fs, args); err != nil {
		return err
	}
	if err := cfg.Check(); err != nil {
		return &svc.UsageError{Err: err}
	}
	if *session <= 0 {
		return svc.Usagef("-session-timeout must be positive")
	}
	ln, err := svc.Listen(cfg.HTTPAddr) // before the dependencies: see Listen
	if err != nil {
		return err
	}
	if ln != nil {
		defer ln.Close()
	}
	logger := cfg.Logger(stderr, "alerts")
	codec, err := cfg.TelemetryCodec(ctx)
	if err != nil {
		return err
	}
	out, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.DefaultProduceTopic(*topic), kgo.ProducerLinger(0))
	if err != nil {
		return err
	}
	defer out.Close()
	router, err := dlq.New()
	if err != nil {
		return err
	}
	defer router.Close()

	web := svc.NewHTTP()
	published := prometheus.NewCounter(prometheus.CounterOpts{Name: "alerts_published_total", Help: "Alerts published."})
	web.Registry.MustRegister(published)
	strategy := recovery.NewStateless()
	monitor, err := lag.NewMonitor(lag.Registerer(web.Registry))
	if err != nil {
		return err
	}
	h := serde.Handle(codec, func(ctx context.Context, r *kgo.Record, t telemetry.Telemetry) error {
		if err := t.Validate(); err != nil {
			return fault.MarkPoison(err)
		}
		if site.Contains(t.GPS) {
			return nil
		}
		b, err := json.Marshal(Alert{SensorID: t.SensorID, TimestampMs: t.TimestampMs, Lat: t.GPS.Lat, Lon: t.GPS.Lon,
			Source: recovery.CheckpointOf(r).String()})
		if err != nil {
			return fault.MarkPoison(err)
		}
		if err := out.ProduceSync(ctx, &kgo.Record{Key: []byte(t.SensorID), Value: b}).FirstErr(); err != nil {
			return fault.MarkRetriable(fmt.Errorf("publishing an alert: %w", err))
		}
		published.Inc()
		return nil
	})
	c, err := consumer.New(h, append([]consumer.Opt{
		consumer.SeedBrokers(cfg.Brokers...),
		consumer.Topics(telemetry.Topic),
		consumer.Group(*group),
		consumer.With(strategy, router, monitor),
		consumer.WithLogger(logger),
		consumer.ClientOpts(kgo.SessionTimeout(*session), kgo.HeartbeatInterval(min(3*time.Second, *session/10))),
	}, cfg.GroupOpts()...)...)
	if err != nil {
		return err
	}
	web.Ready(monitor.Ready)
	web.Health(monitor.Healthy)
	return svc.Run(ctx, logger, web, ln, c.Run)
}
