package serde_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/consumer"
	"github.com/kconsumer/kconsumer/fault"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
	"github.com/kconsumer/kconsumer/serde"
)

func TestHandleLocatesErrors(t *testing.T) {
	ctx := context.Background()
	fake := kafkatest.NewRegistry(t)
	reg := newRegistry(t, fake.URL())
	values := newAvro[telemetry](t, reg, telemetrySchema)
	keys := newAvro[string](t, reg, `"string"`, serde.ForKey())
	key, err := keys.Encode(ctx, topic, "sensor-a")
	if err != nil {
		t.Fatal(err)
	}
	value, err := values.Encode(ctx, topic, sample(0))
	if err != nil {
		t.Fatal(err)
	}

	var gotKey string
	var gotValue telemetry
	h := serde.HandleKV(keys, values, func(_ context.Context, _ *kgo.Record, k string, v telemetry) error {
		gotKey, gotValue = k, v
		return nil
	})
	rec := &kgo.Record{Topic: topic, Partition: 3, Offset: 1042, Key: key, Value: value}
	if err := h.Handle(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if gotKey != "sensor-a" || gotValue != sample(0) {
		t.Fatalf("handled key %q value %+v", gotKey, gotValue)
	}

	for _, tc := range []struct {
		name    string
		rec     *kgo.Record
		h       consumer.Handler
		wantKey bool
		class   fault.Class
	}{
		{"bad key", &kgo.Record{Topic: topic, Partition: 3, Offset: 1042, Key: []byte("plain"), Value: value}, h, true, fault.Poison},
		{"bad value", &kgo.Record{Topic: topic, Partition: 3, Offset: 1042, Key: key, Value: value[:7]}, h, false, fault.Poison},
		{"value only", &kgo.Record{Topic: topic, Partition: 3, Offset: 1042, Value: []byte{9}},
			serde.Handle(values, func(context.Context, *kgo.Record, telemetry) error { return nil }), false, fault.Poison},
		{"JSON value", &kgo.Record{Topic: topic, Partition: 3, Offset: 1042, Value: []byte("{")},
			serde.Handle(serde.JSON[telemetry]{}, func(context.Context, *kgo.Record, telemetry) error { return nil }), false, fault.Poison},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.h.Handle(ctx, tc.rec)
			if fault.ClassOf(err) != tc.class {
				t.Fatalf("class %v, want %v: %v", fault.ClassOf(err), tc.class, err)
			}
			de, ok := errors.AsType[*serde.DecodeError](err)
			if !ok || de.Partition != 3 || de.Offset != 1042 || de.Key != tc.wantKey || de.Topic != topic {
				t.Fatalf("error %#v does not locate the record", de)
			}
			part := "value"
			if tc.wantKey {
				part = "key"
			}
			for _, s := range []string{part, topic, "partition 3 offset 1042"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message %q lacks %q", err, s)
				}
			}
			if strings.Count(err.Error(), "poison") > 1 {
				t.Errorf("class repeated in %q", err)
			}
		})
	}

	// A handler error passes through untouched.
	boom := errors.New("sink down")
	hb := serde.Handle(values, func(context.Context, *kgo.Record, telemetry) error { return boom })
	if err := hb.Handle(ctx, rec); err != boom {
		t.Fatalf("got %v, want the handler's own error", err)
	}
}

// ownDecoder is a Decoder of a user's own that marks its errors itself.
type ownDecoder struct{}

func (ownDecoder) Decode(context.Context, string, []byte, *string) error {
	return fault.MarkRetriable(errors.New("cache cold"))
}

func TestHandleKeepsClassOfOwnDecoder(t *testing.T) {
	h := serde.Handle[string](ownDecoder{}, func(context.Context, *kgo.Record, string) error { return nil })
	err := h.Handle(context.Background(), &kgo.Record{Topic: topic, Partition: 1, Offset: 7})
	if fault.ClassOf(err) != fault.Retriable {
		t.Fatalf("class %v: %v", fault.ClassOf(err), err)
	}
	if de, ok := errors.AsType[*serde.DecodeError](err); !ok || de.Offset != 7 || de.SchemaID != -1 {
		t.Fatalf("got %v, want a located *DecodeError", err)
	}
}

func TestJSON(t *testing.T) {
	ctx := context.Background()
	var j serde.JSON[telemetry]
	b, err := j.Encode(ctx, topic, sample(4))
	if err != nil {
		t.Fatal(err)
	}
	var v telemetry
	if err := j.Decode(ctx, topic, b, &v); err != nil {
		t.Fatal(err)
	}
	if v != sample(4) {
		t.Fatalf("decoded %+v", v)
	}
	err = j.Decode(ctx, topic, []byte(`{"sensor_id": 5}`), &v)
	if fault.ClassOf(err) != fault.Poison || !errors.Is(err, serde.ErrMismatch) {
		t.Fatalf("got %v, want poison ErrMismatch", err)
	}
	for _, tc := range []struct {
		codec serde.JSON[telemetry]
		text  string
	}{
		{serde.JSON[telemetry]{}, "value of topic \"sensor-data\", no schema ID: null value (a tombstone)"},
		{serde.JSON[telemetry]{Key: true}, "key of topic \"sensor-data\", no schema ID: null key"},
	} {
		err = tc.codec.Decode(ctx, topic, nil, &v)
		if fault.ClassOf(err) != fault.Poison || !errors.Is(err, serde.ErrNull) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("got %v, want poison ErrNull saying %q", err, tc.text)
		}
	}
}

// TestConsumerEndToEnd runs a consumer.Consumer on kfake whose handler comes
// from HandleKV, against srfake over httptest. The stream mixes v1 and v2
// writers and one poison record; the registry is down when the consumer
// starts, so the first decodes fail retriably until it comes back.
func TestConsumerEndToEnd(t *testing.T) {
	ctx := context.Background()
	fake := kafkatest.NewRegistry(t)
	cluster := kafkatest.NewCluster(t, 2, topic)

	producerReg := newRegistry(t, fake.URL())
	keyEnc := newAvro[string](t, producerReg, `"string"`, serde.ForKey())
	v1 := newAvro[telemetry](t, producerReg, telemetrySchema)
	v2 := newAvro[telemetry2](t, producerReg, telemetryV2)
	const n = 40
	var recs []*kgo.Record
	for i := range n {
		k, err := keyEnc.Encode(ctx, topic, sample(i).SensorID)
		if err != nil {
			t.Fatal(err)
		}
		var v []byte
		if i%2 == 0 {
			v, err = v1.Encode(ctx, topic, sample(i))
		} else {
			v, err = v2.Encode(ctx, topic, telemetry2{telemetry: sample(i), Firmware: "2.0"})
		}
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: topic, Key: k, Value: v})
	}
	poisonKey, err := keyEnc.Encode(ctx, topic, "sensor-poison")
	if err != nil {
		t.Fatal(err)
	}
	recs = append(recs, &kgo.Record{Topic: topic, Key: poisonKey, Value: []byte("not avro")})
	cluster.Produce(t, recs...)

	// The registry is down: the consumer's schema lookups fail.
	fake.SetFault(kafkatest.Status(http.StatusServiceUnavailable, 0))

	var mu sync.Mutex
	got := map[int64]telemetry2{} // by timestamp
	var poisoned []*serde.DecodeError
	retriable := make(chan struct{}, 1)
	h := serde.HandleKV(
		newAvro[string](t, newRegistry(t, fake.URL()), `"string"`, serde.ForKey()),
		newAvro[telemetry2](t, newRegistry(t, fake.URL()), telemetryV2),
		func(_ context.Context, _ *kgo.Record, k string, v telemetry2) error {
			if k != v.SensorID {
				return fault.MarkPoison(errors.New("key does not match sensor_id"))
			}
			mu.Lock()
			got[v.TimestampMs] = v
			mu.Unlock()
			return nil
		})
	// Stand-in for the dead-letter middleware: poison is set aside, the
	// rest is left to the Consumer's retries.
	deadLetter := func(next consumer.Handler) consumer.Handler {
		return consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
			err := next.Handle(ctx, r)
			switch fault.ClassOf(err) {
			case fault.Poison:
				de, _ := errors.AsType[*serde.DecodeError](err)
				mu.Lock()
				poisoned = append(poisoned, de)
				mu.Unlock()
				return nil
			case fault.Retriable:
				select {
				case retriable <- struct{}{}:
				default:
				}
			}
			return err
		})
	}
	c, err := consumer.New(h,
		consumer.SeedBrokers(cluster.Addrs...),
		consumer.Topics(topic),
		consumer.WithLogger(slog.New(slog.DiscardHandler)),
		consumer.ClientOpts(kgo.FetchMaxWait(50*time.Millisecond)),
		consumer.RetryBackoff(time.Millisecond, 20*time.Millisecond),
		consumer.Use(deadLetter),
	)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	select {
	case <-retriable:
	case <-time.After(30 * time.Second):
		t.Fatal("no retriable error while the registry was down")
	}
	fake.SetFault(nil)

	kafkatest.WaitFor(t, 30*time.Second, "every record handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == n && len(poisoned) == 1
	})
	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		want := telemetry2{telemetry: sample(i), Firmware: "unknown"}
		if i%2 == 1 {
			want.Firmware = "2.0"
		}
		g := got[sample(i).TimestampMs]
		if g.telemetry != want.telemetry || g.Firmware != want.Firmware || g.BatteryV != nil {
			t.Errorf("record %d: got %+v, want %+v", i, g, want)
		}
	}
	p := poisoned[0]
	if bad := recs[n]; p == nil || p.Topic != topic || p.Partition != bad.Partition || p.Offset != bad.Offset || !errors.Is(p, serde.ErrBadMagic) {
		t.Errorf("poison record reported as %v", p)
	}
	if fake.ByIDRequests() == 0 {
		t.Error("no schema was looked up by ID")
	}
}
