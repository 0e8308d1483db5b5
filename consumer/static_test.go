package consumer_test

import (
	"context"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
)

// events records a member's rebalance callbacks.
type events struct {
	mu       sync.Mutex
	assigned [][]int32
	revoked  int
	lost     int
	own      map[int32]bool
}

func (e *events) opts() []consumer.Opt {
	return []consumer.Opt{
		consumer.OnAssigned(func(_ context.Context, ps map[string][]int32) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.assigned = append(e.assigned, slices.Sorted(slices.Values(ps[topic])))
			if e.own == nil {
				e.own = make(map[int32]bool)
			}
			for _, p := range ps[topic] {
				e.own[p] = true
			}
		}),
		consumer.OnRevoked(func(_ context.Context, ps map[string][]int32) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.revoked += len(ps[topic])
			for _, p := range ps[topic] {
				delete(e.own, p)
			}
		}),
		consumer.OnLost(func(_ context.Context, ps map[string][]int32) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.lost += len(ps[topic])
			for _, p := range ps[topic] {
				delete(e.own, p)
			}
		}),
	}
}

// owned returns the partitions the member owns now.
func (e *events) owned() []int32 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Sorted(maps.Keys(e.own))
}

func (e *events) counts() (assigned, revoked, lost int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.assigned), e.revoked, e.lost
}

// TestStaticMemberRestartKeepsItsPartitions stops a static member and
// starts it again with the same InstanceID within its session: it gets its
// partitions back at once, no partition of the other member moves, and every
// record is handled exactly once across the restart.
func TestStaticMemberRestartKeepsItsPartitions(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 4, topic)
	static := func(id string, extra ...consumer.Opt) []consumer.Opt {
		return testOpts(cluster, "g", append([]consumer.Opt{
			consumer.InstanceID(id),
			consumer.ClientOpts(kgo.SessionTimeout(10 * time.Second)),
		}, extra...)...)
	}
	var evA1, evA2, evB events
	a1, b := newRecorder(), newRecorder()
	ca1, err := consumer.New(a1, static("a", evA1.opts()...)...)
	if err != nil {
		t.Fatal(err)
	}
	stopA1 := kafkatest.Run(t, ca1)
	cb, err := consumer.New(b, static("b", evB.opts()...)...)
	if err != nil {
		t.Fatal(err)
	}
	kafkatest.Run(t, cb)
	kafkatest.WaitFor(t, 30*time.Second, "both members owning partitions", func() bool {
		return len(evA1.owned()) > 0 && len(evB.owned()) > 0 && len(evA1.owned())+len(evB.owned()) >= 4
	})
	first := cluster.ProduceSeq(t, topic, 2000, 100)
	kafkatest.WaitFor(t, 30*time.Second, "the first records handled", func() bool { return a1.total()+b.total() >= len(first) })
	ownedA, ownedB := evA1.owned(), evB.owned()
	bAssigned, bRevoked, bLost := evB.counts()

	if err := stopA1(); err != nil {
		t.Fatalf("Run a: %v", err)
	}
	a2 := newRecorder()
	ca2, err := consumer.New(a2, static("a", evA2.opts()...)...)
	if err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	kafkatest.Run(t, ca2)
	kafkatest.WaitFor(t, 30*time.Second, "the restarted member's assignment", func() bool { return len(evA2.owned()) > 0 })
	t.Logf("restarted member assigned after %v", time.Since(restarted))
	if got := evA2.owned(); !slices.Equal(got, ownedA) {
		t.Errorf("restarted member owns %v, want its old %v", got, ownedA)
	}
	second := cluster.ProduceSeq(t, topic, 2000, 100)
	all := append(first, second...)
	kafkatest.WaitFor(t, 30*time.Second, "every record handled", func() bool {
		return a1.total()+a2.total()+b.total() >= len(all)
	})
	// The restart may start a new generation (kgo has a static leader
	// that rejoins trigger one), but no partition moves: the other member
	// keeps reading throughout.
	a, r, l := evB.counts()
	if r != bRevoked || l != bLost || !slices.Equal(evB.owned(), ownedB) {
		t.Errorf("the other member's partitions moved: revoked %d→%d, lost %d→%d, owns %v, owned %v", bRevoked, r, bLost, l, evB.owned(), ownedB)
	}
	t.Logf("the other member saw %d more assignment callbacks, none with partitions taken away", a-bAssigned)
	seen := make(map[int32]map[int64]int)
	for _, r := range []*recorder{a1, a2, b} {
		for p, offs := range r.offsets() {
			if seen[p] == nil {
				seen[p] = make(map[int64]int)
			}
			for _, o := range offs {
				seen[p][o]++
			}
		}
	}
	for p, offs := range expectedOffsets(all) {
		for _, o := range offs {
			if n := seen[p][o]; n != 1 {
				t.Fatalf("partition %d offset %d handled %d times across a graceful static restart, want once", p, o, n)
			}
		}
	}
}
