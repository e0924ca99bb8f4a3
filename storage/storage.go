package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/weirstream/weir/checkpoint"
)

// Storage is where the checkpoints of one job live: the checkpoint layout
// (see the package documentation) over a BlobStore. It is safe for
// concurrent use: background snapshot goroutines write streams while the
// coordinator driver commits and the disposer discards. Every call that
// touches the store takes a context.
type Storage struct {
	store BlobStore
}

// New returns the checkpoint storage over store.
func New(store BlobStore) *Storage { return &Storage{store: store} }

// NewFile returns the checkpoint storage in directory dir, creating it if
// needed.
func NewFile(dir string) (*Storage, error) {
	f, err := NewFileStore(dir)
	if err != nil {
		return nil, err
	}
	return New(f), nil
}

// NewMemory returns an empty checkpoint storage in memory.
func NewMemory(name string) *Storage { return New(NewMemoryStore(name)) }

// Store is the blob store under the storage.
func (s *Storage) Store() BlobStore { return s.store }

// String names the location, e.g. "file:///var/lib/weir/chk".
func (s *Storage) String() string { return s.store.String() }

// StreamWriter writes one state blob (checkpoint.StreamWriter).
type StreamWriter = checkpoint.StreamWriter

// SharedPrefix starts the Path of every handle into the shared area.
const SharedPrefix = "shared/"

const metadataName = "_metadata"

func checkName(name string) error {
	if name == "" || name == metadataName || strings.ContainsAny(name, "/\\") || strings.Contains(name, "..") {
		return fmt.Errorf("invalid state blob name %q", name)
	}
	return nil
}

func chkDir(id checkpoint.ID) string { return "chk-" + strconv.FormatInt(int64(id), 10) }

func metadataKey(id checkpoint.ID) string { return chkDir(id) + "/" + metadataName }

func parseChkDir(name string) (checkpoint.ID, bool) {
	s, ok := strings.CutPrefix(name, "chk-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 || strconv.FormatInt(n, 10) != s {
		return 0, false
	}
	return checkpoint.ID(n), true
}

// CreateStream opens a new state blob chk-<id>/<name> of checkpoint id;
// name is unique within the checkpoint, has no '/' and no "..". ctx
// governs the writer's whole life. The blob exists once Close returned.
func (s *Storage) CreateStream(ctx context.Context, id checkpoint.ID, name string) (StreamWriter, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if id < 1 {
		return nil, fmt.Errorf("cannot create state blob %s in %s: invalid checkpoint id %d", name, s, id)
	}
	return s.create(ctx, chkDir(id)+"/"+name)
}

// CreateShared opens a new blob in the shared area, which outlives any one
// checkpoint: an incremental snapshot uploads a file there once and
// several checkpoints reference it. name follows the rules of
// CreateStream and must be new; the handle's Path is SharedPrefix+name.
func (s *Storage) CreateShared(ctx context.Context, name string) (StreamWriter, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	return s.create(ctx, SharedPrefix+name)
}

func (s *Storage) create(ctx context.Context, key string) (StreamWriter, error) {
	w, err := s.store.Create(ctx, key)
	if err != nil {
		return nil, err
	}
	return &stream{w: w, key: key}, nil
}

// stream counts the bytes of a blob for its handle.
type stream struct {
	w   BlobWriter
	key string
	n   int64
}

func (s *stream) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	s.n += int64(n)
	return n, err
}

func (s *stream) Close() (checkpoint.StreamHandle, error) {
	if err := s.w.Close(); err != nil {
		return checkpoint.StreamHandle{}, err
	}
	return checkpoint.StreamHandle{Path: s.key, Size: s.n}, nil
}

func (s *stream) Abort() { s.w.Abort() }

// OpenStream reads the blob of a handle: from the store, after checking
// that its size is the one the handle recorded, or from the handle's
// inline bytes.
func (s *Storage) OpenStream(ctx context.Context, h checkpoint.StreamHandle) (io.ReadCloser, error) {
	if h.Path == "" {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return io.NopCloser(bytes.NewReader(h.Inline)), nil
	}
	if CheckKey(h.Path) != nil {
		return nil, fmt.Errorf("state handle path %q leaves the checkpoint storage %s", h.Path, s)
	}
	r, size, err := s.store.Open(ctx, h.Path)
	if errors.Is(err, ErrNotExist) {
		return nil, fmt.Errorf("cannot open state blob: %w; the checkpoint recorded %d bytes", err, h.Size)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot open state blob: %w", err)
	}
	if size != h.Size {
		r.Close()
		return nil, fmt.Errorf("state blob %s has %d bytes, the checkpoint recorded %d (truncated or replaced)", s.store.Locate(h.Path), size, h.Size)
	}
	return r, nil
}

// Opener is OpenStream bound to ctx, in the form restores take.
func (s *Storage) Opener(ctx context.Context) func(checkpoint.StreamHandle) (io.ReadCloser, error) {
	return func(h checkpoint.StreamHandle) (io.ReadCloser, error) { return s.OpenStream(ctx, h) }
}

// Commit makes checkpoint md.CheckpointID complete by creating its
// chk-<id>/_metadata: the commit point. The create is atomic and never
// replaces a _metadata: if one exists with the same bytes (a commit retried
// after its answer was lost) Commit succeeds; with other bytes it fails
// with an error wrapping ErrExists, on every store.
func (s *Storage) Commit(ctx context.Context, md *checkpoint.Metadata) error {
	b, err := EncodeMetadata(md)
	if err != nil {
		return err
	}
	id, key := md.CheckpointID, metadataKey(md.CheckpointID)
	perr := s.store.Put(ctx, key, b)
	if perr == nil {
		return nil
	}
	if !errors.Is(perr, ErrExists) {
		return fmt.Errorf("cannot commit checkpoint %d: %w", id, perr)
	}
	old, err := s.readAll(ctx, key)
	if errors.Is(err, ErrNotExist) {
		return fmt.Errorf("cannot commit checkpoint %d: %s was deleted while being committed", id, s.store.Locate(key))
	}
	if err != nil {
		return fmt.Errorf("cannot commit checkpoint %d: cannot read the existing metadata: %w", id, err)
	}
	if !bytes.Equal(old, b) {
		return fmt.Errorf("cannot commit checkpoint %d: %w with other content", id, perr)
	}
	return nil
}

func (s *Storage) readAll(ctx context.Context, key string) ([]byte, error) {
	r, size, err := s.store.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b := make([]byte, 0, size)
	buf := bytes.NewBuffer(b)
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ReadMetadata reads a completed checkpoint's metadata.
func (s *Storage) ReadMetadata(ctx context.Context, id checkpoint.ID) (*checkpoint.Metadata, error) {
	key := metadataKey(id)
	b, err := s.readAll(ctx, key)
	if errors.Is(err, ErrNotExist) {
		return nil, fmt.Errorf("cannot read checkpoint metadata: checkpoint %d has no %s", id, s.store.Locate(key))
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read checkpoint metadata: %w", err)
	}
	md, err := DecodeMetadata(b)
	if err != nil {
		return nil, fmt.Errorf("cannot read checkpoint metadata %s: %w", s.store.Locate(key), err)
	}
	return md, nil
}

// list returns the ids with any blob under chk-<id>/, and those with a
// _metadata, both ascending.
func (s *Storage) list(ctx context.Context) (all, completed []checkpoint.ID, err error) {
	keys, err := s.store.List(ctx, "chk-")
	if err != nil {
		return nil, nil, fmt.Errorf("cannot list checkpoints in %s: %w", s, err)
	}
	for _, k := range keys {
		dir, name, ok := strings.Cut(k, "/")
		if !ok {
			continue
		}
		id, ok := parseChkDir(dir)
		if !ok {
			continue
		}
		all = append(all, id)
		if name == metadataName {
			completed = append(completed, id)
		}
	}
	slices.Sort(all)
	slices.Sort(completed)
	return slices.Compact(all), slices.Compact(completed), nil
}

// Completed lists the ids with a _metadata, ascending.
func (s *Storage) Completed(ctx context.Context) ([]checkpoint.ID, error) {
	_, c, err := s.list(ctx)
	return c, err
}

// Latest is the newest completed checkpoint (ok=false: none).
func (s *Storage) Latest(ctx context.Context) (id checkpoint.ID, ok bool, err error) {
	_, c, err := s.list(ctx)
	if err != nil || len(c) == 0 {
		return 0, false, err
	}
	return c[len(c)-1], true, nil
}

// MaxID is the highest id with anything stored under chk-<id>/ (0 if
// none): the debris of an aborted checkpoint counts, so ids stay
// monotonic across restarts.
func (s *Storage) MaxID(ctx context.Context) (checkpoint.ID, error) {
	all, _, err := s.list(ctx)
	if err != nil || len(all) == 0 {
		return 0, err
	}
	return all[len(all)-1], nil
}

// Incomplete lists, ascending, the ids with blobs stored but no
// _metadata: checkpoints in flight, or the debris of aborted ones.
func (s *Storage) Incomplete(ctx context.Context) ([]checkpoint.ID, error) {
	all, completed, err := s.list(ctx)
	if err != nil {
		return nil, err
	}
	var out []checkpoint.ID
	for _, id := range all {
		if _, done := slices.BinarySearch(completed, id); !done {
			out = append(out, id)
		}
	}
	return out, nil
}

// Discard deletes everything of checkpoint id, _metadata first, so that a
// discard failing half way leaves debris, never a checkpoint that looks
// complete. Absent is no error. Blobs in the shared area are not touched
// (see CollectShared).
func (s *Storage) Discard(ctx context.Context, id checkpoint.ID) error {
	if err := s.store.Delete(ctx, metadataKey(id)); err != nil {
		return fmt.Errorf("cannot discard checkpoint %d: %w", id, err)
	}
	keys, err := s.store.List(ctx, chkDir(id)+"/")
	if err != nil {
		return fmt.Errorf("cannot discard checkpoint %d: %w", id, err)
	}
	for _, k := range keys {
		if err := s.store.Delete(ctx, k); err != nil {
			return fmt.Errorf("cannot discard checkpoint %d: %w", id, err)
		}
	}
	return nil
}

// ListShared lists the names of the blobs in the shared area.
func (s *Storage) ListShared(ctx context.Context) ([]string, error) {
	keys, err := s.store.List(ctx, SharedPrefix)
	if err != nil {
		return nil, fmt.Errorf("cannot list shared state in %s: %w", s, err)
	}
	var out []string
	for _, k := range keys {
		name := strings.TrimPrefix(k, SharedPrefix)
		if checkName(name) == nil {
			out = append(out, name)
		}
	}
	return out, nil
}

// DeleteShared deletes a shared blob; absent is no error.
func (s *Storage) DeleteShared(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	return s.store.Delete(ctx, SharedPrefix+name)
}

// Location is the address of checkpoint id in s, as restore paths take
// it: "<root>/chk-<id>", with the query of a URL-like location kept at the
// end ("s3://bucket/prefix/chk-7?endpoint=...").
func Location(s *Storage, id checkpoint.ID) string { return s.store.Locate(chkDir(id)) }
