package dlq_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/dlq"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
)

// failedAt returns a dead letter of the test group for value v, the record
// at offset off of the source, failed at the given time, as a Router writes
// it. Each letter names a record of its own: Redrive copies a record once
// per run, however many letters it has.
func failedAt(v string, off int64, at time.Time) *kgo.Record {
	h := func(k, v string) kgo.RecordHeader { return kgo.RecordHeader{Key: k, Value: []byte(v)} }
	return &kgo.Record{Topic: dlqTopic, Key: []byte("k"), Value: []byte(v), Headers: []kgo.RecordHeader{
		h(dlq.HeaderTopic, topic), h(dlq.HeaderPartition, "0"), h(dlq.HeaderOffset, strconv.FormatInt(off, 10)),
		h(dlq.HeaderTimestamp, "1700000000000"), h(dlq.HeaderGroup, group), h(dlq.HeaderClass, "poison"),
		h(dlq.HeaderError, "bad"), h(dlq.HeaderAttempts, "1"),
		h(dlq.HeaderFailedAt, strconv.FormatInt(at.UnixMilli(), 10)),
	}}
}

func TestRedriveFiltersByFailureTime(t *testing.T) {
	cluster := kafkatest.NewCluster(t, 1, topic, dlqTopic)
	t0 := time.UnixMilli(1_700_000_000_000)
	hour := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Hour) }
	cluster.Produce(t, failedAt("h0", 0, hour(0)), failedAt("h1", 1, hour(1)), failedAt("h2", 2, hour(2)), failedAt("h3", 3, hour(3)))

	// [1h, 3h): the letter failed exactly at since is in, the one at until out.
	if s := redrive(t, cluster, dlq.ProgressGroup("a"), dlq.FailedBetween(hour(1), hour(3))); s.Copied != 2 || s.Skipped != 2 {
		t.Errorf("failed in [1h, 3h): %+v, want 2 copied, 2 skipped", s)
	}
	// Open ends.
	if s := redrive(t, cluster, dlq.ProgressGroup("b"), dlq.FailedBetween(hour(3), time.Time{})); s.Copied != 1 || s.Skipped != 3 {
		t.Errorf("failed since 3h: %+v, want 1 copied, 3 skipped", s)
	}
	if s := redrive(t, cluster, dlq.ProgressGroup("c"), dlq.FailedBetween(time.Time{}, hour(1))); s.Copied != 1 || s.Skipped != 3 {
		t.Errorf("failed before 1h: %+v, want 1 copied, 3 skipped", s)
	}
	if got, want := values(cluster.ReadAll(t, redriven)), []string{"h1", "h2", "h3", "h0"}; !slices.Equal(got, want) {
		t.Errorf("copies %v, want %v", got, want)
	}
}

func TestRedriveRefusesAnEmptyFailureWindow(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_000)
	for name, opt := range map[string]dlq.RedriveOpt{
		"reversed": dlq.FailedBetween(at.Add(time.Hour), at),
		"empty":    dlq.FailedBetween(at, at),
	} {
		if _, err := dlq.Redrive(context.Background(), "t.dlq", opt); !errors.Is(err, dlq.ErrInvalidOption) {
			t.Errorf("%s window: Redrive returned %v, want ErrInvalidOption", name, err)
		}
	}
}
