package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/weirstream/weir/checkpoint"
)

// A checkpoint's blobs are named from its storage root ("chk-41/1-0-0.keyed"),
// so a checkpoint directory read in place needs its parent as the root. A
// savepoint is self-contained (all its blobs under chk-<id>/), and users
// keep them under names of their own ("savepoint-before-upgrade", a copy
// in a backup folder): relocated reads such a directory as the checkpoint
// it holds, whatever its name.

// relocatedStore is a read-only store of one checkpoint directory dir
// holding checkpoint id: key "chk-<id>/<name>" is dir/<name>.
type relocatedStore struct {
	dir    *FileStore
	prefix string // "chk-<id>/"
}

func (r relocatedStore) String() string { return r.dir.String() }

func (r relocatedStore) key(key string) (string, error) {
	name, ok := strings.CutPrefix(key, r.prefix)
	if !ok {
		return "", fmt.Errorf("%s is outside the checkpoint directory %s (which holds only %s*): %w", key, r.dir.Root(), r.prefix, ErrNotExist)
	}
	return name, nil
}

func (r relocatedStore) Locate(key string) string {
	if name, err := r.key(key); err == nil {
		return r.dir.Locate(name)
	}
	return r.dir.Locate(key)
}

var errReadOnly = errors.New("a checkpoint directory outside its storage root is read only")

func (r relocatedStore) Put(context.Context, string, []byte) error { return errReadOnly }

func (r relocatedStore) Create(context.Context, string) (BlobWriter, error) { return nil, errReadOnly }

func (r relocatedStore) Delete(context.Context, string) error { return errReadOnly }

func (r relocatedStore) Open(ctx context.Context, key string) (io.ReadCloser, int64, error) {
	name, err := r.key(key)
	if err != nil {
		return nil, 0, err
	}
	return r.dir.Open(ctx, name)
}

func (r relocatedStore) List(ctx context.Context, prefix string) ([]string, error) {
	names, err := r.dir.List(ctx, "")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		if k := r.prefix + n; strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out, nil
}

// relocated opens dir, a checkpoint directory with a _metadata of its own,
// as that checkpoint when it is not named chk-<its id> (then inPlace is
// true, and the caller reads it under its parent). A checkpoint referring
// to blobs outside its directory (an incremental checkpoint's shared
// files) cannot be read elsewhere: the error says so.
func relocated(dir, path string) (st *Storage, id checkpoint.ID, inPlace bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, metadataName))
	if err != nil {
		return nil, 0, false, fmt.Errorf("cannot restore from %s: %w", path, err)
	}
	md, err := DecodeMetadata(b)
	if err != nil {
		return nil, 0, false, fmt.Errorf("cannot restore from %s: %s: %w", path, filepath.Join(dir, metadataName), err)
	}
	if filepath.Base(dir) == chkDir(md.CheckpointID) {
		return nil, md.CheckpointID, true, nil
	}
	shared := map[string]bool{}
	SharedReferences(md, shared)
	if len(shared) > 0 {
		return nil, 0, false, fmt.Errorf("cannot restore from %s: %s %d refers to %d shared files of the checkpoint directory it was taken in (incremental state): restore it from there, named %s, or take a savepoint, which is self-contained",
			path, md.Kind, md.CheckpointID, len(shared), chkDir(md.CheckpointID))
	}
	fs, err := NewFileStore(dir)
	if err != nil {
		return nil, 0, false, err
	}
	return New(relocatedStore{dir: fs, prefix: chkDir(md.CheckpointID) + "/"}), md.CheckpointID, false, nil
}
