package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
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
// (a store rooted there) holding checkpoint id: key "chk-<id>/<name>" is
// dir's <name>.
type relocatedStore struct {
	dir    BlobStore
	prefix string // "chk-<id>/"
}

func (r relocatedStore) String() string { return r.dir.String() }

func (r relocatedStore) key(key string) (string, error) {
	name, ok := strings.CutPrefix(key, r.prefix)
	if !ok {
		return "", fmt.Errorf("%s is outside the checkpoint directory %s (which holds only %s*): %w", key, r.dir, r.prefix, ErrNotExist)
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

// relocated reads dir, a store rooted at a directory named base, as the
// checkpoint directory it is when it has a _metadata of its own (found).
// Named chk-<its id> it is read in place, under its parent (inPlace);
// under another name it is st, read where it is. A checkpoint referring to
// blobs outside its directory (an incremental checkpoint's shared files)
// cannot be read elsewhere: the error says so.
func relocated(ctx context.Context, dir BlobStore, base, path string) (st *Storage, id checkpoint.ID, found, inPlace bool, err error) {
	r, _, err := dir.Open(ctx, metadataName)
	if errors.Is(err, ErrNotExist) {
		return nil, 0, false, false, nil
	}
	if err != nil {
		return nil, 0, false, false, fmt.Errorf("cannot restore from %s: %w", path, err)
	}
	b, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		return nil, 0, false, false, fmt.Errorf("cannot restore from %s: %s: %w", path, dir.Locate(metadataName), err)
	}
	md, err := DecodeMetadata(b)
	if err != nil {
		return nil, 0, false, false, fmt.Errorf("cannot restore from %s: %s: %w", path, dir.Locate(metadataName), err)
	}
	if base == chkDir(md.CheckpointID) {
		return nil, md.CheckpointID, true, true, nil
	}
	shared := map[string]bool{}
	SharedReferences(md, shared)
	if len(shared) > 0 {
		return nil, 0, true, false, fmt.Errorf("cannot restore from %s: %s %d refers to %d shared files of the checkpoint directory it was taken in (incremental state): restore it from there, named %s, or take a savepoint, which is self-contained",
			path, md.Kind, md.CheckpointID, len(shared), chkDir(md.CheckpointID))
	}
	return New(relocatedStore{dir: dir, prefix: chkDir(md.CheckpointID) + "/"}), md.CheckpointID, true, false, nil
}
