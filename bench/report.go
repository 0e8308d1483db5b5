package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// report is everything a run measured; it is written as JSON, and rendered
// as Markdown and as an SVG chart.
type report struct {
	Started      time.Time         `json:"started"`
	Finished     time.Time         `json:"finished"`
	Command      string            `json:"command"`
	Go           string            `json:"go"`
	CPUs         int               `json:"cpus"`
	LoadFrom     string            `json:"load_from"` // /proc/loadavg before the runs
	Loads        []string          `json:"loads"`     // after each repetition
	LoadTo       string            `json:"load_to"`
	Options      reportOptions     `json:"options"`
	Seeding      float64           `json:"seeding_seconds"`
	Clients      map[string]string `json:"clients"` // descriptions by name
	Missing      []string          `json:"missing,omitempty"`
	Topics       []topicInfo       `json:"topics"`
	Runs         []run             `json:"runs"`
	Memory       []memoryCase      `json:"memory,omitempty"`
	BrokerHWMKiB int64             `json:"broker_hwm_kib"`
	Summary      []summary         `json:"summary"`
}

type reportOptions struct {
	Records    int    `json:"records"`
	Avro       int    `json:"avro"`
	Sizes      []int  `json:"sizes"`
	Partitions int    `json:"partitions"`
	Reps       int    `json:"reps"`
	Backlog    int    `json:"backlog"`
	Hold       string `json:"hold"`
}

// summary is the medians of one client's runs on one topic. Throughput
// ratios are medians of the ratios within each repetition, which ran the
// two clients back to back; the other ratios are ratios of medians.
type summary struct {
	Client   string   `json:"client"`
	Topic    string   `json:"topic"`
	Baseline string   `json:"baseline"`
	Runs     int      `json:"runs"`
	Failed   int      `json:"failed"`
	Errors   []string `json:"errors,omitempty"`

	TotalRate       float64 `json:"total_records_per_s"`  // client start to the last record
	SteadyRate      float64 `json:"steady_records_per_s"` // first record to the last
	SteadyRateMin   float64 `json:"steady_records_per_s_min"`
	SteadyRateMax   float64 `json:"steady_records_per_s_max"`
	SteadyMBps      float64 `json:"steady_mb_per_s"` // values, 10^6 bytes
	StartupMs       float64 `json:"startup_ms"`      // client start to the first record
	AllocsPerRecord float64 `json:"allocs_per_record"`
	BytesPerRecord  float64 `json:"alloc_bytes_per_record"`
	PeakRSSMiB      float64 `json:"peak_rss_mib"`
	CPUPerRecordUs  float64 `json:"cpu_us_per_record"`        // the client process, client start to the last record
	BrokerCPUUs     float64 `json:"broker_cpu_us_per_record"` // the broker, while the client ran

	TotalRatio  float64 `json:"total_ratio"`
	SteadyRatio float64 `json:"steady_ratio"`
	AllocRatio  float64 `json:"alloc_ratio"`
	RSSRatio    float64 `json:"rss_ratio"`
}

// baselineOf returns the client the others on topic are compared with.
func baselineOf(topic string) string {
	if topic == avroTopic {
		return "franz-go-hamba"
	}
	return "franz-go"
}

// summarize computes the summaries from the runs.
func (r *report) summarize(topics []topicInfo) {
	r.Topics = topics
	valueBytes := make(map[string]float64)
	for _, t := range topics {
		valueBytes[t.Name] = float64(t.ValueBytes) / float64(max(t.Records, 1))
	}
	type key struct{ client, topic string }
	byKey := make(map[key][]run)
	var order []key
	for _, run := range r.Runs {
		k := key{run.Client, run.Topic}
		if _, ok := byKey[k]; !ok {
			order = append(order, k)
		}
		byKey[k] = append(byKey[k], run)
	}
	rate := func(run run, ns int64) float64 { return float64(run.Records) / (float64(ns) / 1e9) }
	r.Summary = nil
	for _, k := range order {
		s := summary{Client: k.client, Topic: k.topic, Baseline: baselineOf(k.topic)}
		var total, steady, startup, allocs, bytes, rss, cpu, broker []float64
		for _, run := range byKey[k] {
			s.Runs++
			if k.client == "idle" && run.Err == "" {
				// It reads nothing: only its resident set counts.
				rss = append(rss, kib(run.HWMKiB))
				continue
			}
			if run.Err != "" || run.Records == 0 {
				s.Failed++
				if !slices.Contains(s.Errors, run.Err) {
					s.Errors = append(s.Errors, run.Err)
				}
				continue
			}
			n := float64(run.Records)
			total = append(total, rate(run, run.TotalNs))
			steady = append(steady, rate(run, run.SteadyNs))
			startup = append(startup, float64(run.TotalNs-run.SteadyNs)/1e6)
			allocs = append(allocs, float64(run.Mallocs)/n)
			bytes = append(bytes, float64(run.AllocBytes)/n)
			rss = append(rss, kib(run.HWMKiB))
			cpu = append(cpu, float64(run.CPUNs)/1e3/n)
			broker = append(broker, float64(run.BrokerCPUNs)/1e3/n)
		}
		s.PeakRSSMiB = median(rss)
		if len(steady) > 0 {
			s.TotalRate, s.SteadyRate = median(total), median(steady)
			s.SteadyRateMin, s.SteadyRateMax = slices.Min(steady), slices.Max(steady)
			s.SteadyMBps = s.SteadyRate * valueBytes[k.topic] / 1e6
			s.StartupMs = median(startup)
			s.AllocsPerRecord, s.BytesPerRecord = median(allocs), median(bytes)
			s.CPUPerRecordUs, s.BrokerCPUUs = median(cpu), median(broker)
		}
		r.Summary = append(r.Summary, s)
	}
	// Ratios to the baseline of the same topic.
	for i := range r.Summary {
		s := &r.Summary[i]
		bi := slices.IndexFunc(r.Summary, func(b summary) bool { return b.Client == s.Baseline && b.Topic == s.Topic })
		if bi < 0 || r.Summary[bi].SteadyRate == 0 || s.SteadyRate == 0 {
			continue
		}
		b := r.Summary[bi]
		s.TotalRatio = pairedRatio(byKey[key{s.Client, s.Topic}], byKey[key{b.Client, b.Topic}], func(run run) int64 { return run.TotalNs })
		s.SteadyRatio = pairedRatio(byKey[key{s.Client, s.Topic}], byKey[key{b.Client, b.Topic}], func(run run) int64 { return run.SteadyNs })
		if b.AllocsPerRecord > 0 {
			s.AllocRatio = s.AllocsPerRecord / b.AllocsPerRecord
		}
		if b.PeakRSSMiB > 0 {
			s.RSSRatio = s.PeakRSSMiB / b.PeakRSSMiB
		}
	}
}

// pairedRatio returns the median over the repetitions both completed of
// the throughput of runs divided by that of base.
func pairedRatio(runs, base []run, ns func(run) int64) float64 {
	baseByRep := make(map[int]run)
	for _, b := range base {
		if b.Err == "" && b.Records > 0 {
			baseByRep[b.Rep] = b
		}
	}
	var ratios []float64
	for _, r := range runs {
		b, ok := baseByRep[r.Rep]
		if !ok || r.Err != "" || r.Records == 0 || ns(r) == 0 {
			continue
		}
		ratios = append(ratios, (float64(r.Records)/float64(ns(r)))/(float64(b.Records)/float64(ns(b))))
	}
	return median(ratios)
}

// median returns the median of xs, 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// write writes the JSON, the Markdown and the chart, and prints the
// Markdown.
func (r *report) write(o options) error {
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	stamp := r.Started.Format("20060102-150405")
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.out, stamp+".json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	md := r.markdown(o.svg)
	if err := os.WriteFile(filepath.Join(o.out, stamp+".md"), []byte(md), 0o644); err != nil {
		return err
	}
	if o.svg != "" {
		if err := os.WriteFile(o.svg, []byte(r.chart()), 0o644); err != nil {
			return err
		}
	}
	fmt.Print(md)
	logf("wrote %s.{json,md} in %s%s", stamp, o.out, map[bool]string{true: " and " + o.svg}[o.svg != ""])
	return nil
}

// topicTitle names the topic's section.
func (r *report) topicTitle(topic string) string {
	for _, t := range r.Topics {
		if t.Name != topic {
			continue
		}
		if topic == avroTopic {
			return fmt.Sprintf("Avro telemetry values (%s, %d records of %.0f bytes on average, %d partitions)",
				topic, t.Records, float64(t.ValueBytes)/float64(t.Records), r.Options.Partitions)
		}
		return fmt.Sprintf("%d-byte values (%s, %d records, %d partitions)", t.ValueBytes/int64(t.Records), topic, t.Records, r.Options.Partitions)
	}
	return topic
}

// measuredTopics returns the topics with summaries, in the order they ran,
// idle left out.
func (r *report) measuredTopics() []string {
	var topics []string
	for _, s := range r.Summary {
		if s.Client != "idle" && !slices.Contains(topics, s.Topic) {
			topics = append(topics, s.Topic)
		}
	}
	return topics
}

func (r *report) markdown(svg string) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# Consumer throughput, %s\n\n", r.Started.Format("2006-01-02 15:04 UTC"))
	p("Command: `%s` (in `bench/`). %d CPUs, %s, one kfake broker process on loopback, each client in a process of its own; ",
		r.Command, r.CPUs, r.Go)
	p("%d repetitions run interleaved, medians reported. Load average (1, 5, 15 min) before: %s, after each repetition: %s, at the end: %s.\n\n",
		r.Options.Reps, r.LoadFrom, strings.Join(r.Loads, " | "), r.LoadTo)
	if svg != "" {
		p("Chart: `%s`.\n\n", svg)
	}
	p("How to read the columns: *start→last* runs from creating the client to the last record and includes connecting, " +
		"metadata, the group join and the first fetch; *first→last* is steady-state throughput; *start→first rec* is the difference. " +
		"Ratios (×) are to the raw franz-go loop on the same topic; throughput ratios are medians of per-repetition ratios. " +
		"Allocations are runtime.MemStats.Mallocs in the client process from client start to the last record, so they include " +
		"the client's setup, and they cannot see C allocations (librdkafka). Peak RSS is VmHWM of the client process. " +
		"Client CPU is the client process's user+system time from client start to the last record (the least load-sensitive column here); " +
		"broker CPU is the broker process's while the client process ran.\n\n")
	for _, topic := range r.measuredTopics() {
		base := baselineOf(topic)
		p("## %s\n\n", r.topicTitle(topic))
		p("| client | rec/s start→last | × %s | rec/s first→last | × %s | MB/s of values first→last | start→first rec | allocs/rec | × | B alloc/rec | peak RSS MiB | × | client CPU µs/rec | broker CPU µs/rec |\n", base, base)
		p("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		var failures []string
		for _, s := range r.Summary {
			if s.Topic != topic || s.Client == "idle" {
				continue
			}
			if s.SteadyRate == 0 {
				p("| %s | failed: %s |||||||||||||\n", s.Client, mdEscape(strings.Join(s.Errors, "; ")))
				continue
			}
			p("| %s | %s | %s | %s (%s–%s) | %s | %.1f | %.0f ms | %.3f | %s | %.0f | %.1f | %s | %.2f | %.2f |\n",
				s.Client, count(s.TotalRate), ratio(s.TotalRatio), count(s.SteadyRate), count(s.SteadyRateMin), count(s.SteadyRateMax),
				ratio(s.SteadyRatio), s.SteadyMBps, s.StartupMs, s.AllocsPerRecord, ratio(s.AllocRatio), s.BytesPerRecord,
				s.PeakRSSMiB, ratio(s.RSSRatio), s.CPUPerRecordUs, s.BrokerCPUUs)
			if s.Failed > 0 {
				failures = append(failures, fmt.Sprintf("- %s: %d of %d runs failed: %s\n", s.Client, s.Failed, s.Runs, mdEscape(strings.Join(s.Errors, "; "))))
			}
		}
		p("\n%s", strings.Join(failures, ""))
		if len(failures) > 0 {
			p("\n")
		}
	}
	if i := slices.IndexFunc(r.Summary, func(s summary) bool { return s.Client == "idle" }); i >= 0 {
		p("A process of the same binary with a connected client that reads nothing peaks at %.1f MiB: every peak RSS above includes it.\n\n", r.Summary[i].PeakRSSMiB)
	}
	if len(r.Memory) > 0 {
		p("## Memory with a slow handler and a backlog (the cases ran side by side for %s, VmRSS sampled every %v)\n\n", r.Options.Hold, sampleEvery)
		p("| case | records read | peak in flight | peak RSS MiB | max RSS, first half | max RSS, second half |\n|---|--:|--:|--:|--:|--:|\n")
		for _, m := range r.Memory {
			inFlight := "–"
			if v, ok := m.Run.Notes["peak_in_flight"]; ok {
				inFlight = fmt.Sprint(v)
			}
			p("| %s: %s | %d | %s | %.1f | %.1f | %.1f |\n", m.Name, m.Desc, m.Run.Records, inFlight, kib(m.PeakKiB), kib(m.FirstKiB), kib(m.SecondKiB))
		}
		p("\nThe broker process peaked at %.0f MiB holding all topics.\n\n", kib(r.BrokerHWMKiB))
	}
	if lines := r.targets(); len(lines) > 0 {
		p("## Targets in this run\n\n%s\n", strings.Join(lines, ""))
	}
	p("## Clients\n\n")
	for _, name := range slices.Sorted(maps.Keys(r.Clients)) {
		p("- `%s`: %s\n", name, r.Clients[name])
	}
	for _, m := range r.Missing {
		p("- not measured: %s\n", m)
	}
	return b.String()
}

// targets checks the run against the project's performance targets, one
// Markdown list item each.
func (r *report) targets() []string {
	find := func(client, topic string) (summary, bool) {
		i := slices.IndexFunc(r.Summary, func(s summary) bool { return s.Client == client && s.Topic == topic })
		if i < 0 || r.Summary[i].SteadyRate == 0 {
			return summary{}, false
		}
		return r.Summary[i], true
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**missed**"
	}
	var lines []string
	for _, topic := range r.measuredTopics() {
		if topic == avroTopic {
			continue
		}
		kc, ok := find("kconsumer-stateless", topic)
		if !ok {
			continue
		}
		if raw, ok := find("franz-go", topic); ok {
			lines = append(lines, fmt.Sprintf("- %s: kconsumer no-op ≥ 0.95 × raw franz-go: %s (first→last %.2f, start→last %.2f; client CPU per record %.2f × raw's)\n",
				topic, verdict(kc.SteadyRatio >= 0.95), kc.SteadyRatio, kc.TotalRatio, kc.CPUPerRecordUs/raw.CPUPerRecordUs))
		}
		var best summary
		for _, c := range []string{"sarama", "kafka-go"} {
			if s, ok := find(c, topic); ok && s.SteadyRate > best.SteadyRate {
				best = s
			}
		}
		if best.SteadyRate > 0 {
			lines = append(lines, fmt.Sprintf("- %s: kconsumer ≥ 1.5 × the faster of sarama and kafka-go (%s): %s (%.2f×; client CPU per record %.2f× lower)\n",
				topic, best.Client, verdict(kc.SteadyRate >= 1.5*best.SteadyRate), kc.SteadyRate/best.SteadyRate, best.CPUPerRecordUs/kc.CPUPerRecordUs))
		}
		if ck, ok := find("confluent-kafka-go", topic); ok {
			lines = append(lines, fmt.Sprintf("- %s: kconsumer ahead of confluent-kafka-go: %s (%.2f×)\n",
				topic, verdict(kc.SteadyRate > ck.SteadyRate), kc.SteadyRate/ck.SteadyRate))
		}
	}
	av, ok1 := find("kconsumer-avro", avroTopic)
	hb, ok2 := find("franz-go-hamba", avroTopic)
	if ok1 && ok2 && av.SteadyRatio > 0 {
		lines = append(lines, fmt.Sprintf("- Avro: kconsumer with serde ≤ 1.1 × the time of a raw loop with hamba/avro: %s (%.2f× the time, first→last; client CPU per record %.2f×)\n",
			verdict(1/av.SteadyRatio <= 1.1), 1/av.SteadyRatio, av.CPUPerRecordUs/hb.CPUPerRecordUs))
	}
	var slow, small, idle *memoryCase
	for i, m := range r.Memory {
		switch m.Name {
		case "slow-backlog":
			slow = &r.Memory[i]
		case "slow-small":
			small = &r.Memory[i]
		case "idle":
			idle = &r.Memory[i]
		}
	}
	if slow != nil && slow.FirstKiB > 0 {
		line := fmt.Sprintf("- Bounded RSS under a backlog of %d records: %s (peak %.0f MiB; second half at most %.2f × the first",
			r.Options.Backlog, verdict(float64(slow.SecondKiB) <= 1.25*float64(slow.FirstKiB)), kib(slow.PeakKiB), float64(slow.SecondKiB)/float64(slow.FirstKiB))
		if small != nil {
			line += fmt.Sprintf("; %.0f MiB against the %d-record topic", kib(small.PeakKiB), r.Options.Records)
		}
		if idle != nil {
			line += fmt.Sprintf("; an idle client: %.0f MiB", kib(idle.PeakKiB))
		}
		lines = append(lines, line+")\n")
	}
	return lines
}

func mdEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ")
}

// count formats a rate with a metric suffix: 1.23M, 456k.
func count(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.0fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func ratio(v float64) string {
	if v == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", v)
}

// chart renders the steady and the start-to-last throughput of every
// client, one group of bars per topic, as SVG.
func (r *report) chart() string {
	const (
		width  = 960
		labelW = 190
		barW   = 520
		rowH   = 30
		left   = 10
	)
	var body strings.Builder
	y := 76
	for _, topic := range r.measuredTopics() {
		var rows []summary
		for _, s := range r.Summary {
			if s.Topic == topic && s.Client != "idle" {
				rows = append(rows, s)
			}
		}
		top := slices.MaxFunc(rows, func(a, b summary) int {
			return cmp.Compare(max(a.SteadyRate, a.TotalRate), max(b.SteadyRate, b.TotalRate))
		})
		scale := max(top.SteadyRate, top.TotalRate)
		fmt.Fprintf(&body, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", left, y, html.EscapeString(r.topicTitle(topic)))
		y += 12
		for _, s := range rows {
			dark, light := colors(s.Client)
			fmt.Fprintf(&body, `<text x="%d" y="%d">%s</text>`+"\n", left, y+17, html.EscapeString(s.Client))
			if s.SteadyRate == 0 {
				fmt.Fprintf(&body, `<text x="%d" y="%d" fill="#b00">failed</text>`+"\n", left+labelW, y+17)
				y += rowH
				continue
			}
			ws := int(float64(barW) * s.SteadyRate / scale)
			wt := int(float64(barW) * s.TotalRate / scale)
			fmt.Fprintf(&body, `<rect x="%d" y="%d" width="%d" height="12" fill="%s"/>`+"\n", left+labelW, y+3, max(ws, 1), dark)
			fmt.Fprintf(&body, `<rect x="%d" y="%d" width="%d" height="10" fill="%s"/>`+"\n", left+labelW, y+16, max(wt, 1), light)
			label := fmt.Sprintf("%s rec/s, %.1f MB/s", count(s.SteadyRate), s.SteadyMBps)
			if s.Client != s.Baseline && s.SteadyRatio > 0 {
				label += fmt.Sprintf(" (%.2f×)", s.SteadyRatio)
			}
			fmt.Fprintf(&body, `<text x="%d" y="%d">%s</text>`+"\n", left+labelW+max(ws, wt)+6, y+14, html.EscapeString(label))
			fmt.Fprintf(&body, `<text x="%d" y="%d" fill="#666">%s rec/s from client start</text>`+"\n", left+labelW+max(ws, wt)+6, y+26, count(s.TotalRate))
			y += rowH
		}
		y += 24
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, y, width, y)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14" font-weight="bold">Records/s per client, median of %d runs, %s</text>`+"\n", left, r.Options.Reps, r.Started.Format("2006-01-02"))
	fmt.Fprintf(&b, `<text x="%d" y="38" fill="#444">dark: first record to last (steady), with the median of per-repetition ratios to the raw franz-go loop; light: client start to last record.</text>`+"\n", left)
	fmt.Fprintf(&b, `<text x="%d" y="54" fill="#444">One kfake broker process on loopback, one process per client, %d CPUs shared with other work; load average %s → %s.</text>`+"\n",
		left, r.CPUs, html.EscapeString(r.LoadFrom), html.EscapeString(r.LoadTo))
	b.WriteString(body.String())
	b.WriteString("</svg>\n")
	return b.String()
}

// colors returns the steady and start-to-last bar colours of a client:
// blue for kconsumer, grey for the raw franz-go baselines, green for the
// other libraries.
func colors(client string) (dark, light string) {
	switch {
	case strings.HasPrefix(client, "kconsumer"):
		return "#1f77b4", "#aec7e8"
	case strings.HasPrefix(client, "franz-go"):
		return "#555555", "#bbbbbb"
	}
	return "#2ca02c", "#98df8a"
}

// renderMain runs `bench render`: it renders a saved JSON report again, as
// Markdown on stdout and as the chart.
func renderMain(args []string) error {
	fs := flag.NewFlagSet("render", flag.ContinueOnError)
	svg := fs.String("svg", filepath.Join("..", "docs", "bench-throughput.svg"), "file for the bar chart (empty: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: bench render [-svg file] results/<stamp>.json")
	}
	b, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	if *svg != "" {
		if err := os.WriteFile(*svg, []byte(r.chart()), 0o644); err != nil {
			return err
		}
	}
	fmt.Print(r.markdown(*svg))
	return nil
}
