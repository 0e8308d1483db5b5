package recovery

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kconsumer/kconsumer/internal/kafkatest"
)

// newPartitionsCluster starts a cluster with topics "events" and "other" of
// four partitions, ten records in each partition of "events", and returns
// it with a client, as a Consumer's would be.
func newPartitionsCluster(t *testing.T) (*kafkatest.Cluster, *kgo.Client) {
	t.Helper()
	cluster := kafkatest.NewCluster(t, 4, "events", "other")
	var recs []*kgo.Record
	for p := range int32(4) {
		for i := range 10 {
			recs = append(recs, &kgo.Record{Topic: "events", Partition: p, Value: fmt.Appendf(nil, "%d", i)})
		}
	}
	cl := cluster.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return cluster, cl
}

// commit commits offsets of "events" for group, as members would have.
func commit(t *testing.T, cluster *kafkatest.Cluster, group string, offsets map[int32]int64) {
	t.Helper()
	if len(offsets) == 0 {
		return
	}
	var offs kadm.Offsets
	for p, o := range offsets {
		offs.AddOffset("events", p, o, -1)
	}
	if err := cluster.Admin.CommitAllOffsets(context.Background(), group, offs); err != nil {
		t.Fatal(err)
	}
}

// newPartitionLogs counts the lines of log that say a partition is new.
func newPartitionLogs(log *bytes.Buffer) int {
	return strings.Count(log.String(), "new to the group")
}

// TestCheckpointSkipTellsNewPartitionsFromAFirstStart pins the decision
// for a partition with neither a checkpoint nor a commit: where
// StartWithoutCheckpoint says on the group's first start on the topic,
// the log start once the group consumed another partition of the topic
// (checkpoint or commit, assigned to this member or not).
func TestCheckpointSkipTellsNewPartitionsFromAFirstStart(t *testing.T) {
	cluster, cl := newPartitionsCluster(t)
	fetches := cluster.CountRequests(kmsg.OffsetFetch)
	var (
		none     = kgo.NewOffset().AtEnd() // what kgo passes for no commit: Attach sets it
		latest   = kgo.NewOffset().AtEnd()
		earliest = kgo.NewOffset().AtStart()
		at       = func(o int64) kgo.Offset { return kgo.NewOffset().At(o) }
	)
	for i, tc := range []struct {
		name        string
		opts        []SkipOpt
		plugin      bool                       // "events" is a plugin's topic, such as a redrive topic
		checkpoints map[string]map[int32]int64 // in the store
		commits     map[int32]int64            // the group's, of "events"
		assigned    map[int32]kgo.Offset       // as kgo passes them: commit or none
		want        map[int32]kgo.Offset
		newOnes     int  // partitions logged as new
		fetch       bool // whether the group's commits are fetched
	}{
		{
			name:     "first start: nothing stored or committed",
			assigned: map[int32]kgo.Offset{0: none, 1: none},
			want:     map[int32]kgo.Offset{0: latest, 1: latest},
			fetch:    true,
		},
		{
			name:     "first start, the whole topic assigned",
			assigned: map[int32]kgo.Offset{0: none, 1: none, 2: none, 3: none},
			want:     map[int32]kgo.Offset{0: latest, 1: latest, 2: latest, 3: latest},
		},
		{
			name:     "first start, earliest",
			opts:     []SkipOpt{StartWithoutCheckpoint(earliest)},
			assigned: map[int32]kgo.Offset{0: none},
			want:     map[int32]kgo.Offset{0: earliest},
		},
		{
			name:        "restart with checkpoints",
			checkpoints: map[string]map[int32]int64{"events": {0: 4, 1: 6}},
			assigned:    map[int32]kgo.Offset{0: none, 1: none},
			want:        map[int32]kgo.Offset{0: at(5), 1: at(7)},
		},
		{
			name:        "new partition beside a checkpointed one",
			checkpoints: map[string]map[int32]int64{"events": {0: 4}},
			assigned:    map[int32]kgo.Offset{0: none, 3: none},
			want:        map[int32]kgo.Offset{0: at(5), 3: earliest},
			newOnes:     1,
		},
		{
			name:        "new partition, checkpoint held for another member's partition",
			checkpoints: map[string]map[int32]int64{"events": {1: 4}},
			assigned:    map[int32]kgo.Offset{3: none},
			want:        map[int32]kgo.Offset{3: earliest},
			newOnes:     1,
		},
		{
			name:     "new partitions, only a commit of another member's partition",
			commits:  map[int32]int64{1: 5},
			assigned: map[int32]kgo.Offset{2: none, 3: none},
			want:     map[int32]kgo.Offset{2: earliest, 3: earliest},
			newOnes:  2,
			fetch:    true,
		},
		{
			// A commit without a checkpoint is not a new partition: it
			// starts where StartWithoutCheckpoint says, as before.
			name:     "new partition beside a committed one without checkpoint",
			commits:  map[int32]int64{0: 5},
			assigned: map[int32]kgo.Offset{0: at(5), 3: none},
			want:     map[int32]kgo.Offset{0: latest, 3: earliest},
			newOnes:  1,
		},
		{
			name:        "another topic's checkpoints do not count",
			checkpoints: map[string]map[int32]int64{"other": {0: 4}},
			assigned:    map[int32]kgo.Offset{0: none},
			want:        map[int32]kgo.Offset{0: latest},
			fetch:       true,
		},
		{
			name:        "AtCommitted (none) is left alone",
			opts:        []SkipOpt{StartWithoutCheckpoint(kgo.NewOffset().AtCommitted())},
			checkpoints: map[string]map[int32]int64{"events": {0: 4}},
			assigned:    map[int32]kgo.Offset{3: none},
			want:        map[int32]kgo.Offset{3: kgo.NewOffset().AtCommitted()},
		},
		{
			// A redrive topic holds only records this group must handle,
			// however late it was created: from its start.
			name:     "a plugin's topic starts at its log start on a first start",
			plugin:   true,
			assigned: map[int32]kgo.Offset{0: none, 1: none},
			want:     map[int32]kgo.Offset{0: earliest, 1: earliest},
			newOnes:  2,
		},
		{
			// Records re-driven and dead-lettered again leave a commit
			// and no checkpoint: the commit is where the group is.
			name:     "a plugin's topic with a commit and no checkpoint starts at the commit",
			plugin:   true,
			commits:  map[int32]int64{0: 5},
			assigned: map[int32]kgo.Offset{0: at(5), 1: none},
			want:     map[int32]kgo.Offset{0: at(5), 1: earliest},
			newOnes:  1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			group := fmt.Sprintf("g%d", i)
			store := NewMemoryStore(0)
			for topic, cps := range tc.checkpoints {
				for p, o := range cps {
					store.SetCheckpoint(Checkpoint{Topic: topic, Partition: p, Offset: o})
				}
			}
			commit(t, cluster, group, tc.commits)
			var log bytes.Buffer
			s := NewCheckpointSkip(store, append(tc.opts, WithLogger(slog.New(slog.NewTextHandler(&log, nil))))...)
			s.group, s.topics, s.cl = group, []string{"events"}, cl
			if tc.plugin {
				s.topics = []string{"sensor-data"}
			}
			close(s.started)

			before := fetches.Load()
			out, err := s.startOffsets(context.Background(), map[string]map[int32]kgo.Offset{"events": maps.Clone(tc.assigned)})
			if err != nil {
				t.Fatalf("startOffsets: %v", err)
			}
			if !maps.Equal(out["events"], tc.want) {
				t.Errorf("start offsets %v, want %v", out["events"], tc.want)
			}
			if n := newPartitionLogs(&log); n != tc.newOnes {
				t.Errorf("%d partitions logged as new, want %d; log:\n%s", n, tc.newOnes, log.String())
			}
			if fetched := fetches.Load() > before; fetched != tc.fetch {
				t.Errorf("fetched the group's commits: %v, want %v", fetched, tc.fetch)
			}
			if err := s.Ready(); err != nil {
				t.Errorf("Ready = %v", err)
			}
		})
	}
}

// TestStatelessTellsNewPartitionsFromAFirstStart pins the same decision
// for Stateless, which sees only the group's commits.
func TestStatelessTellsNewPartitionsFromAFirstStart(t *testing.T) {
	cluster, cl := newPartitionsCluster(t)
	fetches := cluster.CountRequests(kmsg.OffsetFetch)
	var (
		latest   = kgo.NewOffset().AtEnd()
		earliest = kgo.NewOffset().AtStart()
		at       = func(o int64) kgo.Offset { return kgo.NewOffset().At(o) }
	)
	for i, tc := range []struct {
		name     string
		first    kgo.Offset // kgo.ConsumeStartOffset
		commits  map[int32]int64
		assigned map[int32]kgo.Offset // as kgo passes them: commit or first
		want     map[int32]kgo.Offset
		newOnes  int
		fetch    bool
	}{
		{
			name:     "default start (earliest): nothing to decide, nothing fetched",
			first:    earliest,
			commits:  map[int32]int64{0: 5},
			assigned: map[int32]kgo.Offset{0: at(5), 3: earliest},
			want:     map[int32]kgo.Offset{0: at(5), 3: earliest},
		},
		{
			name:     "latest, all committed: nothing fetched",
			first:    latest,
			commits:  map[int32]int64{0: 5},
			assigned: map[int32]kgo.Offset{0: at(5)},
			want:     map[int32]kgo.Offset{0: at(5)},
		},
		{
			name:     "latest, first start",
			first:    latest,
			assigned: map[int32]kgo.Offset{0: latest, 1: latest},
			want:     map[int32]kgo.Offset{0: latest, 1: latest},
			fetch:    true,
		},
		{
			name:     "latest, new partition beside a committed one",
			first:    latest,
			commits:  map[int32]int64{0: 5},
			assigned: map[int32]kgo.Offset{0: at(5), 3: latest},
			want:     map[int32]kgo.Offset{0: at(5), 3: earliest},
			newOnes:  1,
			fetch:    true,
		},
		{
			name:     "latest, new partition, only another member's commit",
			first:    latest,
			commits:  map[int32]int64{1: 5},
			assigned: map[int32]kgo.Offset{3: latest},
			want:     map[int32]kgo.Offset{3: earliest},
			newOnes:  1,
			fetch:    true,
		},
		{
			// kgo passes the same offset for a commit at 5 and for none.
			name:     "exact start offset equal to a commit",
			first:    at(5),
			commits:  map[int32]int64{0: 5},
			assigned: map[int32]kgo.Offset{0: at(5), 3: at(5)},
			want:     map[int32]kgo.Offset{0: at(5), 3: earliest},
			newOnes:  1,
			fetch:    true,
		},
		{
			name:     "AtCommitted (none) is left alone",
			first:    kgo.NewOffset().AtCommitted(),
			commits:  map[int32]int64{0: 5},
			assigned: map[int32]kgo.Offset{3: kgo.NewOffset().AtCommitted()},
			want:     map[int32]kgo.Offset{3: kgo.NewOffset().AtCommitted()},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			group := fmt.Sprintf("g%d", i)
			commit(t, cluster, group, tc.commits)
			var log bytes.Buffer
			s := &Stateless{group: group, topics: []string{"events"}, logger: slog.New(slog.NewTextHandler(&log, nil)), cl: cl, first: tc.first, started: make(chan struct{})}
			close(s.started)

			before := fetches.Load()
			out, err := s.startOffsets(context.Background(), map[string]map[int32]kgo.Offset{"events": maps.Clone(tc.assigned)})
			if err != nil {
				t.Fatalf("startOffsets: %v", err)
			}
			if !maps.Equal(out["events"], tc.want) {
				t.Errorf("start offsets %v, want %v", out["events"], tc.want)
			}
			if n := newPartitionLogs(&log); n != tc.newOnes {
				t.Errorf("%d partitions logged as new, want %d; log:\n%s", n, tc.newOnes, log.String())
			}
			if fetched := fetches.Load() > before; fetched != tc.fetch {
				t.Errorf("fetched the group's commits: %v, want %v", fetched, tc.fetch)
			}
		})
	}
}
