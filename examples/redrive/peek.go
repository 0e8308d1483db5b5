package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kconsumer/kconsumer/dlq"
)

// peekTime formats times in peek's output: UTC, to the millisecond, as
// the headers hold them.
const peekTime = "2006-01-02T15:04:05.000Z07:00"

func peek(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("redrive peek", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = usageOf(fs, "peek -topic DLQ [-partition P] -offset O [-max-bytes N]",
		"Shows one dead letter in full: its decoded headers, the original record's headers, key and value.")
	var c common
	addCommon(fs, &c)
	partition := fs.Int("partition", 0, "dead-letter partition")
	offset := fs.Int64("offset", -1, "dead-letter offset (required)")
	maxBytes := fs.Int("max-bytes", 4096, "show at most this many bytes of the key, the value and each header; 0 means all")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := c.check(); err != nil {
		return err
	}
	if *partition < 0 || *partition > 1<<31-1 {
		return fmt.Errorf("-partition %d is not a partition number", *partition)
	}
	if *offset < 0 {
		return errors.New("-offset is required, at least 0")
	}
	if *maxBytes < 0 {
		return fmt.Errorf("-max-bytes %d must not be negative", *maxBytes)
	}
	ctx, cancel := withTimeout(ctx, c.timeout)
	defer cancel()

	rd, err := newReader(&c)
	if err != nil {
		return err
	}
	defer rd.close()
	p := int32(*partition)
	spans, err := rd.spans(ctx, []int32{p}, 0, -1)
	if err != nil {
		return err
	}
	s := spans[0]
	switch {
	case *offset < s.start:
		return fmt.Errorf("%s/%d@%d was deleted; the partition starts at %d", c.topic, p, *offset, s.start)
	case *offset >= s.stop:
		return fmt.Errorf("%s/%d@%d does not exist; the partition ends at %d", c.topic, p, *offset, s.stop)
	}
	s.start, s.stop = *offset, *offset+1
	var rec *kgo.Record
	err = rd.read(ctx, s, func(r *kgo.Record) (bool, error) {
		rec = r
		return false, nil
	})
	switch {
	case err != nil:
		return err
	case rec == nil || rec.Offset != *offset:
		return fmt.Errorf("%s/%d has no record at offset %d (compacted away, or part of an aborted transaction)", c.topic, p, *offset)
	case rec.Attrs.IsControl():
		return fmt.Errorf("%s/%d@%d is a transaction marker, not a record", c.topic, p, *offset)
	}
	printLetter(stdout, rec, *maxBytes)
	return nil
}

// printLetter writes r in full, decoding its dead-letter headers.
func printLetter(w io.Writer, r *kgo.Record, maxBytes int) {
	field := func(name, format string, args ...any) {
		fmt.Fprintf(w, "%-15s", name)
		fmt.Fprintf(w, format, args...)
		fmt.Fprintln(w)
	}
	field("dead letter", "%s/%d@%d", r.Topic, r.Partition, r.Offset)
	field("written at", "%s", r.Timestamp.UTC().Format(peekTime))
	l, err := dlq.Parse(r)
	headers := r.Headers
	if err != nil {
		field("not a letter", "%s", err)
	} else {
		headers = l.Headers
		field("source", "%s/%d@%d", l.Topic, l.Partition, l.Offset)
		field("timestamp", "%s", l.Timestamp.UTC().Format(peekTime))
		field("group", "%s", orNone(l.Group))
		field("class", "%s", l.Class)
		field("attempts", "%d", l.Attempts)
		field("failed at", "%s", l.FailedAt.UTC().Format(peekTime))
		if to := redriveTopic(l); to != "" {
			field("redrive to", "%s/%d", to, l.Partition)
		} else {
			field("redrive to", "nowhere: a consumer without a group failed it")
		}
		field("error", "%s", strings.ReplaceAll(l.Error, "\n", "\n"+strings.Repeat(" ", 15)))
	}
	if err != nil {
		field("headers", "%d", len(headers))
	} else {
		field("headers", "%d of the original record", len(headers))
	}
	for _, h := range headers {
		shown, note := show(h.Value, maxBytes)
		if kind, _ := classify(h.Value); kind == "text" {
			fmt.Fprintf(w, "  %s: %s%s\n", h.Key, shown, note)
		} else {
			fmt.Fprintf(w, "  %s: (hex) %s%s\n", h.Key, hex.EncodeToString([]byte(shown)), note)
		}
	}
	block(w, "key", r.Key, maxBytes)
	block(w, "value", r.Value, maxBytes)
}

// block writes b under a title line: as text if it is printable UTF-8,
// else as a hex dump; at most maxBytes (0: all) of it.
func block(w io.Writer, name string, b []byte, maxBytes int) {
	if b == nil {
		fmt.Fprintf(w, "%-15snull\n", name)
		return
	}
	kind, _ := classify(b)
	shown, note := show(b, maxBytes)
	fmt.Fprintf(w, "%-15s%d bytes, %s%s\n", name, len(b), kind, note)
	if len(shown) == 0 {
		return
	}
	var body string
	if kind == "text" {
		body = shown
	} else {
		body = hex.Dump([]byte(shown))
	}
	for line := range strings.Lines(body) {
		fmt.Fprintf(w, "  %s", line)
		if !strings.HasSuffix(line, "\n") {
			fmt.Fprintln(w)
		}
	}
}

// classify says whether b reads as text (valid UTF-8, every character
// printable or white space) or is shown as hex.
func classify(b []byte) (kind string, text bool) {
	if !utf8.Valid(b) {
		return "hex", false
	}
	for _, r := range string(b) {
		if !unicode.IsPrint(r) && r != '\n' && r != '\t' && r != '\r' {
			return "hex", false
		}
	}
	return "text", true
}

// show returns b, cut to maxBytes (0: no limit) without splitting a
// character when it is text, and a note saying what was cut.
func show(b []byte, maxBytes int) (string, string) {
	if maxBytes == 0 || len(b) <= maxBytes {
		return string(b), ""
	}
	n := maxBytes
	if _, text := classify(b); text {
		for n > 0 && !utf8.RuneStart(b[n]) {
			n--
		}
	}
	return string(b[:n]), fmt.Sprintf(" (truncated: first %d of %d bytes shown; -max-bytes 0 shows all)", n, len(b))
}
