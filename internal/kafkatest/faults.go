package kafkatest

import (
	"context"
	"sync"
	"testing"
	"time"

	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// RejectCommits makes the broker refuse every OffsetCommit until the
// returned function is called, so stopping a consumer in between behaves
// like a crash: nothing it handled since its last commit is committed.
func (c *Cluster) RejectCommits() (restore func()) {
	var done atomic.Bool
	c.ControlKey(kmsg.OffsetCommit.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if done.Load() {
			c.DropControl()
			return nil, nil, false
		}
		c.KeepControl()
		r := req.(*kmsg.OffsetCommitRequest)
		resp := r.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, t := range r.Topics {
			rt := kmsg.NewOffsetCommitResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewOffsetCommitResponseTopicPartition()
				rp.Partition = p.Partition
				rp.ErrorCode = kerr.InvalidCommitOffsetSize.Code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})
	return func() { done.Store(true) }
}

// CountRequests counts the requests of one kind the broker receives, without
// changing how it handles them.
func (c *Cluster) CountRequests(key kmsg.Key) *atomic.Int64 {
	var n atomic.Int64
	c.ControlKey(key.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		n.Add(1)
		return nil, nil, false
	})
	return &n
}

// CommitWatch records the offsets of the OffsetCommit requests a broker
// receives, whether it accepts them or not.
type CommitWatch struct {
	c      *Cluster
	mu     sync.Mutex
	last   map[[16]byte]map[int32]int64 // by topic ID; newer requests name no topic
	byName map[string]map[int32]int64
}

// WatchCommits starts recording commit requests. Call it before any fault
// that answers commits, such as RejectCommits, so that it sees them first.
func (c *Cluster) WatchCommits() *CommitWatch {
	w := &CommitWatch{c: c, last: make(map[[16]byte]map[int32]int64), byName: make(map[string]map[int32]int64)}
	c.ControlKey(kmsg.OffsetCommit.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		r := req.(*kmsg.OffsetCommitRequest)
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, t := range r.Topics {
			m := w.byName[t.Topic]
			if t.Topic == "" {
				m = w.last[t.TopicID]
			}
			if m == nil {
				m = make(map[int32]int64)
				if t.Topic == "" {
					w.last[t.TopicID] = m
				} else {
					w.byName[t.Topic] = m
				}
			}
			for _, p := range t.Partitions {
				m[p.Partition] = p.Offset
			}
		}
		return nil, nil, false
	})
	return w
}

// Last returns, by partition of topic, the offset of the latest commit
// request that named the partition.
func (w *CommitWatch) Last(t testing.TB, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	md, err := w.c.Admin.Metadata(ctx, topic)
	if err != nil {
		t.Fatalf("metadata of %s: %v", topic, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[int32]int64)
	for p, o := range w.byName[topic] {
		out[p] = o
	}
	for p, o := range w.last[md.Topics[topic].ID] {
		out[p] = o
	}
	return out
}
