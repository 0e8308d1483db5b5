package kafkatest

import (
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
