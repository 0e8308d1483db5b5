// Command producer publishes the telemetry of a simulated fleet of
// construction machines to the sensor-data topic, Avro-encoded through the
// Schema Registry and keyed by sensor id: one reading per sensor per
// interval, with engine hours and kilometres that only grow (by realistic,
// noisy amounts) and GPS positions that drift around the site.
//
//	go run ./producer -sensors 100 -count 1000 -interval 0
//
// When it stops (after -count readings per sensor, after -duration, or on
// SIGINT or SIGTERM) it writes the ground truth of what the broker
// acknowledged to -truth: per sensor, the last reading, the usage totals the
// usage service must arrive at and the number of positions outside the
// site. The crash-recovery demo checks the services against this file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/examples/internal/svc"
	"github.com/kconsumer/kconsumer/examples/internal/telemetry"
	"github.com/kconsumer/kconsumer/serde"
)

func main() { svc.Main("producer", run) }

type config struct {
	svc.Config
	sensors    int
	count      int
	duration   time.Duration
	interval   time.Duration
	step       time.Duration
	seed       uint64
	start      string
	truth      string
	partitions int
	site       telemetry.Site
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parse(args, stderr)
	if err != nil {
		return err
	}
	logger := cfg.Logger(stderr, "producer")
	if err := svc.PingKafka(ctx, cfg.Brokers, cfg.DialTimeout); err != nil {
		return err
	}
	if err := svc.PingRegistry(ctx, cfg.RegistryURL, cfg.DialTimeout); err != nil {
		return err
	}
	start := time.Now().UTC().Truncate(time.Second)
	if cfg.start != "" {
		if start, err = time.Parse(time.RFC3339, cfg.start); err != nil {
			return svc.Usagef("-start: %v", err)
		}
	}

	reg, err := serde.NewRegistry(cfg.RegistryURL)
	if err != nil {
		return err
	}
	codec, err := serde.NewAvro[telemetry.Telemetry](reg, telemetry.Schema)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.DefaultProduceTopic(telemetry.Topic), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := createTopic(ctx, kadm.NewClient(cl), cfg.partitions); err != nil {
		return err
	}

	var web *svc.HTTP
	produced := prometheus.NewCounter(prometheus.CounterOpts{Name: "producer_records_total", Help: "Readings the broker acknowledged."})
	if cfg.HTTPAddr != "" {
		ln, err := svc.Listen(cfg.HTTPAddr)
		if err != nil {
			return err
		}
		web = svc.NewHTTP()
		web.Registry.MustRegister(produced)
		hctx, stop := context.WithCancel(context.Background())
		served := make(chan error, 1)
		go func() { served <- web.Serve(hctx, ln, logger) }()
		defer func() { stop(); <-served }()
	}

	p := &producer{cl: cl, codec: codec, tally: telemetry.NewTally(telemetry.Topic, cfg.site), acked: produced}
	f := newFleet(cfg.sensors, cfg.seed, cfg.site, start, cfg.step)
	logger.Info("producing", "sensors", cfg.sensors, "count", cfg.count, "interval", cfg.interval, "step", cfg.step, "seed", cfg.seed)
	began := time.Now()
	err = p.produce(ctx, f, cfg)
	truth := p.finish()
	if err == nil {
		err = p.failed()
	}
	if cfg.truth != "" {
		if werr := truth.WriteFile(cfg.truth); werr != nil {
			err = errors.Join(err, fmt.Errorf("writing the ground truth: %w", werr))
		}
	}
	fmt.Fprintf(stdout, "produced %d readings of %d sensors in %v", truth.Messages, len(truth.Sensors), time.Since(began).Round(time.Millisecond))
	if cfg.truth != "" {
		fmt.Fprintf(stdout, "; ground truth in %s", cfg.truth)
	}
	fmt.Fprintln(stdout)
	return err
}

func parse(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("producer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config{site: telemetry.DefaultSite}
	cfg.Register(fs, "127.0.0.1:8094", svc.Kafka|svc.Registry)
	fs.IntVar(&cfg.sensors, "sensors", 100, "number of sensors (machines)")
	fs.IntVar(&cfg.count, "count", 1000, "readings per sensor; 0 means no limit")
	fs.DurationVar(&cfg.duration, "duration", 0, "stop after this long; 0 means no limit")
	fs.DurationVar(&cfg.interval, "interval", time.Second, "wall-clock time between two readings of a sensor; 0 produces as fast as the broker takes them")
	fs.DurationVar(&cfg.step, "step", 0, "time between two readings of a sensor in their timestamps (default -interval, or 1m when -interval is 0)")
	fs.Uint64Var(&cfg.seed, "seed", 1, "seed of the simulation: the same seed gives the same readings")
	fs.StringVar(&cfg.start, "start", "", "timestamp of the first readings, RFC 3339 (default now)")
	fs.StringVar(&cfg.truth, "truth", "ground-truth.json", "file to write the ground truth to; empty skips it")
	fs.IntVar(&cfg.partitions, "partitions", 16, "partitions of sensor-data if the producer creates it")
	fs.Var(&cfg.site, "site", "the site's boundary as lat,lon;lat,lon;...")
	if err := svc.Parse(fs, args); err != nil {
		return cfg, err
	}
	if err := cfg.Check(); err != nil {
		return cfg, &svc.UsageError{Err: err}
	}
	switch {
	case cfg.sensors < 1:
		return cfg, svc.Usagef("-sensors %d: want at least 1", cfg.sensors)
	case cfg.count < 0 || cfg.duration < 0 || cfg.interval < 0 || cfg.step < 0:
		return cfg, svc.Usagef("-count, -duration, -interval and -step must not be negative")
	case cfg.partitions < 1:
		return cfg, svc.Usagef("-partitions %d: want at least 1", cfg.partitions)
	}
	if cfg.step == 0 {
		cfg.step = cfg.interval
		if cfg.step == 0 {
			cfg.step = time.Minute
		}
	}
	return cfg, nil
}

// createTopic creates sensor-data unless it exists.
func createTopic(ctx context.Context, adm *kadm.Client, partitions int) error {
	_, err := adm.CreateTopic(ctx, int32(partitions), -1, nil, telemetry.Topic)
	if errors.Is(err, kerr.TopicAlreadyExists) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("creating topic %s: %w", telemetry.Topic, err)
	}
	return nil
}

type producer struct {
	cl    *kgo.Client
	codec *serde.Avro[telemetry.Telemetry]
	acked prometheus.Counter

	mu    sync.Mutex
	tally *telemetry.Tally
	err   error
}

// produce writes rounds of readings until the configured end or ctx is
// done. Readings are buffered and sent asynchronously; the tally counts each
// once the broker acknowledged it, in the order of its partition, which is
// its sensor's order.
func (p *producer) produce(ctx context.Context, f *fleet, cfg config) error {
	var deadline <-chan time.Time
	if cfg.duration > 0 {
		t := time.NewTimer(cfg.duration)
		defer t.Stop()
		deadline = t.C
	}
	// Records outlive a SIGTERM: what was handed to the client is sent.
	sendCtx := context.WithoutCancel(ctx)
	for round := 0; cfg.count == 0 || round < cfg.count; round++ {
		if err := p.failed(); err != nil {
			return err
		}
		for _, m := range f.machines {
			r := f.reading(m, round)
			v, err := p.codec.Encode(ctx, telemetry.Topic, r)
			if err != nil {
				return fmt.Errorf("encoding a reading: %w", err)
			}
			p.cl.Produce(sendCtx, &kgo.Record{Key: []byte(r.SensorID), Value: v}, func(_ *kgo.Record, err error) {
				p.acknowledged(r, err)
			})
		}
		wait := cfg.interval
		if wait == 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-deadline:
				return nil
			default:
				continue
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-deadline:
			return nil
		case <-time.After(wait):
		}
	}
	return nil
}

func (p *producer) acknowledged(r telemetry.Telemetry, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		if p.err == nil {
			p.err = fmt.Errorf("producing %s: %w", r.SensorID, err)
		}
		return
	}
	p.tally.Add(r)
	p.acked.Inc()
}

func (p *producer) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// finish waits for the buffered records and returns the truth of what was
// acknowledged.
func (p *producer) finish() telemetry.Truth {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = p.cl.Flush(ctx) // records still unsent after the timeout fail and are not counted
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tally.Truth()
}
