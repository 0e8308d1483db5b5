//go:build unix

package chaos

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestStoreAppliesEachOffsetOnceAcrossWriters(t *testing.T) {
	dir := t.TempDir()
	const n = 300
	inOrder := make([]int64, n)
	for o := range inOrder {
		inOrder[o] = int64(o)
	}
	applied := applyFromWriters(t, NewStore, dir, [][]int64{inOrder, inOrder, inOrder})
	es, err := ReadLog(dir, topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != n || applied[0]+applied[1]+applied[2] != n {
		t.Fatalf("%d entries, %v applied by each writer; want %d in all", len(es), applied, n)
	}
	for i, e := range es {
		if e.Offset != int64(i) || e.Amount != int64(i) {
			t.Fatalf("entry %d is %+v", i, e)
		}
	}
}

func TestStoreCutsATornTail(t *testing.T) {
	dir := t.TempDir()
	s, err := NewStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for o := range int64(3) {
		if _, err := s.Apply(ctx, topic, 1, o, "k", 1); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, logName(topic, 1)), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("3 6b"); err != nil { // a machine crash mid-line
		t.Fatal(err)
	}
	f.Close()
	if _, err := ReadLog(dir, topic, 1); err == nil {
		t.Fatal("ReadLog accepted a torn line")
	}

	other, err := NewStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	cps, err := other.Checkpoints(ctx, topic, []int32{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(cps) != 1 || cps[1] != 2 {
		t.Fatalf("checkpoints %v, want only partition 1 at 2", cps)
	}
	if ok, err := other.Apply(ctx, topic, 1, 3, "k", 5); !ok || err != nil {
		t.Fatalf("Apply after the torn line: %v, %v", ok, err)
	}
	es, err := ReadLog(dir, topic, 1)
	if err != nil || len(es) != 4 || es[3] != (Entry{3, "k", 5}) {
		t.Fatalf("log %+v, %v", es, err)
	}
}

func TestStoreRefusesACancelledContext(t *testing.T) {
	s, err := NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if ok, err := s.Apply(ctx, topic, 0, 0, "k", 1); ok || err == nil {
		t.Fatalf("Apply with a cancelled context: %v, %v", ok, err)
	}
}

// An out-of-order store applies each offset once whatever order writers in
// different processes bring them in, and its checkpoint is the contiguous
// prefix: it stops at a gap, here offset 7, which no writer applies.
func TestOutOfOrderStoreAppliesEachOffsetOnceAndReportsThePrefix(t *testing.T) {
	dir := t.TempDir()
	const n, gap = 300, 7
	orders := make([][]int64, 3)
	for w := range orders {
		for _, o := range rand.New(rand.NewPCG(uint64(w), 1)).Perm(n) {
			if o != gap {
				orders[w] = append(orders[w], int64(o))
			}
		}
	}
	applied := applyFromWriters(t, NewOutOfOrderStore, dir, orders)
	es, err := ReadLog(dir, topic, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[int64]bool)
	for _, e := range es {
		if seen[e.Offset] || e.Offset == gap || e.Amount != e.Offset {
			t.Fatalf("entry %+v: applied twice, or the gap, or wrong", e)
		}
		seen[e.Offset] = true
	}
	if len(es) != n-1 || applied[0]+applied[1]+applied[2] != n-1 {
		t.Fatalf("%d entries, %v applied by each writer; want %d in all", len(es), applied, n-1)
	}
	fresh, err := NewOutOfOrderStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	ctx := context.Background()
	if cps, err := fresh.Checkpoints(ctx, topic, []int32{0, 1}); err != nil || len(cps) != 1 || cps[0] != gap-1 {
		t.Fatalf("checkpoints %v, %v; want only partition 0 at %d", cps, err, gap-1)
	}
	if ok, err := fresh.Apply(ctx, topic, 0, gap, "k", gap); !ok || err != nil {
		t.Fatalf("Apply of the gap: %v, %v", ok, err)
	}
	if cps, err := fresh.Checkpoints(ctx, topic, []int32{0}); err != nil || cps[0] != n-1 {
		t.Fatalf("checkpoints %v, %v after the gap closed; want %d", cps, err, n-1)
	}
}

// applyFromWriters has one writer per list apply the list's offsets to
// partition 0, all at once, each with a Store of its own as members in
// different processes have; it returns how many each appended.
func applyFromWriters(t *testing.T, open func(string) (*Store, error), dir string, lists [][]int64) []int {
	t.Helper()
	var wg sync.WaitGroup
	applied := make([]int, len(lists))
	for w, list := range lists {
		s, err := open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		wg.Go(func() {
			for _, o := range list {
				ok, err := s.Apply(context.Background(), topic, 0, o, "k", o)
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					applied[w]++
				}
			}
		})
	}
	wg.Wait()
	return applied
}
