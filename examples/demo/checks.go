package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/kconsumer/kconsumer/dlq"
	"github.com/kconsumer/kconsumer/examples/internal/telemetry"
	"github.com/kconsumer/kconsumer/fault"
)

// result is what the demo found.
type result struct {
	readings       int
	sensors        int
	kills          int
	rebalanceKills int

	truth, exact, naive usageTotals
	naiveRan            bool

	currentExact    int               // sensors whose last reading current serves exactly
	alertsExpected  int               // readings outside the site
	alertsDistinct  int               // of them, alerted
	alertsPublished int               // alerts on the topic, re-deliveries included
	letters         map[string]string // group → "" if its dead letter is right, else what is wrong

	stalls []*stallRound // per kill round, how long each killed service's partitions stood still

	failures []string
}

// usageTotals sums usage over all sensors; exactSensors counts the sensors
// whose totals and record count equal the truth.
type usageTotals struct {
	hours, km    float64
	records      int64
	exactSensors int
}

func (r result) ok() bool { return len(r.failures) == 0 }

func (r *result) fail(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

// sensorUsage is an element of query's GET /usage.
type sensorUsage struct {
	SensorID   string  `json:"sensor_id"`
	TotalHours float64 `json:"total_hours"`
	TotalKm    float64 `json:"total_km"`
	Records    int64   `json:"records"`
}

// check stops the consumers gracefully and compares what the services hold
// with the truth.
func (d *demo) check(ctx context.Context, truth telemetry.Truth, res result) (result, error) {
	res.readings, res.sensors = truth.Messages, len(truth.Sensors)
	for _, s := range truth.Sensors {
		res.truth.hours += s.TotalHours
		res.truth.km += s.TotalKm
		res.truth.records += int64(s.Records)
		res.truth.exactSensors++
		res.alertsExpected += s.Outside
	}

	// SIGTERM: each consumer drains, writes its checkpoints, commits and
	// leaves; each must exit 0.
	consumers := []*service{d.alerts}
	for _, u := range d.usage {
		if u.running() {
			consumers = append(consumers, u)
		}
	}
	if d.naive != nil {
		consumers = append(consumers, d.naive)
	}
	for _, s := range consumers {
		if err := s.stop(30 * time.Second); err != nil {
			res.fail("graceful stop: %v", err)
		}
	}
	for _, g := range []string{"usage", "alerts"} {
		n, err := d.committed(ctx, g)
		if err != nil {
			return res, err
		}
		if n != d.total {
			res.fail("group %s committed %d of %d records after its graceful stop", g, n, d.total)
		}
	}
	d.logf("consumers stopped with SIGTERM; checking")

	// current: the last reading of every sensor.
	var last []telemetry.Telemetry
	if err := getJSON(ctx, d.current.url("/sensors"), &last); err != nil {
		return res, err
	}
	served := make(map[string]telemetry.Telemetry, len(last))
	for _, t := range last {
		served[t.SensorID] = t
	}
	for _, s := range truth.Sensors {
		if got, ok := served[s.SensorID]; ok && got == s.Last {
			res.currentExact++
		} else {
			res.fail("current serves %+v for %s, the last reading was %+v", got, s.SensorID, s.Last)
		}
	}
	if len(served) != len(truth.Sensors) {
		res.fail("current serves %d sensors, %d exist", len(served), len(truth.Sensors))
	}

	// query: usage totals, to the cent. Both queries scan every usage
	// record, so they run at the same time.
	qctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var exact, naive []sensorUsage
	g, gctx := errgroup.WithContext(qctx)
	g.Go(func() error { return getJSON(gctx, d.query.url("/usage"), &exact) })
	if d.queryNaive != nil {
		res.naiveRan = true
		g.Go(func() error { return getJSON(gctx, d.queryNaive.url("/usage"), &naive) })
	}
	if err := g.Wait(); err != nil {
		return res, err
	}
	res.exact = usageTotalsOf(exact, truth, &res, true)
	res.naive = usageTotalsOf(naive, truth, &res, false)

	if err := d.checkAlerts(ctx, truth, &res); err != nil {
		return res, err
	}
	if err := d.checkDeadLetters(ctx, &res); err != nil {
		return res, err
	}
	d.printTable(res)
	return res, nil
}

// usageTotalsOf sums query's rows and counts the sensors equal to the
// truth; with strict, each difference is a failure.
func usageTotalsOf(rows []sensorUsage, truth telemetry.Truth, res *result, strict bool) usageTotals {
	bySensor := make(map[string]sensorUsage, len(rows))
	var t usageTotals
	for _, r := range rows {
		bySensor[r.SensorID] = r
		t.hours += r.TotalHours
		t.km += r.TotalKm
		t.records += r.Records
	}
	for _, s := range truth.Sensors {
		got := bySensor[s.SensorID]
		if telemetry.Cents(got.TotalHours) == telemetry.Cents(s.TotalHours) &&
			telemetry.Cents(got.TotalKm) == telemetry.Cents(s.TotalKm) && got.Records == int64(s.Records) {
			t.exactSensors++
			continue
		}
		if strict {
			res.fail("usage of %s: %.2f h, %.2f km in %d records; the truth is %.2f h, %.2f km in %d",
				s.SensorID, got.TotalHours, got.TotalKm, got.Records, s.TotalHours, s.TotalKm, s.Records)
		}
	}
	if strict {
		known := make(map[string]bool, len(truth.Sensors))
		for _, s := range truth.Sensors {
			known[s.SensorID] = true
		}
		for _, r := range rows {
			if !known[r.SensorID] {
				res.fail("query returns usage of %s, a sensor that sent nothing", r.SensorID)
			}
		}
	}
	return t
}

// readAll returns every record of topic, from its start to its current end.
func (d *demo) readAll(ctx context.Context, topic string) ([]*kgo.Record, error) {
	ends, err := d.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	want := make(map[int32]int64)
	parts := make(map[int32]kgo.Offset)
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
			parts[o.Partition] = kgo.NewOffset().AtStart()
		}
	})
	if len(want) == 0 {
		return nil, nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(d.brokers), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		fs.EachError(func(_ string, _ int32, err error) { _ = err }) // retried by the client
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, r)
			if end, ok := want[r.Partition]; ok && r.Offset+1 >= end {
				delete(want, r.Partition)
			}
		})
	}
	return out, nil
}

// checkAlerts reads sensor-alerts and compares the readings alerted with
// the readings outside the site.
func (d *demo) checkAlerts(ctx context.Context, truth telemetry.Truth, res *result) error {
	recs, err := d.readAll(ctx, telemetry.AlertsTopic)
	if err != nil {
		return err
	}
	res.alertsPublished = len(recs)
	sources := make(map[string]string) // source record → sensor
	for _, r := range recs {
		var a struct {
			SensorID string `json:"sensor_id"`
			Source   string `json:"source"`
		}
		if err := json.Unmarshal(r.Value, &a); err != nil {
			res.fail("alert %s/%d@%d is not JSON: %v", r.Topic, r.Partition, r.Offset, err)
			continue
		}
		sources[a.Source] = a.SensorID
	}
	res.alertsDistinct = len(sources)
	perSensor := make(map[string]int)
	for _, sensor := range sources {
		perSensor[sensor]++
	}
	for _, s := range truth.Sensors {
		if perSensor[s.SensorID] != s.Outside {
			res.fail("alerts for %s: %d readings, %d were outside the site", s.SensorID, perSensor[s.SensorID], s.Outside)
		}
	}
	return nil
}

// checkDeadLetters finds the malformed record in the dead-letter topic, once
// per group that consumes with a dead-letter router, and checks that its
// letter keeps the record and says where it came from and why.
func (d *demo) checkDeadLetters(ctx context.Context, res *result) error {
	recs, err := d.readAll(ctx, telemetry.DLQTopic)
	if err != nil {
		return err
	}
	m := d.malformed
	res.letters = map[string]string{"usage": "not found", "alerts": "not found"}
	for _, r := range recs {
		l, err := dlq.Parse(r)
		if err != nil || l.Topic != m.Topic || l.Partition != m.Partition || l.Offset != m.Offset {
			continue
		}
		var wrong []string
		if !bytes.Equal(r.Key, m.Key) || !bytes.Equal(r.Value, m.Value) {
			wrong = append(wrong, "key or value changed")
		}
		if len(l.Headers) != 1 || l.Headers[0].Key != "origin" || string(l.Headers[0].Value) != "kconsumer-demo" {
			wrong = append(wrong, fmt.Sprintf("original headers %v", l.Headers))
		}
		if l.Class != fault.Poison || l.Error == "" {
			wrong = append(wrong, fmt.Sprintf("class %v, error %q", l.Class, l.Error))
		}
		if !l.Timestamp.Equal(m.Timestamp.Truncate(time.Millisecond)) {
			wrong = append(wrong, fmt.Sprintf("timestamp %v, want %v", l.Timestamp, m.Timestamp))
		}
		if prev, ok := res.letters[l.Group]; ok && prev != "" {
			res.letters[l.Group] = strings.Join(wrong, "; ")
		}
	}
	for _, g := range slices.Sorted(maps.Keys(res.letters)) {
		if msg := res.letters[g]; msg != "" {
			res.fail("dead letter of the malformed record for group %s: %s", g, msg)
		}
	}
	return nil
}

// printTable prints the outcome side by side.
func (d *demo) printTable(res result) {
	w := d.out
	mark := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "WRONG"
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-38s %14s %20s", "", "ground truth", "kconsumer")
	if res.naiveRan {
		fmt.Fprintf(w, " %22s", "field (naive)")
	}
	fmt.Fprintln(w)
	row := func(name string, truth, exact, naive string, ok bool) {
		fmt.Fprintf(w, "%-38s %14s %14s %-5s", name, truth, exact, mark(ok))
		if res.naiveRan && naive != "" {
			fmt.Fprintf(w, " %22s", naive)
		}
		fmt.Fprintln(w)
	}
	diff := func(got, want int64) string {
		if got == want {
			return fmt.Sprint(got)
		}
		return fmt.Sprintf("%d (%+d)", got, got-want)
	}
	diffCents := func(got, want float64) string {
		g, t := telemetry.Cents(got), telemetry.Cents(want)
		if g == t {
			return fmt.Sprintf("%.2f", got)
		}
		return fmt.Sprintf("%.2f (%+.2f)", got, float64(g-t)/100)
	}
	tr, ex, nv := res.truth, res.exact, res.naive
	row("usage records", fmt.Sprint(tr.records), fmt.Sprint(ex.records), diff(nv.records, tr.records), ex.records == tr.records)
	row("engine hours, all sensors", fmt.Sprintf("%.2f", tr.hours), fmt.Sprintf("%.2f", ex.hours), diffCents(nv.hours, tr.hours),
		telemetry.Cents(ex.hours) == telemetry.Cents(tr.hours))
	row("kilometres, all sensors", fmt.Sprintf("%.2f", tr.km), fmt.Sprintf("%.2f", ex.km), diffCents(nv.km, tr.km),
		telemetry.Cents(ex.km) == telemetry.Cents(tr.km))
	row("sensors with exact usage", fmt.Sprint(res.sensors), fmt.Sprint(ex.exactSensors), fmt.Sprintf("%d of %d", nv.exactSensors, res.sensors),
		ex.exactSensors == res.sensors)
	row("current: exact last reading", fmt.Sprint(res.sensors), fmt.Sprint(res.currentExact), "", res.currentExact == res.sensors)
	row("alerts: readings outside the site", fmt.Sprint(res.alertsExpected), fmt.Sprint(res.alertsDistinct), "", res.alertsDistinct == res.alertsExpected)
	var found []string
	lettersOK := true
	for _, g := range slices.Sorted(maps.Keys(res.letters)) {
		if res.letters[g] == "" {
			found = append(found, g)
		} else {
			lettersOK = false
		}
	}
	row("malformed record in "+telemetry.DLQTopic, "usage, alerts", strings.Join(found, ", "), "", lettersOK)
	fmt.Fprintf(w, "\n%d readings, %d kill rounds (%d during a rebalance); %d alerts published for %d readings (re-deliveries after kills are marked by their source)\n",
		res.readings, res.kills, res.rebalanceKills, res.alertsPublished, res.alertsDistinct)
	if res.naiveRan {
		fmt.Fprintln(w, "The naive column is the field's approach under the same kills: auto-commit and a checkpoint written apart from the delta.")
	}
	d.printStalls(res.stalls)
	if res.ok() {
		fmt.Fprintf(w, "\nOK: every reading counted exactly once, nothing lost, every check passed (%.0fs)\n", time.Since(d.began).Seconds())
		return
	}
	fmt.Fprintf(w, "\nFAIL: %d checks failed:\n", len(res.failures))
	for _, f := range res.failures[:min(len(res.failures), 20)] {
		fmt.Fprintln(w, "  -", f)
	}
}

// printStalls prints the stall of each measured service after each kill,
// a summary row and the legend.
func (d *demo) printStalls(rounds []*stallRound) {
	if len(rounds) == 0 {
		return
	}
	w := d.out
	fmt.Fprintf(w, "\n%-38s", "stall after SIGKILL")
	for _, s := range measured {
		fmt.Fprintf(w, " %20s", s)
	}
	fmt.Fprintln(w)
	for _, r := range rounds {
		name := fmt.Sprintf("kill %d", r.kill)
		if r.rebalance {
			name += ", during a rebalance"
		}
		fmt.Fprintf(w, "%-38s", name)
		for _, s := range measured {
			cell := "-"
			for _, st := range r.stalls {
				if st.service != s {
					continue
				}
				switch {
				case !st.over():
					cell = fmt.Sprintf("> %v", stallLimit)
				case st.fallback:
					cell = seconds(st.took) + "*"
				default:
					cell = seconds(st.took)
				}
			}
			fmt.Fprintf(w, " %20s", cell)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "%-38s", "count, median, max")
	for _, s := range measured {
		var over []time.Duration
		all := stallsOf(rounds, s)
		for _, t := range all {
			if t >= 0 {
				over = append(over, t)
			}
		}
		cell := fmt.Sprintf("%d", len(over))
		if len(over) > 0 {
			cell = fmt.Sprintf("%d, %s, %s", len(over), seconds(median(over)), seconds(slices.Max(over)))
		}
		if len(over) < len(all) {
			cell += fmt.Sprintf(" (+%d not back)", len(all)-len(over))
		}
		fmt.Fprintf(w, " %20s", cell)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Stall: from the SIGKILL until every partition the killed instance owned (or, in a group, was handing over)\n"+
		"is owned again by a live instance that has handled it up to the offset the killed one had reached: records\n"+
		"handled again count as stall. Read from the services' /metrics (kconsumer_partition_status and\n"+
		"kconsumer_partition_processed_offset) every %v. usage and alerts wait for the killed member's session (%v)\n"+
		"to expire; current replays the topic from the start. The naive usage has no such metrics.\n", stallPoll, d.cfg.session)
	for _, r := range rounds {
		for _, st := range r.stalls {
			if st.fallback {
				fmt.Fprintln(w, "* ownership not observed at the kill: every partition, from the group's committed offsets.")
				return
			}
		}
	}
}
