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

// Lines encodes a record as fmt's %v and a newline, for Sink.
func Lines[T any](dst []byte, record T) []byte { return fmt.Appendf(dst, "%v\n", record) }

// Txn is the transaction handle of Sink: the transaction's name and
// how many part files it wrote.
type Txn struct {
	Name   string
	Parts  int
	f      *os.File
	w      *bufio.Writer
	size   int64
	opened time.Time
	buf    []byte
}

type fileCommitter[T any] struct {
	dir    string
	o      SinkOptions
	encode func([]byte, T) []byte
}

func (c *fileCommitter[T]) part(name string, n int) string { return fmt.Sprintf("%s.%d", name, n) }
func (c *fileCommitter[T]) inProgress(name string, n int) string {
	return filepath.Join(c.dir, "."+c.part(name, n)+".inprogress")
}
func (c *fileCommitter[T]) pending(name string, n int) string {
	return filepath.Join(c.dir, "."+c.part(name, n)+".pending")
}
func (c *fileCommitter[T]) final(name string, n int) string {
	return filepath.Join(c.dir, c.part(name, n)+c.o.Suffix)
}

func (c *fileCommitter[T]) Begin(ctx weir.TxnContext) (*Txn, error) {
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create file sink directory: %w", err)
	}
	txn := &Txn{Name: ctx.Name()}
	return txn, c.openPart(txn)
}

func (c *fileCommitter[T]) openPart(txn *Txn) error {
	f, err := os.OpenFile(c.inProgress(txn.Name, txn.Parts), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("cannot open in-progress file: %w", err)
	}
	txn.Parts++
	txn.f, txn.size, txn.opened = f, 0, time.Now()
	if txn.w == nil {
		txn.w = bufio.NewWriterSize(f, 64<<10)
	} else {
		txn.w.Reset(f)
	}
	return nil
}

// closePart flushes, syncs and closes the current part.
func (c *fileCommitter[T]) closePart(txn *Txn) error {
	if err := txn.w.Flush(); err != nil {
		return fmt.Errorf("cannot write %s: %w", txn.f.Name(), err)
	}
	if err := txn.f.Sync(); err != nil {
		return fmt.Errorf("cannot sync %s: %w", txn.f.Name(), err)
	}
	if err := txn.f.Close(); err != nil {
		return fmt.Errorf("cannot close %s: %w", txn.f.Name(), err)
	}
	txn.f = nil
	return nil
}

func (c *fileCommitter[T]) Write(txn *Txn, r T) error {
	if txn.f == nil {
		return fmt.Errorf("transaction %s is not open", txn.Name)
	}
	if (c.o.RollSize > 0 && txn.size >= c.o.RollSize) || (c.o.RollInterval > 0 && time.Since(txn.opened) >= c.o.RollInterval) {
		if err := c.closePart(txn); err != nil {
			return err
		}
		if err := c.openPart(txn); err != nil {
			return err
		}
	}
	txn.buf = c.encode(txn.buf[:0], r)
	n, err := txn.w.Write(txn.buf)
	txn.size += int64(n)
	return err
}

func (c *fileCommitter[T]) PreCommit(txn *Txn) error {
	if txn.f == nil {
		return fmt.Errorf("transaction %s is not open", txn.Name)
	}
	if err := c.closePart(txn); err != nil {
		return err
	}
	for n := range txn.Parts {
		if err := os.Rename(c.inProgress(txn.Name, n), c.pending(txn.Name, n)); err != nil {
			return fmt.Errorf("cannot pre-commit: %w", err)
		}
	}
	return syncDir(c.dir)
}

// Commit renames every pending part to its final name, never over an
// existing file: a committed file is never replaced. A part already
// renamed (before a crash) counts as committed.
func (c *fileCommitter[T]) Commit(txn *Txn) error {
	for n := range txn.Parts {
		pending, final := c.pending(txn.Name, n), c.final(txn.Name, n)
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
	return syncDir(c.dir)
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
	if txn.f != nil {
		txn.f.Close()
		txn.f = nil
	}
	for n := range txn.Parts {
		for _, p := range []string{c.inProgress(txn.Name, n), c.pending(txn.Name, n)} {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("cannot abort transaction %s: %w", txn.Name, err)
			}
		}
	}
	return nil
}

func (c *fileCommitter[T]) AbortLingering(tc weir.TxnContext, keep []*Txn) error {
	entries, err := os.ReadDir(c.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot list file sink directory: %w", err)
	}
	kept := map[string]bool{}
	for _, k := range keep {
		kept[k.Name] = true
	}
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, "."+tc.Prefix+"-") {
			continue
		}
		part := strings.TrimSuffix(strings.TrimSuffix(n[1:], ".inprogress"), ".pending")
		if part == n[1:] {
			continue
		}
		if i := strings.LastIndexByte(part, '.'); i > 0 && kept[part[:i]] {
			continue
		}
		if err := os.Remove(filepath.Join(c.dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("cannot remove lingering %s: %w", n, err)
		}
	}
	return nil
}

// EncodeHandle writes uvarint(parts) followed by the transaction name.
func (c *fileCommitter[T]) EncodeHandle(txn *Txn) ([]byte, error) {
	return append(binary.AppendUvarint(nil, uint64(txn.Parts)), txn.Name...), nil
}

func (c *fileCommitter[T]) DecodeHandle(b []byte) (*Txn, error) {
	parts, n := binary.Uvarint(b)
	if n <= 0 || parts > 1<<20 {
		return nil, fmt.Errorf("invalid file sink transaction handle %q", b)
	}
	name := string(b[n:])
	if name == "" || strings.ContainsAny(name, "/\\") {
		return nil, fmt.Errorf("invalid file sink transaction name %q", name)
	}
	return &Txn{Name: name, Parts: int(parts)}, nil
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
