package lag_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/lag"
)

// history scripts what a Consumer tells the observer about partition 0,
// against a fake clock, and checks the partition's status after every step.
type history struct {
	t    *testing.T
	m    *lag.Monitor
	clk  *clock
	want lag.Status
	seen map[lag.Status]bool
}

const stuck = time.Minute

func newHistory(t *testing.T, want lag.Status) *history {
	clk := newClock(base)
	m, _ := attached(t, group, lag.Window(4), lag.StuckAfter(stuck), lag.Clock(clk.Now))
	h := &history{
		t:    t,
		m:    m,
		clk:  clk,
		want: want,
		seen: make(map[lag.Status]bool),
	}
	h.m.Rebalanced(consumer.Assigned, map[string][]int32{topic: {0}})
	h.check()
	return h
}

func stamp(o int64) time.Time { return base.Add(time.Duration(o) * time.Millisecond) }

// poll hands over the records [from, to) with the high watermark hwm.
func (h *history) poll(hwm, from, to int64) {
	h.m.Polled(fetched(0, hwm, from, to, stamp))
	h.check()
}

// handle handles the records [from, to) successfully.
func (h *history) handle(from, to int64) {
	for o := from; o < to; o++ {
		h.m.Handled(&kgo.Record{Topic: topic, Partition: 0, Offset: o}, time.Millisecond, nil)
	}
	h.check()
}

func (h *history) fail(o int64) {
	h.m.Handled(&kgo.Record{Topic: topic, Partition: 0, Offset: o}, time.Millisecond, errors.New("sink down"))
	h.check()
}

func (h *history) commit(o int64) {
	h.m.Committed(map[string]map[int32]int64{topic: {0: o}}, nil)
	h.check()
}

func (h *history) wait(d time.Duration) {
	h.clk.Add(d)
	h.check()
}

// check fails the test if the partition's status is neither OK nor the one
// the history is meant to produce, and agrees with the group's.
func (h *history) check() {
	h.t.Helper()
	s := h.m.Snapshot()
	if len(s.Partitions) != 1 {
		h.t.Fatalf("tracking %d partitions, want 1", len(s.Partitions))
	}
	p := s.Partitions[0]
	if p.Status != lag.StatusOK && p.Status != h.want {
		h.t.Fatalf("status %v (%s) in a history meant to produce %v", p.Status, p.Reason, h.want)
	}
	if s.Status != p.Status {
		h.t.Fatalf("group status %v, its only partition %v", s.Status, p.Status)
	}
	if (p.Status == lag.StatusOK) != (p.Reason == "") {
		h.t.Fatalf("status %v with reason %q", p.Status, p.Reason)
	}
	h.seen[p.Status] = true
}

// end checks the final status.
func (h *history) end() {
	h.t.Helper()
	p := h.m.Snapshot().Partitions[0]
	if p.Status != h.want {
		h.t.Fatalf("final status %v (%s), want %v", p.Status, p.Reason, h.want)
	}
}

func TestStatusHistories(t *testing.T) {
	for _, tc := range []struct {
		name string
		want lag.Status
		run  func(h *history)
	}{
		{"OK caught up and idle", lag.StatusOK, func(h *history) {
			h.poll(10, 0, 10)
			h.handle(0, 10)
			h.commit(10)
			h.wait(10 * stuck)
		}},
		{"OK working off a backlog", lag.StatusOK, func(h *history) {
			h.poll(1000, 0, 1000)
			for o := int64(0); o < 1000; o += 50 {
				h.wait(10 * time.Second)
				h.handle(o, o+50)
				h.commit(o + 50)
			}
		}},
		{"OK keeping pace with a constant lag", lag.StatusOK, func(h *history) {
			h.poll(20, 0, 20)
			for o := int64(0); o < 200; o += 20 {
				h.wait(time.Second)
				h.handle(o, o+10)
				h.commit(o + 10)
				h.poll(o+40, o+20, o+40)
				h.handle(o+10, o+20)
			}
		}},
		{"WARN lag grows while the offset advances", lag.StatusWarn, func(h *history) {
			hwm := int64(100)
			h.poll(hwm, 0, hwm)
			for o := int64(0); o < 60; o += 10 {
				h.wait(5 * time.Second)
				h.handle(o, o+10)
				h.poll(hwm+30, hwm, hwm+30)
				hwm += 30
				h.commit(o + 10)
			}
		}},
		{"STALL handler keeps failing on one record", lag.StatusStall, func(h *history) {
			h.poll(50, 0, 50)
			h.handle(0, 10)
			h.commit(10)
			for range 20 {
				h.wait(5 * time.Second)
				h.fail(10)
			}
		}},
		{"STALL committing the same offset", lag.StatusStall, func(h *history) {
			h.poll(50, 0, 50)
			h.handle(0, 10)
			h.commit(10)
			for range 20 {
				h.wait(5 * time.Second)
				h.commit(10)
			}
		}},
		{"STOP records wait and nothing happens", lag.StatusStop, func(h *history) {
			h.poll(50, 0, 50)
			h.handle(0, 10)
			h.commit(10)
			h.wait(stuck - time.Millisecond)
			if p := h.m.Snapshot().Partitions[0]; p.Status != lag.StatusOK {
				h.t.Fatalf("status %v before StuckAfter passed", p.Status)
			}
			h.wait(time.Millisecond)
		}},
		{"REWIND committed offset goes back", lag.StatusRewind, func(h *history) {
			h.poll(100, 0, 100)
			h.handle(0, 20)
			h.commit(10)
			h.commit(20)
			h.commit(5)
		}},
		{"ERR commits fail", lag.StatusErr, func(h *history) {
			h.poll(50, 0, 50)
			h.handle(0, 10)
			h.m.Committed(map[string]map[int32]int64{}, errors.New("NOT_COORDINATOR"))
			h.check()
		}},
		{"ERR fetch fails", lag.StatusErr, func(h *history) {
			h.poll(50, 0, 50)
			h.handle(0, 50)
			h.commit(50)
			h.m.Polled(kgo.FetchTopicPartition{Topic: topic, FetchPartition: kgo.FetchPartition{
				Partition: 0, Err: errors.New("TOPIC_AUTHORIZATION_FAILED"),
			}})
			h.check()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHistory(t, tc.want)
			tc.run(h)
			h.end()
		})
	}
}

func TestStatusRecovers(t *testing.T) {
	h := newHistory(t, lag.StatusStop)
	h.poll(50, 0, 50)
	h.wait(stuck)
	h.end()
	h.handle(0, 1)
	if p := h.m.Snapshot().Partitions[0]; p.Status != lag.StatusOK {
		t.Fatalf("status %v after a record was handled, want OK", p.Status)
	}

	e := newHistory(t, lag.StatusErr)
	e.poll(50, 0, 50)
	e.handle(0, 10)
	e.m.Committed(nil, errors.New("broker gone"))
	e.end()
	e.commit(10)
	if p := e.m.Snapshot().Partitions[0]; p.Status != lag.StatusOK {
		t.Fatalf("status %v after an accepted commit, want OK", p.Status)
	}
}

func TestGroupStatusIsTheWorstPartition(t *testing.T) {
	clk := newClock(base)
	m, _ := attached(t, group, lag.StuckAfter(stuck), lag.Clock(clk.Now))
	m.Rebalanced(consumer.Assigned, map[string][]int32{topic: {0, 1, 2}})
	for p := range int32(3) {
		m.Polled(fetched(p, 10, 0, 10, stamp))
	}
	handle := func(p int32, from, to int64) {
		for o := from; o < to; o++ {
			m.Handled(&kgo.Record{Topic: topic, Partition: p, Offset: o}, time.Millisecond, nil)
		}
	}
	// A probe evaluates after every step, as /healthz polled would.
	handle(0, 0, 10)                                                   // caught up
	handle(1, 0, 5)                                                    // working
	m.Committed(map[string]map[int32]int64{topic: {0: 10, 1: 5}}, nil) // 2 never handles
	m.Snapshot()
	clk.Add(stuck / 2)
	m.Handled(&kgo.Record{Topic: topic, Partition: 1, Offset: 5}, time.Millisecond, errors.New("sink down"))
	m.Snapshot()
	clk.Add(stuck / 2)
	s := m.Snapshot()
	want := []lag.Status{lag.StatusOK, lag.StatusStall, lag.StatusStop}
	for i, p := range s.Partitions {
		if p.Status != want[i] {
			t.Errorf("partition %d: %v (%s), want %v", p.Partition, p.Status, p.Reason, want[i])
		}
	}
	if s.Status != lag.StatusStop {
		t.Fatalf("group status %v, want STOP", s.Status)
	}
	if err := m.Healthy(); !errors.Is(err, lag.ErrUnhealthy) || !strings.Contains(err.Error(), topic+"/2") {
		t.Fatalf("Healthy = %v, want ErrUnhealthy naming %s/2", err, topic)
	}
}

func TestLagFromScriptedFetches(t *testing.T) {
	clk := newClock(base.Add(time.Hour))
	m, _ := attached(t, group, lag.Clock(clk.Now))
	m.Rebalanced(consumer.Assigned, map[string][]int32{topic: {0}})
	if p, _ := partitionOf(m, topic, 0); p.HighWatermark != -1 || p.Lag != 0 || p.LagTime != 0 || p.Offset != -1 {
		t.Fatalf("before a fetch: %+v, want unknown offsets and no lag", p)
	}
	ts := func(o int64) time.Time { return base.Add(time.Duration(o) * time.Second) }
	m.Polled(fetched(0, 100, 40, 70, ts)) // resumed at 40; 70..99 not fetched yet
	check := func(wantLag int64, wantAge time.Duration) {
		t.Helper()
		p, _ := partitionOf(m, topic, 0)
		if p.Lag != wantLag || p.LagTime != wantAge {
			t.Fatalf("lag %d records, %v; want %d, %v (%+v)", p.Lag, p.LagTime, wantLag, wantAge, p)
		}
	}
	check(60, time.Hour-40*time.Second) // counted from the start offset before a commit
	for o := int64(40); o < 55; o++ {
		m.Handled(&kgo.Record{Topic: topic, Partition: 0, Offset: o}, time.Millisecond, nil)
	}
	check(60, time.Hour-55*time.Second)
	m.Committed(map[string]map[int32]int64{topic: {0: 55}}, nil)
	check(45, time.Hour-55*time.Second)
	m.Handled(&kgo.Record{Topic: topic, Partition: 0, Offset: 55}, time.Millisecond, errors.New("retry me"))
	check(45, time.Hour-55*time.Second) // a failed call leaves the record waiting
	for o := int64(55); o < 70; o++ {
		m.Handled(&kgo.Record{Topic: topic, Partition: 0, Offset: o}, time.Millisecond, nil)
	}
	check(45, 0) // nothing held: records 70..99 are not received yet
	m.Polled(fetched(0, 100, 70, 100, ts))
	check(45, time.Hour-70*time.Second)
	for o := int64(70); o < 100; o++ {
		m.Handled(&kgo.Record{Topic: topic, Partition: 0, Offset: o}, time.Millisecond, nil)
	}
	m.Committed(map[string]map[int32]int64{topic: {0: 100}}, nil)
	check(0, 0)
	clk.Add(24 * time.Hour) // idle: still 0, never undefined
	check(0, 0)
}

func TestLagWithoutGroupCountsFromProcessed(t *testing.T) {
	clk := newClock(base)
	m, _ := attached(t, "", lag.GroupLabel("current"), lag.Clock(clk.Now))
	m.Polled(fetched(3, 10, 0, 10, stamp))
	for o := range int64(4) {
		m.Handled(&kgo.Record{Topic: topic, Partition: 3, Offset: o}, time.Millisecond, nil)
	}
	p, ok := partitionOf(m, topic, 3)
	if !ok || p.Lag != 6 || p.Offset != 4 || p.Committed != -1 {
		t.Fatalf("%+v, want lag 6 from processed offset 4 and no commit", p)
	}
	if err := m.Ready(); err != nil {
		t.Fatalf("Ready without a group = %v, want nil: no assignment to wait for", err)
	}
}

func TestTransactionMarkerDoesNotLeaveLag(t *testing.T) {
	m, _ := attached(t, "", lag.GroupLabel("current"))
	m.Polled(fetched(0, 11, 0, 10, stamp)) // offset 10 is a commit marker
	for o := range int64(10) {
		m.Handled(&kgo.Record{Topic: topic, Partition: 0, Offset: o}, time.Millisecond, nil)
	}
	if p, _ := partitionOf(m, topic, 0); p.Lag != 1 || p.LagTime != 0 || p.Status != lag.StatusOK {
		t.Fatalf("%+v, want one offset of lag, nothing held, OK", p)
	}
	m.Polled(fetched(0, 11, 0, 0, stamp)) // the next fetch finds nothing more
	if p, _ := partitionOf(m, topic, 0); p.Lag != 0 || p.Processed != 11 {
		t.Fatalf("%+v, want processed 11 and no lag", p)
	}
}

func TestRebalanceForgetsPartitionsAndReadiness(t *testing.T) {
	// kgo.ConsumeRegex makes Run fail before it connects, once the
	// rebalances below were played by hand.
	m := newMonitor(t)
	c, err := consumer.New(consumer.HandlerFunc(func(context.Context, *kgo.Record) error { return nil }),
		consumer.Topics(topic), consumer.Group(group), consumer.ClientOpts(kgo.ConsumeRegex()), consumer.With(m))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Ready(); !errors.Is(err, lag.ErrNotReady) {
		t.Fatalf("Ready before an assignment = %v, want ErrNotReady", err)
	}
	m.Rebalanced(consumer.Assigned, map[string][]int32{topic: {0, 1}})
	if err := m.Ready(); err != nil {
		t.Fatalf("Ready after an assignment = %v", err)
	}
	m.Rebalanced(consumer.Revoked, map[string][]int32{topic: {0}})
	if s := m.Snapshot(); len(s.Partitions) != 1 || s.Partitions[0].Partition != 1 {
		t.Fatalf("after revoking 0: %+v", s.Partitions)
	}
	m.Rebalanced(consumer.Lost, map[string][]int32{topic: {1}})
	if err := m.Ready(); !errors.Is(err, lag.ErrNotReady) {
		t.Fatalf("Ready after a loss = %v, want ErrNotReady", err)
	}
	m.Rebalanced(consumer.Assigned, map[string][]int32{})
	if err := m.Ready(); err != nil {
		t.Fatalf("Ready after an empty assignment = %v, want nil", err)
	}
	runErr := c.Run(context.Background())
	if !errors.Is(runErr, consumer.ErrInvalidOption) {
		t.Fatalf("Run with kgo.ConsumeRegex = %v, want ErrInvalidOption", runErr)
	}
	if err := m.Ready(); !errors.Is(err, lag.ErrNotReady) {
		t.Fatalf("Ready after Run returned = %v", err)
	}
	if err := m.Healthy(); !errors.Is(err, lag.ErrUnhealthy) || !errors.Is(err, consumer.ErrInvalidOption) || !strings.Contains(err.Error(), runErr.Error()) {
		t.Fatalf("Healthy after Run returned = %v, want ErrUnhealthy with Run's error %v", err, runErr)
	}
	if s := m.Snapshot(); !s.Stopped || !errors.Is(s.StoppedReason, consumer.ErrInvalidOption) {
		t.Fatalf("Snapshot after Run returned: stopped %v, reason %v", s.Stopped, s.StoppedReason)
	}
}

func TestInvalidOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []lag.Opt
	}{
		{"window", []lag.Opt{lag.Window(1)}},
		{"stuck", []lag.Opt{lag.StuckAfter(0)}},
		{"clock", []lag.Opt{lag.Clock(nil)}},
		{"registerer", []lag.Opt{lag.Registerer(nil)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := lag.NewMonitor(tc.opts...); !errors.Is(err, lag.ErrInvalidOption) {
				t.Fatalf("NewMonitor = %v, want ErrInvalidOption", err)
			}
		})
	}
}

func TestAttachRefuses(t *testing.T) {
	nop := consumer.HandlerFunc(func(context.Context, *kgo.Record) error { return nil })
	t.Run("GroupLabel with a group", func(t *testing.T) {
		m := newMonitor(t, lag.GroupLabel("current"))
		_, err := consumer.New(nop, consumer.Topics(topic), consumer.Group(group), consumer.With(m))
		if !errors.Is(err, consumer.ErrInvalidOption) || !errors.Is(err, lag.ErrInvalidOption) {
			t.Fatalf("New = %v, want ErrInvalidOption", err)
		}
		if err := m.Ready(); !errors.Is(err, lag.ErrNotReady) {
			t.Fatalf("Ready of a Monitor that failed to attach = %v, want ErrNotReady", err)
		}
	})
	t.Run("second consumer", func(t *testing.T) {
		m, _ := attached(t, group)
		for _, g := range []string{group, ""} {
			opts := []consumer.Opt{consumer.Topics(topic), consumer.With(m)}
			if g != "" {
				opts = append(opts, consumer.Group(g))
			}
			if _, err := consumer.New(nop, opts...); !errors.Is(err, consumer.ErrInvalidOption) {
				t.Fatalf("attaching the Monitor to a second Consumer (group %q): New = %v, want ErrInvalidOption", g, err)
			}
		}
		if s := m.Snapshot(); s.Group != group {
			t.Fatalf("group label %q after the refused attachments, want the first Consumer's %q", s.Group, group)
		}
	})
}

func TestStatusNames(t *testing.T) {
	var got []string
	for s := lag.StatusOK; s <= lag.StatusStop; s++ {
		got = append(got, s.String())
	}
	if fmt.Sprint(got) != "[OK WARN REWIND ERR STALL STOP]" {
		t.Fatalf("statuses by severity: %v", got)
	}
}

func TestLagWithRecordsFinishingOutOfOrder(t *testing.T) {
	clk := newClock(base.Add(time.Hour))
	m, _ := attached(t, group, lag.Clock(clk.Now))
	m.Rebalanced(consumer.Assigned, map[string][]int32{topic: {0}})
	ts := func(o int64) time.Time { return base.Add(time.Duration(o) * time.Second) }
	m.Polled(fetched(0, 10, 0, 10, ts))
	call := func(o int64, err error) {
		m.Handled(&kgo.Record{Topic: topic, Partition: 0, Offset: o}, time.Millisecond, err)
	}
	check := func(processed int64, held int, age time.Duration) {
		t.Helper()
		p, _ := partitionOf(m, topic, 0)
		if p.Processed != processed || p.Held != held || p.LagTime != age {
			t.Fatalf("processed %d, held %d, lag %v; want %d, %d, %v", p.Processed, p.Held, p.LagTime, processed, held, age)
		}
	}
	// Keys finish out of offset order, as with consumer.KeyOrder.
	call(1, nil)
	call(3, nil)
	check(0, 8, time.Hour)
	call(0, nil)
	check(2, 7, time.Hour-2*time.Second)
	call(2, errors.New("sink down"))
	call(2, nil) // a retry
	check(4, 6, time.Hour-4*time.Second)
	for _, o := range []int64{9, 8, 7, 6, 5} {
		call(o, nil)
	}
	check(4, 1, time.Hour-4*time.Second)
	call(4, nil)
	check(10, 0, 0)
	call(4, nil) // handed over again after a rewind: not held, moves processed back
	check(5, 0, 0)
}
