//go:build unix

package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/kconsumer/kconsumer/dlq"
	"github.com/kconsumer/kconsumer/fault"
	"github.com/kconsumer/kconsumer/internal/kafkatest"
	"github.com/kconsumer/kconsumer/serde"
)

// FuzzParseEvent: any line either fails to parse or parses to an event
// that writes back as the same line.
func FuzzParseEvent(f *testing.F) {
	for _, e := range []Event{
		{Kind: Handled, Time: 1, Partition: 2, Offset: 3, Seq: 4, Key: "k1", Applied: true},
		{Kind: DeadLettered, Time: 1, Offset: 9, Abandoned: true},
		{Kind: Revoked, Time: 1, Partitions: []int32{0, 5}, Stuck: []int32{5}},
		{Kind: Committed, Time: 1, Offsets: map[int32]int64{0: 10, 3: 7}},
		{Kind: Stopped, Time: 1, Text: "x\n\"y\""},
	} {
		f.Add(strings.TrimSuffix(string(AppendEvent(nil, e)), "\n"))
	}
	f.Fuzz(func(t *testing.T, line string) {
		e, err := ParseEvent(line)
		if err != nil {
			return
		}
		again := strings.TrimSuffix(string(AppendEvent(nil, e)), "\n")
		e2, err := ParseEvent(again)
		if err != nil {
			t.Fatalf("%q parsed, but its rewrite %q does not: %v", line, again, err)
		}
		if third := strings.TrimSuffix(string(AppendEvent(nil, e2)), "\n"); third != again {
			t.Fatalf("rewrites differ: %q then %q", again, third)
		}
	})
}

// FuzzParseLog: any bytes yield the entries of the well-formed lines they
// start with, which write back as lines that parse to the same entries,
// and an error unless every line is well formed and complete.
func FuzzParseLog(f *testing.F) {
	f.Add([]byte("0 6b31 5\n1 6b32 -3\n"))
	f.Add([]byte("0 6b31 5\n1 6b"))
	f.Add([]byte("\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		es, err := ParseLog(data)
		if err == nil && len(data) > 0 && data[len(data)-1] != '\n' {
			t.Fatalf("%q parsed without an error, but its last line is torn", data)
		}
		if len(es) > bytes.Count(data, []byte{'\n'}) {
			t.Fatalf("%d entries from %d lines", len(es), bytes.Count(data, []byte{'\n'}))
		}
		var b []byte
		for _, e := range es {
			b = AppendEntry(b, e)
		}
		again, err := ParseLog(b)
		if err != nil || !slices.Equal(again, es) {
			t.Fatalf("entries %+v of %q write back as %q, which parses to %+v, %v", es, data, b, again, err)
		}
	})
}

// FuzzDeadLetterHeaders: dlq.Parse reads a record's headers, which any
// producer may write; whatever they hold, it returns an error or a letter
// with the checks it promises, and never panics.
func FuzzDeadLetterHeaders(f *testing.F) {
	f.Add("sensor-data", "3", "42", "1700000000000", "usage", "poison", "bad magic byte", "1", "1700000000001", "own")
	f.Add("", "-1", "x", "", "", "retriable", "", "", "", "")
	f.Fuzz(func(t *testing.T, topicV, part, off, ts, group, class, errText, attempts, failed, own string) {
		rec := &kgo.Record{Topic: "t.dlq", Headers: []kgo.RecordHeader{{Key: "own", Value: []byte(own)}}}
		for i, v := range []string{topicV, part, off, ts, group, class, errText, attempts, failed} {
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: dlqHeaders[i], Value: []byte(v)})
		}
		l, err := dlq.Parse(rec)
		if err != nil {
			return
		}
		if l.Topic == "" || l.Partition < 0 || l.Offset < 0 || len(l.Headers) != 1 || string(l.Headers[0].Value) != own {
			t.Fatalf("parsed %+v from %q", l, rec.Headers)
		}
		// Written back in canonical form, the headers parse to the same letter.
		canon := &kgo.Record{Topic: "t.dlq", Headers: slices.Clone(l.Headers)}
		for i, v := range []string{l.Topic, strconv.Itoa(int(l.Partition)), strconv.FormatInt(l.Offset, 10),
			strconv.FormatInt(l.Timestamp.UnixMilli(), 10), l.Group, l.Class.String(), l.Error,
			strconv.Itoa(l.Attempts), strconv.FormatInt(l.FailedAt.UnixMilli(), 10)} {
			canon.Headers = append(canon.Headers, kgo.RecordHeader{Key: dlqHeaders[i], Value: []byte(v)})
		}
		l2, err := dlq.Parse(canon)
		if err != nil || !reflect.DeepEqual(l, l2) {
			t.Fatalf("%+v written back parses to %+v, %v", l, l2, err)
		}
	})
}

// dlqHeaders are the headers a Router appends, in order.
var dlqHeaders = []string{dlq.HeaderTopic, dlq.HeaderPartition, dlq.HeaderOffset, dlq.HeaderTimestamp,
	dlq.HeaderGroup, dlq.HeaderClass, dlq.HeaderError, dlq.HeaderAttempts, dlq.HeaderFailedAt}

// FuzzDecodeJSON: the JSON codec turns any bytes into a value or a poison
// *serde.DecodeError.
func FuzzDecodeJSON(f *testing.F) {
	f.Add([]byte(`{"key":"k1","seq":3,"amount":7}`))
	f.Add([]byte(`{"key":`))
	f.Add([]byte{0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		var v reading
		err := serde.JSON[reading]{}.Decode(context.Background(), topic, data, &v)
		if err == nil {
			return
		}
		want := serde.ErrMismatch
		if data == nil {
			want = serde.ErrNull
		}
		if fault.ClassOf(err) != fault.Poison || !errors.Is(err, want) {
			t.Fatalf("class %v, want poison %v: %v", fault.ClassOf(err), want, err)
		}
		if _, ok := errors.AsType[*serde.DecodeError](err); !ok {
			t.Fatalf("not a *serde.DecodeError: %v", err)
		}
	})
}

// FuzzDecodeRegistryDown: with the registry answering 503, a record that
// names a schema ID is never poison (the schema might exist), and one that
// cannot name one is.
func FuzzDecodeRegistryDown(f *testing.F) {
	reg := kafkatest.NewRegistry(f)
	reg.SetFault(kafkatest.Status(http.StatusServiceUnavailable, 50003))
	r, err := serde.NewRegistry(reg.URL(), serde.LookupTimeout(time.Second))
	if err != nil {
		f.Fatal(err)
	}
	codec, err := serde.NewAvro[reading](r, readerSchema)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{0, 0, 0, 0, 1, 2, 'k', 1, 1})
	f.Add([]byte{1, 0, 0})
	f.Add([]byte{0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var v reading
		err := codec.Decode(context.Background(), topic, data, &v)
		if err == nil {
			t.Fatalf("decoded %q with the registry down", data)
		}
		named := len(data) >= 5 && data[0] == 0
		switch {
		case named && (fault.ClassOf(err) != fault.Retriable || !errors.Is(err, serde.ErrRegistryUnavailable)):
			t.Fatalf("% x names a schema ID, but the error is %v: %v", data, fault.ClassOf(err), err)
		case !named && fault.ClassOf(err) != fault.Poison:
			t.Fatalf("% x names no schema ID, but the error is %v: %v", data, fault.ClassOf(err), err)
		}
	})
}

// FuzzWriterSchema: whatever schema text the registry returns for an ID,
// decoding a record that names it gives a value or a poison error (the
// registry answered; the schema will not change), never a panic.
func FuzzWriterSchema(f *testing.F) {
	var text atomic.Pointer[string]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/schemas/ids/1" {
			http.NotFound(w, req)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
		_ = json.NewEncoder(w).Encode(map[string]string{"schema": *text.Load(), "schemaType": "AVRO"})
	}))
	f.Cleanup(srv.Close)
	f.Add(writerSchema(0), []byte{2, 'k', 2, 4})
	f.Add(readerSchema, []byte{2, 'k', 2, 4, 0})
	f.Add(`{"type":"record","name":"Reading","namespace":"kconsumer.chaos","fields":[{"name":"key","type":"int"}]}`, []byte{2})
	f.Add(`"string"`, []byte{2, 'k'})
	f.Add(`{"type":`, []byte{})
	f.Fuzz(func(t *testing.T, schema string, payload []byte) {
		text.Store(&schema)
		reg, err := serde.NewRegistry(srv.URL, serde.LookupTimeout(5*time.Second), serde.ClientOpts(sr.HTTPClient(srv.Client())))
		if err != nil {
			t.Fatal(err)
		}
		codec, err := serde.NewAvro[reading](reg, readerSchema)
		if err != nil {
			t.Fatal(err)
		}
		var v reading
		err = codec.Decode(context.Background(), topic, append(header(1), payload...), &v)
		if err != nil && fault.ClassOf(err) != fault.Poison {
			t.Fatalf("schema %q: class %v: %v", schema, fault.ClassOf(err), err)
		}
	})
}
