package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kconsumer/kconsumer/dlq"
	"github.com/kconsumer/kconsumer/fault"
)

// common holds the flags every command takes.
type common struct {
	brokers string
	topic   string
	timeout time.Duration
}

func addCommon(fs *flag.FlagSet, c *common) {
	c.brokers = os.Getenv("KAFKA_BROKERS")
	if c.brokers == "" {
		c.brokers = "localhost:9092"
	}
	fs.StringVar(&c.brokers, "brokers", c.brokers, "comma-separated seed brokers")
	fs.StringVar(&c.topic, "topic", "", "dead-letter topic (required)")
	fs.DurationVar(&c.timeout, "timeout", 0, "give up after this long; 0 means no limit")
}

func (c *common) check() error {
	if c.topic == "" {
		return errors.New("-topic is required")
	}
	return nil
}

// selection picks dead letters: by where they are in the dead-letter topic
// (partitions, offsets) and by what their headers say (group, class,
// failure time).
type selection struct {
	groups       []string
	classes      []fault.Class
	partitions   []int32
	from, to     int64     // dead-letter offsets, from <= offset < to; to < 0: the end
	since, until time.Time // failure time, since <= FailedAt < until; zero: open
}

// selectionFlags are the flags of a selection, as given.
type selectionFlags struct {
	groups, classes, partitions, since, until string
	from, to                                  int64
}

func addSelection(fs *flag.FlagSet, f *selectionFlags) {
	fs.StringVar(&f.groups, "group", "", "comma-separated consumer groups whose dead letters to select (default all)")
	fs.StringVar(&f.classes, "class", "", "comma-separated error classes to select: poison, unclassified, retriable (default all)")
	fs.StringVar(&f.partitions, "partitions", "", "comma-separated dead-letter partitions to read (default all)")
	fs.Int64Var(&f.from, "from", 0, "first dead-letter offset to select")
	fs.Int64Var(&f.to, "to", -1, "dead-letter offset to stop before; -1 means the end")
	fs.StringVar(&f.since, "since", "", "select letters that failed at or after this: RFC3339, or a duration ago (2h, 3d)")
	fs.StringVar(&f.until, "until", "", "select letters that failed before this: RFC3339, or a duration ago (2h, 3d)")
}

// parse checks the flags and resolves durations against now.
func (f *selectionFlags) parse(now time.Time) (selection, error) {
	s := selection{groups: split(f.groups), from: f.from, to: f.to}
	for _, name := range split(f.classes) {
		var c fault.Class
		if err := c.UnmarshalText([]byte(name)); err != nil {
			return s, fmt.Errorf("-class: %w", err)
		}
		if c == fault.Uncertain {
			return s, errors.New("-class: no dead letter has class uncertain: a Router writes uncertain records as poison")
		}
		s.classes = append(s.classes, c)
	}
	for _, name := range split(f.partitions) {
		p, err := strconv.ParseInt(name, 10, 32)
		if err != nil || p < 0 {
			return s, fmt.Errorf("-partitions: %q is not a partition number", name)
		}
		s.partitions = append(s.partitions, int32(p))
	}
	slices.Sort(s.partitions)
	s.partitions = slices.Compact(s.partitions)
	if s.from < 0 || (s.to >= 0 && s.to <= s.from) {
		return s, fmt.Errorf("-from %d -to %d: want 0 <= from < to, or to -1", s.from, s.to)
	}
	var err error
	if s.since, err = parseTime("-since", f.since, now); err != nil {
		return s, err
	}
	if s.until, err = parseTime("-until", f.until, now); err != nil {
		return s, err
	}
	if !s.since.IsZero() && !s.until.IsZero() && !s.since.Before(s.until) {
		return s, fmt.Errorf("-since %s is not before -until %s", s.since.UTC().Format(time.RFC3339), s.until.UTC().Format(time.RFC3339))
	}
	return s, nil
}

// parseTime reads an RFC3339 time, or a duration (Go syntax, or whole days
// as "3d") before now.
func parseTime(flagName, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(v)
	if days, ok := strings.CutSuffix(v, "d"); ok {
		var n int64
		n, err = strconv.ParseInt(days, 10, 32)
		d = time.Duration(n) * 24 * time.Hour
	}
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%s %q: want an RFC3339 time (2024-05-01T12:00:00Z) or a duration ago (90m, 2h, 3d)", flagName, v)
	}
	return now.Add(-d), nil
}

// byHeaders reports whether the selection filters on the letters' headers,
// so that records that are not dead letters cannot match it.
func (s *selection) byHeaders() bool {
	return len(s.groups) > 0 || len(s.classes) > 0 || !s.since.IsZero() || !s.until.IsZero()
}

// matches reports whether l passes the group, class and time filters, as
// dlq.Redrive decides it.
func (s *selection) matches(l dlq.Letter) bool {
	return (len(s.groups) == 0 || slices.Contains(s.groups, l.Group)) &&
		(len(s.classes) == 0 || slices.Contains(s.classes, l.Class)) &&
		(s.since.IsZero() || !l.FailedAt.Before(s.since)) &&
		(s.until.IsZero() || l.FailedAt.Before(s.until))
}

// redriveOpts returns the selection as dlq.Redrive options.
func (s *selection) redriveOpts() []dlq.RedriveOpt {
	opts := []dlq.RedriveOpt{dlq.Offsets(s.from, s.to)}
	if len(s.groups) > 0 {
		opts = append(opts, dlq.Groups(s.groups...))
	}
	if len(s.classes) > 0 {
		opts = append(opts, dlq.Classes(s.classes...))
	}
	if len(s.partitions) > 0 {
		opts = append(opts, dlq.Partitions(s.partitions...))
	}
	if !s.since.IsZero() || !s.until.IsZero() {
		opts = append(opts, dlq.FailedBetween(s.since, s.until))
	}
	return opts
}

// split splits a comma-separated list, dropping empty items.
func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
