package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

const sampleMetrics = `# HELP kconsumer_partition_status Status of the partition.
# TYPE kconsumer_partition_status gauge
kconsumer_partition_status{group="usage",partition="0",topic="sensor-data"} 0
kconsumer_partition_status{group="usage",partition="3",topic="sensor-data"} 4
kconsumer_partition_status{group="usage",partition="1",topic="other"} 0
kconsumer_partition_status{group="alerts",partition="5",topic="sensor-data"} 0
# TYPE kconsumer_partition_processed_offset gauge
kconsumer_partition_processed_offset{group="usage",partition="0",topic="sensor-data"} 1042
kconsumer_partition_processed_offset{group="alerts",partition="5",topic="sensor-data"} 7
# TYPE kconsumer_ready gauge
kconsumer_ready{group="usage"} 1
`

func TestParsePartitions(t *testing.T) {
	got := parsePartitions(sampleMetrics, "usage", "sensor-data")
	want := map[int32]partitionState{
		0: {owned: true, processed: 1042, ready: true},
		3: {owned: true, processed: -1, ready: true},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for p, w := range want {
		if got[p] != w {
			t.Errorf("partition %d: %+v, want %+v", p, got[p], w)
		}
	}
	if got := parsePartitions(sampleMetrics, "alerts", "sensor-data"); got[5] != (partitionState{owned: true, processed: 7}) {
		t.Errorf("alerts: %v", got)
	}
}

// TestStallEndsWhenEveryPartitionIsBack drives a stall through the
// readings a restarted instance gives: nothing, then partitions owned but
// behind, then back.
func TestStallEndsWhenEveryPartitionIsBack(t *testing.T) {
	var mu sync.Mutex
	metrics := ""
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		_, _ = w.Write([]byte(metrics))
	}))
	defer srv.Close()
	set := func(lines ...string) {
		mu.Lock()
		defer mu.Unlock()
		metrics = strings.Join(lines, "\n") + "\n"
	}
	owned := func(p string) string {
		return `kconsumer_partition_status{group="usage",partition="` + p + `",topic="sensor-data"} 0`
	}
	processed := func(p, offset string) string {
		return `kconsumer_partition_processed_offset{group="usage",partition="` + p + `",topic="sensor-data"} ` + offset
	}
	ends := map[int32]int64{0: 20, 1: 5, 2: 0, 3: 9}
	st := &stall{
		service: "usage", at: time.Now(), addrs: []string{strings.TrimPrefix(srv.URL, "http://"), "127.0.0.1:1"},
		// Next offsets at the kill. 0: 10; 1: 5, nothing arrived since;
		// 2: owned, never fetched; 3: 7, two records arrived since.
		from:    map[int32]int64{0: 10, 1: 5, 2: -1, 3: 7},
		ends:    func(context.Context) (map[int32]int64, error) { return ends, nil },
		ownedAt: map[int32]time.Duration{}, backAt: map[int32]time.Duration{}, idle: map[int32]int{},
		owned: -1, took: -1,
	}
	ctx := context.Background()
	poll := func() {
		time.Sleep(time.Millisecond)
		st.poll(ctx)
	}
	backs := func() map[int32]bool {
		out := make(map[int32]bool)
		for p := range st.backAt {
			out[p] = true
		}
		return out
	}

	poll() // the restarted instance does not answer yet
	if len(st.ownedAt) != 0 || len(st.backAt) != 0 || st.over() {
		t.Fatalf("back before anything was owned: %v", st.backAt)
	}

	// Owned, ready; 0 replays below 10, 1 and 3 fetched nothing yet.
	set(owned("0"), owned("1"), owned("2"), owned("3"), processed("0", "8"), `kconsumer_ready{group="usage"} 1`)
	poll()
	if b := backs(); !b[2] || b[0] || b[1] || b[3] || st.owned <= 0 {
		t.Fatalf("after one reading: back %v, owned after %v", b, st.owned)
	}
	poll()
	if b := backs(); !b[1] || b[0] || b[3] {
		t.Fatalf("idle partition 1 is not back after two readings, or others are: %v", b)
	}

	// 0 reaches the killed instance's position; 3 gets its records.
	set(owned("0"), owned("1"), owned("2"), owned("3"), processed("0", "10"), processed("3", "6"), `kconsumer_ready{group="usage"} 1`)
	poll()
	if b := backs(); !b[0] || b[3] || st.over() {
		t.Fatalf("back %v, over %v", b, st.over())
	}
	set(owned("0"), owned("1"), owned("2"), owned("3"), processed("0", "11"), processed("3", "9"), `kconsumer_ready{group="usage"} 1`)
	poll()
	if !st.over() || st.took <= 0 || st.took != st.backAt[3] {
		t.Fatalf("stall %v, back at %v", st.took, st.backAt)
	}
}

func TestMedian(t *testing.T) {
	s := time.Second
	if got := median([]time.Duration{3 * s, s, 2 * s}); got != 2*s {
		t.Errorf("median of 3: %v", got)
	}
	if got := median([]time.Duration{4 * s, s, 2 * s, 3 * s}); got != 2500*time.Millisecond {
		t.Errorf("median of 4: %v", got)
	}
}
