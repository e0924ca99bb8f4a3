// Package files writes streams into files exactly once (Sink: in-progress,
// pending and committed files, through two-phase commit) and reads text
// files as replayable sources (TextFile: the byte offset is checkpointed).
package files

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/weirstream/weir"
)

// Sink writes a stream exactly once into files in dir, through the
// two-phase-commit protocol:
//
//   - each subtask writes the records of one checkpoint epoch into hidden
//     in-progress part files ".<txn>.<n>.inprogress";
//   - when the barrier passes, the parts are flushed, fsynced and renamed to
//     ".<txn>.<n>.pending" (pre-commit);
//   - when the checkpoint completes they are renamed to their final names
//     "<txn>.<n><suffix>" (commit), where txn is
//     weir-<job>-<sink UID>-<subtask>-<seq>.
//
// Readers must ignore names starting with a dot: they then see only
// committed files, and each record exactly once. Files roll at every
// checkpoint; see SinkWith to roll by size and age too. encode appends
// one record's bytes (a line, say) to dst.
func Sink[T any](dir, suffix string, encode func(dst []byte, record T) []byte) weir.Sink[T] {
	return SinkWith(dir, SinkOptions{Suffix: suffix}, encode)
}

// SinkOptions tune Sink.
type SinkOptions struct {
	// Suffix ends every committed file name (".txt", ".jsonl").
	Suffix string
	// RollSize starts a new part file once the current one has this many
	// bytes (0: no limit).
	RollSize int64
	// RollInterval starts a new part file once the current one is this old
	// (0: no limit).
	RollInterval time.Duration
}

// SinkWith is Sink with options.
func SinkWith[T any](dir string, o SinkOptions, encode func(dst []byte, record T) []byte) weir.Sink[T] {
	return weir.TwoPhaseCommitSink(CommitterWith(dir, o, encode))
}

// Committer is Sink's TwoPhaseCommitter, for wrapping or testing.
func Committer[T any](dir, suffix string, encode func(dst []byte, record T) []byte) weir.TwoPhaseCommitter[T, *Txn] {
	return CommitterWith(dir, SinkOptions{Suffix: suffix}, encode)
}

// CommitterWith is Committer with options.
func CommitterWith[T any](dir string, o SinkOptions, encode func(dst []byte, record T) []byte) weir.TwoPhaseCommitter[T, *Txn] {
	return &fileCommitter[T]{dir: dir, o: o, encode: encode}
}

// BucketedSinkWith is SinkWith that writes each record into a bucket: the
// subdirectory of dir that bucket names (Flink's BucketAssigner; for
// instance "dt=2026-11-30/hm=17:05" from the record's event time, as
// Nexmark's q10 partitions its files). A bucket is a relative,
// slash-separated path without "." or ".." elements, or "" for dir
// itself; a record whose bucket is not fails the job naming it. Every
// bucket a transaction wrote to gets its own part files, pre-committed
// and committed with the others.
func BucketedSinkWith[T any](dir string, o SinkOptions, bucket func(record T) string, encode func(dst []byte, record T) []byte) weir.Sink[T] {
	return weir.TwoPhaseCommitSink(BucketedCommitterWith(dir, o, bucket, encode))
}

// BucketedCommitterWith is BucketedSinkWith's TwoPhaseCommitter.
func BucketedCommitterWith[T any](dir string, o SinkOptions, bucket func(record T) string, encode func(dst []byte, record T) []byte) weir.TwoPhaseCommitter[T, *Txn] {
	return &fileCommitter[T]{dir: dir, o: o, encode: encode, bucket: bucket}
}

// Lines encodes a record as fmt's %v and a newline, for Sink.
func Lines[T any](dst []byte, record T) []byte { return fmt.Appendf(dst, "%v\n", record) }

// Txn is the transaction handle of Sink: the transaction's name, how
// many part files it wrote and, for a bucketed sink, the bucket of each.
type Txn struct {
	Name  string
	Parts int
	// Buckets[n] is the bucket of part n; nil when every part is in the
	// sink's directory.
	Buckets []string
	open    map[string]*openPart // the open part of each bucket written
	last    *openPart            // the open part of the last record's bucket
	buf     []byte
}

// openPart is a part file being written.
type openPart struct {
	bucket string
	n      int
	f      *os.File
	w      *bufio.Writer
	size   int64
	opened time.Time
}

type fileCommitter[T any] struct {
	dir    string
	o      SinkOptions
	encode func([]byte, T) []byte
	bucket func(T) string // nil: no buckets
}

func (c *fileCommitter[T]) part(name string, n int) string { return fmt.Sprintf("%s.%d", name, n) }

// bucketDir is the directory of part n of txn.
func (c *fileCommitter[T]) bucketDir(txn *Txn, n int) string {
	if n < len(txn.Buckets) && txn.Buckets[n] != "" {
		return filepath.Join(c.dir, filepath.FromSlash(txn.Buckets[n]))
	}
	return c.dir
}

func (c *fileCommitter[T]) inProgress(txn *Txn, n int) string {
	return filepath.Join(c.bucketDir(txn, n), "."+c.part(txn.Name, n)+".inprogress")
}
func (c *fileCommitter[T]) pending(txn *Txn, n int) string {
	return filepath.Join(c.bucketDir(txn, n), "."+c.part(txn.Name, n)+".pending")
}
func (c *fileCommitter[T]) final(txn *Txn, n int) string {
	return filepath.Join(c.bucketDir(txn, n), c.part(txn.Name, n)+c.o.Suffix)
}

// dirs lists the directories txn's parts are in, each once.
func (c *fileCommitter[T]) dirs(txn *Txn) []string {
	if txn.Buckets == nil {
		return []string{c.dir}
	}
	seen := map[string]bool{}
	var out []string
	for n := range txn.Parts {
		if d := c.bucketDir(txn, n); !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

// checkBucket says why b is not a bucket name, or returns nil.
func checkBucket(b string) error {
	if b == "" {
		return nil
	}
	if strings.HasPrefix(b, "/") || strings.Contains(b, "\\") {
		return fmt.Errorf("bucket %q is not a relative slash-separated path", b)
	}
	for _, e := range strings.Split(b, "/") {
		if e == "" || e == "." || e == ".." || strings.HasPrefix(e, ".") {
			return fmt.Errorf("bucket %q has an empty, \".\", \"..\" or hidden element", b)
		}
	}
	return nil
}

func (c *fileCommitter[T]) Begin(ctx weir.TxnContext) (*Txn, error) {
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create file sink directory: %w", err)
	}
	txn := &Txn{Name: ctx.Name(), open: map[string]*openPart{}}
	if c.bucket != nil {
		txn.Buckets = []string{}
		return txn, nil // parts open with their bucket's first record
	}
	_, err := c.openPart(txn, "")
	return txn, err
}

// openPart opens the next part of txn, in bucket.
func (c *fileCommitter[T]) openPart(txn *Txn, bucket string) (*openPart, error) {
	n := txn.Parts
	if txn.Buckets != nil {
		txn.Buckets = append(txn.Buckets, bucket)
		if err := os.MkdirAll(c.bucketDir(txn, n), 0o755); err != nil {
			txn.Buckets = txn.Buckets[:n]
			return nil, fmt.Errorf("cannot create bucket directory: %w", err)
		}
	}
	f, err := os.OpenFile(c.inProgress(txn, n), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		if txn.Buckets != nil {
			txn.Buckets = txn.Buckets[:n]
		}
		return nil, fmt.Errorf("cannot open in-progress file: %w", err)
	}
	txn.Parts++
	p := txn.open[bucket]
	if p == nil {
		p = &openPart{bucket: bucket, w: bufio.NewWriterSize(f, 64<<10)}
		txn.open[bucket] = p
	} else {
		p.w.Reset(f)
	}
	p.n, p.f, p.size, p.opened = n, f, 0, time.Now()
	txn.last = p
	return p, nil
}

// closePart flushes, syncs and closes a part.
func (c *fileCommitter[T]) closePart(p *openPart) error {
	if err := p.w.Flush(); err != nil {
		return fmt.Errorf("cannot write %s: %w", p.f.Name(), err)
	}
	if err := p.f.Sync(); err != nil {
		return fmt.Errorf("cannot sync %s: %w", p.f.Name(), err)
	}
	if err := p.f.Close(); err != nil {
		return fmt.Errorf("cannot close %s: %w", p.f.Name(), err)
	}
	p.f = nil
	return nil
}

func (c *fileCommitter[T]) Write(txn *Txn, r T) error {
	if txn.open == nil {
		return fmt.Errorf("transaction %s is not open", txn.Name)
	}
	p := txn.last
	if c.bucket != nil {
		b := c.bucket(r)
		if p == nil || p.bucket != b {
			if p = txn.open[b]; p == nil || p.f == nil {
				if err := checkBucket(b); err != nil {
					return fmt.Errorf("file sink %s: %w", c.dir, err)
				}
				var err error
				if p, err = c.openPart(txn, b); err != nil {
					return err
				}
			}
			txn.last = p
		}
	}
	if p == nil || p.f == nil {
		return fmt.Errorf("transaction %s is not open", txn.Name)
	}
	if (c.o.RollSize > 0 && p.size >= c.o.RollSize) || (c.o.RollInterval > 0 && time.Since(p.opened) >= c.o.RollInterval) {
		if err := c.closePart(p); err != nil {
			return err
		}
		var err error
		if p, err = c.openPart(txn, p.bucket); err != nil {
			return err
		}
	}
	txn.buf = c.encode(txn.buf[:0], r)
	n, err := p.w.Write(txn.buf)
	p.size += int64(n)
	return err
}

func (c *fileCommitter[T]) PreCommit(txn *Txn) error {
	if txn.open == nil {
		return fmt.Errorf("transaction %s is not open", txn.Name)
	}
	for _, p := range txn.open {
		if p.f != nil {
			if err := c.closePart(p); err != nil {
				return err
			}
		}
	}
	txn.open, txn.last = nil, nil
	for n := range txn.Parts {
		if err := os.Rename(c.inProgress(txn, n), c.pending(txn, n)); err != nil {
			return fmt.Errorf("cannot pre-commit: %w", err)
		}
	}
	for _, d := range c.dirs(txn) {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// Commit renames every pending part to its final name, never over an
// existing file: a committed file is never replaced. A part already
// renamed (before a crash) counts as committed.
func (c *fileCommitter[T]) Commit(txn *Txn) error {
	for n := range txn.Parts {
		pending, final := c.pending(txn, n), c.final(txn, n)
		err := renameNoReplace(pending, final)
		switch {
		case err == nil:
		case errors.Is(err, os.ErrNotExist):
			if _, serr := os.Stat(final); serr == nil {
				continue
			}
			return fmt.Errorf("cannot commit transaction %s: neither %s nor %s exists: %w", txn.Name, pending, final, weir.ErrTransactionLost)
		case errors.Is(err, os.ErrExist):
			return fmt.Errorf("cannot commit transaction %s: %s exists already and a committed file is never replaced (was the sink directory shared by two jobs, or restored by hand?)", txn.Name, final)
		default:
			return fmt.Errorf("cannot commit transaction %s: %w", txn.Name, err)
		}
	}
	for _, d := range c.dirs(txn) {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// renameNoReplace renames from to to unless to exists (os.ErrExist). It
// hard-links, then removes from: if a crash comes between the two, both
// names are the same file, which a second call recognizes and finishes.
func renameNoReplace(from, to string) error {
	err := os.Link(from, to)
	if errors.Is(err, os.ErrExist) {
		fi, ferr := os.Stat(from)
		ti, terr := os.Stat(to)
		if ferr != nil || terr != nil || !os.SameFile(fi, ti) {
			return err
		}
		err = nil // the link of an interrupted earlier commit
	}
	if err != nil {
		return err
	}
	return os.Remove(from)
}

func (c *fileCommitter[T]) Abort(txn *Txn) error {
	for _, p := range txn.open {
		if p.f != nil {
			p.f.Close()
			p.f = nil
		}
	}
	txn.open, txn.last = nil, nil
	for n := range txn.Parts {
		for _, p := range []string{c.inProgress(txn, n), c.pending(txn, n)} {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("cannot abort transaction %s: %w", txn.Name, err)
			}
		}
	}
	return nil
}

// AbortLingering removes the in-progress and pending parts of this sink
// subtask's transactions that keep does not hold, in the sink's directory
// and, for a bucketed sink, in every bucket under it.
func (c *fileCommitter[T]) AbortLingering(tc weir.TxnContext, keep []*Txn) error {
	kept := map[string]bool{}
	for _, k := range keep {
		kept[k.Name] = true
	}
	prefix := "." + tc.Prefix + "-"
	err := filepath.WalkDir(c.dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			if path != c.dir && c.bucket == nil {
				return filepath.SkipDir // no buckets: only the directory itself
			}
			return nil
		}
		n := d.Name()
		if !strings.HasPrefix(n, prefix) {
			return nil
		}
		part := strings.TrimSuffix(strings.TrimSuffix(n[1:], ".inprogress"), ".pending")
		if part == n[1:] {
			return nil
		}
		if i := strings.LastIndexByte(part, '.'); i > 0 && kept[part[:i]] {
			return nil
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("cannot remove lingering %s: %w", path, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cannot list file sink directory %s: %w", c.dir, err)
	}
	return nil
}

// EncodeHandle writes uvarint(parts) followed by the transaction name;
// for a bucketed sink, a zero byte (an unbucketed transaction has a part
// from its start, so its handle never starts with one), then
// uvarint(parts), uvarint(len(name)), the name and, for every part,
// uvarint(len(bucket)) and the bucket.
func (c *fileCommitter[T]) EncodeHandle(txn *Txn) ([]byte, error) {
	if txn.Buckets == nil {
		return append(binary.AppendUvarint(nil, uint64(txn.Parts)), txn.Name...), nil
	}
	b := binary.AppendUvarint([]byte{0}, uint64(txn.Parts))
	b = append(binary.AppendUvarint(b, uint64(len(txn.Name))), txn.Name...)
	for _, bk := range txn.Buckets {
		b = append(binary.AppendUvarint(b, uint64(len(bk))), bk...)
	}
	return b, nil
}

func (c *fileCommitter[T]) DecodeHandle(b []byte) (*Txn, error) {
	bad := func() (*Txn, error) { return nil, fmt.Errorf("invalid file sink transaction handle %q", b) }
	if len(b) > 0 && b[0] == 0 {
		return c.decodeBucketed(b[1:], bad)
	}
	parts, n := binary.Uvarint(b)
	if n <= 0 || parts > 1<<20 {
		return bad()
	}
	name := string(b[n:])
	if name == "" || strings.ContainsAny(name, "/\\") {
		return nil, fmt.Errorf("invalid file sink transaction name %q", name)
	}
	return &Txn{Name: name, Parts: int(parts)}, nil
}

func (c *fileCommitter[T]) decodeBucketed(b []byte, bad func() (*Txn, error)) (*Txn, error) {
	str := func() (string, bool) {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return "", false
		}
		s := string(b[n : n+int(l)])
		b = b[n+int(l):]
		return s, true
	}
	parts, n := binary.Uvarint(b)
	if n <= 0 || parts > 1<<20 {
		return bad()
	}
	b = b[n:]
	name, ok := str()
	if !ok {
		return bad()
	}
	if name == "" || strings.ContainsAny(name, "/\\") {
		return nil, fmt.Errorf("invalid file sink transaction name %q", name)
	}
	txn := &Txn{Name: name, Parts: int(parts), Buckets: make([]string, 0, parts)}
	for range parts {
		bk, ok := str()
		if !ok {
			return bad()
		}
		if err := checkBucket(bk); err != nil {
			return nil, fmt.Errorf("invalid file sink transaction handle: %w", err)
		}
		txn.Buckets = append(txn.Buckets, bk)
	}
	if len(b) != 0 {
		return bad()
	}
	return txn, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("cannot sync directory %s: %w", dir, err)
	}
	return nil
}
