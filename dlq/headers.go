package dlq

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/fault"
)

// Headers a Router appends to every dead letter, after the original record's
// own headers. Numbers and times are decimal text; times are Unix
// milliseconds.
const (
	HeaderTopic     = "kconsumer-dlq-original-topic"     // topic the record came from
	HeaderPartition = "kconsumer-dlq-original-partition" // its partition
	HeaderOffset    = "kconsumer-dlq-original-offset"    // its offset
	HeaderTimestamp = "kconsumer-dlq-original-timestamp" // its timestamp
	HeaderGroup     = "kconsumer-dlq-group"              // consumer group that failed it ("" for none)
	HeaderClass     = "kconsumer-dlq-error-class"        // fault.Class of the error, by name
	HeaderError     = "kconsumer-dlq-error"              // error message, cut at maxErrorBytes
	HeaderAttempts  = "kconsumer-dlq-attempts"           // times the handler was called
	HeaderFailedAt  = "kconsumer-dlq-failed-at"          // when it was dead-lettered
)

// ours lists the headers a Router appends, in order.
var ours = []string{
	HeaderTopic, HeaderPartition, HeaderOffset, HeaderTimestamp, HeaderGroup,
	HeaderClass, HeaderError, HeaderAttempts, HeaderFailedAt,
}

// maxErrorBytes bounds HeaderError so that a long error message cannot make
// the dead letter too large for its topic.
const maxErrorBytes = 4096

// letter builds the dead letter of r. It copies r's bytes: the handler's
// record must not be retained.
func letter(r *kgo.Record, topic, group string, class fault.Class, err error, attempts int, at time.Time) *kgo.Record {
	hs := make([]kgo.RecordHeader, 0, len(r.Headers)+len(ours))
	for _, h := range r.Headers {
		hs = append(hs, kgo.RecordHeader{Key: h.Key, Value: bytes.Clone(h.Value)})
	}
	add := func(k, v string) { hs = append(hs, kgo.RecordHeader{Key: k, Value: []byte(v)}) }
	add(HeaderTopic, r.Topic)
	add(HeaderPartition, strconv.FormatInt(int64(r.Partition), 10))
	add(HeaderOffset, strconv.FormatInt(r.Offset, 10))
	add(HeaderTimestamp, strconv.FormatInt(r.Timestamp.UnixMilli(), 10))
	add(HeaderGroup, group)
	add(HeaderClass, class.String())
	add(HeaderError, truncate(err.Error(), maxErrorBytes))
	add(HeaderAttempts, strconv.Itoa(attempts))
	add(HeaderFailedAt, strconv.FormatInt(at.UnixMilli(), 10))
	return &kgo.Record{
		Topic:     topic,
		Key:       bytes.Clone(r.Key),
		Value:     bytes.Clone(r.Value),
		Headers:   hs,
		Timestamp: at,
	}
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Letter is what a dead letter's headers say about the record it holds.
type Letter struct {
	Topic     string
	Partition int32
	Offset    int64
	Timestamp time.Time
	Group     string
	Class     fault.Class
	Error     string
	Attempts  int
	FailedAt  time.Time

	// Headers are the original record's own headers, without the ones a
	// Router appended.
	Headers []kgo.RecordHeader
}

// Parse reads the headers a Router appended to the dead letter r. It returns
// an error if they are missing or malformed, for example for a record that
// some other producer wrote to the dead-letter topic.
func Parse(r *kgo.Record) (Letter, error) {
	n := len(r.Headers) - len(ours)
	if n < 0 {
		return Letter{}, fmt.Errorf("dlq: record %s/%d@%d has %d headers, fewer than a dead letter's %d",
			r.Topic, r.Partition, r.Offset, len(r.Headers), len(ours))
	}
	tail := r.Headers[n:]
	for i, k := range ours {
		if tail[i].Key != k {
			return Letter{}, fmt.Errorf("dlq: record %s/%d@%d is not a dead letter: header %d is %q, want %q",
				r.Topic, r.Partition, r.Offset, n+i, tail[i].Key, k)
		}
	}
	v := func(i int) string { return string(tail[i].Value) }
	l := Letter{Topic: v(0), Group: v(4), Error: v(6), Headers: r.Headers[:n:n]}
	var errs []error
	num := func(i int, bits int) int64 {
		x, err := strconv.ParseInt(v(i), 10, bits)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ours[i], err))
		}
		return x
	}
	l.Partition = int32(num(1, 32))
	l.Offset = num(2, 64)
	l.Timestamp = time.UnixMilli(num(3, 64))
	l.Attempts = int(num(7, 32))
	l.FailedAt = time.UnixMilli(num(8, 64))
	if err := l.Class.UnmarshalText(tail[5].Value); err != nil {
		errs = append(errs, err)
	}
	if l.Topic == "" {
		errs = append(errs, fmt.Errorf("%s is empty", HeaderTopic))
	}
	if l.Partition < 0 || l.Offset < 0 {
		errs = append(errs, fmt.Errorf("negative partition %d or offset %d", l.Partition, l.Offset))
	}
	if len(errs) > 0 {
		return Letter{}, fmt.Errorf("dlq: record %s/%d@%d has malformed dead-letter headers: %w",
			r.Topic, r.Partition, r.Offset, errors.Join(errs...))
	}
	return l, nil
}
