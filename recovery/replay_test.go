package recovery_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
	"github.com/kconsumer/kconsumer/recovery"
)

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestFullReplayRefusesAGroup(t *testing.T) {
	_, err := consumer.New(newOffsetLog().handler(),
		consumer.Topics(topic), consumer.Group("g"), consumer.With(recovery.NewFullReplay()))
	if !errors.Is(err, recovery.ErrReplayGroup) || !errors.Is(err, consumer.ErrInvalidOption) {
		t.Fatalf("New = %v, want ErrReplayGroup wrapped in ErrInvalidOption", err)
	}
}

func TestStrategiesServeOneConsumer(t *testing.T) {
	for _, tc := range []struct {
		s     recovery.Strategy
		group string
	}{
		{recovery.NewFullReplay(), ""},
		{recovery.NewCheckpointSkip(recovery.NewMemoryStore(0)), "g"},
		{recovery.NewStateless(), "g"},
	} {
		opts := []consumer.Opt{consumer.Topics(topic), consumer.With(tc.s)}
		if tc.group != "" {
			opts = append(opts, consumer.Group(tc.group))
		}
		// A New that fails after the strategy attached does not keep it.
		refuse := consumer.PluginFunc(func(*consumer.Attachment) error { return errors.New("refused") })
		if _, err := consumer.New(newOffsetLog().handler(), append(opts, consumer.With(refuse))...); err == nil {
			t.Fatalf("%T: New with a refusing plugin succeeded", tc.s)
		}
		if _, err := consumer.New(newOffsetLog().handler(), opts...); err != nil {
			t.Fatalf("%T: first New: %v", tc.s, err)
		}
		if _, err := consumer.New(newOffsetLog().handler(), opts...); !errors.Is(err, recovery.ErrInUse) {
			t.Errorf("%T: second New = %v, want ErrInUse", tc.s, err)
		}
	}
}

// TestFullReplayCaughtUpOnlyAtStartHighWatermark holds the last record below
// one partition's start high watermark and checks that the replay is not
// caught up until it is handled, while records produced after the start
// never need to be.
func TestFullReplayCaughtUpOnlyAtStartHighWatermark(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 2, topic)
	produceTo(t, cluster, 0, 100)
	produceTo(t, cluster, 1, 60)
	s := recovery.NewFullReplay(recovery.WithLogger(quiet))
	gate := make(chan struct{})
	var handled, afterStart atomic.Int64
	errLater := errors.New("produced after start")
	h := consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		hwm := s.HighWatermarks()[r.Topic][r.Partition]
		switch {
		case r.Offset >= hwm:
			afterStart.Add(1)
			return errLater
		case r.Partition == 0 && r.Offset == hwm-1:
			select {
			case <-gate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		handled.Add(1)
		return nil
	})
	stop := kafkatest.Run(t, newConsumer(t, h, testOpts(cluster, "", s)...))
	kafkatest.WaitFor(t, 10*time.Second, "start", func() bool { return s.HighWatermarks() != nil })
	if want := (recovery.Offsets{topic: {0: 100, 1: 60}}); !maps.EqualFunc(s.HighWatermarks(), want, maps.Equal) {
		t.Fatalf("HighWatermarks = %v, want %v", s.HighWatermarks(), want)
	}
	produceTo(t, cluster, 1, 20)
	produceTo(t, cluster, 0, 20)
	kafkatest.WaitFor(t, 10*time.Second, "all but the held record", func() bool { return handled.Load() == 159 })
	kafkatest.WaitFor(t, 10*time.Second, "a record produced after start", func() bool { return afterStart.Load() > 0 })
	if isClosed(s.CaughtUp()) {
		t.Fatal("caught up with the last record below the start high watermark still in hand")
	}
	if err := s.Ready(); !errors.Is(err, recovery.ErrNotReady) {
		t.Fatalf("Ready = %v, want ErrNotReady", err)
	}
	close(gate)
	wait(t, s.CaughtUp(), 10*time.Second, "caught up")
	if err := s.Ready(); err != nil {
		t.Errorf("Ready after catching up = %v", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestFullReplayEmptyPartitionsAreCaughtUpAtOnce(t *testing.T) {
	t.Run("empty topic", func(t *testing.T) {
		cluster := kafkatest.NewCluster(t, 3, topic)
		s := recovery.NewFullReplay(recovery.WithLogger(quiet))
		kafkatest.Run(t, newConsumer(t, newOffsetLog().handler(), testOpts(cluster, "", s)...))
		wait(t, s.CaughtUp(), 10*time.Second, "caught up")
	})
	t.Run("deleted and empty partitions", func(t *testing.T) {
		cluster := kafkatest.NewCluster(t, 3, topic)
		produceTo(t, cluster, 1, 30)
		deleteBefore(t, cluster, 1, 30) // log start = high watermark = 30
		produceTo(t, cluster, 2, 10)
		s := recovery.NewFullReplay(recovery.WithLogger(quiet))
		gate := make(chan struct{})
		h := consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
			select {
			case <-gate:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		kafkatest.Run(t, newConsumer(t, h, testOpts(cluster, "", s)...))
		kafkatest.WaitFor(t, 10*time.Second, "start", func() bool { return s.HighWatermarks() != nil })
		if isClosed(s.CaughtUp()) {
			t.Fatal("caught up before partition 2 was replayed")
		}
		close(gate)
		wait(t, s.CaughtUp(), 10*time.Second, "caught up")
	})
}

// TestFullReplayPassesTransactionMarkers checks that a replay catches up when
// the last offset below the high watermark is a transaction marker, which
// never reaches the handler, for both isolation levels.
func TestFullReplayPassesTransactionMarkers(t *testing.T) {
	for _, tc := range []struct {
		name      string
		isolation kgo.IsolationLevel
		want      int // records handled: read-committed skips the aborted one
	}{
		{"read uncommitted", kgo.ReadUncommitted(), 3},
		{"read committed", kgo.ReadCommitted(), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cluster := kafkatest.NewCluster(t, 1, topic)
			txn := cluster.Client(t, kgo.TransactionalID("tx"), kgo.ProducerLinger(0))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for i, commit := range []kgo.TransactionEndTry{kgo.TryCommit, kgo.TryAbort, kgo.TryCommit} {
				if err := txn.BeginTransaction(); err != nil {
					t.Fatal(err)
				}
				if err := txn.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
					t.Fatal(err)
				}
				if err := txn.EndTransaction(ctx, commit); err != nil {
					t.Fatal(err)
				}
			}
			s := recovery.NewFullReplay(recovery.WithLogger(quiet))
			var mu sync.Mutex
			var values []string
			h := consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
				if r.Attrs.IsControl() {
					t.Errorf("the handler got a transaction marker at offset %d", r.Offset)
				}
				mu.Lock()
				values = append(values, string(r.Value))
				mu.Unlock()
				return nil
			})
			opts := testOpts(cluster, "", s, consumer.ClientOpts(kgo.FetchIsolationLevel(tc.isolation)))
			kafkatest.Run(t, newConsumer(t, h, opts...))
			wait(t, s.CaughtUp(), 10*time.Second, "caught up")
			if hwm := s.HighWatermarks()[topic][0]; hwm != 6 {
				t.Errorf("high watermark %d, want 6: three records and three markers", hwm)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(values) != tc.want {
				t.Errorf("handled %v, want %d records", values, tc.want)
			}
		})
	}
}

// memSnapshots is a Snapshotter for a last-value-per-key map.
type memSnapshots struct {
	mu      sync.Mutex
	state   *lastValues
	saved   map[string]string
	offsets recovery.Offsets
	saves   int
	onSave  func(state map[string]string, offsets recovery.Offsets)
}

// lastValues is the in-memory state of a replaying handler.
type lastValues struct {
	mu sync.Mutex
	m  map[string]string
}

func (l *lastValues) handler(log *offsetLog) consumer.Handler {
	return consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
		l.mu.Lock()
		l.m[string(r.Key)] = string(r.Value)
		l.mu.Unlock()
		log.add(r)
		return nil
	})
}

func (l *lastValues) copy() map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.m)
}

func (s *memSnapshots) Load(context.Context) (recovery.Offsets, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state.mu.Lock()
	s.state.m = maps.Clone(s.saved)
	if s.state.m == nil {
		s.state.m = make(map[string]string)
	}
	s.state.mu.Unlock()
	return s.offsets, nil
}

func (s *memSnapshots) Save(_ context.Context, offsets recovery.Offsets) error {
	state := s.state.copy()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.saved, s.offsets = state, offsets
	s.saves++
	if s.onSave != nil {
		s.onSave(state, offsets)
	}
	return nil
}

func (s *memSnapshots) last() (map[string]string, recovery.Offsets, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.saved, s.offsets, s.saves
}

// lastValuesBelow returns the last value per key of the records below
// offsets, by the records' own offsets.
func lastValuesBelow(recs []*kgo.Record, offsets recovery.Offsets) map[string]string {
	out := make(map[string]string)
	last := make(map[string]int64)
	for _, r := range recs {
		next, ok := offsets[r.Topic][r.Partition]
		if !ok || r.Offset >= next {
			continue
		}
		if o, seen := last[string(r.Key)]; !seen || r.Offset > o {
			last[string(r.Key)], out[string(r.Key)] = r.Offset, string(r.Value)
		}
	}
	return out
}

func TestFullReplayResumesFromSnapshot(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 2, topic)
	first := cluster.ProduceSeq(t, topic, 400, 20)
	snaps := &memSnapshots{state: &lastValues{}}

	s1 := recovery.NewFullReplay(recovery.Snapshots(snaps, time.Hour), recovery.WithLogger(quiet))
	log1 := newOffsetLog()
	stop := kafkatest.Run(t, newConsumer(t, snaps.state.handler(log1), testOpts(cluster, "", s1)...))
	wait(t, s1.CaughtUp(), 10*time.Second, "first run caught up")
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := s1.SaveSnapshot(context.Background()); err != nil {
		t.Fatalf("SaveSnapshot: %v", err)
	}
	state, offsets, _ := snaps.last()
	if !maps.EqualFunc(offsets, s1.HighWatermarks(), maps.Equal) {
		t.Fatalf("snapshot offsets %v, want the high watermarks %v", offsets, s1.HighWatermarks())
	}
	if want := lastValuesBelow(first, offsets); !maps.Equal(state, want) {
		t.Fatalf("snapshot state %v, want %v", state, want)
	}

	second := cluster.ProduceSeq(t, topic, 100, 30)
	s2 := recovery.NewFullReplay(recovery.Snapshots(snaps, time.Hour), recovery.WithLogger(quiet))
	log2 := newOffsetLog()
	stop = kafkatest.Run(t, newConsumer(t, snaps.state.handler(log2), testOpts(cluster, "", s2)...))
	wait(t, s2.CaughtUp(), 10*time.Second, "second run caught up")
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if log2.count() != len(second) {
		t.Errorf("second run handled %d records, want only the %d produced after the snapshot", log2.count(), len(second))
	}
	for p, next := range offsets[topic] {
		if got := log2.of(p); len(got) > 0 && got[0] < next {
			t.Errorf("partition %d: second run started at %d, below the snapshot's %d", p, got[0], next)
		}
	}
	all := append(first, second...)
	if got, want := snaps.state.copy(), lastValuesBelow(all, s2.HighWatermarks()); !maps.Equal(got, want) {
		t.Errorf("state after resuming %v, want %v", got, want)
	}
}

func TestFullReplaySavesASnapshotWhenStopped(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 2, topic)
	produced := cluster.ProduceSeq(t, topic, 200, 10)
	snaps := &memSnapshots{state: &lastValues{}}
	s := recovery.NewFullReplay(recovery.Snapshots(snaps, time.Hour), recovery.WithLogger(quiet))
	stop := kafkatest.Run(t, newConsumer(t, snaps.state.handler(newOffsetLog()), testOpts(cluster, "", s)...))
	wait(t, s.CaughtUp(), 10*time.Second, "caught up")
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	state, offsets, saves := snaps.last()
	if saves != 1 {
		t.Fatalf("%d snapshots saved by the time Run returned, want the last one only", saves)
	}
	if !maps.EqualFunc(offsets, s.HighWatermarks(), maps.Equal) {
		t.Errorf("last snapshot's offsets %v, want the high watermarks %v", offsets, s.HighWatermarks())
	}
	if want := lastValuesBelow(produced, offsets); !maps.Equal(state, want) {
		t.Errorf("last snapshot's state %v, want %v", state, want)
	}
}

// TestFullReplaySavesNoSnapshotWhenTheDrainTimesOut stops a Consumer whose
// handler hangs: no last snapshot is taken, as it would wait on the handler.
func TestFullReplaySavesNoSnapshotWhenTheDrainTimesOut(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic)
	produceTo(t, cluster, 0, 5)
	snaps := &memSnapshots{state: &lastValues{}}
	s := recovery.NewFullReplay(recovery.Snapshots(snaps, time.Hour), recovery.WithLogger(quiet))
	release, hung := make(chan struct{}), make(chan struct{})
	var once sync.Once
	h := consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
		if r.Offset == 2 {
			once.Do(func() { close(hung) })
			<-release
		}
		return nil
	})
	defer close(release)
	stop := kafkatest.Run(t, newConsumer(t, h, testOpts(cluster, "", s, consumer.ShutdownTimeout(100*time.Millisecond))...))
	wait(t, hung, 10*time.Second, "handler hung")
	if err := stop(); !errors.Is(err, consumer.ErrDrainTimeout) {
		t.Fatalf("Run = %v, want ErrDrainTimeout", err)
	}
	if _, _, saves := snaps.last(); saves != 0 {
		t.Errorf("%d snapshots saved, want none while a handler runs", saves)
	}
}

// TestFullReplayResumesAtTheSnapshotEveryStart resumes many times from one
// snapshot: the client must not read below it whatever stage its own
// positioning reached when the strategy moves it.
func TestFullReplayResumesAtTheSnapshotEveryStart(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 2, topic)
	produceTo(t, cluster, 0, 50)
	produceTo(t, cluster, 1, 50)
	deleteBefore(t, cluster, 1, 10)
	resume := recovery.Offsets{topic: {0: 30, 1: 40}}
	for i := range 25 {
		snaps := &memSnapshots{state: &lastValues{}, offsets: resume}
		s := recovery.NewFullReplay(recovery.Snapshots(snaps, time.Hour), recovery.WithLogger(quiet))
		log := newOffsetLog()
		stop := kafkatest.Run(t, newConsumer(t, log.handler(), testOpts(cluster, "", s)...))
		wait(t, s.CaughtUp(), 10*time.Second, "caught up")
		if err := stop(); err != nil {
			t.Fatalf("start %d: Run: %v", i, err)
		}
		for p, next := range resume[topic] {
			if got := log.of(p); !slices.Equal(got, span(next, 50)) {
				t.Fatalf("start %d: partition %d handled %v, want %d to 49", i, p, got, next)
			}
		}
	}
}

// TestFullReplaySnapshotsMatchTheirOffsets saves snapshots while the replay
// runs and checks each one's state is exactly the records below its offsets.
func TestFullReplaySnapshotsMatchTheirOffsets(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 3, topic)
	produced := cluster.ProduceSeq(t, topic, 3000, 50)
	var mu sync.Mutex
	var bad []string
	var midway atomic.Bool
	snaps := &memSnapshots{state: &lastValues{}}
	snaps.onSave = func(state map[string]string, offsets recovery.Offsets) {
		if want := lastValuesBelow(produced, offsets); !maps.Equal(state, want) {
			mu.Lock()
			bad = append(bad, "snapshot state does not match its offsets")
			mu.Unlock()
		}
		var n int64
		for _, ps := range offsets {
			for _, o := range ps {
				n += o
			}
		}
		if n > 0 && n < int64(len(produced)) {
			midway.Store(true)
		}
	}
	s := recovery.NewFullReplay(recovery.Snapshots(snaps, 2*time.Millisecond), recovery.WithLogger(quiet))
	log := newOffsetLog()
	inner := snaps.state.handler(log)
	// Hold the replay halfway, without holding a handler call, until a
	// snapshot shows it midway.
	h := consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		if log.count() >= len(produced)/2 && !midway.Load() {
			return errHeld
		}
		return inner.Handle(ctx, r)
	})
	stop := kafkatest.Run(t, newConsumer(t, h, testOpts(cluster, "", s)...))
	wait(t, s.CaughtUp(), 20*time.Second, "caught up")
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	_, _, saves := snaps.last()
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("%d of %d snapshots inconsistent", len(bad), saves)
	}
	if !midway.Load() {
		t.Fatal("no snapshot taken midway")
	}
}

func TestFullReplaySnapshotAheadFailsRun(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 2, topic)
	produceTo(t, cluster, 0, 10)
	snaps := &memSnapshots{state: &lastValues{}, offsets: recovery.Offsets{topic: {0: 5, 1: 3}}}
	s := recovery.NewFullReplay(recovery.Snapshots(snaps, time.Hour), recovery.WithLogger(quiet))
	c := newConsumer(t, newOffsetLog().handler(), testOpts(cluster, "", s)...)
	err := c.Run(context.Background())
	var ahead *recovery.AheadError
	if !errors.As(err, &ahead) {
		t.Fatalf("Run = %v, want an *AheadError", err)
	}
	if *ahead != (recovery.AheadError{Topic: topic, Partition: 1, Next: 3, HighWatermark: 0}) {
		t.Errorf("AheadError = %+v", *ahead)
	}
}

func TestFullReplaySnapshotBelowLogStart(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic)
	produceTo(t, cluster, 0, 100)
	deleteBefore(t, cluster, 0, 60)

	t.Run("reported, then resumed at the log start", func(t *testing.T) {
		snaps := &memSnapshots{state: &lastValues{}, offsets: recovery.Offsets{topic: {0: 20}}}
		var losses []recovery.DataLossError
		s := recovery.NewFullReplay(recovery.Snapshots(snaps, time.Hour), recovery.WithLogger(quiet),
			recovery.OnDataLoss(func(_ context.Context, e *recovery.DataLossError) error {
				losses = append(losses, *e)
				return nil
			}))
		log := newOffsetLog()
		kafkatest.Run(t, newConsumer(t, snaps.state.handler(log), testOpts(cluster, "", s)...))
		wait(t, s.CaughtUp(), 10*time.Second, "caught up")
		want := []recovery.DataLossError{{Topic: topic, Partition: 0, Next: 20, LogStart: 60}}
		if !slices.Equal(losses, want) || losses[0].Lost() != 40 {
			t.Errorf("data loss reported %+v, want %+v with 40 lost", losses, want)
		}
		if got := log.of(0); !slices.Equal(got, span(60, 100)) {
			t.Errorf("handled offsets %v, want 60 to 99", got)
		}
	})
	t.Run("refused", func(t *testing.T) {
		snaps := &memSnapshots{state: &lastValues{}, offsets: recovery.Offsets{topic: {0: 20}}}
		errStop := errors.New("stop on data loss")
		s := recovery.NewFullReplay(recovery.Snapshots(snaps, time.Hour), recovery.WithLogger(quiet),
			recovery.OnDataLoss(func(context.Context, *recovery.DataLossError) error { return errStop }))
		err := newConsumer(t, newOffsetLog().handler(), testOpts(cluster, "", s)...).Run(context.Background())
		if !errors.Is(err, errStop) {
			t.Fatalf("Run = %v, want the OnDataLoss error", err)
		}
	})
}
