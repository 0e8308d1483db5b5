//go:build unix

package chaos

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/kconsumer/kconsumer/consumer"
)

// Store is the additive group's sink and recovery.CheckpointStore: per-key
// sums kept as one append-only log file per partition. Each line,
// "<offset> <hex key> <amount>", is one record's effect, and the last line
// of a file is its partition's checkpoint, so an effect and its checkpoint
// are written together by one write call.
//
// A writer holds an exclusive flock on the file and appends only offsets
// above the last one, so members in different processes that own a
// partition at the same moment (an old owner finishing a record) apply each
// record once. A line reaches the kernel with one write call, which a
// SIGKILL cannot undo or tear; there is no fsync because the suite crashes
// processes, not machines. A tail torn by a machine crash is cut off by the
// next writer. NewOutOfOrderStore's Store differs in what it appends and
// what its checkpoint is; see there.
type Store struct {
	dir        string
	outOfOrder bool

	mu    sync.Mutex
	files map[string]*logFile
}

// logFile is one partition's log, opened by one Store.
type logFile struct {
	mu   sync.Mutex // flock is per open file, so goroutines also need this
	f    *os.File
	size int64 // the file's size when last read or written by us
	last int64 // the last offset in the file at that size; -1 for none

	// Out of order: every offset in the file at size, and the first
	// offset from 0 that is not among them.
	applied map[int64]bool
	next    int64
}

// Entry is one line of a Store's log.
type Entry struct {
	Offset int64
	Key    string
	Amount int64
}

// NewStore returns a Store keeping its logs in dir, which it creates.
func NewStore(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &Store{dir: dir, files: make(map[string]*logFile)}, nil
}

// NewOutOfOrderStore returns a Store for records that finish out of offset
// order (consumer.KeyOrder), as recovery.OutOfOrderStore requires: it
// applies each offset once, whenever it comes, and reports as a partition's
// checkpoint the end of the contiguous run of applied offsets from 0. Its
// log's lines are in the order the records were applied.
func NewOutOfOrderStore(dir string) (*Store, error) {
	s, err := NewStore(dir)
	if err != nil {
		return nil, err
	}
	s.outOfOrder = true
	return s, nil
}

// openStore opens the additive group's store for members handling records
// in the given order.
func openStore(dir string, o consumer.Ordering) (*Store, error) {
	if o == consumer.PartitionOrder {
		return NewStore(dir)
	}
	return NewOutOfOrderStore(dir)
}

func logName(topic string, partition int32) string {
	return fmt.Sprintf("%s-%d.log", topic, partition)
}

// file returns the open log of a partition; with create false, it returns
// nil if there is none yet.
func (s *Store) file(topic string, partition int32, create bool) (*logFile, error) {
	name := logName(topic, partition)
	s.mu.Lock()
	defer s.mu.Unlock()
	if lf := s.files[name]; lf != nil {
		return lf, nil
	}
	flags := os.O_RDWR | os.O_APPEND
	if create {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(filepath.Join(s.dir, name), flags, 0o644)
	if errors.Is(err, fs.ErrNotExist) && !create {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	lf := &logFile{f: f, size: -1}
	s.files[name] = lf
	return lf, nil
}

// Apply appends the effect of the record at offset of a partition unless
// the partition's checkpoint is at or above it (out of order: unless the
// log holds the offset). It reports whether it appended.
func (s *Store) Apply(ctx context.Context, topic string, partition int32, offset int64, key string, amount int64) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	lf, err := s.file(topic, partition, true)
	if err != nil {
		return false, err
	}
	applied := false
	err = lf.locked(syscall.LOCK_EX, func() error {
		if s.outOfOrder {
			if err := lf.readNew(); err != nil || lf.applied[offset] {
				return err
			}
		} else if last, err := lf.lastOffset(true); err != nil || offset <= last {
			return err
		}
		line := AppendEntry(nil, Entry{Offset: offset, Key: key, Amount: amount})
		n, err := lf.f.Write(line)
		if err != nil {
			lf.size = -1 // a short write is cut off by the next writer
			return err
		}
		lf.size += int64(n)
		lf.last = offset
		if s.outOfOrder {
			lf.add(offset)
		}
		applied = true
		return nil
	})
	return applied, err
}

// Checkpoints implements recovery.CheckpointStore.
func (s *Store) Checkpoints(ctx context.Context, topic string, partitions []int32) (map[int32]int64, error) {
	out := make(map[int32]int64)
	for _, p := range partitions {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		lf, err := s.file(topic, p, false)
		if err != nil {
			return nil, err
		}
		if lf == nil {
			continue
		}
		var last int64
		if err := lf.locked(syscall.LOCK_EX, func() (err error) {
			if s.outOfOrder {
				err = lf.readNew()
				last = lf.next - 1
				return err
			}
			last, err = lf.lastOffset(true)
			return err
		}); err != nil {
			return nil, err
		}
		if last >= 0 {
			out[p] = last
		}
	}
	return out, nil
}

// Close closes the Store's files.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for name, lf := range s.files {
		errs = append(errs, lf.f.Close())
		delete(s.files, name)
	}
	return errors.Join(errs...)
}

func (lf *logFile) locked(how int, fn func() error) error {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	fd := int(lf.f.Fd())
	if err := syscall.Flock(fd, how); err != nil {
		return fmt.Errorf("locking %s: %w", lf.f.Name(), err)
	}
	defer func() { _ = syscall.Flock(fd, syscall.LOCK_UN) }()
	return fn()
}

// lastOffset returns the last offset in the file, reading its tail if
// another writer changed it since we last looked. With repair, a torn last
// line is cut off. The caller holds the lock.
func (lf *logFile) lastOffset(repair bool) (int64, error) {
	st, err := lf.f.Stat()
	if err != nil {
		return 0, err
	}
	size := st.Size()
	if size == lf.size {
		return lf.last, nil
	}
	tail, err := readTail(lf.f, size)
	if err != nil {
		return 0, err
	}
	if cut := bytes.LastIndexByte(tail, '\n') + 1; cut < len(tail) {
		if !repair {
			return 0, fmt.Errorf("%s: torn last line", lf.f.Name())
		}
		size -= int64(len(tail) - cut)
		if err := lf.f.Truncate(size); err != nil {
			return 0, err
		}
		tail = tail[:cut]
	}
	last := int64(-1)
	if len(tail) > 0 {
		line := tail[bytes.LastIndexByte(tail[:len(tail)-1], '\n')+1:]
		es, err := ParseLog(line)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", lf.f.Name(), err)
		}
		last = es[0].Offset
	}
	lf.size, lf.last = size, last
	return last, nil
}

// readNew reads the lines other writers appended since we last looked
// into the applied offsets, cutting off a torn last line. The caller holds
// the lock.
func (lf *logFile) readNew() error {
	st, err := lf.f.Stat()
	if err != nil {
		return err
	}
	size, from := st.Size(), max(lf.size, 0)
	if lf.applied == nil || size < from { // a first look, or a file shorter than we saw
		lf.applied, lf.next, from = make(map[int64]bool), 0, 0
	}
	if size == from {
		lf.size = size
		return nil
	}
	b := make([]byte, size-from)
	n, err := lf.f.ReadAt(b, from)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	b = b[:n]
	if cut := bytes.LastIndexByte(b, '\n') + 1; cut < len(b) {
		if err := lf.f.Truncate(from + int64(cut)); err != nil {
			return err
		}
		b, size = b[:cut], from+int64(cut)
	}
	es, err := ParseLog(b)
	if err != nil {
		return fmt.Errorf("%s: %w", lf.f.Name(), err)
	}
	for _, e := range es {
		lf.add(e.Offset)
	}
	lf.size = size
	return nil
}

// add notes an applied offset and moves the contiguous prefix past it.
func (lf *logFile) add(offset int64) {
	lf.applied[offset] = true
	for lf.applied[lf.next] {
		lf.next++
	}
}

// readTail returns the end of a file of the given size: enough to hold its
// last complete line and whatever follows it.
func readTail(f *os.File, size int64) ([]byte, error) {
	for n := int64(512); ; n *= 2 {
		n = min(n, size)
		b := make([]byte, n)
		if _, err := f.ReadAt(b, size-n); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		if n == size || bytes.Count(b, []byte{'\n'}) >= 2 {
			return b, nil
		}
	}
}

// AppendEntry appends e as a log line to b.
func AppendEntry(b []byte, e Entry) []byte {
	b = strconv.AppendInt(b, e.Offset, 10)
	b = append(b, ' ')
	b = hex.AppendEncode(b, []byte(e.Key))
	b = append(b, ' ')
	b = strconv.AppendInt(b, e.Amount, 10)
	return append(b, '\n')
}

var errLog = errors.New("malformed store log")

// ParseLog reads the lines of a log. It returns the entries of the complete
// lines before the first malformed one, and an error if there is one or if
// the data does not end with a newline (a torn tail).
func ParseLog(data []byte) ([]Entry, error) {
	var es []Entry
	for n := 1; len(data) > 0; n++ {
		line, rest, ok := bytes.Cut(data, []byte{'\n'})
		if !ok {
			return es, fmt.Errorf("%w: line %d is torn", errLog, n)
		}
		f := bytes.Split(line, []byte{' '})
		if len(f) != 3 {
			return es, fmt.Errorf("%w: line %d has %d fields", errLog, n, len(f))
		}
		o, err1 := strconv.ParseInt(string(f[0]), 10, 64)
		key, err2 := hex.DecodeString(string(f[1]))
		a, err3 := strconv.ParseInt(string(f[2]), 10, 64)
		if err := errors.Join(err1, err2, err3); err != nil || o < 0 {
			return es, fmt.Errorf("%w: line %d: %q", errLog, n, line)
		}
		es = append(es, Entry{Offset: o, Key: string(key), Amount: a})
		data = rest
	}
	return es, nil
}

// ReadLog returns the entries of a partition's log in dir; none if it has
// no log.
func ReadLog(dir, topic string, partition int32) ([]Entry, error) {
	b, err := os.ReadFile(filepath.Join(dir, logName(topic, partition)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseLog(b)
}

// A sinkMode is the fault the members' sink plays.
type sinkMode string

const (
	sinkOK      sinkMode = ""
	sinkFail    sinkMode = "fail"    // refuse the write: a retriable error
	sinkSlow    sinkMode = "slow"    // take sinkDelay per write
	sinkLostAck sinkMode = "lostack" // write, then fail as if the answer was lost
)

// sinkDelay is how long a slow sink takes per record.
const sinkDelay = 15 * time.Millisecond

// sinkControl reads the mode the parent sets in a file, so that members in
// child processes follow it too; it reads the file at most every 20 ms.
type sinkControl struct {
	path string

	mu   sync.Mutex
	mode sinkMode
	read time.Time
}

func sinkControlPath(dir string) string { return filepath.Join(dir, "sink-mode") }

func (s *sinkControl) current() sinkMode {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := time.Now(); now.Sub(s.read) >= 20*time.Millisecond {
		b, _ := os.ReadFile(s.path) // a missing file means no fault
		s.mode, s.read = sinkMode(bytes.TrimSpace(b)), now
	}
	return s.mode
}

// setSinkMode sets the mode atomically for every member sharing dir.
func setSinkMode(dir string, m sinkMode) error {
	tmp := sinkControlPath(dir) + ".tmp"
	if err := os.WriteFile(tmp, []byte(m), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, sinkControlPath(dir))
}
