package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
)

// batchLog is a batch handler that remembers every batch it was handed and
// the records of the batches it returned nil for, by partition. fail, if
// set, decides a call's error before anything is remembered as done.
type batchLog struct {
	fail func(recs []*kgo.Record) error

	mu      sync.Mutex
	batches [][]*kgo.Record // every call, in order
	done    map[int32][]int64
	n       int
	// succeeded is, per partition, the highest offset of a record done
	// by a call about to return: no commit may pass it.
	succeeded map[int32]int64
}

func newBatchLog(fail func(recs []*kgo.Record) error) *batchLog {
	return &batchLog{fail: fail, done: make(map[int32][]int64), succeeded: make(map[int32]int64)}
}

func (l *batchLog) HandleBatch(_ context.Context, recs []*kgo.Record) error {
	l.mu.Lock()
	l.batches = append(l.batches, slices.Clone(recs))
	l.mu.Unlock()
	if l.fail != nil {
		if err := l.fail(recs); err != nil {
			l.doneUpTo(recs, err)
			return err
		}
	}
	l.doneUpTo(recs, nil)
	return nil
}

// doneUpTo remembers the records a call did: all, or those before the
// index of a *BatchError.
func (l *batchLog) doneUpTo(recs []*kgo.Record, err error) {
	n := len(recs)
	if err != nil {
		n = 0
		if be, ok := errors.AsType[*consumer.BatchError](err); ok {
			n = be.Index
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range recs[:n] {
		l.done[r.Partition] = append(l.done[r.Partition], r.Offset)
		l.n++
		if s, ok := l.succeeded[r.Partition]; !ok || r.Offset > s {
			l.succeeded[r.Partition] = r.Offset
		}
	}
}

func (l *batchLog) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

func (l *batchLog) offsets() map[int32][]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[int32][]int64, len(l.done))
	for p, o := range l.done {
		out[p] = slices.Clone(o)
	}
	return out
}

func (l *batchLog) calls() [][]*kgo.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.batches)
}

// batchModes are the two ways of gathering batches every batch test runs
// under.
var batchModes = []struct {
	name string
	opts []consumer.Opt
}{
	{"per-partition", nil},
	{"across-partitions", []consumer.Opt{consumer.BatchAcrossPartitions()}},
}

func newBatch(t *testing.T, h consumer.BatchHandler, opts ...consumer.Opt) *consumer.Consumer {
	t.Helper()
	c, err := consumer.NewBatch(h, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestBatchConsumesEveryRecordInPartitionOrder(t *testing.T) {
	for _, mode := range batchModes {
		t.Run(mode.name, func(t *testing.T) {
			cluster := kafkatest.NewCluster(t, 4, topic)
			produced := cluster.ProduceSeq(t, topic, 4000, 50)
			log := newBatchLog(func(recs []*kgo.Record) error {
				time.Sleep(time.Millisecond) // let records pile up into batches
				return nil
			})
			const maxRecords = 64
			c := newBatch(t, log, testOpts(cluster, "g", append([]consumer.Opt{consumer.BatchMaxRecords(maxRecords)}, mode.opts...)...)...)
			stop := kafkatest.Run(t, c)
			kafkatest.WaitFor(t, 20*time.Second, "all records handled", func() bool { return log.total() >= len(produced) })
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if log.total() != len(produced) {
				t.Fatalf("handled %d records, produced %d", log.total(), len(produced))
			}
			want := expectedOffsets(produced)
			for p, offs := range log.offsets() {
				if fmt.Sprint(offs) != fmt.Sprint(want[p]) {
					t.Errorf("partition %d: handled offsets out of order or incomplete", p)
				}
			}
			multi, spans := 0, 0
			for _, b := range log.calls() {
				if len(b) > maxRecords {
					t.Fatalf("a batch of %d records, above BatchMaxRecords(%d)", len(b), maxRecords)
				}
				if len(b) > 1 {
					multi++
				}
				parts := make(map[int32]int64)
				for _, r := range b {
					if last, ok := parts[r.Partition]; ok && r.Offset <= last {
						t.Fatalf("partition %d out of order in a batch: %d after %d", r.Partition, r.Offset, last)
					}
					parts[r.Partition] = r.Offset
				}
				if len(parts) > 1 {
					spans++
				}
			}
			if multi == 0 {
				t.Error("no batch held more than one record")
			}
			across := len(mode.opts) > 0
			if !across && spans > 0 {
				t.Errorf("%d batches spanned partitions without BatchAcrossPartitions", spans)
			}
			if across && spans == 0 {
				t.Error("no batch spanned partitions with BatchAcrossPartitions")
			}
			t.Logf("%d batches, %d of more than one record, %d across partitions", len(log.calls()), multi, spans)
			committed := cluster.Committed(t, "g", topic)
			for p, offs := range want {
				if committed[p] != offs[len(offs)-1]+1 {
					t.Errorf("partition %d: committed %d, want %d", p, committed[p], offs[len(offs)-1]+1)
				}
			}
		})
	}
}

func TestBatchPartialFailureStoresExactlyThePrefix(t *testing.T) {
	for _, mode := range batchModes {
		t.Run(mode.name, func(t *testing.T) {
			cluster := kafkatest.NewCluster(t, 1, topic)
			cluster.ProduceSeq(t, topic, 100, 1)
			const failAt = 37
			var failures atomic.Int64
			log := newBatchLog(func(recs []*kgo.Record) error {
				for i, r := range recs {
					if r.Offset == failAt {
						failures.Add(1)
						return &consumer.BatchError{Index: i, Err: errors.New("sink rejects this record")}
					}
				}
				return nil
			})
			c := newBatch(t, log, testOpts(cluster, "g", append([]consumer.Opt{
				consumer.BatchMaxRecords(10),
				consumer.CommitInterval(100 * time.Millisecond),
			}, mode.opts...)...)...)
			stop := kafkatest.Run(t, c)
			kafkatest.WaitFor(t, 20*time.Second, "the prefix committed", func() bool {
				return cluster.Committed(t, "g", topic)[0] == failAt
			})
			kafkatest.WaitFor(t, 20*time.Second, "retries of the failing record", func() bool { return failures.Load() >= 10 })
			if got := cluster.Committed(t, "g", topic)[0]; got != failAt {
				t.Fatalf("committed %d while record %d fails, want %d", got, failAt, failAt)
			}
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got := cluster.Committed(t, "g", topic)[0]; got != failAt {
				t.Fatalf("committed %d after shutdown, want %d", got, failAt)
			}
			if got, want := log.offsets()[0], span(0, failAt); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("done %v, want exactly the records before the failing one", got)
			}
			for _, b := range log.calls() {
				if b[0].Offset > failAt {
					t.Fatalf("a batch starting at %d was handed over while %d fails", b[0].Offset, failAt)
				}
				if b[0].Offset == failAt && len(b) > 1 {
					t.Fatalf("the failing record was retried in a batch of %d, not on its own", len(b))
				}
			}
		})
	}
}

// produceValues writes one record per value to partition 0 of topic.
func produceValues(t *testing.T, cluster *kafkatest.Cluster, values ...[]byte) {
	t.Helper()
	recs := make([]*kgo.Record, len(values))
	for i, v := range values {
		recs[i] = &kgo.Record{Topic: topic, Value: v}
	}
	cluster.Produce(t, recs...)
}

func TestBatchErrorWithoutIndexHandlesRecordsOneAtATime(t *testing.T) {
	for _, how := range []string{"error", "panic"} {
		for _, mode := range batchModes {
			t.Run(how+"/"+mode.name, func(t *testing.T) {
				cluster := kafkatest.NewCluster(t, 1, topic)
				cluster.ProduceSeq(t, topic, 50, 1)
				const bad = 23
				var aloneFailures atomic.Int64
				log := newBatchLog(func(recs []*kgo.Record) error {
					for _, r := range recs {
						if r.Offset != bad {
							continue
						}
						if len(recs) > 1 {
							if how == "panic" {
								panic("a bad record")
							}
							return errors.New("the sink refused the batch")
						}
						if aloneFailures.Add(1) <= 2 {
							return errors.New("still failing")
						}
					}
					return nil
				})
				c := newBatch(t, log, testOpts(cluster, "g", append([]consumer.Opt{consumer.BatchMaxRecords(10)}, mode.opts...)...)...)
				stop := kafkatest.Run(t, c)
				kafkatest.WaitFor(t, 20*time.Second, "all records done", func() bool { return log.total() >= 50 })
				if err := stop(); err != nil {
					t.Fatalf("Run: %v", err)
				}
				if got := log.offsets()[0]; fmt.Sprint(got) != fmt.Sprint(span(0, 50)) {
					t.Fatalf("done %v, want every record once, in order", got)
				}
				if got := cluster.Committed(t, "g", topic)[0]; got != 50 {
					t.Fatalf("committed %d, want 50", got)
				}
				// The batch that held the bad record was followed by each of
				// its records on its own, the bad one three times.
				calls := log.calls()
				i := slices.IndexFunc(calls, func(b []*kgo.Record) bool {
					return len(b) > 1 && slices.ContainsFunc(b, func(r *kgo.Record) bool { return r.Offset == bad })
				})
				if i < 0 {
					t.Fatal("no batch held the bad record")
				}
				var alone []int64
				for _, b := range calls[i+1 : i+1+len(calls[i])+2] {
					if len(b) != 1 {
						t.Fatalf("a batch of %d records while the failed batch's records were handled one at a time", len(b))
					}
					alone = append(alone, b[0].Offset)
				}
				var want []int64
				for _, r := range calls[i] {
					want = append(want, r.Offset)
					if r.Offset == bad {
						want = append(want, bad, bad)
					}
				}
				if fmt.Sprint(alone) != fmt.Sprint(want) {
					t.Fatalf("after the failed batch, calls with %v, want %v", alone, want)
				}
			})
		}
	}
}

func TestBatchLimitsRecordsAndBytes(t *testing.T) {
	for _, mode := range batchModes {
		t.Run(mode.name, func(t *testing.T) {
			cluster := kafkatest.NewCluster(t, 1, topic)
			values := make([][]byte, 100)
			for i := range values {
				values[i] = make([]byte, 100)
			}
			values[50] = make([]byte, 5000) // larger than a batch may be
			produceValues(t, cluster, values...)
			release := make(chan struct{})
			log := newBatchLog(func([]*kgo.Record) error { <-release; return nil })
			c := newBatch(t, log, testOpts(cluster, "g", append([]consumer.Opt{
				consumer.BatchMaxRecords(8),
				consumer.BatchMaxBytes(1000),
			}, mode.opts...)...)...)
			stop := kafkatest.Run(t, c)
			// Let the whole topic arrive before the first batch returns.
			kafkatest.WaitFor(t, 20*time.Second, "the topic fetched", func() bool { return c.Stats().InFlight == 100 })
			close(release)
			kafkatest.WaitFor(t, 20*time.Second, "all records done", func() bool { return log.total() >= 100 })
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			calls := log.calls()
			for i, b := range calls {
				size := 0
				for _, r := range b {
					size += len(r.Value)
				}
				switch {
				case len(b) > 8:
					t.Fatalf("a batch of %d records, above BatchMaxRecords(8)", len(b))
				case size > 1000 && len(b) > 1:
					t.Fatalf("a batch of %d bytes in %d records, above BatchMaxBytes(1000)", size, len(b))
				case b[0].Offset == 50 && len(b) != 1:
					t.Fatalf("the record larger than BatchMaxBytes came in a batch of %d", len(b))
				}
				// Every record was waiting once the first batch returned: a
				// batch ends only where the next record would not fit.
				if i > 0 && i+1 < len(calls) && len(b) < 8 && size+len(calls[i+1][0].Value) <= 1000 {
					t.Errorf("batch at %d holds %d records (%d bytes) although the next one fits", b[0].Offset, len(b), size)
				}
			}
		})
	}
}

func TestBatchLingerWaitsForAFullBatch(t *testing.T) {
	for _, mode := range batchModes {
		t.Run(mode.name, func(t *testing.T) {
			cluster := kafkatest.NewCluster(t, 1, topic)
			log := newBatchLog(nil)
			c := newBatch(t, log, testOpts(cluster, "g", append([]consumer.Opt{
				consumer.BatchMaxRecords(10),
				consumer.BatchLinger(time.Minute),
			}, mode.opts...)...)...)
			stop := kafkatest.Run(t, c)
			cluster.ProduceSeq(t, topic, 5, 1)
			kafkatest.WaitFor(t, 20*time.Second, "the first records gathered", func() bool { return c.Stats().InFlight == 5 })
			time.Sleep(100 * time.Millisecond)
			if n := len(log.calls()); n != 0 {
				t.Fatalf("%d calls before the batch was full or its linger passed", n)
			}
			start := time.Now()
			cluster.ProduceSeq(t, topic, 5, 1)
			kafkatest.WaitFor(t, 20*time.Second, "the full batch", func() bool { return log.total() == 10 })
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("a full batch waited %v", d)
			}
			if calls := log.calls(); len(calls) != 1 {
				t.Fatalf("%d calls for 10 records with BatchMaxRecords(10) and a linger, want 1", len(calls))
			}
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
		})
	}
}

func TestBatchShutdownHandlesWhatWasGathered(t *testing.T) {
	for _, mode := range batchModes {
		t.Run(mode.name, func(t *testing.T) {
			cluster := kafkatest.NewCluster(t, 2, topic)
			cluster.ProduceSeq(t, topic, 20, 20)
			log := newBatchLog(nil)
			c := newBatch(t, log, testOpts(cluster, "g", append([]consumer.Opt{
				consumer.BatchLinger(time.Hour),
				consumer.CommitInterval(time.Hour),
			}, mode.opts...)...)...)
			stop := kafkatest.Run(t, c)
			kafkatest.WaitFor(t, 20*time.Second, "the records fetched", func() bool { return c.Stats().InFlight == 20 })
			// The runners take what reaches them at once; records not
			// gathered yet when the stop comes would be dropped, as a
			// Handler's records not started are.
			time.Sleep(200 * time.Millisecond)
			if n := len(log.calls()); n != 0 {
				t.Fatalf("%d calls while the batch lingers", n)
			}
			start := time.Now()
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if d := time.Since(start); d > 15*time.Second {
				t.Fatalf("Run returned %v after its context was done: the linger held the shutdown", d)
			}
			if log.total() != 20 {
				t.Fatalf("%d records handled at shutdown, want the 20 gathered", log.total())
			}
			committed := cluster.Committed(t, "g", topic)
			if committed[0]+committed[1] != 20 {
				t.Fatalf("committed %v after shutdown, want the end of both partitions", committed)
			}
		})
	}
}

func TestNewBatchRejectsBadOptions(t *testing.T) {
	h := consumer.BatchHandlerFunc(func(context.Context, []*kgo.Record) error { return nil })
	base := []consumer.Opt{consumer.Topics("t")}
	for name, build := range map[string]func() (*consumer.Consumer, error){
		"nil handler": func() (*consumer.Consumer, error) { return consumer.NewBatch(nil, base...) },
		"KeyOrder": func() (*consumer.Consumer, error) {
			return consumer.NewBatch(h, append(base, consumer.Order(consumer.KeyOrder))...)
		},
		"Unordered": func() (*consumer.Consumer, error) {
			return consumer.NewBatch(h, append(base, consumer.Order(consumer.Unordered))...)
		},
		"zero records": func() (*consumer.Consumer, error) {
			return consumer.NewBatch(h, append(base, consumer.BatchMaxRecords(0))...)
		},
		"zero bytes": func() (*consumer.Consumer, error) {
			return consumer.NewBatch(h, append(base, consumer.BatchMaxBytes(0))...)
		},
		"negative linger": func() (*consumer.Consumer, error) {
			return consumer.NewBatch(h, append(base, consumer.BatchLinger(-1))...)
		},
		"batch option to New": func() (*consumer.Consumer, error) {
			return consumer.New(newRecorder(), append(base, consumer.BatchMaxRecords(10))...)
		},
		"UseBatch to New": func() (*consumer.Consumer, error) {
			return consumer.New(newRecorder(), append(base, consumer.UseBatch())...)
		},
	} {
		if _, err := build(); !errors.Is(err, consumer.ErrInvalidOption) {
			t.Errorf("%s: got %v, want ErrInvalidOption", name, err)
		}
	}
	if _, err := consumer.NewBatch(h, append(base, consumer.BatchAcrossPartitions(), consumer.BatchLinger(time.Second))...); err != nil {
		t.Errorf("valid batch options refused: %v", err)
	}
}

// batchObserver counts what a BatchObserver is told.
type batchObserver struct {
	errObserver
	handled, batched, batches atomic.Int64
}

func (o *batchObserver) Handled(r *kgo.Record, took time.Duration, err error) {
	o.errObserver.Handled(r, took, err)
	if err == nil {
		o.handled.Add(1)
	}
}

func (o *batchObserver) HandledBatch(recs []*kgo.Record, _ time.Duration, err error) {
	if err == nil {
		o.batched.Add(int64(len(recs)))
	}
	o.batches.Add(1)
}

func observe(o consumer.Observer) consumer.Opt {
	return consumer.With(consumer.PluginFunc(func(a *consumer.Attachment) error { a.Observe(o); return nil }))
}

func TestBatchObserverSeesEveryRecordAndBatch(t *testing.T) {
	for _, mode := range batchModes {
		t.Run(mode.name, func(t *testing.T) {
			cluster := kafkatest.NewCluster(t, 3, topic)
			produced := cluster.ProduceSeq(t, topic, 900, 30)
			log := newBatchLog(nil)
			obs, plain := &batchObserver{}, &errObserver{} // plain is an Observer only
			c := newBatch(t, log, testOpts(cluster, "g", append([]consumer.Opt{observe(obs), observe(plain)}, mode.opts...)...)...)
			stop := kafkatest.Run(t, c)
			kafkatest.WaitFor(t, 20*time.Second, "all records done", func() bool { return log.total() >= len(produced) })
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if n := obs.handled.Load(); n != int64(len(produced)) {
				t.Errorf("Handled told of %d records, want %d", n, len(produced))
			}
			if n := obs.batched.Load(); n != int64(len(produced)) {
				t.Errorf("HandledBatch told of %d records, want %d", n, len(produced))
			}
			if n, calls := obs.batches.Load(), len(log.calls()); n != int64(calls) {
				t.Errorf("HandledBatch told of %d calls, the handler had %d", n, calls)
			}
		})
	}
}

// skipEven is a plugin that skips records at even offsets.
var skipEven = consumer.PluginFunc(func(a *consumer.Attachment) error {
	a.Skip(func(r *kgo.Record) bool { return r.Offset%2 == 0 })
	return nil
})

func TestSkippedRecordsReachNoHandlerAndCommit(t *testing.T) {
	for _, mode := range append(batchModes, struct {
		name string
		opts []consumer.Opt
	}{"handler", nil}) {
		t.Run(mode.name, func(t *testing.T) {
			cluster := kafkatest.NewCluster(t, 1, topic)
			cluster.ProduceSeq(t, topic, 100, 1)
			obs := &batchObserver{}
			opts := testOpts(cluster, "g", append([]consumer.Opt{consumer.With(skipEven), observe(obs), consumer.CommitInterval(100 * time.Millisecond)}, mode.opts...)...)
			var seen func() []int64
			var c *consumer.Consumer
			if mode.name == "handler" {
				rec := newRecorder()
				seen = func() []int64 { return rec.offsets()[0] }
				var err error
				if c, err = consumer.New(rec, opts...); err != nil {
					t.Fatal(err)
				}
			} else {
				log := newBatchLog(nil)
				seen = func() []int64 { return log.offsets()[0] }
				c = newBatch(t, log, opts...)
			}
			stop := kafkatest.Run(t, c)
			kafkatest.WaitFor(t, 20*time.Second, "every record handled or skipped", func() bool { return obs.handled.Load() >= 100 })
			kafkatest.WaitFor(t, 20*time.Second, "the end committed", func() bool { return cluster.Committed(t, "g", topic)[0] == 100 })
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			var odd []int64
			for o := int64(1); o < 100; o += 2 {
				odd = append(odd, o)
			}
			if got := seen(); fmt.Sprint(got) != fmt.Sprint(odd) {
				t.Fatalf("the handler saw %v, want the odd offsets only", got)
			}
		})
	}
}

func TestBatchMiddlewareWrapsBatchesAndUseWrapsRecordsAlone(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic)
	cluster.ProduceSeq(t, topic, 30, 1)
	var mu sync.Mutex
	var trace []string
	note := func(s string) {
		mu.Lock()
		trace = append(trace, s)
		mu.Unlock()
	}
	batchMW := func(name string) consumer.BatchMiddleware {
		return func(next consumer.BatchHandler) consumer.BatchHandler {
			return consumer.BatchHandlerFunc(func(ctx context.Context, recs []*kgo.Record) error {
				note(fmt.Sprintf("%s %d", name, len(recs)))
				return next.HandleBatch(ctx, recs)
			})
		}
	}
	recMW := consumer.Middleware(func(next consumer.Handler) consumer.Handler {
		return consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
			err := next.Handle(ctx, r)
			note(fmt.Sprintf("alone %d: %v", r.Offset, err))
			return err
		})
	})
	plugin := consumer.PluginFunc(func(a *consumer.Attachment) error {
		if !a.Batched() {
			return errors.New("not batched")
		}
		a.UseBatch(batchMW("plugin"))
		return nil
	})
	var failed atomic.Bool
	log := newBatchLog(func(recs []*kgo.Record) error {
		for i, r := range recs {
			if r.Offset == 12 && failed.CompareAndSwap(false, true) {
				return &consumer.BatchError{Index: i, Err: errors.New("first try")}
			}
		}
		return nil
	})
	c := newBatch(t, log, testOpts(cluster, "g",
		consumer.With(plugin),
		consumer.UseBatch(batchMW("option")),
		consumer.Use(recMW),
		consumer.BatchMaxRecords(30),
	)...)
	stop := kafkatest.Run(t, c)
	kafkatest.WaitFor(t, 20*time.Second, "all records done", func() bool { return log.total() >= 30 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	// The failing record's first pass through the middleware carries the
	// batch's error without a call; the retry calls the handler with it
	// alone.
	want := []string{"plugin 30", "option 30", "alone 12: first try", "alone 12: <nil>", "plugin 17", "option 17"}
	if fmt.Sprint(trace) != fmt.Sprint(want) {
		t.Fatalf("middleware saw %q, want %q", trace, want)
	}
	if n := len(log.calls()); n != 3 {
		t.Fatalf("%d handler calls, want 3: the batch, the record alone, the rest", n)
	}
}
