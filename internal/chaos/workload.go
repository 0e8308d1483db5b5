//go:build unix

package chaos

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/kconsumer/kconsumer/serde"
)

// reading is a record's value as members read it.
type reading struct {
	Key    string  `avro:"key"`
	Seq    int64   `avro:"seq"`
	Amount int64   `avro:"amount"`
	Note   *string `avro:"note"`
}

// readerSchema describes reading. Writers use revisions of it (see
// writerSchema), so members meet new schema IDs while they run.
const readerSchema = `{"type":"record","name":"Reading","namespace":"kconsumer.chaos","fields":[
	{"name":"key","type":"string"},
	{"name":"seq","type":"long"},
	{"name":"amount","type":"long"},
	{"name":"note","type":["null","string"],"default":null}
]}`

// writerSchema returns revision rev of the writer schema: revision 0 lacks
// the reader's optional note, later ones add a field the reader ignores.
func writerSchema(rev int) string {
	extra := ""
	if rev > 0 {
		extra = fmt.Sprintf(`,{"name":"rev_%d","type":"long","default":0}`, rev)
	}
	return `{"type":"record","name":"Reading","namespace":"kconsumer.chaos","fields":[
	{"name":"key","type":"string"},{"name":"seq","type":"long"},{"name":"amount","type":"long"}` + extra + `]}`
}

// Bad input kinds and the text the dead letter's error must contain.
const (
	badRandom    = "random"
	badTruncated = "truncated"
	badMagic     = "magic"
	badSchema    = "unknown-schema"
	badEmptyKey  = "empty-key"
	badNullKey   = "null-key"
	badNullValue = "null-value"
	badHuge      = "huge"
)

// badKinds are produced in turn; huge records only every hugeEvery.
var badKinds = []string{badRandom, badTruncated, badMagic, badSchema, badEmptyKey, badNullKey, badNullValue, badHuge}

var errNoKey = errors.New("record has no key")

// hugeSize is the size of a huge record's value: close to the default
// 1 MB limit of a record batch, with room for the dead-letter headers.
const hugeSize = 900 << 10

// unknownSchemaID is a schema ID the registry never assigns in a run.
const unknownSchemaID = 1 << 24

// Produced is what the history keeps of a produced record.
type Produced struct {
	Partition int32
	Offset    int64
	Key       string
	NullKey   bool
	ValueSum  [32]byte // SHA-256 of the value, to compare dead letters with
	NullValue bool
	Seq       int64  // per key, good records only; -1 for bad ones
	Amount    int64  // good records only
	Bad       string // "" for good records, else the bad kind
	Reason    string // bad records: what the dead letter's error must say
	Time      int64  // when the produce was acknowledged, Unix nanoseconds
}

// workload produces the records of a run and remembers them.
type workload struct {
	topic string
	cl    *kgo.Client
	reg   schemaRegistrar
	check *serde.Avro[reading] // decodes bad records as members will, with a warm cache
	rng   *rand.Rand
	hist  *History

	keys        int
	badEvery    int // one bad record in badEvery; 0 for none
	hugeEvery   time.Duration
	schemaEvery time.Duration

	seq      map[string]int64
	n        int
	nextBad  int
	lastHuge time.Time
	revs     []int // schema ID of each writer revision
	revAt    time.Time
	writers  []avro.Schema
}

// schemaRegistrar registers schemas directly in the registry, past any
// fault injected in front of its HTTP handler.
type schemaRegistrar interface {
	RegisterSchema(subject string, schema sr.Schema) (id, version int, err error)
}

func newWorkload(cl *kgo.Client, reg schemaRegistrar, registryURL, topic string, seed uint64, hist *History) (*workload, error) {
	r, err := serde.NewRegistry(registryURL)
	if err != nil {
		return nil, err
	}
	check, err := serde.NewAvro[reading](r, readerSchema)
	if err != nil {
		return nil, err
	}
	w := &workload{
		topic: topic, cl: cl, reg: reg, check: check, hist: hist,
		rng:  rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		keys: 16, seq: make(map[string]int64),
	}
	if err := w.newRevision(); err != nil {
		return nil, err
	}
	// Warm the checking codec with revision 0 while the registry is up.
	v, _ := w.encode(0, reading{Key: "warm"})
	var got reading
	if err := check.Decode(context.Background(), topic, v, &got); err != nil {
		return nil, fmt.Errorf("warming the checking codec: %w", err)
	}
	return w, nil
}

// newRevision registers the next writer schema revision.
func (w *workload) newRevision() error {
	rev := len(w.revs)
	text := writerSchema(rev)
	s, err := avro.Parse(text)
	if err != nil {
		return err
	}
	id, _, err := w.reg.RegisterSchema(w.topic+"-value", sr.Schema{Schema: text, Type: sr.TypeAvro})
	if err != nil {
		return fmt.Errorf("registering writer revision %d: %w", rev, err)
	}
	w.revs = append(w.revs, id)
	w.writers = append(w.writers, s)
	w.revAt = time.Now()
	return nil
}

// encode returns v in the Confluent wire format with writer revision rev.
func (w *workload) encode(rev int, v reading) ([]byte, error) {
	m := map[string]any{"key": v.Key, "seq": v.Seq, "amount": v.Amount}
	if rev > 0 {
		m[fmt.Sprintf("rev_%d", rev)] = int64(rev)
	}
	payload, err := avro.Marshal(w.writers[rev], m)
	if err != nil {
		return nil, err
	}
	return append(header(w.revs[rev]), payload...), nil
}

func header(id int) []byte {
	return binary.BigEndian.AppendUint32([]byte{0}, uint32(id))
}

// batch produces n records synchronously and records them in the history.
func (w *workload) batch(ctx context.Context, n int) error {
	if w.schemaEvery > 0 && time.Since(w.revAt) >= w.schemaEvery {
		if err := w.newRevision(); err != nil {
			return err
		}
	}
	recs := make([]*kgo.Record, 0, n)
	meta := make([]Produced, 0, n)
	for range n {
		r, p, err := w.next()
		if err != nil {
			return err
		}
		recs = append(recs, r)
		meta = append(meta, p)
	}
	if err := w.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("producing: %w", err)
	}
	now := time.Now().UnixNano()
	for i, r := range recs {
		meta[i].Partition, meta[i].Offset, meta[i].Time = r.Partition, r.Offset, now
	}
	w.hist.produced(meta...)
	return nil
}

// next returns the next record: a bad one every badEvery records, else a
// good one with the key's next sequence number.
func (w *workload) next() (*kgo.Record, Produced, error) {
	w.n++
	key := fmt.Sprintf("k%d", w.rng.IntN(w.keys))
	if w.badEvery > 0 && w.n%w.badEvery == 0 {
		return w.bad(key)
	}
	v := reading{Key: key, Seq: w.seq[key], Amount: 1 + w.rng.Int64N(100)}
	w.seq[key]++
	value, err := w.encode(w.rng.IntN(len(w.revs)), v)
	if err != nil {
		return nil, Produced{}, err
	}
	return w.record([]byte(key), value), Produced{Key: key, Seq: v.Seq, Amount: v.Amount, ValueSum: sha256.Sum256(value)}, nil
}

func (w *workload) record(key, value []byte) *kgo.Record {
	return &kgo.Record{Topic: w.topic, Key: key, Value: value}
}

// bad returns the next bad record and the reason its dead letter must give.
func (w *workload) bad(key string) (*kgo.Record, Produced, error) {
	kind := badKinds[w.nextBad%len(badKinds)]
	w.nextBad++
	if kind == badHuge && (w.hugeEvery <= 0 || time.Since(w.lastHuge) < w.hugeEvery) {
		kind = badRandom
	}
	good, err := w.encode(0, reading{Key: key, Seq: -1, Amount: 1})
	if err != nil {
		return nil, Produced{}, err
	}
	k, value := []byte(key), good
	var reason string
	switch kind {
	case badRandom:
		value, reason = w.random()
	case badTruncated:
		value = good[:5+w.rng.IntN(len(good)-5)]
		reason = serde.ErrTruncated.Error()
	case badMagic:
		value[0] = byte(1 + w.rng.IntN(255))
		reason = serde.ErrBadMagic.Error()
	case badSchema:
		value = append(header(unknownSchemaID+w.rng.IntN(1000)), good[5:]...)
		reason = serde.ErrUnknownSchema.Error()
	case badEmptyKey:
		k, reason = []byte{}, errNoKey.Error()
	case badNullKey:
		k, reason = nil, errNoKey.Error()
	case badNullValue:
		value, reason = nil, "null value (a tombstone)"
	case badHuge:
		w.lastHuge = time.Now()
		value = append(value, make([]byte, hugeSize)...)
		for i := len(good); i < len(value); i += 8 {
			binary.LittleEndian.PutUint64(value[i:], w.rng.Uint64())
		}
		reason = serde.ErrMismatch.Error()
	}
	if kind != badRandom && kind != badSchema && kind != badEmptyKey && kind != badNullKey {
		// Check that members will find the cause the dead letter must give.
		var v reading
		if err := w.check.Decode(context.Background(), w.topic, value, &v); err == nil || !strings.Contains(err.Error(), reason) {
			return nil, Produced{}, fmt.Errorf("bad record of kind %s decodes with %v, want %q", kind, err, reason)
		}
	}
	p := Produced{Key: string(k), NullKey: k == nil, ValueSum: sha256.Sum256(value), NullValue: value == nil,
		Seq: -1, Bad: kind, Reason: reason}
	return w.record(k, value), p, nil
}

// random returns random bytes that do not decode, and the cause members
// will find: the checking codec decodes them the way a member does, with
// only revision 0's schema ID, which its cache holds, in a valid header.
func (w *workload) random() ([]byte, string) {
	causes := []error{serde.ErrBadMagic, serde.ErrTruncated, serde.ErrMismatch}
	for {
		b := make([]byte, 1+w.rng.IntN(64))
		for i := range b {
			b[i] = byte(w.rng.Uint32())
		}
		if b[0] == 0 && len(b) >= 5 {
			copy(b[1:5], header(w.revs[0])[1:])
		}
		var v reading
		err := w.check.Decode(context.Background(), w.topic, b, &v)
		if err == nil {
			continue // random bytes that happen to decode are a good record
		}
		for _, c := range causes {
			if errors.Is(err, c) {
				return b, c.Error()
			}
		}
		panic(fmt.Sprintf("chaos: random bytes decoded with an unexpected error: %v", err))
	}
}

// produce produces about rate records a second until ctx is done.
func (w *workload) produce(ctx context.Context, rate int) error {
	const tick = 50 * time.Millisecond
	per := max(1, rate*int(tick)/int(time.Second))
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := w.batch(context.WithoutCancel(ctx), per); err != nil {
			return err
		}
	}
}

// truth returns the per-key sums and counts of the good records.
func truth(ps []Produced) map[string][2]int64 {
	out := make(map[string][2]int64)
	for _, p := range ps {
		if p.Bad == "" {
			t := out[p.Key]
			t[0] += p.Amount
			t[1]++
			out[p.Key] = t
		}
	}
	return out
}

// badCounts returns how many bad records of each kind were produced.
func badCounts(ps []Produced) map[string]int {
	out := make(map[string]int)
	for _, p := range ps {
		if p.Bad != "" {
			out[p.Bad]++
		}
	}
	return out
}

// valueSum returns the SHA-256 of a value, as Produced keeps it.
func valueSum(v []byte) [32]byte { return sha256.Sum256(v) }
