//go:build unix

package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/dlq"
	"github.com/kconsumer/kconsumer/fault"
	"github.com/kconsumer/kconsumer/recovery"
	"github.com/kconsumer/kconsumer/serde"
)

// The groups of a run.
const (
	// GroupStateless commits offsets after handling: recovery.Stateless.
	GroupStateless = "stateless"
	// GroupAdditive adds amounts per key into a Store: recovery.CheckpointSkip.
	GroupAdditive = "additive"
)

// memberConfig is what a member needs to run; child processes get it as
// JSON in their environment.
type memberConfig struct {
	Name     string
	Group    string
	Topic    string
	Brokers  []string
	Registry string
	Dir      string // the run's directory: the store and the sink control
	Order    consumer.Ordering
	Timing   Timing
	// Defaults makes the member pass none of Timing's options, nor its
	// fetch wait and retry backoff: it runs with the library's defaults.
	Defaults  bool
	SlowEvery int // every SlowEvery-th offset takes slowTime to handle; 0 for none
}

// slowTime is how long a slow record takes: longer than the commit
// interval, so that a crash finds it in hand with earlier offsets
// committed.
const slowTime = 300 * time.Millisecond

// Timing holds the group and retry timings of members.
type Timing struct {
	Session, Heartbeat, Rebalance time.Duration // kgo's group timings
	Revoke, Shutdown              time.Duration // consumer.RevokeTimeout, ShutdownTimeout
	RequestOverhead               time.Duration // kgo.RequestTimeoutOverhead
	Commit                        time.Duration // consumer.CommitInterval
	DLQWrite                      time.Duration // dlq.WriteTimeout
}

// DefaultTiming is the timing of every scenario: short sessions, so that a
// killed member's partitions move within two seconds, and a dead-letter
// write that ends well within a revoke's wait.
var DefaultTiming = Timing{
	Session:         1500 * time.Millisecond,
	Heartbeat:       100 * time.Millisecond,
	Rebalance:       4 * time.Second,
	Revoke:          5 * time.Second,
	Shutdown:        10 * time.Second,
	RequestOverhead: 3 * time.Second,
	Commit:          200 * time.Millisecond,
	DLQWrite:        time.Second,
}

// LibraryTiming is what the library's defaults are (consumer/options.go,
// kgo's request overhead, dlq.WriteTimeout), for a scenario whose members
// run with them (Scenario.LibraryDefaults): they do not pass it.
var LibraryTiming = Timing{
	Session:         45 * time.Second,
	Heartbeat:       3 * time.Second,
	Rebalance:       time.Minute,
	Revoke:          30 * time.Second,
	Shutdown:        30 * time.Second,
	RequestOverhead: 10 * time.Second,
	Commit:          time.Second,
	DLQWrite:        10 * time.Second,
}

var (
	errSinkDown = errors.New("sink unavailable")
	errAckLost  = errors.New("sink write timed out after it was applied")
)

// done is how the handler tells the recording middleware that it finished
// a good record (rather than the dead-letter router a bad one).
type done struct {
	ok      bool
	key     string
	seq     int64
	applied bool
}

type doneKey struct{}

// runMember runs one consumer until ctx is done and reports what it does
// with emit, which must be safe for concurrent use. It returns Run's error.
func runMember(ctx context.Context, cfg memberConfig, emit func(Event), log *slog.Logger) error {
	at := func(e Event) {
		e.Time = time.Now().UnixNano()
		emit(e)
	}
	t := cfg.Timing
	reg, err := serde.NewRegistry(cfg.Registry, serde.LookupTimeout(2*time.Second),
		serde.ClientOpts(sr.HTTPClient(&http.Client{Timeout: time.Second})))
	if err != nil {
		return err
	}
	codec, err := serde.NewAvro[reading](reg, readerSchema)
	if err != nil {
		return err
	}
	dlqOpts := []dlq.RouterOpt{
		dlq.SeedBrokers(cfg.Brokers...),
		// The workload's unknown schema IDs never appear: waiting the
		// default minute for them would outlast a scenario.
		dlq.UncertainFor(200 * time.Millisecond),
		dlq.Breaker(20, 0.5, time.Second),
		dlq.WithLogger(log),
	}
	if !cfg.Defaults {
		dlqOpts = append(dlqOpts, dlq.WriteTimeout(t.DLQWrite), dlq.ClientOpts(kgo.RequestTimeoutOverhead(t.RequestOverhead)))
	}
	router, err := dlq.New(dlqOpts...)
	if err != nil {
		return err
	}
	defer router.Close()

	var store *Store
	var strategy recovery.Strategy = recovery.NewStateless()
	if cfg.Group == GroupAdditive {
		if store, err = openStore(filepath.Join(cfg.Dir, "store"), cfg.Order); err != nil {
			return err
		}
		defer store.Close()
		opts := []recovery.SkipOpt{recovery.StartWithoutCheckpoint(kgo.NewOffset().AtStart()), recovery.WithLogger(log)}
		if store.outOfOrder {
			opts = append(opts, recovery.OutOfOrderStore())
		}
		strategy = recovery.NewCheckpointSkip(store, opts...)
	}

	rec := &recorder{at: at, inHand: make(map[int32]int)}
	h := &handler{at: at, slowEvery: cfg.SlowEvery, sink: &sinkControl{path: sinkControlPath(cfg.Dir)}, store: store}
	decode := serde.Handle(codec, h.apply)
	handler := consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		if len(r.Key) == 0 {
			return fault.MarkPoison(errNoKey)
		}
		return decode.Handle(ctx, r)
	})

	opts := []consumer.Opt{
		consumer.SeedBrokers(cfg.Brokers...),
		consumer.Topics(cfg.Topic),
		consumer.Group(cfg.Group),
		// The recorder sees what the strategy lets through, before the
		// router decides.
		consumer.With(strategy, consumer.PluginFunc(func(a *consumer.Attachment) error {
			a.Use(rec.middleware)
			a.Observe(&observer{topic: cfg.Topic, at: at, rec: rec})
			return nil
		}), router),
		consumer.WithLogger(log),
		consumer.Order(cfg.Order),
		consumer.Workers(8),
		consumer.MaxInFlight(2000),
		consumer.MaxInFlightPerPartition(200),
	}
	if !cfg.Defaults {
		opts = append(opts,
			consumer.CommitInterval(t.Commit),
			consumer.RevokeTimeout(t.Revoke),
			consumer.ShutdownTimeout(t.Shutdown),
			consumer.RetryBackoff(5*time.Millisecond, 100*time.Millisecond),
			consumer.ClientOpts(
				kgo.SessionTimeout(t.Session),
				kgo.HeartbeatInterval(t.Heartbeat),
				kgo.RebalanceTimeout(t.Rebalance),
				kgo.RequestTimeoutOverhead(t.RequestOverhead),
				kgo.FetchMaxWait(100*time.Millisecond),
			))
	}
	c, err := consumer.New(handler, opts...)
	if err != nil {
		return err
	}
	err = c.Run(ctx)
	fctx, cancel := context.WithTimeout(context.Background(), t.DLQWrite)
	defer cancel()
	return errors.Join(err, router.Flush(fctx))
}

// handler handles the decoded good records of a member.
type handler struct {
	at        func(Event)
	slowEvery int
	sink      *sinkControl
	store     *Store // the additive group's; nil for the stateless group
}

// apply checks a record, plays the sink's fault, adds the record to the
// store if there is one, and tells the recording middleware that it is
// done.
func (h *handler) apply(ctx context.Context, r *kgo.Record, v reading) error {
	if v.Key != string(r.Key) {
		return fault.MarkPoison(fmt.Errorf("value names key %q, the record has %q", v.Key, r.Key))
	}
	if h.slowEvery > 0 && r.Offset%int64(h.slowEvery) == 0 && !sleep(ctx, slowTime) {
		return ctx.Err()
	}
	mode := h.sink.current()
	switch mode {
	case sinkFail:
		h.at(Event{Kind: SinkFault, Text: string(mode)})
		return fault.MarkRetriable(errSinkDown)
	case sinkSlow:
		h.at(Event{Kind: SinkFault, Text: string(mode)})
		if !sleep(ctx, sinkDelay) {
			return ctx.Err()
		}
	}
	applied := true
	if h.store != nil {
		var err error
		if applied, err = h.store.Apply(ctx, r.Topic, r.Partition, r.Offset, v.Key, v.Amount); err != nil {
			return fault.MarkRetriable(err)
		}
	}
	if mode == sinkLostAck {
		h.at(Event{Kind: SinkFault, Text: string(mode)})
		return fault.MarkRetriable(errAckLost)
	}
	d := ctx.Value(doneKey{}).(*done)
	*d = done{ok: true, key: v.Key, seq: v.Seq, applied: applied}
	return nil
}

// recorder is the outermost middleware: once a record is done, it reports
// whether the handler finished it or the router dead-lettered it, before
// the Consumer may store its offset. It counts the records in hand by
// partition, so that a revoke or loss can tell which handlers it left
// running.
type recorder struct {
	at     func(Event)
	mu     sync.Mutex
	inHand map[int32]int
}

func (rc *recorder) hold(p int32, n int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.inHand[p] += n
}

// stuck returns the partitions of ps with a record in hand.
func (rc *recorder) stuck(ps []int32) []int32 {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []int32
	for _, p := range ps {
		if rc.inHand[p] > 0 {
			out = append(out, p)
		}
	}
	return out
}

func (rc *recorder) middleware(next consumer.Handler) consumer.Handler {
	at := rc.at
	return consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		rc.hold(r.Partition, 1)
		defer rc.hold(r.Partition, -1)
		d := new(done)
		if err := next.Handle(context.WithValue(ctx, doneKey{}, d), r); err != nil {
			return err
		}
		abandoned := ctx.Err() != nil
		if d.ok {
			at(Event{Kind: Handled, Partition: r.Partition, Offset: r.Offset, Key: d.key, Seq: d.seq, Applied: d.applied, Abandoned: abandoned})
		} else {
			at(Event{Kind: DeadLettered, Partition: r.Partition, Offset: r.Offset, Abandoned: abandoned})
		}
		return nil
	})
}

// observer reports rebalances and commits of the run's topic.
type observer struct {
	topic string
	at    func(Event)
	rec   *recorder
}

func (o *observer) Polled(kgo.FetchTopicPartition)               {}
func (o *observer) Handled(*kgo.Record, time.Duration, error)    {}
func (o *observer) Paused(topic string, partition int32, _ bool) {}

func (o *observer) Committed(offsets map[string]map[int32]int64, err error) {
	if len(offsets[o.topic]) == 0 && err == nil {
		return
	}
	o.at(Event{Kind: Committed, Offsets: offsets[o.topic], Failed: err != nil})
}

func (o *observer) Rebalanced(e consumer.Event, partitions map[string][]int32) {
	kind := map[consumer.Event]Kind{consumer.Assigned: Assigned, consumer.Revoked: Revoked, consumer.Lost: Lost}[e]
	ev := Event{Kind: kind, Partitions: partitions[o.topic]}
	if e != consumer.Assigned {
		// The Consumer tells of a revoke or loss once it stopped waiting
		// for the partitions' workers.
		ev.Stuck = o.rec.stuck(ev.Partitions)
	}
	o.at(ev)
}

// lineWriter writes events as lines, one write call each.
type lineWriter struct {
	mu  sync.Mutex
	w   interface{ Write([]byte) (int, error) }
	buf []byte
	err error
}

// maxText bounds an event's text so that its line stays below the size a
// pipe writes atomically.
const maxText = 1024

func (l *lineWriter) emit(e Event) {
	if len(e.Text) > maxText {
		e.Text = e.Text[:maxText]
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = AppendEvent(l.buf[:0], e)
	if _, err := l.w.Write(l.buf); err != nil && l.err == nil {
		l.err = err
	}
}
