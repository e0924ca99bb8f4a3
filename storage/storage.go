package storage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/weirstream/weir/checkpoint"
)

// Storage is where the checkpoints of one job live. It is safe for
// concurrent use: background snapshot goroutines write streams while the
// coordinator driver commits and discards.
type Storage interface {
	// String names the location, e.g. "file:///var/lib/weir/chk".
	String() string
	// CreateStream opens a new state blob of checkpoint id, named name
	// (unique within the checkpoint; no '/' and no "..").
	CreateStream(id checkpoint.ID, name string) (StreamWriter, error)
	// OpenStream reads a blob. Handles with inline bytes are read from the
	// handle itself.
	OpenStream(h checkpoint.StreamHandle) (io.ReadCloser, error)
	// Commit makes checkpoint md.CheckpointID complete by durably writing
	// its _metadata. It is the commit point.
	Commit(md *checkpoint.Metadata) error
	// ReadMetadata reads a completed checkpoint's metadata.
	ReadMetadata(id checkpoint.ID) (*checkpoint.Metadata, error)
	// Completed lists the ids with a _metadata, ascending.
	Completed() ([]checkpoint.ID, error)
	// Latest is the newest completed checkpoint (ok=false: none).
	Latest() (id checkpoint.ID, ok bool, err error)
	// MaxID is the highest id with anything stored at all (0 if none).
	MaxID() (checkpoint.ID, error)
	// Incomplete lists, ascending, the ids with blobs stored but no
	// _metadata: checkpoints in flight, or the debris of aborted ones.
	Incomplete() ([]checkpoint.ID, error)
	// Discard deletes everything of checkpoint id; absent is no error.
	// Blobs in the shared area are not touched (see CollectShared).
	Discard(id checkpoint.ID) error

	// CreateShared opens a new blob in the shared area, which outlives any
	// one checkpoint: an incremental snapshot uploads a file there once and
	// several checkpoints reference it. name follows the rules of
	// CreateStream and must be new; the handle's Path is "shared/"+name.
	CreateShared(name string) (StreamWriter, error)
	// ListShared lists the names of the blobs in the shared area.
	ListShared() ([]string, error)
	// DeleteShared deletes a shared blob; absent is no error.
	DeleteShared(name string) error
}

// SharedPrefix starts the Path of every handle into the shared area.
const SharedPrefix = "shared/"

// StreamWriter writes one state blob (checkpoint.StreamWriter).
type StreamWriter = checkpoint.StreamWriter

const metadataName = "_metadata"

// Open returns the storage at location: "file:///abs/path", a plain path,
// "memory://name", or "s3://bucket/prefix?endpoint=host:port&region=r&insecure=true"
// (all parameters optional; credentials from AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY, or WEIR_S3_ACCESS_KEY and WEIR_S3_SECRET_KEY).
func Open(location string) (Storage, error) {
	switch {
	case strings.HasPrefix(location, "file://"):
		return NewFile(strings.TrimPrefix(location, "file://"))
	case strings.HasPrefix(location, "memory://"):
		return NewMemory(strings.TrimPrefix(location, "memory://")), nil
	case strings.HasPrefix(location, "s3://"):
		s, err := openS3(location)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return s, nil
	case strings.Contains(location, "://"):
		scheme, _, _ := strings.Cut(location, "://")
		return nil, fmt.Errorf("unsupported checkpoint storage scheme %q in %q (supported: file://, memory://, s3://, or a plain path)", scheme, location)
	case location == "":
		return nil, errors.New("empty checkpoint storage location")
	}
	return NewFile(location)
}

func checkName(name string) error {
	if name == "" || name == metadataName || strings.ContainsAny(name, "/\\") || strings.Contains(name, "..") {
		return fmt.Errorf("invalid state blob name %q", name)
	}
	return nil
}

func chkDir(id checkpoint.ID) string { return "chk-" + strconv.FormatInt(int64(id), 10) }

func parseChkDir(name string) (checkpoint.ID, bool) {
	s, ok := strings.CutPrefix(name, "chk-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 {
		return 0, false
	}
	return checkpoint.ID(n), true
}

// File is checkpoint storage in a directory.
type File struct {
	root string
}

// NewFile returns the storage rooted at dir, creating dir if needed.
func NewFile(dir string) (*File, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("cannot use checkpoint directory %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create checkpoint directory: %w", err)
	}
	return &File{root: abs}, nil
}

// Root is the directory of the storage.
func (f *File) Root() string { return f.root }

func (f *File) String() string { return "file://" + f.root }

func (f *File) CreateStream(id checkpoint.ID, name string) (StreamWriter, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	dir := filepath.Join(f.root, chkDir(id))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create checkpoint %d directory: %w", id, err)
	}
	rel := chkDir(id) + "/" + name
	fh, err := os.OpenFile(filepath.Join(f.root, filepath.FromSlash(rel)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cannot create state file: %w", err)
	}
	return &fileStream{f: fh, rel: rel}, nil
}

func (f *File) CreateShared(name string) (StreamWriter, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	dir := filepath.Join(f.root, "shared")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create shared state directory: %w", err)
	}
	fh, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cannot create shared state file: %w", err)
	}
	return &fileStream{f: fh, rel: SharedPrefix + name}, nil
}

func (f *File) ListShared() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(f.root, "shared"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot list shared state directory: %w", err)
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func (f *File) DeleteShared(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(f.root, "shared", name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cannot delete shared state file: %w", err)
	}
	return nil
}

type fileStream struct {
	f   *os.File
	rel string
	n   int64
}

func (s *fileStream) Write(p []byte) (int, error) {
	n, err := s.f.Write(p)
	s.n += int64(n)
	return n, err
}

func (s *fileStream) Close() (checkpoint.StreamHandle, error) {
	if err := s.f.Sync(); err != nil {
		s.Abort()
		return checkpoint.StreamHandle{}, fmt.Errorf("cannot sync state file %s: %w", s.f.Name(), err)
	}
	if err := s.f.Close(); err != nil {
		os.Remove(s.f.Name())
		return checkpoint.StreamHandle{}, fmt.Errorf("cannot close state file %s: %w", s.f.Name(), err)
	}
	return checkpoint.StreamHandle{Path: s.rel, Size: s.n}, nil
}

func (s *fileStream) Abort() {
	s.f.Close()
	os.Remove(s.f.Name())
}

func (f *File) OpenStream(h checkpoint.StreamHandle) (io.ReadCloser, error) {
	if h.Path == "" {
		return io.NopCloser(bytes.NewReader(h.Inline)), nil
	}
	clean := filepath.Clean(filepath.FromSlash(h.Path))
	if filepath.IsAbs(clean) || strings.HasPrefix(clean, "..") {
		return nil, fmt.Errorf("state handle path %q leaves the checkpoint storage", h.Path)
	}
	fh, err := os.Open(filepath.Join(f.root, clean))
	if err != nil {
		return nil, fmt.Errorf("cannot open state file: %w", err)
	}
	if st, err := fh.Stat(); err == nil && h.Size > 0 && st.Size() != h.Size {
		fh.Close()
		return nil, fmt.Errorf("state file %s has %d bytes, the checkpoint recorded %d (truncated or replaced)", fh.Name(), st.Size(), h.Size)
	}
	return fh, nil
}

func (f *File) Commit(md *checkpoint.Metadata) error {
	b, err := EncodeMetadata(md)
	if err != nil {
		return err
	}
	dir := filepath.Join(f.root, chkDir(md.CheckpointID))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cannot commit checkpoint %d: %w", md.CheckpointID, err)
	}
	tmp, err := os.CreateTemp(dir, ".metadata-*.tmp")
	if err != nil {
		return fmt.Errorf("cannot commit checkpoint %d: %w", md.CheckpointID, err)
	}
	fail := func(err error) error {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("cannot commit checkpoint %d: %w", md.CheckpointID, err)
	}
	if _, err := tmp.Write(b); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, metadataName)); err != nil {
		return fail(err)
	}
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("cannot commit checkpoint %d: sync directory: %w", md.CheckpointID, err)
		}
	}
	return nil
}

func (f *File) ReadMetadata(id checkpoint.ID) (*checkpoint.Metadata, error) {
	return readMetadataFile(filepath.Join(f.root, chkDir(id), metadataName))
}

func readMetadataFile(path string) (*checkpoint.Metadata, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read checkpoint metadata: %w", err)
	}
	md, err := DecodeMetadata(b)
	if err != nil {
		return nil, fmt.Errorf("cannot read checkpoint metadata %s: %w", path, err)
	}
	return md, nil
}

func (f *File) list() (all, completed []checkpoint.ID, err error) {
	entries, err := os.ReadDir(f.root)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot list checkpoint directory: %w", err)
	}
	for _, e := range entries {
		id, ok := parseChkDir(e.Name())
		if !ok || !e.IsDir() {
			continue
		}
		all = append(all, id)
		if _, err := os.Stat(filepath.Join(f.root, e.Name(), metadataName)); err == nil {
			completed = append(completed, id)
		}
	}
	sort.Slice(completed, func(i, j int) bool { return completed[i] < completed[j] })
	return all, completed, nil
}

func (f *File) Completed() ([]checkpoint.ID, error) {
	_, c, err := f.list()
	return c, err
}

func (f *File) Latest() (checkpoint.ID, bool, error) {
	_, c, err := f.list()
	if err != nil || len(c) == 0 {
		return 0, false, err
	}
	return c[len(c)-1], true, nil
}

func (f *File) Incomplete() ([]checkpoint.ID, error) {
	all, completed, err := f.list()
	return incomplete(all, completed), err
}

// incomplete returns the ids of all not in completed, ascending.
func incomplete(all, completed []checkpoint.ID) []checkpoint.ID {
	done := map[checkpoint.ID]bool{}
	for _, id := range completed {
		done[id] = true
	}
	var out []checkpoint.ID
	for _, id := range all {
		if !done[id] {
			out = append(out, id)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func (f *File) MaxID() (checkpoint.ID, error) {
	all, _, err := f.list()
	var m checkpoint.ID
	for _, id := range all {
		m = max(m, id)
	}
	return m, err
}

func (f *File) Discard(id checkpoint.ID) error {
	dir := filepath.Join(f.root, chkDir(id))
	// Remove the commit point first: a half-deleted checkpoint must not
	// look complete.
	if err := os.Remove(filepath.Join(dir, metadataName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cannot discard checkpoint %d: %w", id, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("cannot discard checkpoint %d: %w", id, err)
	}
	return nil
}

// Memory is checkpoint storage in memory: blobs are kept inline in their
// handles, metadata in a map. For tests and small state.
type Memory struct {
	name string
	mu   struct {
		sync.Mutex
		metadata map[checkpoint.ID][]byte
		seen     map[checkpoint.ID]bool // every id ever written (MaxID)
		live     map[checkpoint.ID]bool // ids with blobs not discarded
		shared   map[string][]byte
	}
}

// NewMemory returns an empty in-memory storage.
func NewMemory(name string) *Memory {
	m := &Memory{name: name}
	m.mu.metadata = map[checkpoint.ID][]byte{}
	m.mu.seen = map[checkpoint.ID]bool{}
	m.mu.live = map[checkpoint.ID]bool{}
	m.mu.shared = map[string][]byte{}
	return m
}

func (m *Memory) String() string { return "memory://" + m.name }

func (m *Memory) CreateStream(id checkpoint.ID, name string) (StreamWriter, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.mu.seen[id] = true
	m.mu.live[id] = true
	m.mu.Unlock()
	return &memStream{}, nil
}

type memStream struct {
	buf    bytes.Buffer
	shared func(b []byte) checkpoint.StreamHandle // set for the shared area
}

func (s *memStream) Write(p []byte) (int, error) { return s.buf.Write(p) }
func (s *memStream) Close() (checkpoint.StreamHandle, error) {
	b := s.buf.Bytes()
	if b == nil {
		b = []byte{}
	}
	if s.shared != nil {
		return s.shared(b), nil
	}
	return checkpoint.StreamHandle{Inline: b, Size: int64(len(b))}, nil
}
func (s *memStream) Abort() { s.buf.Reset() }

func (m *Memory) CreateShared(name string) (StreamWriter, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.mu.shared[name]; ok {
		return nil, fmt.Errorf("cannot create shared state blob %s in %s: it exists", name, m)
	}
	m.mu.shared[name] = nil
	return &memStream{shared: func(b []byte) checkpoint.StreamHandle {
		m.mu.Lock()
		m.mu.shared[name] = b
		m.mu.Unlock()
		return checkpoint.StreamHandle{Path: SharedPrefix + name, Size: int64(len(b))}
	}}, nil
}

func (m *Memory) ListShared() ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.mu.shared))
	for n := range m.mu.shared {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

func (m *Memory) DeleteShared(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.mu.shared, name)
	return nil
}

func (m *Memory) OpenStream(h checkpoint.StreamHandle) (io.ReadCloser, error) {
	if name, ok := strings.CutPrefix(h.Path, SharedPrefix); ok {
		m.mu.Lock()
		b, ok := m.mu.shared[name]
		m.mu.Unlock()
		if !ok {
			return nil, fmt.Errorf("shared state blob %s is missing from %s", name, m)
		}
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	if h.Path != "" {
		return nil, fmt.Errorf("in-memory checkpoint storage has no file %q", h.Path)
	}
	return io.NopCloser(bytes.NewReader(h.Inline)), nil
}

func (m *Memory) Commit(md *checkpoint.Metadata) error {
	b, err := EncodeMetadata(md)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mu.metadata[md.CheckpointID] = b
	m.mu.seen[md.CheckpointID] = true
	return nil
}

func (m *Memory) ReadMetadata(id checkpoint.ID) (*checkpoint.Metadata, error) {
	m.mu.Lock()
	b, ok := m.mu.metadata[id]
	m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("cannot read checkpoint metadata: checkpoint %d not in %s", id, m)
	}
	md, err := DecodeMetadata(b)
	if err != nil {
		return nil, fmt.Errorf("cannot read checkpoint metadata of %d in %s: %w", id, m, err)
	}
	return md, nil
}

func (m *Memory) Completed() ([]checkpoint.ID, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []checkpoint.ID
	for id := range m.mu.metadata {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

func (m *Memory) Latest() (checkpoint.ID, bool, error) {
	c, _ := m.Completed()
	if len(c) == 0 {
		return 0, false, nil
	}
	return c[len(c)-1], true, nil
}

func (m *Memory) MaxID() (checkpoint.ID, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var mx checkpoint.ID
	for id := range m.mu.seen {
		mx = max(mx, id)
	}
	return mx, nil
}

func (m *Memory) Discard(id checkpoint.ID) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.mu.metadata, id)
	delete(m.mu.live, id)
	return nil
}

func (m *Memory) Incomplete() ([]checkpoint.ID, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []checkpoint.ID
	for id := range m.mu.live {
		if _, ok := m.mu.metadata[id]; !ok {
			out = append(out, id)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// ResolveRestorePath finds the checkpoint a restore argument names: a
// checkpoint directory (".../chk-17"), its _metadata file, or a storage root
// (then its latest completed checkpoint).
func ResolveRestorePath(path string) (Storage, checkpoint.ID, error) {
	if strings.HasPrefix(path, "s3://") {
		return resolveS3RestorePath(path)
	}
	p := strings.TrimPrefix(path, "file://")
	st, err := os.Stat(p)
	if err != nil {
		return nil, 0, fmt.Errorf("cannot restore from %s: %w", path, err)
	}
	if !st.IsDir() {
		if filepath.Base(p) != metadataName {
			return nil, 0, fmt.Errorf("cannot restore from %s: not a checkpoint directory or _metadata file", path)
		}
		p = filepath.Dir(p)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return nil, 0, fmt.Errorf("cannot restore from %s: %w", path, err)
	}
	if id, ok := parseChkDir(filepath.Base(abs)); ok {
		if _, err := os.Stat(filepath.Join(abs, metadataName)); err != nil {
			return nil, 0, fmt.Errorf("cannot restore from %s: checkpoint %d is incomplete (no _metadata)", path, id)
		}
		fs, err := NewFile(filepath.Dir(abs))
		if err != nil {
			return nil, 0, err
		}
		return fs, id, nil
	}
	fs, err := NewFile(abs)
	if err != nil {
		return nil, 0, err
	}
	id, ok, err := fs.Latest()
	if err != nil {
		return nil, 0, fmt.Errorf("cannot restore from %s: %w", path, err)
	}
	if !ok {
		return nil, 0, fmt.Errorf("cannot restore from %s: no completed checkpoint in it", path)
	}
	return fs, id, nil
}

// resolveS3RestorePath resolves "s3://bucket/prefix/chk-N[/_metadata][?query]"
// to the storage at s3://bucket/prefix and checkpoint N, or a storage root
// to its latest checkpoint.
func resolveS3RestorePath(path string) (Storage, checkpoint.ID, error) {
	loc, query, _ := strings.Cut(path, "?")
	loc = strings.TrimSuffix(strings.TrimSuffix(loc, "/"), "/"+metadataName)
	root, last := loc, ""
	if i := strings.LastIndex(loc, "/"); i > len("s3://") {
		root, last = loc[:i], loc[i+1:]
	}
	id, isChk := parseChkDir(last)
	if !isChk {
		root = loc
	}
	if query != "" {
		root += "?" + query
	}
	st, err := Open(root)
	if err != nil {
		return nil, 0, fmt.Errorf("cannot restore from %s: %w", path, err)
	}
	if !isChk {
		latest, ok, err := st.Latest()
		if err != nil {
			return nil, 0, fmt.Errorf("cannot restore from %s: %w", path, err)
		}
		if !ok {
			return nil, 0, fmt.Errorf("cannot restore from %s: no completed checkpoint in it", path)
		}
		return st, latest, nil
	}
	if _, err := st.ReadMetadata(id); err != nil {
		return nil, 0, fmt.Errorf("cannot restore from %s: checkpoint %d: %w", path, id, err)
	}
	return st, id, nil
}
