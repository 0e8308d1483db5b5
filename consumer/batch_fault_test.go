package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/dlq"
	"github.com/kconsumer/kconsumer/fault"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
)

// watchEarlyCommits checks every commit request the broker receives: none
// may name an offset past a record that a call of one of the logs had done
// and was about to return nil for. It returns the number of violations
// and of commit requests checked.
func watchEarlyCommits(cluster *kafkatest.Cluster, logs ...*batchLog) (early, checked *atomic.Int64) {
	early, checked = new(atomic.Int64), new(atomic.Int64)
	cluster.ControlKey(kmsg.OffsetCommit.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		r := req.(*kmsg.OffsetCommitRequest)
		checked.Add(1)
		for _, t := range r.Topics { // one topic: named by ID in newer requests
			for _, p := range t.Partitions {
				done := int64(-1)
				for _, l := range logs {
					l.mu.Lock()
					if s, ok := l.succeeded[p.Partition]; ok && s > done {
						done = s
					}
					l.mu.Unlock()
				}
				if p.Offset > done+1 {
					early.Add(1)
				}
			}
		}
		return nil, nil, false
	})
	return early, checked
}

func TestBatchCrashLosesNothingAndCommitsNoRecordBeforeItsBatch(t *testing.T) {
	for _, mode := range batchModes {
		t.Run(mode.name, func(t *testing.T) {
			cluster := kafkatest.NewCluster(t, 4, topic)
			produced := cluster.ProduceSeq(t, topic, 4000, 100)
			slow := func([]*kgo.Record) error {
				time.Sleep(2 * time.Millisecond) // keep a backlog until the crash
				return nil
			}
			first, second := newBatchLog(slow), newBatchLog(nil)
			early, checked := watchEarlyCommits(cluster, first, second)
			opts := append([]consumer.Opt{consumer.BatchMaxRecords(25), consumer.CommitInterval(100 * time.Millisecond)}, mode.opts...)

			// First run: batches are done and committed; then the broker
			// refuses commits, more batches are done, and the consumer
			// stops without any of those reaching the broker: a crash.
			c1 := newBatch(t, first, testOpts(cluster, "g", opts...)...)
			stop1 := kafkatest.Run(t, c1)
			kafkatest.WaitFor(t, 20*time.Second, "some commits", func() bool { return len(cluster.Committed(t, "g", topic)) == 4 })
			restore := cluster.RejectCommits()
			n := first.total()
			kafkatest.WaitFor(t, 20*time.Second, "batches done after the last commit", func() bool { return first.total() >= n+200 })
			if err := stop1(); err == nil {
				t.Fatal("Run returned nil although its final commit was rejected")
			}
			restore()
			committed := cluster.Committed(t, "g", topic)

			// Second run in the same group: it starts at the last commit of
			// every partition and handles the rest.
			c2 := newBatch(t, second, testOpts(cluster, "g", opts...)...)
			stop2 := kafkatest.Run(t, c2)
			want := expectedOffsets(produced)
			remaining := 0
			for p, offs := range want {
				remaining += int(offs[len(offs)-1] + 1 - committed[p])
			}
			kafkatest.WaitFor(t, 20*time.Second, "the rest done", func() bool { return second.total() >= remaining })
			if err := stop2(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			firstDone, secondDone := first.offsets(), second.offsets()
			redelivered := 0
			for p, offs := range want {
				got := secondDone[p]
				if end := offs[len(offs)-1] + 1; committed[p] < end && (len(got) == 0 || got[0] != committed[p]) {
					t.Fatalf("partition %d: restart began at %v, want the last commit %d", p, got[:min(1, len(got))], committed[p])
				}
				for _, o := range firstDone[p] {
					if o >= committed[p] {
						redelivered++
					}
				}
				union := append(slices.Clone(firstDone[p][:committedPrefix(firstDone[p], committed[p])]), got...)
				if fmt.Sprint(union) != fmt.Sprint(offs) {
					t.Fatalf("partition %d: records lost or out of order across the crash", p)
				}
			}
			if redelivered == 0 {
				t.Fatal("the crash re-delivered nothing: the scenario did not exercise a crash after uncommitted work")
			}
			if n := early.Load(); n > 0 {
				t.Fatalf("%d commits named a record whose batch had not succeeded", n)
			}
			t.Logf("re-delivered %d records done after the last commit; %d commit requests checked", redelivered, checked.Load())
		})
	}
}

func TestBatchPoisonIsDeadLetteredAndTheRestHandled(t *testing.T) {
	for _, mode := range batchModes {
		t.Run(mode.name, func(t *testing.T) {
			cluster := kafkatest.NewCluster(t, 2, topic, topic+".dlq")
			produced := cluster.ProduceSeq(t, topic, 400, 40)
			poison := func(r *kgo.Record) bool { v, _ := strconv.Atoi(string(r.Value)); return v%37 == 5 }
			var bad []string
			for _, r := range produced {
				if poison(r) {
					bad = append(bad, fmt.Sprintf("%d/%d", r.Partition, r.Offset))
				}
			}
			var failed sync.Map // poison records the handler failed, with the count
			log := newBatchLog(func(recs []*kgo.Record) error {
				for i, r := range recs {
					if poison(r) {
						n, _ := failed.LoadOrStore(fmt.Sprintf("%d/%d", r.Partition, r.Offset), new(atomic.Int64))
						n.(*atomic.Int64).Add(1)
						return &consumer.BatchError{Index: i, Err: fault.MarkPoison(errors.New("cannot decode"))}
					}
				}
				return nil
			})
			router, err := dlq.New(dlq.WithLogger(slog.New(slog.DiscardHandler)))
			if err != nil {
				t.Fatal(err)
			}
			c := newBatch(t, log, testOpts(cluster, "g", append([]consumer.Opt{
				consumer.With(router),
				consumer.BatchMaxRecords(50),
				consumer.CommitInterval(100 * time.Millisecond),
			}, mode.opts...)...)...)
			stop := kafkatest.Run(t, c)
			kafkatest.WaitFor(t, 20*time.Second, "every good record done", func() bool { return log.total() >= len(produced)-len(bad) })
			kafkatest.WaitFor(t, 20*time.Second, "the end committed", func() bool {
				got := cluster.Committed(t, "g", topic)
				return got[0]+got[1] == int64(len(produced))
			})
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if n := log.total(); n != len(produced)-len(bad) {
				t.Fatalf("%d records done, want the %d good ones once each", n, len(produced)-len(bad))
			}
			var letters []string
			for _, l := range cluster.ReadAll(t, topic+".dlq") {
				var p, o string
				for _, h := range l.Headers {
					switch h.Key {
					case dlq.HeaderPartition:
						p = string(h.Value)
					case dlq.HeaderOffset:
						o = string(h.Value)
					}
				}
				letters = append(letters, p+"/"+o)
			}
			slices.Sort(letters)
			slices.Sort(bad)
			if fmt.Sprint(letters) != fmt.Sprint(bad) {
				t.Fatalf("dead letters for %v, want one for each poison record %v", letters, bad)
			}
			// Each poison record failed once, in its batch: the router
			// dead-lettered it on the batch's error, without another call.
			failed.Range(func(k, n any) bool {
				if n := n.(*atomic.Int64).Load(); n != 1 {
					t.Errorf("poison record %v failed %d times, want once", k, n)
				}
				return true
			})
		})
	}
}

// A revokeCase runs member a until it did the topic's first 200 records,
// then makes a's calls wait for release, ignoring their context, and
// produces 200 more. Once a holds a batch, member b joins, so that a revoke
// of one of a's partitions comes while its batch is in hand.
type revokeCase struct {
	a, b      *batchLog
	release   chan struct{}
	revokedAt atomic.Int64
	revoked   atomic.Int32 // the revoked partition + 1
	ca        *consumer.Consumer
	stopA     func() error
	stopB     func() error
}

func startRevokeCase(t *testing.T, cluster *kafkatest.Cluster, aOpts, opts []consumer.Opt) *revokeCase {
	t.Helper()
	rc := &revokeCase{release: make(chan struct{})}
	var blocking atomic.Bool
	inHand := make(chan struct{}, 1)
	rc.a = newBatchLog(func(recs []*kgo.Record) error {
		if blocking.Load() {
			select {
			case inHand <- struct{}{}:
			default:
			}
			<-rc.release
		}
		return nil
	})
	ca := newBatch(t, rc.a, testOpts(cluster, "g", append(append([]consumer.Opt{
		consumer.BatchMaxRecords(10),
		consumer.CommitInterval(100 * time.Millisecond),
		consumer.OnRevoked(func(_ context.Context, ps map[string][]int32) {
			if len(ps[topic]) > 0 && rc.revokedAt.Load() == 0 {
				rc.revoked.Store(ps[topic][0] + 1)
				rc.revokedAt.Store(time.Now().UnixNano())
			}
		}),
	}, aOpts...), opts...)...)...)
	rc.ca, rc.stopA = ca, kafkatest.Run(t, ca)
	kafkatest.WaitFor(t, 20*time.Second, "a to do the first records", func() bool { return rc.a.total() >= 200 })
	kafkatest.WaitFor(t, 20*time.Second, "a to commit them", func() bool {
		got := cluster.Committed(t, "g", topic)
		return got[0]+got[1] == 200
	})
	blocking.Store(true)
	cluster.ProduceSeq(t, topic, 200, 20)
	kafkatest.WaitClosed(t, 20*time.Second, "a to hold a batch", chanOf(inHand))
	rc.b = newBatchLog(nil)
	cb := newBatch(t, rc.b, testOpts(cluster, "g", append([]consumer.Opt{
		consumer.BatchMaxRecords(10),
		consumer.CommitInterval(100 * time.Millisecond),
	}, opts...)...)...)
	rc.stopB = kafkatest.Run(t, cb)
	return rc
}

// chanOf returns a channel closed once ch receives.
func chanOf(ch <-chan struct{}) <-chan struct{} {
	out := make(chan struct{})
	go func() { <-ch; close(out) }()
	return out
}

// revokeOpts are a mode's options for the revoke tests: across partitions,
// a batch lingers for the records of both, so that the revoked partition
// has records in the batch in hand whichever it is.
func revokeOpts(opts []consumer.Opt) []consumer.Opt {
	if len(opts) == 0 {
		return nil
	}
	return append(slices.Clone(opts), consumer.BatchMaxRecords(1000), consumer.BatchLinger(300*time.Millisecond))
}

func TestBatchRevokeWaitsForTheBatchInHand(t *testing.T) {
	for _, mode := range batchModes {
		t.Run(mode.name, func(t *testing.T) {
			cluster := kafkatest.NewCluster(t, 2, topic)
			cluster.ProduceSeq(t, topic, 200, 20)
			rc := startRevokeCase(t, cluster, []consumer.Opt{consumer.RevokeTimeout(time.Minute)}, revokeOpts(mode.opts))
			// The revoke took the partition's runner and waits for it.
			kafkatest.WaitFor(t, 20*time.Second, "the revoke to begin", func() bool { return rc.ca.Stats().Partitions == 1 })
			time.Sleep(300 * time.Millisecond)
			if rc.revokedAt.Load() != 0 {
				t.Fatal("the revoke finished while a's batch was in hand")
			}
			released := time.Now().UnixNano()
			close(rc.release)
			kafkatest.WaitFor(t, 20*time.Second, "the revoke to finish", func() bool { return rc.revokedAt.Load() != 0 })
			if at := rc.revokedAt.Load(); at < released {
				t.Fatalf("revoked at %d, released at %d: the revoke did not wait for the batch", at, released)
			}
			cluster.ProduceSeq(t, topic, 100, 20) // more for both members
			kafkatest.WaitFor(t, 30*time.Second, "every record done", func() bool { return rc.a.total()+rc.b.total() >= 500 })
			if err := rc.stopA(); err != nil {
				t.Fatalf("Run a: %v", err)
			}
			if err := rc.stopB(); err != nil {
				t.Fatalf("Run b: %v", err)
			}
			// The batch in hand was finished and committed before the
			// partition moved: no record was done twice.
			a, b := rc.a.offsets(), rc.b.offsets()
			for p := range int32(2) {
				all := append(slices.Clone(a[p]), b[p]...)
				slices.Sort(all)
				if len(all) == 0 || fmt.Sprint(all) != fmt.Sprint(span(0, all[len(all)-1]+1)) {
					t.Fatalf("partition %d: records done %v, want each once", p, all)
				}
			}
			if b[rc.revoked.Load()-1] == nil {
				t.Fatal("b did no record of the revoked partition")
			}
		})
	}
}

func TestBatchAbandonedAtRevokeTimeoutStoresNothing(t *testing.T) {
	for _, mode := range batchModes {
		t.Run(mode.name, func(t *testing.T) {
			cluster := kafkatest.NewCluster(t, 2, topic)
			cluster.ProduceSeq(t, topic, 200, 20)
			rc := startRevokeCase(t, cluster, []consumer.Opt{consumer.RevokeTimeout(300 * time.Millisecond)}, revokeOpts(mode.opts))
			kafkatest.WaitFor(t, 30*time.Second, "the revoke to give up on a's batch", func() bool { return rc.revokedAt.Load() != 0 })
			p := rc.revoked.Load() - 1
			end := cluster.EndOffsets(t, topic)[p]
			kafkatest.WaitFor(t, 30*time.Second, "b to do the revoked partition", func() bool {
				return cluster.Committed(t, "g", topic)[p] == end
			})
			// a's call returns nil now, long after the revoke gave up on
			// it: nothing of that batch may be stored or committed.
			close(rc.release)
			time.Sleep(500 * time.Millisecond) // several commit intervals
			if got := cluster.Committed(t, "g", topic)[p]; got != end {
				t.Fatalf("partition %d committed at %d after a's abandoned batch returned, want %d", p, got, end)
			}
			if err := rc.stopA(); err != nil {
				t.Fatalf("Run a: %v", err)
			}
			if got := cluster.Committed(t, "g", topic)[p]; got != end {
				t.Fatalf("partition %d committed at %d after a stopped, want %d", p, got, end)
			}
			if err := rc.stopB(); err != nil {
				t.Fatalf("Run b: %v", err)
			}
			// b started where a's last commit was: before the abandoned
			// batch, which it did again.
			if got := rc.b.offsets()[p]; len(got) == 0 || got[0] >= rc.a.offsets()[p][len(rc.a.offsets()[p])-1] {
				t.Fatalf("b did %v of partition %d; it must redo a's abandoned batch", got[:min(3, len(got))], p)
			}
		})
	}
}

func TestBatchLostMidBatchStoresNothing(t *testing.T) {
	for _, mode := range batchModes {
		t.Run(mode.name, func(t *testing.T) {
			cluster := kafkatest.NewCluster(t, 2, topic)
			cluster.ProduceSeq(t, topic, 200, 10)
			commits := cluster.CountRequests(kmsg.OffsetCommit)
			var (
				firstCall  atomic.Bool
				cancelled  = make(chan struct{})
				lost       = make(chan struct{})
				lostOnce   sync.Once
				assigned   atomic.Int64
				inHandOnce sync.Once
				inHand     = make(chan struct{})
			)
			log := newBatchLog(nil)
			h := consumer.BatchHandlerFunc(func(ctx context.Context, recs []*kgo.Record) error {
				if firstCall.CompareAndSwap(false, true) {
					inHandOnce.Do(func() { close(inHand) })
					<-ctx.Done() // the batch in hand when the partitions are lost
					close(cancelled)
					return ctx.Err()
				}
				return log.HandleBatch(ctx, recs)
			})
			c := newBatch(t, h, testOpts(cluster, "g", append([]consumer.Opt{
				consumer.CommitInterval(time.Hour),
				consumer.OnAssigned(func(context.Context, map[string][]int32) { assigned.Add(1) }),
				consumer.OnLost(func(context.Context, map[string][]int32) { lostOnce.Do(func() { close(lost) }) }),
			}, mode.opts...)...)...)
			stop := kafkatest.Run(t, c)
			kafkatest.WaitClosed(t, 20*time.Second, "a batch in hand", inHand)
			cluster.ControlKey(kmsg.Heartbeat.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
				resp := req.(*kmsg.HeartbeatRequest).ResponseKind().(*kmsg.HeartbeatResponse)
				resp.ErrorCode = kerr.UnknownMemberID.Code
				return resp, nil, true
			})
			kafkatest.WaitClosed(t, 20*time.Second, "the partitions lost", lost)
			kafkatest.WaitClosed(t, 20*time.Second, "the batch's context cancelled", cancelled)
			kafkatest.WaitFor(t, 20*time.Second, "the member to rejoin", func() bool { return assigned.Load() >= 2 })
			if n := commits.Load(); n != 0 {
				t.Fatalf("%d commits sent around lost partitions, want none", n)
			}
			kafkatest.WaitFor(t, 20*time.Second, "every record done after rejoining", func() bool { return log.total() >= 200 })
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got := cluster.Committed(t, "g", topic); got[0]+got[1] != 200 {
				t.Fatalf("committed %v after a graceful stop, want the end of both partitions", got)
			}
		})
	}
}

func TestBatchBackpressureBoundsBufferedRecords(t *testing.T) {
	for _, mode := range batchModes {
		t.Run(mode.name, func(t *testing.T) {
			cluster := kafkatest.NewCluster(t, 4, topic)
			const produced = 20_000
			for range produced / 5000 {
				cluster.ProduceSeq(t, topic, 5000, 1000)
			}
			const maxInFlight, perPartition = 200, 40
			release := make(chan struct{})
			var handled atomic.Int64
			h := consumer.BatchHandlerFunc(func(ctx context.Context, recs []*kgo.Record) error {
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
				handled.Add(int64(len(recs)))
				return nil
			})
			c := newBatch(t, h, testOpts(cluster, "g", append([]consumer.Opt{
				consumer.MaxInFlight(maxInFlight),
				consumer.MaxInFlightPerPartition(perPartition),
				consumer.BatchMaxRecords(16),
			}, mode.opts...)...)...)
			stop := kafkatest.Run(t, c)
			kafkatest.WaitFor(t, 20*time.Second, "fetching to stop behind the blocked handler", func() bool {
				s := c.Stats()
				return s.Paused > 0 && (s.Paused == 4 || s.InFlight == maxInFlight)
			})
			if s := c.Stats(); s.InFlight > maxInFlight || s.PeakInFlight > maxInFlight {
				t.Fatalf("buffered %d (peak %d) records with a limit of %d", s.InFlight, s.PeakInFlight, maxInFlight)
			}
			close(release)
			kafkatest.WaitFor(t, 60*time.Second, "the backlog handled", func() bool { return handled.Load() >= produced })
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if s := c.Stats(); s.PeakInFlight > maxInFlight {
				t.Fatalf("peak of %d buffered records with a limit of %d", s.PeakInFlight, maxInFlight)
			}
		})
	}
}
