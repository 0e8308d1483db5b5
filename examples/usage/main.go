// Command usage turns telemetry into usage records in MongoDB: for each
// reading, the engine hours and kilometres added since the previous reading
// of the same sensor, dated by the reading's UTC day. Readings that add
// neither are not recorded. The query service sums the records.
//
// Usage accumulates, so handling a reading twice would count it twice. The
// service uses the CheckpointSkip strategy: a consumer group shares the
// partitions, each partition resumes after the checkpoint stored in MongoDB
// next to the state the deltas need, and every usage record is stored under
// its reading's topic, partition and offset, so handling a reading again
// writes nothing new. Totals stay exact whatever moment the process is
// killed at (see store.go for the argument).
//
//	go run ./usage
//
// With -naive it runs the way the field's service did instead, for
// comparison: a fixed group committing polled offsets automatically every
// few seconds, and the last reading per sensor written as a checkpoint
// after the usage records, separately. A crash then loses or double-counts
// deltas; the crash-recovery demo shows both side by side.
//
// Endpoints: GET /readyz (200 once partitions are assigned and positioned),
// GET /healthz (503 when records wait on a partition that does not move),
// GET /metrics.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/dlq"
	"github.com/kconsumer/kconsumer/examples/internal/svc"
	"github.com/kconsumer/kconsumer/examples/internal/telemetry"
	"github.com/kconsumer/kconsumer/lag"
	"github.com/kconsumer/kconsumer/recovery"
	"github.com/kconsumer/kconsumer/serde"
)

func main() { svc.Main("usage", run) }

type config struct {
	svc.Config
	group           string
	database        string
	start           string
	checkpointEvery time.Duration
	commitInterval  time.Duration
	session         time.Duration
	batch           int
	naive           bool
	naiveCommit     time.Duration
}

func parse(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("usage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	cfg.Register(fs, "127.0.0.1:8092", svc.Kafka|svc.Registry|svc.Mongo|svc.Group)
	fs.StringVar(&cfg.group, "group", "", `consumer group (default "usage", or "usage-naive" with -naive)`)
	fs.StringVar(&cfg.database, "database", "", `MongoDB database (default "telemetry", or "telemetry_naive" with -naive)`)
	fs.StringVar(&cfg.start, "start", "earliest", "where a partition without a checkpoint (with -naive: without a commit) starts: earliest or latest; the field used latest")
	fs.DurationVar(&cfg.checkpointEvery, "checkpoint-every", 500*time.Millisecond, "how often each partition's checkpoint is written; a restart handles at most this much again, writing nothing new")
	fs.DurationVar(&cfg.commitInterval, "commit-interval", time.Second, "how often offsets are committed to Kafka, for lag tools")
	fs.DurationVar(&cfg.session, "session-timeout", 45*time.Second, "group session timeout: how long a killed member keeps its partitions")
	fs.IntVar(&cfg.batch, "batch", 256, "most readings per batch; a batch's usage records are written in one insert")
	fs.BoolVar(&cfg.naive, "naive", false, "run the field's approach instead, for comparison: auto-commit and a checkpoint written separately")
	fs.DurationVar(&cfg.naiveCommit, "naive-commit-every", 5*time.Second, "with -naive, how often polled offsets are committed")
	if err := svc.Parse(fs, args); err != nil {
		return cfg, err
	}
	if err := cfg.Check(); err != nil {
		return cfg, &svc.UsageError{Err: err}
	}
	switch {
	case cfg.start != "earliest" && cfg.start != "latest":
		return cfg, svc.Usagef("-start %q: want earliest or latest", cfg.start)
	case cfg.checkpointEvery <= 0 || cfg.commitInterval <= 0 || cfg.session <= 0 || cfg.naiveCommit <= 0:
		return cfg, svc.Usagef("durations must be positive")
	case cfg.batch < 1:
		return cfg, svc.Usagef("-batch %d: want at least 1", cfg.batch)
	}
	if cfg.group == "" {
		cfg.group = "usage"
		if cfg.naive {
			cfg.group = "usage-naive"
		}
	}
	if cfg.database == "" {
		cfg.database = "telemetry"
		if cfg.naive {
			cfg.database = "telemetry_naive"
		}
	}
	return cfg, nil
}

func run(ctx context.Context, args []string, _, stderr io.Writer) error {
	cfg, err := parse(args, stderr)
	if err != nil {
		return err
	}
	name := "usage"
	if cfg.naive {
		name = "usage-naive"
	}
	ln, err := svc.Listen(cfg.HTTPAddr) // before the dependencies: see Listen
	if err != nil {
		return err
	}
	if ln != nil {
		defer ln.Close()
	}
	logger := cfg.Logger(stderr, name)
	codec, err := cfg.TelemetryCodec(ctx)
	if err != nil {
		return err
	}
	mc, err := svc.ConnectMongo(ctx, cfg.MongoURI, cfg.DialTimeout)
	if err != nil {
		return err
	}
	defer mc.Disconnect(context.Background())
	web := svc.NewHTTP()
	if cfg.naive {
		return runNaive(ctx, cfg, logger, web, ln, codec, mc.Database(cfg.database))
	}
	return runExact(ctx, cfg, logger, web, ln, codec, mc.Database(cfg.database))
}

// startOffset is where a partition without a checkpoint or commit starts.
func startOffset(start string) kgo.Offset {
	if start == "latest" {
		return kgo.NewOffset().AtEnd()
	}
	return kgo.NewOffset().AtStart()
}

// sessionOpts are the group timing options for a session timeout.
func sessionOpts(session time.Duration) []kgo.Opt {
	return []kgo.Opt{
		kgo.SessionTimeout(session),
		kgo.HeartbeatInterval(min(3*time.Second, session/10)),
	}
}

func runExact(ctx context.Context, cfg config, logger *slog.Logger, web *svc.HTTP, ln net.Listener, codec *serde.Avro[telemetry.Telemetry], db *mongo.Database) error {
	st := newStore(db, web.Registry)
	skip := recovery.NewCheckpointSkip(st, recovery.StartWithoutCheckpoint(startOffset(cfg.start)), recovery.WithLogger(logger))
	router, err := dlq.New()
	if err != nil {
		return err
	}
	defer router.Close()
	monitor, err := lag.NewMonitor(lag.Registerer(web.Registry))
	if err != nil {
		return err
	}
	// One batch gathers the readings waiting in every partition, so that
	// their usage records go out in one insert.
	c, err := consumer.NewBatch(st.handler(codec), append([]consumer.Opt{
		consumer.SeedBrokers(cfg.Brokers...),
		consumer.Topics(telemetry.Topic),
		consumer.Group(cfg.group),
		consumer.BatchMaxRecords(cfg.batch),
		consumer.BatchAcrossPartitions(),
		consumer.With(skip, router, monitor),
		consumer.CommitInterval(cfg.commitInterval),
		consumer.OnRevoked(func(ctx context.Context, partitions map[string][]int32) {
			if err := st.revoked(ctx, partitions); err != nil {
				logger.Warn("checkpoint on revoke failed; the next owner replays from the previous one", "err", err)
			}
		}),
		consumer.OnLost(st.lost),
		consumer.WithLogger(logger),
		consumer.ClientOpts(sessionOpts(cfg.session)...),
	}, cfg.GroupOpts()...)...)
	if err != nil {
		return err
	}
	web.Ready(monitor.Ready)
	web.Health(monitor.Healthy)

	// The checkpoint writer outlives the consumer's drain.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{}, 1)
	go func() {
		st.checkpointEvery(bg, cfg.checkpointEvery, func(err error) { logger.Warn("writing checkpoints", "err", err) })
		done <- struct{}{}
	}()
	err = svc.Run(ctx, logger, web, ln, c.Run)

	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if ferr := st.writeCheckpoints(fctx, nil); ferr != nil {
		err = errors.Join(err, fmt.Errorf("final checkpoints: %w", ferr))
	}
	stopBG()
	<-done
	return err
}
