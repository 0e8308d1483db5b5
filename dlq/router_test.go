package dlq_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/dlq"
	"github.com/kconsumer/kconsumer/fault"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
)

func TestPoisonRecordIsDeadLetteredOnceAndPartitionMovesOn(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic, dlqTopic)
	recs := make([]*kgo.Record, 8)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "%d", i)}
	}
	poison := recs[3]
	poison.Value = []byte("poison \x00\xff")
	poison.Key = nil
	poison.Headers = []kgo.RecordHeader{{Key: "trace", Value: []byte("abc")}, {Key: "dup", Value: []byte("1")}, {Key: "dup", Value: []byte("2")}, {Key: "empty"}}
	poison.Timestamp = time.UnixMilli(1_700_000_000_123)
	cluster.Produce(t, recs...)

	cause := errors.New("field km_tot: negative")
	h := newHandler(func(r *kgo.Record, _ int) error {
		if bytes.HasPrefix(r.Value, []byte("poison")) {
			return fmt.Errorf("handling: %w", fault.MarkPoison(cause))
		}
		return nil
	})
	router := newRouter(t, cluster)
	before := time.Now()
	stop := start(t, cluster, router, h)
	kafkatest.WaitFor(t, 20*time.Second, "offsets committed past the poison record", func() bool {
		return cluster.Committed(t, group, topic)[0] == int64(len(recs))
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	after := time.Now()

	var want []string
	for _, r := range recs {
		if r != poison {
			want = append(want, id(r))
		}
	}
	if got := h.handled(); !slices.Equal(got, want) {
		t.Errorf("handled %v, want the good records in order %v", got, want)
	}
	if n := h.callsOf(poison); n != 1 {
		t.Errorf("poison record handled %d times, want 1: poison is not retried", n)
	}
	letters := cluster.ReadAll(t, dlqTopic)
	if len(letters) != 1 {
		t.Fatalf("%d dead letters, want 1", len(letters))
	}
	l := letters[0]
	if l.Key != nil || !bytes.Equal(l.Value, poison.Value) {
		t.Errorf("dead letter key %q value %q, want the original nil key and value %q", l.Key, l.Value, poison.Value)
	}
	n := len(poison.Headers)
	if len(l.Headers) < n {
		t.Fatalf("dead letter has %d headers, fewer than the original %d", len(l.Headers), n)
	}
	for i, h := range poison.Headers {
		if g := l.Headers[i]; g.Key != h.Key || !bytes.Equal(g.Value, h.Value) {
			t.Errorf("header %d is %s=%q, want the original %s=%q", i, g.Key, g.Value, h.Key, h.Value)
		}
	}
	got := make(map[string]string)
	for _, h := range l.Headers[n:] {
		got[h.Key] = string(h.Value)
	}
	wantHeaders := map[string]string{
		dlq.HeaderTopic:     topic,
		dlq.HeaderPartition: "0",
		dlq.HeaderOffset:    "3",
		dlq.HeaderTimestamp: "1700000000123",
		dlq.HeaderGroup:     group,
		dlq.HeaderClass:     "poison",
		dlq.HeaderError:     "handling: poison: field km_tot: negative",
		dlq.HeaderAttempts:  "1",
	}
	for k, v := range wantHeaders {
		if got[k] != v {
			t.Errorf("header %s = %q, want %q", k, got[k], v)
		}
	}
	failedAt, err := strconv.ParseInt(got[dlq.HeaderFailedAt], 10, 64)
	if err != nil || failedAt < before.UnixMilli() || failedAt > after.UnixMilli() {
		t.Errorf("header %s = %q, want a Unix millisecond time during the test", dlq.HeaderFailedAt, got[dlq.HeaderFailedAt])
	}
	parsed, err := dlq.Parse(l)
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Topic != topic || parsed.Partition != 0 || parsed.Offset != 3 || parsed.Class != fault.Poison ||
		parsed.Attempts != 1 || !parsed.Timestamp.Equal(poison.Timestamp) || len(parsed.Headers) != n {
		t.Errorf("Parse = %+v, does not match the record", parsed)
	}
	if s := router.RouterStats(); s.DeadLettered != 1 || s.WriteFailures != 0 {
		t.Errorf("Stats = %+v, want 1 dead letter and no write failure", s)
	}
}

func TestRetriableErrorThatClearsIsNotDeadLettered(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic, dlqTopic)
	recs := produceValues(t, cluster, "a", "b", "flaky", "c", "d")
	flaky := recs[2]
	h := newHandler(func(r *kgo.Record, call int) error {
		if r.Offset == flaky.Offset && call <= 3 {
			return fault.MarkRetriable(errors.New("database unreachable"))
		}
		return nil
	})
	// MaxAttempts bounds unclassified errors only: a retriable one is
	// retried until it clears.
	router := newRouter(t, cluster, dlq.MaxAttempts(2))
	stop := start(t, cluster, router, h)
	kafkatest.WaitFor(t, 20*time.Second, "offsets committed past the flaky record", func() bool {
		return cluster.Committed(t, group, topic)[0] == int64(len(recs))
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := h.callsOf(flaky); n != 4 {
		t.Errorf("flaky record handled %d times, want 3 failures and 1 success", n)
	}
	want := []string{"0/0", "0/1", "0/2", "0/3", "0/4"}
	if got := h.handled(); !slices.Equal(got, want) {
		t.Errorf("handled %v, want each record once, in order: %v", got, want)
	}
	if n := total(cluster.EndOffsets(t, dlqTopic)); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
}

func TestUnclassifiedErrorsAndPanicsAreDeadLetteredAfterMaxAttempts(t *testing.T) {
	const deadTopic = "events-dead"
	cluster := kafkatest.NewCluster(t, 1, topic, deadTopic)
	recs := produceValues(t, cluster, "a", "fails", "b", "panics", "invalid", "c")
	errInvalid := errors.New("invalid reading")
	h := newHandler(func(r *kgo.Record, _ int) error {
		switch string(r.Value) {
		case "fails":
			return errors.New("mystery")
		case "panics":
			panic("nil map")
		case "invalid":
			return fmt.Errorf("checking: %w", errInvalid)
		}
		return nil
	})
	router := newRouter(t, cluster,
		dlq.MaxAttempts(3),
		dlq.DeadLetterTopic(func(string) string { return deadTopic }),
		dlq.Classify(func(err error) fault.Class {
			if errors.Is(err, errInvalid) {
				return fault.Poison
			}
			return fault.Unclassified
		}),
	)
	stop := start(t, cluster, router, h)
	kafkatest.WaitFor(t, 20*time.Second, "offsets committed to the end", func() bool {
		return cluster.Committed(t, group, topic)[0] == int64(len(recs))
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, c := range []struct {
		rec   *kgo.Record
		calls int
	}{{recs[1], 3}, {recs[3], 3}, {recs[4], 1}} {
		if n := h.callsOf(c.rec); n != c.calls {
			t.Errorf("record %q handled %d times, want %d", c.rec.Value, n, c.calls)
		}
	}
	letters := cluster.ReadAll(t, deadTopic)
	if len(letters) != 3 {
		t.Fatalf("%d dead letters, want 3", len(letters))
	}
	want := []struct {
		offset   int64
		class    fault.Class
		attempts int
		err      string
	}{
		{1, fault.Unclassified, 3, "mystery"},
		{3, fault.Poison, 3, "panic: nil map"},
		{4, fault.Poison, 1, "checking: invalid reading"},
	}
	for i, w := range want {
		l, err := dlq.Parse(letters[i])
		if err != nil {
			t.Fatal(err)
		}
		if l.Offset != w.offset || l.Class != w.class || l.Attempts != w.attempts || !strings.Contains(l.Error, w.err) {
			t.Errorf("dead letter %d: offset %d class %v attempts %d error %q; want %d %v %d containing %q",
				i, l.Offset, l.Class, l.Attempts, l.Error, w.offset, w.class, w.attempts, w.err)
		}
	}
}

func TestDeadLetterTopicFailureKeepsTheRecordUntilItRecovers(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic, dlqTopic)
	recs := produceValues(t, cluster, "a", "b", "poison", "c", "d")
	poison := recs[2]
	var failing atomic.Bool
	failing.Store(true)
	var rejected atomic.Int64
	failProduceTo(t, cluster, dlqTopic, failing.Load, &rejected)

	h := newHandler(func(r *kgo.Record, _ int) error {
		if string(r.Value) == "poison" {
			return fault.MarkPoison(errors.New("bad bytes"))
		}
		return nil
	})
	router := newRouter(t, cluster)
	stop := start(t, cluster, router, h)
	kafkatest.WaitFor(t, 20*time.Second, "dead-letter writes rejected three times", func() bool {
		return rejected.Load() >= 3
	})
	kafkatest.WaitFor(t, 20*time.Second, "offsets before the poison record committed", func() bool {
		return cluster.Committed(t, group, topic)[0] == poison.Offset
	})
	if got, want := h.handled(), []string{"0/0", "0/1"}; !slices.Equal(got, want) {
		t.Errorf("handled %v while the dead-letter topic failed, want only %v: later records must wait", got, want)
	}
	if c := cluster.Committed(t, group, topic)[0]; c != poison.Offset {
		t.Errorf("committed %d while the dead-letter write failed, want %d", c, poison.Offset)
	}
	if s := router.RouterStats(); s.WriteFailures < 3 || s.DeadLettered != 0 {
		t.Errorf("Stats = %+v, want at least 3 write failures and no dead letter", s)
	}

	failing.Store(false)
	kafkatest.WaitFor(t, 20*time.Second, "offsets committed to the end", func() bool {
		return cluster.Committed(t, group, topic)[0] == int64(len(recs))
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	letters := cluster.ReadAll(t, dlqTopic)
	if len(letters) != 1 || string(letters[0].Value) != "poison" {
		t.Fatalf("dead letters %v, want the poison record once", letters)
	}
	if n := h.callsOf(poison); n != 1 {
		t.Errorf("poison record handled %d times, want 1: a failed write is retried without handling again", n)
	}
	if got, want := h.handled(), []string{"0/0", "0/1", "0/3", "0/4"}; !slices.Equal(got, want) {
		t.Errorf("handled %v, want %v", got, want)
	}
}

func TestCrashAfterDeadLetterBeforeCommitDuplicatesAtMostOnce(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic, dlqTopic)
	recs := produceValues(t, cluster, "a", "b", "poison", "c")
	poison := recs[2]
	commits := cluster.CountRequests(kmsg.OffsetCommit)
	restore := cluster.RejectCommits()
	fail := func(r *kgo.Record, _ int) error {
		if string(r.Value) == "poison" {
			return fault.MarkPoison(errors.New("bad bytes"))
		}
		return nil
	}

	first := newHandler(fail)
	router := newRouter(t, cluster)
	stop := start(t, cluster, router, first)
	kafkatest.WaitFor(t, 20*time.Second, "the good records handled", func() bool { return len(first.handled()) == 3 })
	seen := commits.Load()
	kafkatest.WaitFor(t, 20*time.Second, "a commit after that rejected", func() bool { return commits.Load() > seen })
	if n := total(cluster.EndOffsets(t, dlqTopic)); n != 1 {
		t.Fatalf("%d dead letters before the crash, want 1", n)
	}
	// The consumer stops without committing anything: as far as the
	// group knows, it crashed after the dead letter was acknowledged.
	if err := stop(); err == nil {
		t.Error("Run returned nil although its final commit was rejected")
	}
	router.Close()
	if c, ok := cluster.Committed(t, group, topic)[0]; ok {
		t.Fatalf("committed %d although every commit was rejected", c)
	}

	restore()
	second := newHandler(fail)
	stop = start(t, cluster, newRouter(t, cluster), second)
	kafkatest.WaitFor(t, 20*time.Second, "offsets committed to the end after the restart", func() bool {
		return cluster.Committed(t, group, topic)[0] == int64(len(recs))
	})
	if err := stop(); err != nil {
		t.Fatalf("Run after restart: %v", err)
	}
	if second.callsOf(poison) != 1 {
		t.Fatalf("the poison record was handled %d times after the restart, want 1", second.callsOf(poison))
	}
	var copies int
	for _, l := range cluster.ReadAll(t, dlqTopic) {
		if p, err := dlq.Parse(l); err == nil && p.Offset == poison.Offset {
			copies++
		}
	}
	// Redelivered once, dead-lettered once more: one duplicate, never zero.
	if copies != 2 {
		t.Errorf("%d dead letters of the poison record, want 2 (the original and one duplicate)", copies)
	}
}

func TestBreakerOpensOnSystemicFailureAndResumes(t *testing.T) {
	const partitions, n, window = 3, 30, 4
	cluster := kafkatest.NewCluster(t, partitions, topic, dlqTopic)
	recs := cluster.ProduceSeq(t, topic, n, 10)
	var failing atomic.Bool
	failing.Store(true)
	h := newHandler(func(*kgo.Record, int) error {
		if failing.Load() {
			return errors.New("database unreachable")
		}
		return nil
	})
	var mu sync.Mutex
	var changes []string
	router := newRouter(t, cluster,
		dlq.MaxAttempts(2),
		dlq.Breaker(window, 0.5, 50*time.Millisecond),
		dlq.OnBreakerChange(func(from, to fault.BreakerState) {
			mu.Lock()
			changes = append(changes, from.String()+">"+to.String())
			mu.Unlock()
		}),
	)
	stop := start(t, cluster, router, h)
	kafkatest.WaitFor(t, 20*time.Second, "the breaker to open and two probes to fail", func() bool {
		return router.RouterStats().BreakerOpens >= 3
	})
	// The failure that opens the breaker is held, not dead-lettered; the
	// failures before it may still be on their way to the broker.
	kafkatest.WaitFor(t, 20*time.Second, "the failures before the opening dead-lettered", func() bool {
		return router.RouterStats().DeadLettered >= window-1
	})
	if s := router.RouterStats(); s.DeadLettered != window-1 {
		t.Errorf("%d dead letters with the breaker open, want %d", s.DeadLettered, window-1)
	}
	if d := total(cluster.EndOffsets(t, dlqTopic)); d != window-1 {
		t.Errorf("dead-letter topic holds %d records, want %d", d, window-1)
	}
	// Consumption paused: besides the dead-lettered records, at most the
	// record in hand on each partition was tried.
	if tried := h.tried(); tried > window-1+partitions {
		t.Errorf("%d records tried while failing, want at most %d", tried, window-1+partitions)
	}

	failing.Store(false)
	ends := cluster.EndOffsets(t, topic)
	kafkatest.WaitFor(t, 20*time.Second, "offsets committed to the end once the failure cleared", func() bool {
		c := cluster.Committed(t, group, topic)
		for p, end := range ends {
			if c[p] != end {
				return false
			}
		}
		return true
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if s := router.RouterStats(); s.Breaker != fault.BreakerClosed || s.DeadLettered != window-1 {
		t.Errorf("Stats = %+v, want a closed breaker and still %d dead letters", s, window-1)
	}
	done := make(map[string]bool)
	for _, s := range h.handled() {
		done[s] = true
	}
	for _, l := range cluster.ReadAll(t, dlqTopic) {
		p, err := dlq.Parse(l)
		if err != nil {
			t.Fatal(err)
		}
		done[fmt.Sprintf("%d/%d", p.Partition, p.Offset)] = true
	}
	for _, r := range recs {
		if !done[id(r)] {
			t.Errorf("record %s neither handled nor dead-lettered", id(r))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(changes) < 5 || changes[0] != "closed>open" || changes[1] != "open>half-open" || changes[len(changes)-1] != "half-open>closed" {
		t.Errorf("breaker changes %v, want closed>open, open>half-open, ..., half-open>closed", changes)
	}
}

func TestShutdownDuringBackoffIsPromptAndCommitsNothingPastTheFailure(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic, dlqTopic)
	recs := produceValues(t, cluster, "a", "b", "flaky", "c", "d")
	flaky := recs[2]
	h := newHandler(func(r *kgo.Record, _ int) error {
		if r.Offset == flaky.Offset {
			return fault.MarkRetriable(errors.New("timeout"))
		}
		return nil
	})
	router := newRouter(t, cluster)
	// A backoff of at least 30 s: the test fails if shutdown waits it out.
	stop := start(t, cluster, router, h, consumer.RetryBackoff(time.Minute, time.Minute))
	kafkatest.WaitFor(t, 20*time.Second, "the flaky record to fail once", func() bool { return h.callsOf(flaky) == 1 })
	began := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("shutdown took %v during a backoff of at least 30s", took)
	}
	if c := cluster.Committed(t, group, topic)[0]; c != flaky.Offset {
		t.Errorf("committed %d, want %d: the records before the failing one, nothing past it", c, flaky.Offset)
	}
	if got, want := h.handled(), []string{"0/0", "0/1"}; !slices.Equal(got, want) {
		t.Errorf("handled %v, want %v", got, want)
	}
}

func TestWriteTimeoutBoundsAnUnansweredWrite(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic, dlqTopic)
	recs := produceValues(t, cluster, "a", "poison", "b")
	info := cluster.TopicInfo(dlqTopic)
	var hang atomic.Bool
	hang.Store(true)
	var sent atomic.Int64 // dead-letter produce requests the broker received
	cluster.ControlKey(kmsg.Produce.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		for _, rt := range req.(*kmsg.ProduceRequest).Topics {
			if rt.Topic == dlqTopic || rt.TopicID == info.TopicID {
				sent.Add(1)
				if hang.Load() {
					return nil, nil, true // never answered: the client times it out
				}
			}
		}
		return nil, nil, false
	})
	h := newHandler(func(r *kgo.Record, _ int) error {
		if string(r.Value) == "poison" {
			return fault.MarkPoison(errors.New("bad bytes"))
		}
		return nil
	})
	// kgo waits up to 5 s for the answer of a produce request it sent.
	router := newRouter(t, cluster, dlq.WriteTimeout(200*time.Millisecond), dlq.ClientOpts(
		kgo.ProduceRequestTimeout(2*time.Second), kgo.RequestTimeoutOverhead(3*time.Second)))
	stop := start(t, cluster, router, h)
	// The first writes may time out before the client has even sent a
	// request (metadata, producer ID); count from the first one sent.
	kafkatest.WaitFor(t, 20*time.Second, "a dead-letter request sent", func() bool { return sent.Load() >= 1 })
	failed := router.RouterStats().WriteFailures
	kafkatest.WaitFor(t, 20*time.Second, "three timed-out writes", func() bool { return router.RouterStats().WriteFailures >= failed+3 })
	if n := sent.Load(); n != 1 {
		t.Fatalf("the broker saw %d dead-letter requests while three writes timed out, want 1: each write waited for the unanswered request", n)
	}
	kafkatest.WaitFor(t, 20*time.Second, "the records before the poison one committed", func() bool {
		return cluster.Committed(t, group, topic)[0] == recs[1].Offset
	})
	hang.Store(false)
	kafkatest.WaitFor(t, 30*time.Second, "offsets committed to the end", func() bool {
		return cluster.Committed(t, group, topic)[0] == int64(len(recs))
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if letters := cluster.ReadAll(t, dlqTopic); len(letters) == 0 {
		t.Fatal("no dead letter after the broker answered again")
	}
}

// TestARunOfPoisonNeverOpensTheBreaker: records marked poison are the
// records' own fault, not a systemic one, so a run of them, with no good
// record between them, is dead-lettered at full speed and never opens the
// breaker, however small its window.
func TestARunOfPoisonNeverOpensTheBreaker(t *testing.T) {
	const window = 4
	cluster := kafkatest.NewCluster(t, 1, topic, dlqTopic)
	recs := produceValues(t, cluster, "a", "poison", "poison", "poison", "poison", "b", "c", "d")
	h := newHandler(func(r *kgo.Record, _ int) error {
		if string(r.Value) == "poison" {
			return fault.MarkPoison(errors.New("bad bytes"))
		}
		return nil
	})
	router := newRouter(t, cluster, dlq.Breaker(window, 0.5, time.Hour))
	stop := start(t, cluster, router, h)
	kafkatest.WaitFor(t, 30*time.Second, "the partition committed to its end", func() bool {
		return cluster.Committed(t, group, topic)[0] == int64(len(recs))
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got, want := h.handled(), []string{"0/0", "0/5", "0/6", "0/7"}; !slices.Equal(got, want) {
		t.Errorf("handled %v, want %v", got, want)
	}
	letters := cluster.ReadAll(t, dlqTopic)
	var offsets []string
	for _, l := range letters {
		offsets = append(offsets, string(l.Headers[slices.IndexFunc(l.Headers, func(h kgo.RecordHeader) bool { return h.Key == dlq.HeaderOffset })].Value))
	}
	if want := []string{"1", "2", "3", "4"}; !slices.Equal(offsets, want) {
		t.Errorf("dead letters of offsets %v, want %v, once each", offsets, want)
	}
	s := router.RouterStats()
	if s.BreakerOpens != 0 || s.Breaker != fault.BreakerClosed {
		t.Errorf("breaker opened %d times, now %v; want never opened", s.BreakerOpens, s.Breaker)
	}
	if s.DeadLettered != 4 || s.DeadLetteredByClass[fault.Poison] != 4 {
		t.Errorf("Stats = %+v, want 4 dead letters, all poison", s)
	}
}

// TestRouterAttachesAgainAfterAFailedNew: when consumer.New fails after the
// Router attached (a later plugin refuses), the Router lets go of the
// producer it created, and a Consumer it is attached to next writes dead
// letters with a producer of its own.
func TestRouterAttachesAgainAfterAFailedNew(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic, dlqTopic)
	// No SeedBrokers: the Router connects when it attaches.
	router, err := dlq.New(dlq.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(router.Close)
	h := newHandler(func(r *kgo.Record, _ int) error {
		if bytes.Equal(r.Value, []byte("poison")) {
			return fault.MarkPoison(errors.New("bad"))
		}
		return nil
	})
	refuse := consumer.PluginFunc(func(*consumer.Attachment) error { return errors.New("refused") })
	if _, err := consumer.New(h, consumerOpts(cluster, router, consumer.With(refuse))...); err == nil ||
		!strings.Contains(err.Error(), "refused") {
		t.Fatalf("New with a refusing plugin returned %v, want its error", err)
	}

	produceValues(t, cluster, "ok", "poison", "ok")
	stop := start(t, cluster, router, h)
	kafkatest.WaitFor(t, 20*time.Second, "offsets committed past the poison record", func() bool {
		return cluster.Committed(t, group, topic)[0] == 3
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if s := router.RouterStats(); s.DeadLettered != 1 || s.WriteFailures != 0 {
		t.Errorf("Stats = %+v, want 1 dead letter and no write failure", s)
	}
	if got := values(cluster.ReadAll(t, dlqTopic)); !slices.Equal(got, []string{"poison"}) {
		t.Errorf("dead letters %v, want [poison]", got)
	}
}
