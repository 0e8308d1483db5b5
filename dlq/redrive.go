package dlq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// RedriveStats says what a Redrive run did.
type RedriveStats struct {
	Copied  int // dead letters written back to their group's redrive topic
	Skipped int // dead letters the Classes, Groups or FailedBetween filters passed over
	NoGroup int // dead letters of a Consumer without a group, which nothing reads again
	// Duplicates are dead letters of a record this run copied already: a
	// record dead-lettered again after a rebalance (see docs/DEADLETTERS.md).
	Duplicates int
	Invalid    int            // records without valid dead-letter headers, left where they are
	Topics     map[string]int // copied dead letters by redrive topic
}

// RedriveTopic returns the topic on which Redrive returns the dead letters
// that group wrote for records of topic: topic, ".redrive." and the group,
// its characters that a topic name cannot hold replaced by '_'. A Router
// attached to a Consumer with a group reads the redrive topic of each of
// the Consumer's topics, so a re-driven record reaches that group only:
// other groups, which handled the record already, never see it again.
//
// The record reaches the handler with this topic as its Topic; SourceTopic
// maps it back. Since characters are replaced, two groups whose IDs differ
// only in characters outside [a-zA-Z0-9._-] share a redrive topic, and a
// name longer than Kafka's 249 characters cannot be created: name groups
// with [a-zA-Z0-9._-] only.
func RedriveTopic(topic, group string) string {
	return topic + redriveInfix + topicSafe(group)
}

// SourceTopic returns the topic whose records a group's redrive topic
// holds, and topic itself when it is no redrive topic of group.
func SourceTopic(topic, group string) string {
	if src, ok := strings.CutSuffix(topic, redriveInfix+topicSafe(group)); ok && src != "" {
		return src
	}
	return topic
}

const redriveInfix = ".redrive."

// topicSafe replaces the characters a topic name cannot hold.
func topicSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '_'
	}, s)
}

// createRedriveTopic creates target with the partition count of source,
// unless it exists, and adds partitions to a target that has fewer than
// source, so that each partition of source has its own in target: a source
// that grew since target was created would otherwise have records that
// cannot be re-driven to the partition they came from.
func createRedriveTopic(ctx context.Context, adm *kadm.Client, source, target string) error {
	return ensureRedriveTopic(ctx, adm, source, target, true)
}

// ensureRedriveTopic is createRedriveTopic; when again is true and target
// was created meanwhile, it looks once more, to grow it if need be.
func ensureRedriveTopic(ctx context.Context, adm *kadm.Client, source, target string, again bool) error {
	details, err := adm.ListTopics(ctx, source, target)
	if err != nil {
		return fmt.Errorf("listing %s: %w", source, err)
	}
	src, srcOK := details[source]
	srcOK = srcOK && src.Err == nil
	dst, dstOK := details[target]
	dstOK = dstOK && dst.Err == nil
	switch {
	case dstOK && (!srcOK || len(dst.Partitions) >= len(src.Partitions)):
		return nil
	case dstOK:
		return growRedriveTopic(ctx, adm, target, len(src.Partitions))
	case !srcOK:
		return fmt.Errorf("source topic %s: not found", source)
	}
	resp, err := adm.CreateTopic(ctx, int32(len(src.Partitions)), -1, nil, target)
	if err == nil {
		err = resp.Err
	}
	if errors.Is(err, kerr.TopicAlreadyExists) {
		// Created meanwhile, by a Router or another Redrive, perhaps
		// with fewer partitions than the source has now.
		if !again {
			return nil
		}
		return ensureRedriveTopic(ctx, adm, source, target, false)
	}
	if err != nil {
		return fmt.Errorf("creating %s: %w", target, err)
	}
	return nil
}

// growRedriveTopic raises the partition count of target to n.
func growRedriveTopic(ctx context.Context, adm *kadm.Client, target string, n int) error {
	resps, err := adm.UpdatePartitions(ctx, n, target)
	if err == nil {
		if resp, ok := resps[target]; ok {
			err = resp.Err
		}
	}
	if errors.Is(err, kerr.InvalidPartitions) {
		// Grown meanwhile by someone else, to n or beyond?
		if details, lerr := adm.ListTopics(ctx, target); lerr == nil {
			if t, ok := details[target]; ok && t.Err == nil && len(t.Partitions) >= n {
				return nil
			}
		}
	}
	if err != nil {
		return fmt.Errorf("adding partitions to %s, up to %d: %w", target, n, err)
	}
	return nil
}

// Redrive copies the dead letters of topic back to the group that wrote
// them: to the partition they came from, of that group's redrive topic
// (RedriveTopic), which only that group reads, with their original key,
// value, headers and timestamp; the Router's headers are dropped. A redrive
// topic that does not exist is created with its source's partition count,
// and one with fewer partitions than its source gets more to match.
// Dead letters of a Consumer without a group are left where they are and
// counted as NoGroup. It reads
// each partition from where the ProgressGroup left it up to the end offset
// seen at the start, so dead letters written meanwhile wait for the next run.
//
// Progress is committed as the ProgressGroup's offsets on topic after each
// batch of copies is acknowledged (idempotent, acks=all). So a run copies
// every selected dead letter at least once and a completed run is never
// repeated by the next one; a run that crashes or fails copies the last
// batch again when run again, and nothing more. Dead letters passed over by
// the Classes, Groups or FailedBetween filters or the Offsets range, and
// records that are not dead letters (logged and counted as Invalid), count
// as done for the group: a later run with the same group does not revisit
// them, one with another group does. Runs of one group must not overlap.
//
// It returns what it did so far together with any error.
func Redrive(ctx context.Context, topic string, opts ...RedriveOpt) (RedriveStats, error) {
	stats := RedriveStats{Topics: make(map[string]int)}
	if topic == "" {
		return stats, fmt.Errorf("%w: no dead-letter topic to re-drive", ErrInvalidOption)
	}
	cfg := defaultRedriveCfg(topic)
	for _, o := range opts {
		o.applyRedrive(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return stats, err
	}
	var base []kgo.Opt
	if len(cfg.brokers) > 0 {
		base = []kgo.Opt{kgo.SeedBrokers(cfg.brokers...)}
	}
	base = append(base, cfg.clientOpts...)
	dst, err := kgo.NewClient(slices.Concat(base, []kgo.Opt{kgo.RecordPartitioner(kgo.ManualPartitioner())})...)
	if err != nil {
		return stats, fmt.Errorf("dlq: creating client: %w", err)
	}
	defer dst.Close()
	if err := checkProducer(dst); err != nil {
		return stats, err
	}
	adm := kadm.NewClient(dst)

	starts, stops, err := cfg.ranges(ctx, adm, topic)
	if err != nil || len(starts) == 0 {
		return stats, err
	}
	src, err := kgo.NewClient(slices.Concat(base, []kgo.Opt{
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: starts}),
		kgo.KeepControlRecords(),
	})...)
	if err != nil {
		return stats, fmt.Errorf("dlq: creating client: %w", err)
	}
	defer src.Close()

	created := make(map[string]bool)
	copied := make(map[letterOf]bool)
	for len(stops) > 0 {
		fs := src.PollRecords(ctx, cfg.batch)
		if err := ctx.Err(); err != nil {
			return stats, fmt.Errorf("dlq: re-driving %s: %w", topic, err)
		}
		var errs []error
		fs.EachError(func(t string, p int32, err error) {
			errs = append(errs, fmt.Errorf("fetching %s/%d: %w", t, p, err))
		})
		if len(errs) > 0 {
			return stats, fmt.Errorf("dlq: re-driving %s: %w", topic, errors.Join(errs...))
		}
		var (
			out      []*kgo.Record
			progress = make(kadm.Offsets)
			done     []int32
		)
		// finish ends partition p once the run has read up to its stop.
		finish := func(p int32, next int64) bool {
			stop, ok := stops[p]
			if !ok {
				return true
			}
			if next < stop {
				return false
			}
			delete(stops, p)
			done = append(done, p)
			progress.Add(kadm.Offset{Topic: topic, Partition: p, At: stop, LeaderEpoch: -1})
			return true
		}
		var fail error
		fs.EachRecord(func(r *kgo.Record) {
			if fail != nil {
				return
			}
			// A record at or past the stop ends the range even if
			// compaction removed the records before it.
			if finish(r.Partition, r.Offset) {
				return
			}
			progress.Add(kadm.Offset{Topic: topic, Partition: r.Partition, At: r.Offset + 1, LeaderEpoch: -1})
			finish(r.Partition, r.Offset+1)
			if r.Attrs.IsControl() {
				return
			}
			l, err := Parse(r)
			switch {
			case err != nil:
				stats.Invalid++
				cfg.logger.Warn("dlq: not re-driving a record that is not a dead letter", "err", err)
			case len(cfg.classes) > 0 && !slices.Contains(cfg.classes, l.Class),
				len(cfg.groups) > 0 && !slices.Contains(cfg.groups, l.Group),
				!cfg.failedIn(l.FailedAt):
				stats.Skipped++
			case l.Group == "":
				stats.NoGroup++
			case copied[letterOf{l.Group, l.Topic, l.Partition, l.Offset}]:
				stats.Duplicates++
			default:
				copied[letterOf{l.Group, l.Topic, l.Partition, l.Offset}] = true
				src := SourceTopic(l.Topic, l.Group)
				target := RedriveTopic(src, l.Group)
				if !created[target] {
					if err := createRedriveTopic(ctx, adm, src, target); err != nil {
						fail = fmt.Errorf("dlq: re-driving %s: %w", topic, err)
						return
					}
					created[target] = true
				}
				out = append(out, &kgo.Record{
					Topic:     target,
					Partition: l.Partition,
					Key:       r.Key,
					Value:     r.Value,
					Headers:   l.Headers,
					Timestamp: l.Timestamp,
				})
			}
		})
		if fail != nil {
			return stats, fail
		}
		if len(done) > 0 {
			src.PauseFetchPartitions(map[string][]int32{topic: done})
		}
		if len(out) > 0 {
			if err := dst.ProduceSync(ctx, out...).FirstErr(); err != nil {
				return stats, fmt.Errorf("dlq: re-driving %s: producing: %w", topic, err)
			}
			stats.Copied += len(out)
			for _, r := range out {
				stats.Topics[r.Topic]++
			}
		}
		if len(progress) > 0 {
			if err := adm.CommitAllOffsets(ctx, cfg.group, progress); err != nil {
				return stats, fmt.Errorf("dlq: re-driving %s: committing progress of group %s: %w", topic, cfg.group, err)
			}
		}
	}
	return stats, nil
}

// letterOf names the record a dead letter holds, for a group. The topic is
// the one the record was read from (HeaderTopic), not its source: a record
// read from a redrive topic has that topic's offset, a numbering of its
// own, so source p0@7 and redrive p0@7 are two records.
type letterOf struct {
	group, topic string
	partition    int32
	offset       int64
}

// ranges returns, for each partition of topic to read, the offset to start
// at and the offset to stop before.
func (c *redriveCfg) ranges(ctx context.Context, adm *kadm.Client, topic string) (map[int32]kgo.Offset, map[int32]int64, error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("dlq: listing end offsets of %s: %w", topic, err)
	}
	if len(ends[topic]) == 0 {
		return nil, nil, fmt.Errorf("dlq: topic %s not found", topic)
	}
	firsts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = firsts.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("dlq: listing start offsets of %s: %w", topic, err)
	}
	committed, err := adm.FetchOffsetsForTopics(ctx, c.group, topic)
	if err == nil {
		err = committed.Error()
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		committed, err = nil, nil // a group's first run
	}
	if err != nil {
		return nil, nil, fmt.Errorf("dlq: fetching progress of group %s: %w", c.group, err)
	}
	for _, p := range c.partitions {
		if _, ok := ends[topic][p]; !ok {
			return nil, nil, fmt.Errorf("dlq: topic %s has no partition %d", topic, p)
		}
	}
	starts := make(map[int32]kgo.Offset)
	stops := make(map[int32]int64)
	for p, end := range ends[topic] {
		if len(c.partitions) > 0 && !slices.Contains(c.partitions, p) {
			continue
		}
		// Start after the group's progress, the range's start and what
		// retention deleted, whichever is last.
		start := c.from
		if o, ok := committed.Lookup(topic, p); ok && o.At > start {
			start = o.At
		}
		if o, ok := firsts.Lookup(topic, p); ok && o.Offset > start {
			start = o.Offset
		}
		stop := end.Offset
		if c.to >= 0 && c.to < stop {
			stop = c.to
		}
		if start < stop {
			starts[p] = kgo.NewOffset().At(start)
			stops[p] = stop
		}
	}
	return starts, stops, nil
}
