package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// FileStore is a BlobStore in a directory: key "chk-7/x" is the file
// <root>/chk-7/x. A blob is written to a temporary file next to it
// ("<name>.tmp-<random>"), fsynced, hard-linked to its name (which fails if
// the name exists: the atomic create-if-absent), and its directory fsynced;
// then the temporary name is removed. A crash leaves at most a temporary
// file, which List returns so that sweeps delete it. Delete removes the
// directories it empties.
type FileStore struct {
	root string
}

// NewFileStore returns the store rooted at dir, creating dir if needed.
func NewFileStore(dir string) (*FileStore, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("cannot use checkpoint directory %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create checkpoint directory: %w", err)
	}
	return &FileStore{root: abs}, nil
}

// Root is the directory of the store.
func (f *FileStore) Root() string { return f.root }

func (f *FileStore) String() string { return "file://" + f.root }

// Locate is the absolute path of key.
func (f *FileStore) Locate(key string) string { return filepath.Join(f.root, filepath.FromSlash(key)) }

func (f *FileStore) path(key string) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	return f.Locate(key), nil
}

// mkdir creates dir and the missing directories above it, and fsyncs the
// parent of each directory it created, so that the new entries survive a
// crash.
func (f *FileStore) mkdir(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	var created []string
	for d := dir; d != f.root && len(d) > len(f.root); d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		created = append(created, d)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, d := range created {
		if err := syncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}

// createTemp creates the temporary file of the blob at p. Delete may
// remove an emptied directory between mkdir and the create: try again.
func (f *FileStore) createTemp(p string) (*os.File, error) {
	dir := filepath.Dir(p)
	for attempt := 0; ; attempt++ {
		if err := f.mkdir(dir); err != nil {
			return nil, err
		}
		tmp, err := os.CreateTemp(dir, filepath.Base(p)+".tmp-*")
		if err == nil || !errors.Is(err, fs.ErrNotExist) || attempt == 10 {
			return tmp, err
		}
	}
}

// publish gives the synced and closed temporary file tmp the name p,
// failing with ErrExists if p exists, and makes the name durable.
func (f *FileStore) publish(tmp, p string) error {
	defer os.Remove(tmp)
	err := os.Link(tmp, p)
	switch {
	case errors.Is(err, fs.ErrExist):
		return fmt.Errorf("%s %w", p, ErrExists)
	case err != nil:
		// A file system without hard links: check, then rename. Not
		// atomic against a concurrent creator of the same name.
		if _, serr := os.Lstat(p); serr == nil {
			return fmt.Errorf("%s %w", p, ErrExists)
		}
		if rerr := os.Rename(tmp, p); rerr != nil {
			return fmt.Errorf("cannot create %s: %w (hard link: %v)", p, rerr, err)
		}
	}
	return syncDir(filepath.Dir(p))
}

// Put writes b to a temporary file, fsyncs it, links it to key's name if
// that is free, and fsyncs the directory.
func (f *FileStore) Put(ctx context.Context, key string, b []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := f.path(key)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(p); err == nil {
		return fmt.Errorf("%s %w", p, ErrExists)
	}
	tmp, err := f.createTemp(p)
	if err != nil {
		return fmt.Errorf("cannot create %s: %w", p, err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("cannot write %s: %w", p, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("cannot sync %s: %w", p, err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("cannot close %s: %w", p, err)
	}
	if err := ctx.Err(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return f.publish(tmp.Name(), p)
}

// Create writes the blob to a temporary file until Close publishes it.
func (f *FileStore) Create(ctx context.Context, key string) (BlobWriter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := f.path(key)
	if err != nil {
		return nil, err
	}
	if _, err := os.Lstat(p); err == nil {
		return nil, fmt.Errorf("cannot create %s: %w", p, ErrExists)
	}
	tmp, err := f.createTemp(p)
	if err != nil {
		return nil, fmt.Errorf("cannot create %s: %w", p, err)
	}
	return &fileWriter{ctx: ctx, tmp: tmp, f: f, path: p}, nil
}

type fileWriter struct {
	ctx  context.Context
	f    *FileStore
	tmp  *os.File
	path string
	done bool // Close or Abort was called
	ok   bool // Close succeeded
}

func (w *fileWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("cannot write %s: closed", w.path)
	}
	if err := w.ctx.Err(); err != nil {
		return 0, fmt.Errorf("cannot write %s: %w", w.path, err)
	}
	return w.tmp.Write(p)
}

func (w *fileWriter) Close() error {
	if w.done {
		return fmt.Errorf("cannot close %s: already closed or aborted", w.path)
	}
	w.done = true
	fail := func(err error) error {
		w.tmp.Close()
		os.Remove(w.tmp.Name())
		return err
	}
	if err := w.ctx.Err(); err != nil {
		return fail(fmt.Errorf("cannot write %s: %w", w.path, err))
	}
	if err := w.tmp.Sync(); err != nil {
		return fail(fmt.Errorf("cannot sync %s: %w", w.path, err))
	}
	if err := w.tmp.Close(); err != nil {
		os.Remove(w.tmp.Name())
		return fmt.Errorf("cannot close %s: %w", w.path, err)
	}
	if err := w.f.publish(w.tmp.Name(), w.path); err != nil {
		return err
	}
	w.ok = true
	return nil
}

func (w *fileWriter) Abort() {
	if !w.done {
		w.done = true
		w.tmp.Close()
		os.Remove(w.tmp.Name())
		return
	}
	if w.ok {
		w.ok = false
		w.f.remove(w.path)
	}
}

// Open opens the file of key.
func (f *FileStore) Open(ctx context.Context, key string) (io.ReadCloser, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	p, err := f.path(key)
	if err != nil {
		return nil, 0, err
	}
	fh, err := os.Open(p)
	if err != nil {
		return nil, 0, err // *fs.PathError: names the file, wraps ErrNotExist
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, 0, err
	}
	if !st.Mode().IsRegular() {
		fh.Close()
		return nil, 0, fmt.Errorf("%s is not a regular file", p)
	}
	return ctxReader{ctx: ctx, r: io.LimitReader(fh, st.Size()), c: fh}, st.Size(), nil
}

// List walks the directories under prefix.
func (f *FileStore) List(ctx context.Context, prefix string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := CheckPrefix(prefix); err != nil {
		return nil, err
	}
	dirPart, namePrefix := path.Split(prefix)
	dir := filepath.Join(f.root, filepath.FromSlash(dirPart))
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot list %s: %w", dir, err)
	}
	var out []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), namePrefix) {
			continue
		}
		key := dirPart + e.Name()
		switch {
		case e.Type().IsRegular():
			out = append(out, key)
		case e.IsDir():
			err := filepath.WalkDir(filepath.Join(dir, e.Name()), func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					if errors.Is(err, fs.ErrNotExist) {
						return nil // deleted meanwhile
					}
					return err
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				if d.Type().IsRegular() {
					rel, err := filepath.Rel(f.root, p)
					if err != nil {
						return err
					}
					out = append(out, filepath.ToSlash(rel))
				}
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("cannot list %s: %w", dir, err)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// Delete removes the file of key and then the directories above it that
// it left empty (but not the root).
func (f *FileStore) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := f.path(key)
	if err != nil {
		return err
	}
	return f.remove(p)
}

func (f *FileStore) remove(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cannot delete %s: %w", p, err)
	}
	for d := filepath.Dir(p); d != f.root && len(d) > len(f.root); d = filepath.Dir(d) {
		if os.Remove(d) != nil {
			break // not empty (or gone): leave it
		}
	}
	return nil
}

// syncDir fsyncs a directory, making the entries created in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cannot sync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("cannot sync directory %s: %w", dir, err)
	}
	return nil
}
