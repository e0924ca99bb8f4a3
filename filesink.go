package weir

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// FileSink writes a stream exactly once into files in dir, through the
// two-phase-commit protocol:
//
//   - each subtask writes the records of one checkpoint epoch into a hidden
//     in-progress file ".<txn>.inprogress";
//   - when the barrier passes, the file is flushed, fsynced and renamed to
//     ".<txn>.pending" (pre-commit);
//   - when the checkpoint completes it is renamed to its final name
//     "<txn><suffix>" (commit), where txn is weir-<job>-<sink UID>-<subtask>-<seq>.
//
// Readers must ignore names starting with a dot: they then see only
// committed files, and each record exactly once. A file rolls at every
// checkpoint. encode appends one record's bytes (a line, say) to dst.
func FileSink[T any](dir, suffix string, encode func(dst []byte, record T) []byte) Sink[T] {
	return TwoPhaseCommitSink(FileCommitter(dir, suffix, encode))
}

// FileCommitter is FileSink's TwoPhaseCommitter, for wrapping or testing.
func FileCommitter[T any](dir, suffix string, encode func(dst []byte, record T) []byte) TwoPhaseCommitter[T, *FileTxn] {
	return &fileCommitter[T]{dir: dir, suffix: suffix, encode: encode}
}

// Lines encodes a record as fmt's %v and a newline, for FileSink.
func Lines[T any](dst []byte, record T) []byte { return fmt.Appendf(dst, "%v\n", record) }

// FileTxn is the transaction handle of FileSink: the transaction's name.
type FileTxn struct {
	Name string
	f    *os.File
	w    *bufio.Writer
	buf  []byte
}

type fileCommitter[T any] struct {
	dir    string
	suffix string
	encode func([]byte, T) []byte
}

func (c *fileCommitter[T]) inProgress(name string) string {
	return filepath.Join(c.dir, "."+name+".inprogress")
}
func (c *fileCommitter[T]) pending(name string) string {
	return filepath.Join(c.dir, "."+name+".pending")
}
func (c *fileCommitter[T]) final(name string) string { return filepath.Join(c.dir, name+c.suffix) }

func (c *fileCommitter[T]) Begin(ctx TxnContext) (*FileTxn, error) {
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create file sink directory: %w", err)
	}
	name := ctx.Name()
	f, err := os.OpenFile(c.inProgress(name), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cannot open in-progress file: %w", err)
	}
	return &FileTxn{Name: name, f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
}

func (c *fileCommitter[T]) Write(txn *FileTxn, r T) error {
	txn.buf = c.encode(txn.buf[:0], r)
	_, err := txn.w.Write(txn.buf)
	return err
}

func (c *fileCommitter[T]) PreCommit(txn *FileTxn) error {
	if txn.f == nil {
		return fmt.Errorf("transaction %s is not open", txn.Name)
	}
	if err := txn.w.Flush(); err != nil {
		return fmt.Errorf("cannot write %s: %w", txn.f.Name(), err)
	}
	if err := txn.f.Sync(); err != nil {
		return fmt.Errorf("cannot sync %s: %w", txn.f.Name(), err)
	}
	if err := txn.f.Close(); err != nil {
		return fmt.Errorf("cannot close %s: %w", txn.f.Name(), err)
	}
	txn.f, txn.w = nil, nil
	if err := os.Rename(c.inProgress(txn.Name), c.pending(txn.Name)); err != nil {
		return fmt.Errorf("cannot pre-commit: %w", err)
	}
	return syncDir(c.dir)
}

func (c *fileCommitter[T]) Commit(txn *FileTxn) error {
	err := os.Rename(c.pending(txn.Name), c.final(txn.Name))
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat(c.final(txn.Name)); serr == nil {
			return nil // committed before a crash: idempotent
		}
		return fmt.Errorf("transaction %s is lost: neither %s nor %s exists", txn.Name, c.pending(txn.Name), c.final(txn.Name))
	}
	if err != nil {
		return fmt.Errorf("cannot commit: %w", err)
	}
	return syncDir(c.dir)
}

func (c *fileCommitter[T]) Abort(txn *FileTxn) error {
	if txn.f != nil {
		txn.f.Close()
		txn.f, txn.w = nil, nil
	}
	for _, p := range []string{c.inProgress(txn.Name), c.pending(txn.Name)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("cannot abort transaction %s: %w", txn.Name, err)
		}
	}
	return nil
}

func (c *fileCommitter[T]) AbortLingering(tc TxnContext, keep []*FileTxn) error {
	prefix := tc.Prefix
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
		if !strings.HasPrefix(n, "."+prefix+"-") {
			continue
		}
		name := strings.TrimSuffix(strings.TrimSuffix(n[1:], ".inprogress"), ".pending")
		if name == n[1:] || kept[name] {
			continue
		}
		if err := os.Remove(filepath.Join(c.dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("cannot remove lingering %s: %w", n, err)
		}
	}
	return nil
}

func (c *fileCommitter[T]) EncodeHandle(txn *FileTxn) ([]byte, error) { return []byte(txn.Name), nil }

func (c *fileCommitter[T]) DecodeHandle(b []byte) (*FileTxn, error) {
	name := string(b)
	if name == "" || strings.ContainsAny(name, "/\\") {
		return nil, fmt.Errorf("invalid file sink transaction name %q", name)
	}
	return &FileTxn{Name: name}, nil
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
