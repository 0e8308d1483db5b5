package recovery

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Offsets holds an offset per partition, by topic.
type Offsets map[string]map[int32]int64

func (o Offsets) lookup(topic string, partition int32) (int64, bool) {
	v, ok := o[topic][partition]
	return v, ok
}

func (o Offsets) set(topic string, partition int32, offset int64) {
	if o[topic] == nil {
		o[topic] = make(map[int32]int64)
	}
	o[topic][partition] = offset
}

// bounds are the first offset and the end of each partition of some topics.
type bounds struct {
	start, end Offsets
}

// listBounds lists the log start and the end of every partition of topics.
// The end is the high watermark, or the last stable offset if committed:
// a read-committed consumer cannot read past it.
func listBounds(ctx context.Context, cl *kgo.Client, topics []string, committed bool) (bounds, error) {
	adm := kadm.NewClient(cl)
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return bounds{}, fmt.Errorf("recovery: listing start offsets of %v: %w", topics, err)
	}
	list := adm.ListEndOffsets
	if committed {
		list = adm.ListCommittedOffsets
	}
	ends, err := list(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return bounds{}, fmt.Errorf("recovery: listing end offsets of %v: %w", topics, err)
	}
	b := bounds{start: make(Offsets), end: make(Offsets)}
	ends.Each(func(o kadm.ListedOffset) {
		s, ok := starts.Lookup(o.Topic, o.Partition)
		if !ok {
			err = errors.Join(err, fmt.Errorf("recovery: no start offset listed for %s/%d", o.Topic, o.Partition))
			return
		}
		b.start.set(o.Topic, o.Partition, s.Offset)
		b.end.set(o.Topic, o.Partition, o.Offset)
	})
	return b, err
}

// consumedTopics returns the topics cl consumes, sorted.
func consumedTopics(cl *kgo.Client) ([]string, error) {
	var topics []string
	switch v := cl.OptValue(kgo.ConsumeTopics).(type) {
	case map[string]*regexp.Regexp:
		topics = slices.Collect(maps.Keys(v))
	case []string:
		topics = slices.Clone(v)
	}
	if len(topics) == 0 {
		return nil, errors.New("recovery: the client consumes no topics")
	}
	slices.Sort(topics)
	return topics, nil
}

// readCommitted reports whether cl reads only committed transactional records.
func readCommitted(cl *kgo.Client) bool {
	level, _ := cl.OptValue(kgo.FetchIsolationLevel).(int8)
	return level == 1
}
