package lag

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/fault"
)

var (
	// ErrUnhealthy is wrapped by the error Healthy returns when the
	// Consumer stopped or a partition's status is STOP.
	ErrUnhealthy = errors.New("lag: unhealthy")
	// ErrNotReady is wrapped by the error Ready returns until the Consumer
	// is ready.
	ErrNotReady = errors.New("lag: not ready")
)

// A Monitor observes a Consumer (it is a consumer.Observer) and measures,
// per assigned partition, the lag in records and in seconds, rates it with
// a Status, and exports it all as Prometheus metrics and /healthz and
// /readyz handlers. Attach it to the Consumer it observes with
// consumer.With; it learns the group there and observes that Consumer
// only.
//
// Its observer methods are cheap: each touches only the state of its own
// partition, behind that partition's lock.
type Monitor struct {
	cfg   cfg
	parts atomic.Pointer[map[key]*part] // replaced, never changed, under mu

	mu      sync.Mutex
	retired map[string]*counts // counts of partitions no longer owned, by topic
	joined  bool               // an assignment was received and not lost since
	stopped bool
	stopErr error

	commits        atomic.Int64
	commitFailures atomic.Int64
	rebalances     [3]atomic.Int64 // by consumer.Event

	metrics *metrics
	kprom   *kprom.Metrics

	// Learnt when attached.
	attached atomic.Bool
	group    string // the group label
	cons     *consumer.Consumer
	dead     fault.StatsReporter // the router attached to the same Consumer, if any
}

var (
	_ consumer.BatchObserver = (*Monitor)(nil)
	_ consumer.Plugin        = (*Monitor)(nil)
)

type key struct {
	topic     string
	partition int32
}

// NewMonitor returns a Monitor. Attach it to its Consumer with
// consumer.With. It returns an error wrapping ErrInvalidOption for invalid
// options.
func NewMonitor(opts ...Opt) (*Monitor, error) {
	c := defaultCfg()
	for _, o := range opts {
		o.apply(&c)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	m := &Monitor{cfg: c, retired: make(map[string]*counts)}
	m.parts.Store(&map[key]*part{})
	return m, nil
}

// Attach implements consumer.Plugin: the Monitor observes the Consumer,
// labels its metrics with the Consumer's group (or GroupLabel), registers
// them with the Registerer, installs its client hooks (commit latency and
// franz-go's client metrics), exports the counters of a dead-letter router
// attached to the same Consumer, waits for the Consumer's readiness in
// Ready, and fails Healthy and Ready once Run returned. It returns an error
// when the Monitor observes another Consumer already, for GroupLabel on a
// Consumer with a group, and the Registerer's error if the metrics cannot be
// registered.
func (m *Monitor) Attach(a *consumer.Attachment) error {
	if !m.attached.CompareAndSwap(false, true) {
		return errors.New("lag: the Monitor observes another Consumer already")
	}
	group, grouped := a.Group(), a.Group() != ""
	if grouped && m.cfg.labelSet {
		m.attached.Store(false)
		return fmt.Errorf("%w: GroupLabel(%q) for a Consumer with group %q", ErrInvalidOption, m.cfg.label, group)
	}
	if !grouped {
		group = m.cfg.label
	}
	cons := a.Consumer()
	var dead fault.StatsReporter
	for _, p := range cons.Plugins() {
		if d, ok := p.(fault.StatsReporter); ok {
			dead = d
			break
		}
	}
	// Probes may call Ready and Snapshot at any time; the observer methods
	// run only once the Consumer runs, after New returned.
	m.mu.Lock()
	m.group, m.cfg.grouped, m.cons, m.dead = group, grouped, cons, dead
	m.metrics = newMetrics(m, a.Batched())
	m.mu.Unlock()
	detach := func() {
		m.mu.Lock()
		m.group, m.cfg.grouped, m.cons, m.dead = "", false, nil, nil
		m.mu.Unlock()
		m.attached.Store(false)
	}
	// Abort hooks run last first: the metrics go before the state that
	// describes them.
	a.OnAbort(detach)
	if m.cfg.reg != nil {
		if err := m.cfg.reg.Register(m.metrics); err != nil {
			return fmt.Errorf("lag: registering metrics: %w", err)
		}
		a.OnAbort(m.Unregister)
		m.kprom = newKprom(m.cfg.reg, group)
	}
	a.Observe(m)
	a.ClientOpts(m.clientHooks())
	a.OnStop(m.runReturned)
	return nil
}

// Unregister removes the Monitor's metrics from its Registerer, so that the
// Monitor of a later Consumer of the same group can register. franz-go's
// client metrics go when their client closes.
func (m *Monitor) Unregister() {
	if m.cfg.reg != nil && m.metrics != nil {
		m.cfg.reg.Unregister(m.metrics)
	}
}

// part is what the Monitor knows of one partition.
type part struct {
	mu sync.Mutex

	hwm       int64 // high watermark of the last fetch; -1 before one
	logStart  int64 // log start offset of the last fetch; -1 before one
	committed int64 // the last offset the broker accepted; -1 before one
	start     int64 // the first offset read, taken as committed before a commit; -1 before
	processed int64 // the next offset to handle; -1 before a fetch
	held      fifo  // records received and not yet handled
	window    window

	// Times, in Unix nanoseconds of the Monitor's clock. Handled reads no
	// clock, as a clock read costs as much as the rest of it: evaluate
	// dates handler calls and progress when it first sees them counted, so
	// STALL and STOP come at most one evaluation late, never early.
	heldSince    int64 // held became non-empty
	lastReturn   int64 // a handler call returned
	lastCommit   int64 // a commit of the partition was accepted
	lastProgress int64 // processed or committed changed
	lastSample   int64 // without a group, the last sample taken at a poll

	moves     uint64 // times Handled changed processed
	seenCalls uint64 // counts.n at the last evaluation
	seenMoves uint64 // moves at the last evaluation

	fetchErr  error
	commitErr error
	paused    bool
	breaker   bool // the dead-letter breaker held the last call's record
	counts    counts
}

func newPart(window int) *part {
	return &part{hwm: -1, logStart: -1, committed: -1, start: -1, processed: -1, window: newWindow(window)}
}

// position is the offset lag counts from: committed with a group (the
// start offset before the first commit), processed without one.
func (p *part) position(grouped bool) int64 {
	if grouped && p.committed >= 0 {
		return p.committed
	}
	if grouped {
		return p.start
	}
	return p.processed
}

// lag returns the lag in records, 0 when unknown.
func (p *part) lag(grouped bool) int64 {
	pos := p.position(grouped)
	if p.hwm < 0 || pos < 0 {
		return 0
	}
	return max(0, p.hwm-pos)
}

// lookup returns the state of a partition, or nil if it is not owned.
func (m *Monitor) lookup(topic string, partition int32) *part {
	return (*m.parts.Load())[key{topic, partition}]
}

// own returns the state of a partition, creating it if needed.
func (m *Monitor) own(topic string, partition int32) *part {
	if p := m.lookup(topic, partition); p != nil {
		return p
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.parts.Load()
	if p := old[key{topic, partition}]; p != nil {
		return p
	}
	p := newPart(m.cfg.window)
	parts := maps.Clone(old)
	parts[key{topic, partition}] = p
	m.parts.Store(&parts)
	return p
}

// Polled implements consumer.Observer: it takes the high watermark and log
// start offset from the fetch and remembers the offset and timestamp of
// each record handed to the partition's worker.
func (m *Monitor) Polled(fp kgo.FetchTopicPartition) {
	now := m.cfg.now().UnixNano()
	p := m.own(fp.Topic, fp.Partition)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fetchErr = fp.Err
	if fp.Err == nil {
		p.hwm = fp.HighWatermark
		p.logStart = fp.LogStartOffset
	}
	if len(fp.Records) > 0 {
		if p.held.len() == 0 {
			p.heldSince = now
		}
		for _, r := range fp.Records {
			p.held.push(r.Offset, r.Timestamp.UnixNano())
		}
		first := fp.Records[0].Offset
		if p.start < 0 {
			p.start = first
		}
		if p.processed < 0 {
			p.processed = first
		}
	} else if fp.Err == nil && p.held.len() == 0 && p.hwm >= 0 {
		// Nothing more to read: every offset below the end was handled or
		// holds no record (a transaction marker, say).
		end := p.hwm
		if fp.LastStableOffset >= 0 {
			end = min(end, fp.LastStableOffset)
		}
		if p.start < 0 {
			p.start = end
		}
		if end > p.processed {
			p.processed, p.lastProgress = end, now
		}
	}
	if !m.cfg.grouped && p.processed >= 0 && now-p.lastSample >= int64(time.Second) {
		p.lastSample = now
		p.window.add(sample{at: now, pos: p.processed, lag: p.lag(false)})
	}
}

// Handled implements consumer.Observer: it counts the call and, when it
// succeeded, moves the partition's processed offset past the record.
func (m *Monitor) Handled(r *kgo.Record, took time.Duration, err error) {
	class := fault.Unclassified
	held := false
	if err != nil {
		class = fault.ClassOf(err)
		held = errors.Is(err, fault.ErrHeld)
	}
	p := m.lookup(r.Topic, r.Partition)
	if p == nil {
		// A handler abandoned when its partition was lost returned late.
		m.mu.Lock()
		m.retiredCounts(r.Topic).record(took, err != nil, class, false, held)
		m.mu.Unlock()
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.breaker = held
	retry, next := p.held.settle(r.Offset, err == nil)
	p.counts.record(took, err != nil, class, retry, held)
	if err != nil {
		return
	}
	if next < 0 {
		next = r.Offset + 1 // a record handed over again after a rewind
	}
	if next != p.processed {
		p.processed = next
		p.moves++
	}
}

// HandledBatch implements consumer.BatchObserver: it observes the batch's
// size in kconsumer_batch_records. Lag is kept by Handled, which the
// Consumer calls for each record of the batch as well.
func (m *Monitor) HandledBatch(recs []*kgo.Record, _ time.Duration, _ error) {
	if h := m.metrics.batchRecords; h != nil {
		h.Observe(float64(len(recs)))
	}
}

// Committed implements consumer.Observer. A failed commit marks the owned
// partitions whose progress it left uncommitted.
func (m *Monitor) Committed(offsets map[string]map[int32]int64, err error) {
	now := m.cfg.now().UnixNano()
	if err != nil {
		m.commitFailures.Add(1)
	} else {
		m.commits.Add(1)
	}
	for topic, ps := range offsets {
		for partition, offset := range ps {
			p := m.lookup(topic, partition)
			if p == nil {
				continue
			}
			p.mu.Lock()
			p.lastCommit, p.commitErr = now, nil
			if offset != p.committed {
				p.committed, p.lastProgress = offset, now
			}
			if m.cfg.grouped {
				p.window.add(sample{at: now, pos: offset, lag: p.lag(true)})
			}
			p.mu.Unlock()
		}
	}
	if err == nil {
		return
	}
	for k, p := range *m.parts.Load() {
		if _, ok := offsets[k.topic][k.partition]; ok {
			continue
		}
		p.mu.Lock()
		if p.processed > p.position(true) {
			p.commitErr = err
		}
		p.mu.Unlock()
	}
}

// Rebalanced implements consumer.Observer: assigned partitions are tracked,
// revoked and lost ones forgotten.
func (m *Monitor) Rebalanced(e consumer.Event, partitions map[string][]int32) {
	if e >= consumer.Assigned && e <= consumer.Lost {
		m.rebalances[e].Add(1)
	}
	if e == consumer.Assigned {
		for topic, ps := range partitions {
			for _, p := range ps {
				m.own(topic, p)
			}
		}
		m.mu.Lock()
		m.joined = true
		m.mu.Unlock()
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e == consumer.Lost {
		m.joined = false
	}
	parts := maps.Clone(*m.parts.Load())
	for topic, ps := range partitions {
		for _, partition := range ps {
			p := parts[key{topic, partition}]
			if p == nil {
				continue
			}
			delete(parts, key{topic, partition})
			p.mu.Lock()
			m.retiredCounts(topic).add(&p.counts)
			p.mu.Unlock()
		}
	}
	m.parts.Store(&parts)
}

// retiredCounts returns the counts of topic's partitions no longer owned;
// the caller holds m.mu.
func (m *Monitor) retiredCounts(topic string) *counts {
	c := m.retired[topic]
	if c == nil {
		c = new(counts)
		m.retired[topic] = c
	}
	return c
}

// Paused implements consumer.Observer.
func (m *Monitor) Paused(topic string, partition int32, paused bool) {
	if p := m.lookup(topic, partition); p != nil {
		p.mu.Lock()
		p.paused = paused
		p.mu.Unlock()
	}
}

// runReturned tells the Monitor that the Consumer's Run returned, with its
// error: Healthy and Ready fail from then on.
func (m *Monitor) runReturned(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stopped, m.stopErr = true, err
}

// Snapshot is the state of every partition a Monitor observes.
type Snapshot struct {
	Group         string
	Status        Status        // the worst partition status
	MaxLag        int64         // the largest Lag
	MaxLagTime    time.Duration // the largest LagTime
	Partitions    []PartitionLag
	Stopped       bool  // the Consumer's Run returned
	StoppedReason error // the error Run returned
}

// PartitionLag is the state of one partition.
type PartitionLag struct {
	Topic     string
	Partition int32
	// HighWatermark is the partition's end at the last fetch that returned
	// it; LogStart its first offset. Both are -1 until a fetch.
	HighWatermark int64
	LogStart      int64
	// Committed is the last offset the broker accepted for the group (the
	// next offset to read), -1 before the first commit.
	Committed int64
	// Processed is the next offset to handle: that of the oldest record
	// received and not handled, the offset after the last handled record,
	// or the end of the partition when a fetch found nothing more. With
	// consumer.KeyOrder and Unordered, records after it may be handled
	// already. -1 until a fetch.
	Processed int64
	// Offset is where Lag counts from: Committed, or before the first
	// commit the offset the consumer started reading at; Processed for a
	// consumer without a group. -1 until a fetch.
	Offset int64
	// Lag is HighWatermark minus Offset, in records; 0 when unknown.
	Lag int64
	// LagTime is the age of the oldest record received and not yet
	// handled, by its timestamp: 0 when none waits.
	LagTime time.Duration
	Held    int  // records received and not yet handled
	Paused  bool // fetching is paused by backpressure, or the breaker holds the partition
	// BreakerHeld: the dead-letter router's open circuit breaker holds the
	// partition's next record (fault.ErrHeld).
	BreakerHeld bool
	Status      Status
	Reason      string // why Status is not OK
}

// Snapshot returns the state of every partition, sorted by topic and
// partition, evaluated now.
func (m *Monitor) Snapshot() Snapshot {
	now := m.cfg.now().UnixNano()
	parts := *m.parts.Load()
	m.mu.Lock()
	group, cfg := m.group, m.cfg
	m.mu.Unlock()
	s := Snapshot{Group: group, Partitions: make([]PartitionLag, 0, len(parts))}
	for k, p := range parts {
		pl := p.snapshot(now, &cfg)
		pl.Topic, pl.Partition = k.topic, k.partition
		s.Partitions = append(s.Partitions, pl)
		s.Status = max(s.Status, pl.Status)
		s.MaxLag = max(s.MaxLag, pl.Lag)
		s.MaxLagTime = max(s.MaxLagTime, pl.LagTime)
	}
	slices.SortFunc(s.Partitions, func(a, b PartitionLag) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	m.mu.Lock()
	s.Stopped, s.StoppedReason = m.stopped, m.stopErr
	m.mu.Unlock()
	return s
}

func (p *part) snapshot(now int64, c *cfg) PartitionLag {
	p.mu.Lock()
	defer p.mu.Unlock()
	pl := PartitionLag{
		HighWatermark: p.hwm,
		LogStart:      p.logStart,
		Committed:     p.committed,
		Processed:     p.processed,
		Offset:        p.position(c.grouped),
		Lag:           p.lag(c.grouped),
		Held:          p.held.len(),
		Paused:        p.paused || p.breaker,
		BreakerHeld:   p.breaker,
	}
	if ts, ok := p.held.oldest(); ok {
		pl.LagTime = time.Duration(max(0, now-ts))
	}
	pl.Status, pl.Reason = p.evaluate(now, c)
	return pl
}

// Healthy returns nil while the Consumer works, and an error wrapping
// ErrUnhealthy once the Consumer's Run returned or while a partition's status is
// STOP: records wait and no handler call returned and no commit was
// accepted for StuckAfter.
func (m *Monitor) Healthy() error {
	return m.Snapshot().healthy()
}

func (s Snapshot) healthy() error {
	if s.Stopped {
		if s.StoppedReason != nil {
			return fmt.Errorf("%w: consumer stopped: %w", ErrUnhealthy, s.StoppedReason)
		}
		return fmt.Errorf("%w: consumer stopped", ErrUnhealthy)
	}
	var stopped []string
	for _, p := range s.Partitions {
		if p.Status == StatusStop {
			stopped = append(stopped, fmt.Sprintf("%s/%d: %s", p.Topic, p.Partition, p.Reason))
		}
	}
	if len(stopped) > 0 {
		return fmt.Errorf("%w: %s", ErrUnhealthy, strings.Join(stopped, "; "))
	}
	return nil
}

// Ready returns nil once the Consumer is ready to serve, and an error
// wrapping ErrNotReady before: until its group gave it an assignment (after
// a loss, until the next one), while the Consumer is not Ready (a
// FullReplay catching up, for example), and once Run returned. An
// assignment without partitions counts: the member is part of its group and
// takes partitions over when another leaves. A Consumer without a group
// needs no assignment.
func (m *Monitor) Ready() error {
	m.mu.Lock()
	stopped, joined, cons, grouped, group, dead := m.stopped, m.joined, m.cons, m.cfg.grouped, m.group, m.dead
	m.mu.Unlock()
	switch {
	case stopped:
		return fmt.Errorf("%w: consumer stopped", ErrNotReady)
	case cons == nil:
		return fmt.Errorf("%w: not attached to a consumer", ErrNotReady)
	case grouped && !joined:
		return fmt.Errorf("%w: no partitions assigned by group %q yet", ErrNotReady, group)
	}
	if err := cons.Ready(); err != nil {
		return fmt.Errorf("%w: %w", ErrNotReady, err)
	}
	// An open breaker means a systemic failure downstream: out of service,
	// but alive (a restart would not mend the sink), so /readyz fails and
	// /healthz does not.
	if d := dead; d != nil {
		if st := d.RouterStats(); st.Breaker != fault.BreakerClosed {
			return fmt.Errorf("%w: dead-letter circuit breaker %v, holding %d partitions: %s", ErrNotReady, st.Breaker, st.Held, st.Reason)
		}
	}
	return nil
}

// fifo holds the offsets and timestamps of records received and not yet
// handled, in offset order. Records finish in offset order with
// consumer.PartitionOrder, in any order with KeyOrder and Unordered: a
// finished record stays until every record before it finished. It is
// bounded by the Consumer's in-flight limits.
type fifo struct {
	buf  []heldRecord
	head int
	open int // records not finished
}

type heldRecord struct {
	offset, ts int64
	done       bool // handled
	failed     bool // its last handler call failed
}

// len returns how many records are held and not handled.
func (q *fifo) len() int { return q.open }

// push appends a record unless it is not after the last one held, which
// happens only when a fetch repeats what was already handed over.
func (q *fifo) push(offset, ts int64) {
	if n := len(q.buf); n > q.head && q.buf[n-1].offset >= offset {
		return
	}
	if q.head > 0 && len(q.buf) == cap(q.buf) {
		n := copy(q.buf, q.buf[q.head:])
		clear(q.buf[n:])
		q.buf, q.head = q.buf[:n], 0
	}
	q.buf = append(q.buf, heldRecord{offset: offset, ts: ts})
	q.open++
}

// settle records the outcome of a handler call for the record at offset.
// It reports whether the call retried a record whose last call failed, and
// returns the next offset to handle: that of the oldest record not handled,
// or the offset after the last one when all are; -1 if offset is not held.
func (q *fifo) settle(offset int64, ok bool) (retry bool, next int64) {
	i := q.find(offset)
	if i < 0 {
		return false, -1
	}
	h := &q.buf[i]
	retry = h.failed
	if !ok {
		h.failed = true
		return retry, q.buf[q.head].offset
	}
	h.done = true
	q.open--
	next = q.buf[q.head].offset
	for q.head < len(q.buf) && q.buf[q.head].done {
		next = q.buf[q.head].offset + 1
		q.head++
	}
	if q.head < len(q.buf) {
		next = q.buf[q.head].offset
	} else {
		q.buf, q.head = q.buf[:0], 0
	}
	return retry, next
}

// find returns the index of the record at offset, or -1.
func (q *fifo) find(offset int64) int {
	if q.head < len(q.buf) && q.buf[q.head].offset == offset {
		return q.head
	}
	i, ok := slices.BinarySearchFunc(q.buf[q.head:], offset, func(h heldRecord, o int64) int {
		return cmp.Compare(h.offset, o)
	})
	if !ok || q.buf[q.head+i].done {
		return -1
	}
	return q.head + i
}

// oldest returns the timestamp of the oldest record not handled.
func (q *fifo) oldest() (int64, bool) {
	if q.head == len(q.buf) {
		return 0, false
	}
	return q.buf[q.head].ts, true
}
