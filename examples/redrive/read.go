package main

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// span is a range of offsets of one partition: start <= offset < stop.
type span struct {
	partition   int32
	start, stop int64
}

// reader reads a dead-letter topic with plain clients that assign
// partitions directly: no consumer group, so reading moves nobody's
// progress.
type reader struct {
	base  []kgo.Opt
	topic string
	adm   *kadm.Client
	cl    *kgo.Client // the admin client's
}

func newReader(c *common) (*reader, error) {
	base := []kgo.Opt{kgo.SeedBrokers(split(c.brokers)...)}
	cl, err := kgo.NewClient(base...)
	if err != nil {
		return nil, err
	}
	return &reader{base: base, topic: c.topic, adm: kadm.NewClient(cl), cl: cl}, nil
}

func (r *reader) close() { r.cl.Close() }

// spans returns, in partition order, what is left of the offsets from
// (inclusive) to to (exclusive; to < 0: the end) in the given partitions (all
// when none), between what retention deleted and the end offsets now:
// records written later are not read.
func (r *reader) spans(ctx context.Context, partitions []int32, from, to int64) ([]span, error) {
	ends, err := r.adm.ListEndOffsets(ctx, r.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("listing end offsets of %s: %w", r.topic, err)
	}
	if len(ends[r.topic]) == 0 {
		return nil, fmt.Errorf("topic %s not found", r.topic)
	}
	firsts, err := r.adm.ListStartOffsets(ctx, r.topic)
	if err == nil {
		err = firsts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("listing start offsets of %s: %w", r.topic, err)
	}
	for _, p := range partitions {
		if _, ok := ends[r.topic][p]; !ok {
			return nil, fmt.Errorf("topic %s has no partition %d", r.topic, p)
		}
	}
	var out []span
	for p, end := range ends[r.topic] {
		if len(partitions) > 0 && !slices.Contains(partitions, p) {
			continue
		}
		s := span{partition: p, start: from, stop: end.Offset}
		if o, ok := firsts.Lookup(r.topic, p); ok && o.Offset > s.start {
			s.start = o.Offset
		}
		if to >= 0 && to < s.stop {
			s.stop = to
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b span) int { return int(a.partition - b.partition) })
	return out, nil
}

// read calls fn for each record of s in offset order, transaction markers
// included, until fn returns false or an error, or the span is read.
func (r *reader) read(ctx context.Context, s span, fn func(*kgo.Record) (bool, error)) error {
	if s.start >= s.stop {
		return nil
	}
	cl, err := kgo.NewClient(append(slices.Clip(r.base),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{r.topic: {s.partition: kgo.NewOffset().At(s.start)}}),
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("reading %s/%d: %w", r.topic, s.partition, err)
		}
		var errs []error
		fs.EachError(func(t string, p int32, err error) {
			errs = append(errs, fmt.Errorf("fetching %s/%d: %w", t, p, err))
		})
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
		for it := fs.RecordIter(); !it.Done(); {
			rec := it.Next()
			if rec.Offset >= s.stop {
				return nil
			}
			more, err := fn(rec)
			if err != nil || !more || rec.Offset+1 >= s.stop {
				return err
			}
		}
	}
}
