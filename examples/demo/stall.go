package main

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/kconsumer/kconsumer/examples/internal/telemetry"
)

// The stall of a kill of service S (usage, alerts or current) is the time
// from the SIGKILL until every partition the killed instance owned is back:
// owned again by a live instance of S (the restarted one, or usage#2 in the
// group) that has handled it up to the offset the killed instance had
// reached. Records the killed instance had handled and the next owner
// handles again (from the last commit or checkpoint; current from the
// start) are part of the stall, not progress.
//
// It is measured from the services' own metrics (package lag):
// kconsumer_partition_status exists for each partition an instance owns,
// kconsumer_partition_processed_offset is the next offset it will handle.
// The killed instance's /metrics, read just before the SIGKILL, give the
// partitions it owned and its position in each; afterwards the /metrics of
// every instance of S are read every stallPoll, and each partition's stall
// ends at the first reading that shows it back. The service's stall is the
// longest of its partitions'.
//
// Two cases have no processed offset to compare:
//   - a partition the killed instance owned but had not fetched yet is back
//     once a live instance owns it;
//   - a partition that received no record since the kill has nothing for
//     its new owner to fetch, and the consumer reports no offset until a
//     fetch returns records: it is back once an owner that is ready
//     (kconsumer_ready: positioned after its checkpoint, for usage) shows no
//     offset for it in two readings in a row while the broker's end offset
//     of the partition is still the killed instance's position (an owner
//     with records to handle again fetches them as soon as it is
//     positioned, and then shows an offset).
//
// During a cooperative rebalance a group member revokes partitions before
// the group gives them to another member; if it is killed in between, the
// group waits for its session to expire before it hands them on. So for
// usage and alerts the stall also covers the partitions no instance owned
// at the kill, from the group's commits (the revoking member committed).
//
// If a killed instance's metrics could not be read (or showed no
// partition), the stall falls back to every partition of the topic and the
// group's committed offsets at the kill (current: ownership alone).

// stallPoll is how often the services' metrics are read while a stall
// lasts: the resolution of the measurement.
const stallPoll = 50 * time.Millisecond

// stallLimit is how long a stall is measured at most; a partition that
// does not come back within it is reported as such.
const stallLimit = 2 * time.Minute

// measured are the services whose stalls are measured, in the order they
// are printed; their metrics carry these group labels. The naive usage has
// no such metrics.
var measured = []string{"usage", "alerts", "current"}

// stall is the stall of one service after one kill.
type stall struct {
	service string    // "usage"
	killed  []string  // instances killed: "usage#1"
	at      time.Time // the first SIGKILL of these instances
	// from holds the partitions the killed instances owned and their
	// positions (next offset to handle) at the kill; -1 when unknown.
	from       map[int32]int64
	fallback   bool     // ownership was not observed: see above
	handedOver int      // of from, partitions being handed over at the kill
	addrs      []string // HTTP addresses of every instance of the service
	ends       func(context.Context) (map[int32]int64, error)

	// Set by the watch.
	ownedAt map[int32]time.Duration // since the kill, when each partition had a live owner again
	backAt  map[int32]time.Duration // and when it was back
	idle    map[int32]int           // readings in a row showing it owned and idle
	owned   time.Duration           // until every partition had a live owner again; -1 before
	took    time.Duration           // the stall; -1 until every partition is back
	left    []int32                 // partitions not back when the watch gave up
}

func (st *stall) over() bool { return st.took >= 0 }

// stallRound is the stalls of one kill round, measured in the background
// until done is closed.
type stallRound struct {
	kill      int
	rebalance bool
	stalls    []*stall // by service, in the order of measured
	done      chan struct{}
	printed   bool
}

// partitionState is what the metrics of a service's instances say about
// one of its partitions.
type partitionState struct {
	owned     bool
	processed int64 // next offset to handle; -1 when not reported
	ready     bool  // an owner reports kconsumer_ready 1
}

// scrapePartitions reads the partitions an instance of group owns from its
// /metrics, with their processed offsets.
func scrapePartitions(ctx context.Context, addr, group string) (map[int32]partitionState, error) {
	q := url.Values{"name[]": {"kconsumer_partition_status", "kconsumer_partition_processed_offset", "kconsumer_ready"}}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	code, body, err := get(ctx, "http://"+addr+"/metrics?"+q.Encode())
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET %s/metrics: %d", addr, code)
	}
	return parsePartitions(string(body), group, telemetry.Topic), nil
}

// parsePartitions extracts, from a Prometheus text exposition, the
// partitions of topic that group's consumer owns.
func parsePartitions(text, group, topic string) map[int32]partitionState {
	out := make(map[int32]partitionState)
	ready := false
	for line := range strings.SplitSeq(text, "\n") {
		name, labels, value, ok := parseSample(line)
		if !ok || labels["group"] != group {
			continue
		}
		if name == "kconsumer_ready" {
			ready = value == 1
			continue
		}
		if labels["topic"] != topic {
			continue
		}
		p, err := strconv.ParseInt(labels["partition"], 10, 32)
		if err != nil {
			continue
		}
		st, seen := out[int32(p)]
		if !seen {
			st.processed = -1
		}
		switch name {
		case "kconsumer_partition_status":
			st.owned = true
		case "kconsumer_partition_processed_offset":
			st.processed = int64(value)
		default:
			continue
		}
		out[int32(p)] = st
	}
	for p, st := range out {
		st.ready = ready
		out[p] = st
	}
	return out
}

// parseSample parses a sample line `name{k="v",...} value`; label values
// with escaped quotes or commas are not needed here and not supported.
func parseSample(line string) (name string, labels map[string]string, value float64, ok bool) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return "", nil, 0, false
	}
	labels = make(map[string]string)
	rest := line
	if open := strings.IndexByte(line, '{'); open >= 0 {
		end := strings.IndexByte(line, '}')
		if end < open {
			return "", nil, 0, false
		}
		name, rest = line[:open], line[end+1:]
		for pair := range strings.SplitSeq(line[open+1:end], ",") {
			if k, v, found := strings.Cut(pair, "="); found {
				labels[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"`)
			}
		}
	} else {
		name, rest, _ = strings.Cut(line, " ")
	}
	fields := strings.Fields(rest)
	if name == "" || len(fields) == 0 {
		return "", nil, 0, false
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return "", nil, 0, false
	}
	return name, labels, v, true
}

// instances returns the HTTP addresses of every instance of group.
func (d *demo) instances(group string) []string {
	var out []string
	for _, s := range append([]*service{d.current, d.alerts, d.naive}, d.usage...) {
		if s != nil && s.group == group {
			out = append(out, s.addr)
		}
	}
	return out
}

// beforeKill reads, at the same time, what each running instance of the
// measured services owns: the victims and the instances that survive the
// kill. An instance that did not answer maps to nil.
func (d *demo) beforeKill(ctx context.Context) map[*service]map[int32]partitionState {
	// Short: the kill during a rebalance must not wait for it to end.
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	out := make(map[*service]map[int32]partitionState)
	for _, s := range append([]*service{d.current, d.alerts}, d.usage...) {
		if s.group == "" || !s.running() {
			continue
		}
		addr, group := s.addr, s.group
		wg.Go(func() {
			parts, err := scrapePartitions(ctx, addr, group)
			if err != nil {
				parts = nil
			}
			mu.Lock()
			out[s] = parts
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// killAll SIGKILLs the victims, one after the other, and returns when each
// was killed.
func killAll(victims []*service) map[*service]time.Time {
	at := make(map[*service]time.Time, len(victims))
	for _, s := range victims {
		at[s] = time.Now()
		s.kill()
	}
	return at
}

// watchStalls starts measuring, in the background, the stalls of the
// services killed in round kill, given what the victims owned just before
// and when each was killed.
func (d *demo) watchStalls(ctx context.Context, kill int, rebalance bool, owned map[*service]map[int32]partitionState, killedAt map[*service]time.Time) {
	r := &stallRound{kill: kill, rebalance: rebalance, done: make(chan struct{})}
	for _, group := range measured {
		st := &stall{
			service: group, from: make(map[int32]int64), addrs: d.instances(group), ends: d.endOffsets,
			ownedAt: make(map[int32]time.Duration), backAt: make(map[int32]time.Duration), idle: make(map[int32]int),
			owned: -1, took: -1,
		}
		unknown := false // a victim's metrics could not be read
		for s, at := range killedAt {
			if s.group != group {
				continue
			}
			st.killed = append(st.killed, s.name)
			if st.at.IsZero() || at.Before(st.at) {
				st.at = at
			}
			parts, scraped := owned[s]
			if scraped && parts == nil {
				unknown = true
			}
			for p, ps := range parts {
				if !ps.owned {
					continue
				}
				if prev, ok := st.from[p]; ok {
					st.from[p] = max(prev, ps.processed)
				} else {
					st.from[p] = ps.processed
				}
			}
		}
		if len(st.killed) == 0 {
			continue
		}
		slices.Sort(st.killed)
		if unknown || len(st.from) == 0 {
			st.fallback = true
			st.from = d.fallbackPositions(ctx, group)
		} else if group != "current" {
			d.addHandedOver(ctx, st, owned)
		}
		r.stalls = append(r.stalls, st)
	}
	d.rounds = append(d.rounds, r)
	d.watchers.Go(func() {
		defer close(r.done)
		r.watch(ctx)
	})
}

// addHandedOver adds to a group service's stall the partitions no instance
// owned at the kill: a member revokes partitions during a cooperative
// rebalance before the group gives them to another, and if the member is
// killed before it rejoins, the group waits for its session to expire. Their
// position is the group's commit, which the revoking member made. Without
// the word of every running instance, nothing is added.
func (d *demo) addHandedOver(ctx context.Context, st *stall, owned map[*service]map[int32]partitionState) {
	taken := make(map[int32]bool)
	for s, parts := range owned {
		if s.group != st.service {
			continue
		}
		if parts == nil {
			return
		}
		for p, ps := range parts {
			taken[p] = taken[p] || ps.owned
		}
	}
	for p, committed := range d.fallbackPositions(ctx, st.service) {
		if _, ok := st.from[p]; !ok && !taken[p] {
			st.from[p] = committed
			st.handedOver++
		}
	}
}

// endOffsets returns the end offset of each partition of the topic.
func (d *demo) endOffsets(ctx context.Context) (map[int32]int64, error) {
	ends, err := d.adm.ListEndOffsets(ctx, telemetry.Topic)
	if err != nil {
		return nil, err
	}
	out := make(map[int32]int64)
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			out[o.Partition] = o.Offset
		}
	})
	return out, nil
}

// fallbackPositions returns every partition of the topic with the group's
// committed offset (-1 for current, which has no group, or without a
// commit).
func (d *demo) fallbackPositions(ctx context.Context, group string) map[int32]int64 {
	out := make(map[int32]int64)
	ends, err := d.endOffsets(ctx)
	if err != nil {
		for p := range int32(d.cfg.partitions) {
			out[p] = -1
		}
		return out
	}
	for p := range ends {
		out[p] = -1
	}
	if group == "current" {
		return out
	}
	if resp, err := d.adm.FetchOffsets(ctx, group); err == nil {
		resp.Each(func(o kadm.OffsetResponse) {
			if _, ok := out[o.Partition]; ok && o.Topic == telemetry.Topic && o.Err == nil && o.At >= 0 {
				out[o.Partition] = o.At
			}
		})
	}
	return out
}

// watch reads the instances of each stalled service until its partitions
// are back, ctx is done or stallLimit passed.
func (r *stallRound) watch(ctx context.Context) {
	tick := time.NewTicker(stallPoll)
	defer tick.Stop()
poll:
	for {
		open, giveUp := false, true
		for _, st := range r.stalls {
			if !st.over() {
				st.poll(ctx)
			}
			open = open || !st.over()
			giveUp = giveUp && (st.over() || time.Since(st.at) > stallLimit)
		}
		if !open || giveUp {
			break
		}
		select {
		case <-ctx.Done():
			break poll
		case <-tick.C:
		}
	}
	for _, st := range r.stalls {
		for p := range st.from {
			if _, ok := st.backAt[p]; !ok {
				st.left = append(st.left, p)
			}
		}
		slices.Sort(st.left)
	}
}

// merged reads every instance of the service and returns, per partition,
// the most advanced state its live owners report.
func (st *stall) merged(ctx context.Context) map[int32]partitionState {
	all := make(map[int32]partitionState)
	for _, addr := range st.addrs {
		parts, err := scrapePartitions(ctx, addr, st.service)
		if err != nil {
			continue // not running, or not serving yet
		}
		for p, ps := range parts {
			if !ps.owned {
				continue
			}
			cur, ok := all[p]
			if ok {
				ps.processed = max(ps.processed, cur.processed)
				ps.ready = ps.ready || cur.ready
			}
			all[p] = ps
		}
	}
	return all
}

// poll reads the instances once and notes which partitions are owned again
// and which are back.
func (st *stall) poll(ctx context.Context) {
	now := st.merged(ctx)
	seen := time.Since(st.at)
	var ends map[int32]int64 // read when needed
	for p, from := range st.from {
		ps := now[p]
		if _, ok := st.ownedAt[p]; !ok && ps.owned {
			st.ownedAt[p] = seen
		}
		if _, ok := st.backAt[p]; ok {
			continue
		}
		switch {
		case !ps.owned:
			st.idle[p] = 0
		case from < 0 || ps.processed >= from:
			st.backAt[p] = seen
		case ps.processed < 0 && ps.ready && st.nothingSince(ctx, &ends, p, from):
			if st.idle[p]++; st.idle[p] >= 2 {
				st.backAt[p] = seen
			}
		default:
			st.idle[p] = 0
		}
	}
	if len(st.ownedAt) == len(st.from) && st.owned < 0 {
		st.owned = slices.Max(slices.Collect(maps.Values(st.ownedAt)))
	}
	if len(st.backAt) == len(st.from) {
		st.took = slices.Max(slices.Collect(maps.Values(st.backAt)))
	}
}

// nothingSince tells whether partition p still ends at from, the killed
// instance's position: nothing arrived since the kill. It reads the end
// offsets into *ends once per reading.
func (st *stall) nothingSince(ctx context.Context, ends *map[int32]int64, p int32, from int64) bool {
	if *ends == nil {
		*ends, _ = st.ends(ctx)
		if *ends == nil {
			*ends = map[int32]int64{}
		}
	}
	end, ok := (*ends)[p]
	return ok && end <= from
}

// awaitStalls waits until the stalls of every round are measured and
// prints those not printed yet, one line per kill.
func (d *demo) awaitStalls(ctx context.Context) {
	for _, r := range d.rounds {
		select {
		case <-r.done:
			continue
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
		d.logf("waiting for the services killed in round %d to come back", r.kill)
		select {
		case <-r.done:
		case <-ctx.Done():
			return
		}
	}
	d.reportStalls()
}

// reportStalls prints, in kill order, the rounds whose stalls are measured
// and not printed yet.
func (d *demo) reportStalls() {
	for _, r := range d.rounds {
		if r.printed {
			continue
		}
		select {
		case <-r.done:
		default:
			return
		}
		r.printed = true
		d.logf("kill %d/%d: %s", r.kill, d.cfg.kills, r.describe())
	}
}

// describe says how long each service stalled.
func (r *stallRound) describe() string {
	parts := make([]string, 0, len(r.stalls))
	for _, st := range r.stalls {
		who := strings.Join(st.killed, "+")
		if !st.over() {
			parts = append(parts, fmt.Sprintf("%s NOT BACK after %v (partitions %v)", who, stallLimit, st.left))
			continue
		}
		s := fmt.Sprintf("%s stalled %s (%d partitions", who, seconds(st.took), len(st.from))
		if st.handedOver > 0 {
			s += fmt.Sprintf(", %d of them being handed over at the kill", st.handedOver)
		}
		if st.owned >= 0 && st.owned < st.took {
			s += ", owned again after " + seconds(st.owned)
		}
		if st.fallback {
			s += ", ownership not observed: every partition"
		}
		parts = append(parts, s+")")
	}
	return strings.Join(parts, "; ")
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

// stallsOf returns the stalls of service, in kill order; an unfinished one
// is negative.
func stallsOf(rounds []*stallRound, service string) []time.Duration {
	var out []time.Duration
	for _, r := range rounds {
		for _, st := range r.stalls {
			if st.service == service {
				out = append(out, st.took)
			}
		}
	}
	return out
}

// median returns the median of ds, which must not be empty.
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
