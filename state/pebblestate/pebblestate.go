// Package pebblestate keeps keyed state in a local Pebble database per
// operator and subtask (github.com/cockroachdb/pebble/v2, pure Go): the
// role RocksDB plays in Flink. State can then be far larger than memory;
// every access encodes the key and value and goes to the database.
//
// # Snapshots
//
// A savepoint, and every checkpoint when incremental checkpoints are off,
// is written in weir's canonical key-group stream (see package state):
// the synchronous part takes a Pebble snapshot (a sequence number, O(1)),
// the asynchronous part iterates it. Such a snapshot restores into the
// heap backend and back.
//
// An incremental checkpoint (the default) is native. Its synchronous part
// only takes a Pebble snapshot and starts recording the keys the task
// writes (microseconds). The asynchronous part flushes the memtable, makes
// a Pebble checkpoint (hard links of the immutable SST files plus a copy
// of the MANIFEST and OPTIONS) in the working directory, stops recording,
// and rewinds the checkpoint to the snapshot: it opens the checkpoint as a
// database of its own and puts every recorded key back to its value in
// the snapshot (or deletes it), so the checkpoint holds exactly the state
// at the barrier. Then it uploads the SST files that no
// completed checkpoint uploaded before into the storage's shared area and
// the small private files into the checkpoint's directory, and records
// every file's handle, size and CRC-32C checksum in an
// checkpoint.IncrementalHandle (backend "pebble-v1"). SST files are
// immutable and their names never reused within a database, so a name
// seen in the last completed checkpoint is the same file; only the SSTs
// hard-linked from the live database are offered for reuse (the files the
// rewind writes get numbers the live database will give to others). The bytes a
// checkpoint uploads are proportional to what changed since the last
// completed one (new SSTs from flushes and compactions), not to the state
// size. The storage deletes shared files no retained checkpoint
// references (storage.CollectShared).
//
// # Restore
//
// A native handle covering exactly the subtask's key groups is downloaded
// (checksums verified) and opened as the database. Otherwise (rescaling)
// every handle is downloaded, opened read-only, and the keys of the
// subtask's key groups are copied into a fresh database. Canonical
// streams are read entry by entry.
//
// # Fault injection
//
// Options.FS replaces the file system (a pebble vfs.FS, e.g. the errorfs
// package's): tests make snapshot writes fail and check that the
// checkpoint is declined and the job goes on.
package pebblestate

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/state"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// BackendName is the format name of native snapshots.
const BackendName = "pebble-v1"

// Options configures the pebble state backend.
type Options struct {
	// Dir is the local working directory: one database per operator and
	// subtask below it (default: a "weir-pebble" directory in
	// os.TempDir()). It needs no durability: state is recovered from
	// checkpoints.
	Dir string
	// Full disables incremental checkpoints: every checkpoint writes the
	// canonical key-group stream.
	Full bool
	// MemTableSize is the size of Pebble's memtable (default 16 MiB).
	MemTableSize uint64
	// CacheSize is the size of the block cache of each database (default
	// 64 MiB).
	CacheSize int64
	// EntryCacheSize bounds the bytes of state entries (keys and values,
	// plus 64 bytes each) each database keeps in memory in front of it:
	// the entries the task read or wrote last. Written entries reach the
	// database together, in one batch, when they take a quarter of the
	// cache, when it is full and before every scan, snapshot and
	// checkpoint (so a checkpoint's synchronous part writes at most a
	// quarter of it: about a millisecond for the default). Default 4 MiB, at most a
	// quarter of MemTableSize (a batch of half of it would bypass the
	// memtable as a flushable batch of its own); negative: no cache,
	// every state access goes to the database.
	EntryCacheSize int64
	// FS replaces the file system (for fault injection); default the OS.
	FS vfs.FS
	// Logger receives Pebble's errors (default: the job's logger, with the
	// job, operator and subtask; slog.Default() outside a job).
	Logger *slog.Logger
	// DiskFullReserve is the size of the ballast file Dir keeps against a
	// full disk (see diskfull.go): 0 means DefaultDiskFullReserve of
	// MemTableSize (36 MiB by default), capped at 1/16 of the file
	// system's size; negative, no ballast (running out of space still
	// fails the tasks, but pebble has no room left to finish its flushes).
	DiskFullReserve int64
}

// Factory creates pebble stores; it implements state.RawStoreFactory.
type Factory struct {
	opts  Options
	guard *diskGuard
}

// New returns the pebble state backend with opts.
func New(opts Options) *Factory {
	if opts.Dir == "" {
		opts.Dir = filepath.Join(os.TempDir(), "weir-pebble")
	}
	if opts.MemTableSize == 0 {
		opts.MemTableSize = 16 << 20
	}
	if opts.FS == nil {
		opts.FS = vfs.Default
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = 64 << 20
	}
	if opts.EntryCacheSize == 0 {
		opts.EntryCacheSize = 4 << 20
	}
	opts.EntryCacheSize = min(opts.EntryCacheSize, int64(opts.MemTableSize/4))
	return &Factory{opts: opts, guard: newDiskGuard(opts)}
}

func (f *Factory) String() string {
	mode := "incremental"
	if f.opts.Full {
		mode = "full"
	}
	return fmt.Sprintf("pebble (%s checkpoints, in %s)", mode, f.opts.Dir)
}

// NewRawStore implements state.RawStoreFactory: an empty database in a new
// directory.
func (f *Factory) NewRawStore(info state.StoreInfo) (state.RawStore, error) {
	var rnd [6]byte
	rand.Read(rnd[:])
	inst := fmt.Sprintf("%s-%s-%d-%s", sanitize(info.Job), sanitize(info.OperatorUID), info.Subtask, hex.EncodeToString(rnd[:]))
	disk, err := f.guard.arm()
	if err != nil {
		return nil, err
	}
	s := &Store{opts: f.opts, fs: guardedFS{f.guard.fs, disk}, disk: disk, dir: filepath.Join(f.opts.Dir, inst), instance: hex.EncodeToString(rnd[:]),
		pending: map[checkpoint.ID]map[string]checkpoint.NamedStream{}}
	if f.opts.EntryCacheSize > 0 {
		s.cache = newEntryCache(f.opts.EntryCacheSize)
	}
	s.opts.Logger = limitRepeats(cmp.Or(f.opts.Logger, info.Logger, slog.Default()))
	if err := s.fs.MkdirAll(s.dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create pebble state directory %s: %w", s.dir, err)
	}
	if err := s.open(); err != nil {
		s.fs.RemoveAll(s.dir)
		return nil, err
	}
	return s, nil
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// Store is one pebble database holding the keyed state of one operator in
// one subtask.
type Store struct {
	opts     Options
	fs       vfs.FS
	dir      string // instance directory: db/, chk-<id>/, restore-*/
	instance string // random, part of uploaded names
	db       *pebble.DB
	// cache holds the entries read and written last (nil: none); the
	// store's contents are db overlaid with it (see entryCache).
	cache *entryCache
	disk  *diskTrip // full disk guard (diskfull.go)

	// tracking counts the native snapshots recording the write set
	// (trackers, under trackMu).
	tracking atomic.Int32
	trackMu  sync.Mutex
	trackers []*writeSet

	// views counts the live views and native snapshots (read by snapshot
	// goroutines); Close sets closing, which makes their scans stop, and
	// waits for them before it closes the database.
	views   sync.WaitGroup
	closing atomic.Bool

	mu      sync.Mutex
	pending map[checkpoint.ID]map[string]checkpoint.NamedStream // SSTs per checkpoint in flight
	base    map[string]checkpoint.NamedStream                   // SSTs of the last completed checkpoint
}

func (s *Store) dbDir() string { return filepath.Join(s.dir, "db") }

func (s *Store) pebbleOptions() *pebble.Options {
	return &pebble.Options{
		FS:           s.fs,
		DisableWAL:   true,
		MemTableSize: s.opts.MemTableSize,
		Logger:       pebbleLogger{s.opts.Logger},
	}
}

func (s *Store) open() error {
	o := s.pebbleOptions()
	o.Cache = pebble.NewCache(s.opts.CacheSize)
	defer o.Cache.Unref()
	db, err := pebble.Open(s.dbDir(), o)
	if err != nil {
		return fmt.Errorf("cannot open pebble state in %s: %w", s.dbDir(), err)
	}
	s.db = db
	return nil
}

// Dir is the store's working directory.
func (s *Store) Dir() string { return s.dir }

// DB is the underlying database (for tests and tools), with every
// entry the cache holds written to it. Call it on the task goroutine.
func (s *Store) DB() *pebble.DB {
	if err := s.writeBack(); err != nil {
		s.opts.Logger.Error("cannot write cached pebble state entries", "err", err)
	}
	return s.db
}

// writeBack writes the cache's dirty entries to the database. It is
// where the cache's writes are tracked (see track): each written key once
// per write-back, however often the task wrote it meanwhile, and only
// when it reaches the database.
func (s *Store) writeBack() error {
	if s.cache == nil {
		return nil
	}
	var track func([]byte)
	if s.tracking.Load() > 0 {
		track = s.track
	}
	if err := s.cache.writeBack(s.db, track); err != nil {
		return fmt.Errorf("cannot write cached state entries to pebble: %w", err)
	}
	return nil
}

// makeRoom empties the cache when it is full, writing its dirty entries
// back first, and writes them back when they take more than their share
// (what a checkpoint's synchronous part would have to write).
func (s *Store) makeRoom() error {
	if s.cache.full() {
		if err := s.writeBack(); err != nil {
			return err
		}
		s.cache.reset()
		return nil
	}
	if s.cache.tooDirty() {
		return s.writeBack()
	}
	return nil
}

// Get implements state.RawStore.
func (s *Store) Get(key, dst []byte) ([]byte, bool, error) {
	c := s.cache
	var h uint64
	if c != nil {
		var i int32
		if i, h = c.find(key); i >= 0 {
			if sl := &c.slots[i]; sl.found {
				return append(dst, sl.val...), true, nil
			}
			return dst, false, nil
		}
	}
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		if c != nil {
			c.insert(key, h) // found false: absent
			return dst, false, s.makeRoom()
		}
		return dst, false, nil
	}
	if err != nil {
		return dst, false, err
	}
	dst = append(dst, v...)
	closer.Close()
	if c != nil && c.cacheable(len(dst)) {
		v := dst[len(dst)-len(v):]
		c.setVal(&c.slots[c.insert(key, h)], v, true)
		return dst, true, s.makeRoom()
	}
	return dst, true, nil
}

// Set implements state.RawStore.
func (s *Store) Set(key, val []byte) error {
	if err := s.disk.Err(); err != nil {
		return err
	}
	if s.cache != nil && s.cache.cacheable(len(val)) {
		s.cache.write(key, val, true)
		return s.makeRoom()
	}
	if s.cache != nil {
		// Too big to cache: straight to the database, after the cache,
		// which may hold the key, is written back and emptied.
		if err := s.writeBack(); err != nil {
			return err
		}
		s.cache.reset()
	}
	if s.tracking.Load() > 0 {
		s.track(key)
	}
	return s.db.Set(key, val, pebble.NoSync)
}

// Delete implements state.RawStore.
func (s *Store) Delete(key []byte) error {
	if err := s.disk.Err(); err != nil {
		return err
	}
	if s.cache != nil {
		s.cache.write(key, nil, false)
		return s.makeRoom()
	}
	if s.tracking.Load() > 0 {
		s.track(key)
	}
	return s.db.Delete(key, pebble.NoSync)
}

// writeSet records the keys written to the database while a native
// snapshot makes its Pebble checkpoint: those writes may be in the
// checkpoint's files and are rewound to the snapshot's values afterwards.
// A key is recorded before its write reaches the database (a write the
// entry cache holds is recorded when it is written back). Keys are appended to one
// buffer (no allocation per write once it has grown).
type writeSet struct {
	keys []byte
	ends []int
}

func (w *writeSet) each(fn func(key []byte) error) error {
	start := 0
	for _, end := range w.ends {
		if err := fn(w.keys[start:end]); err != nil {
			return err
		}
		start = end
	}
	return nil
}

func (s *Store) track(key []byte) {
	s.trackMu.Lock()
	for _, w := range s.trackers {
		w.keys = append(w.keys, key...)
		w.ends = append(w.ends, len(w.keys))
	}
	s.trackMu.Unlock()
}

func (s *Store) startTracking() *writeSet {
	w := &writeSet{}
	s.trackMu.Lock()
	s.trackers = append(s.trackers, w)
	s.trackMu.Unlock()
	s.tracking.Add(1)
	return w
}

func (s *Store) stopTracking(w *writeSet) {
	s.trackMu.Lock()
	for i, x := range s.trackers {
		if x == w {
			s.trackers = append(s.trackers[:i], s.trackers[i+1:]...)
			s.tracking.Add(-1)
			break
		}
	}
	s.trackMu.Unlock()
}

type iterMaker interface {
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
}

// errClosed stops a snapshot that is still reading when its store closes.
var errClosed = errors.New("pebble state closed (the task ended) while a snapshot was reading it")

func scan(r iterMaker, lower, upper []byte, limit int, fn func(k, v []byte) error) error {
	return scanUntil(r, lower, upper, limit, nil, fn)
}

func scanUntil(r iterMaker, lower, upper []byte, limit int, closing *atomic.Bool, fn func(k, v []byte) error) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		if closing != nil && n&1023 == 0 && closing.Load() {
			it.Close()
			return errClosed
		}
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return err
		}
		if err := fn(it.Key(), v); err != nil {
			it.Close()
			return err
		}
		if n++; limit > 0 && n >= limit {
			break
		}
	}
	if err := it.Error(); err != nil {
		it.Close()
		return err
	}
	return it.Close()
}

// Scan implements state.RawStore.
func (s *Store) Scan(lower, upper []byte, limit int, fn func(k, v []byte) error) error {
	if err := s.writeBack(); err != nil {
		return err
	}
	return scan(s.db, lower, upper, limit, fn)
}

// dbView is a RawView of a whole (read-only) database.
type dbView struct{ db *pebble.DB }

func (v dbView) Scan(lower, upper []byte, limit int, fn func(k, v []byte) error) error {
	return scan(v.db, lower, upper, limit, fn)
}
func (v dbView) Close() error { return nil }

type view struct {
	s    *Store
	snap *pebble.Snapshot
	once sync.Once
}

func (v *view) Scan(lower, upper []byte, limit int, fn func(k, v []byte) error) error {
	return v.s.closedWhy(scanUntil(v.snap, lower, upper, limit, &v.s.closing, fn))
}

func (v *view) Close() error {
	var err error
	v.once.Do(func() {
		err = v.snap.Close()
		v.s.views.Done()
	})
	return err
}

// View implements state.RawStore: a Pebble snapshot.
func (s *Store) View() (state.RawView, error) {
	if err := s.disk.Err(); err != nil {
		return nil, err
	}
	if err := s.writeBack(); err != nil {
		return nil, err
	}
	s.views.Add(1)
	return &view{s: s, snap: s.db.NewSnapshot()}, nil
}

// Close implements state.RawStore: closes the database and deletes the
// working directory.
func (s *Store) Close() error {
	s.closing.Store(true)
	s.views.Wait() // snapshot goroutines see closing and release
	var err error
	if s.db != nil {
		err = s.db.Close()
		s.db = nil
	}
	if rerr := s.fs.RemoveAll(s.dir); err == nil {
		err = rerr
	}
	return err
}

// NotifyCheckpointComplete implements state.RawStore: the SSTs of
// checkpoint id become the files later checkpoints reuse.
func (s *Store) NotifyCheckpointComplete(id checkpoint.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.pending[id]; ok {
		s.base = p
	}
	for pid := range s.pending {
		if pid <= id {
			delete(s.pending, pid)
		}
	}
}

// NotifyCheckpointAborted implements state.RawStore.
func (s *Store) NotifyCheckpointAborted(id checkpoint.ID) {
	s.mu.Lock()
	delete(s.pending, id)
	s.mu.Unlock()
}

// NativeSnapshot implements state.RawStore: flush and make a Pebble
// checkpoint (hard links) in the working directory.
func (s *Store) NativeSnapshot(id checkpoint.ID) (state.KeyedSnapshot, error) {
	if s.opts.Full {
		return nil, nil
	}
	if err := s.disk.Err(); err != nil {
		return nil, err
	}
	// The synchronous part: the cache's writes to the database, a Pebble
	// snapshot (a sequence number) and the start of write tracking.
	// Flushing and the hard-link checkpoint happen in WriteHandle, while
	// the task goes on.
	if err := s.writeBack(); err != nil {
		return nil, err
	}
	s.views.Add(1)
	return &nativeSnapshot{s: s, id: id, snap: s.db.NewSnapshot(), writes: s.startTracking(),
		dir: filepath.Join(s.dir, fmt.Sprintf("chk-%d", id))}, nil
}

type nativeSnapshot struct {
	s      *Store
	id     checkpoint.ID
	snap   *pebble.Snapshot
	writes *writeSet
	dir    string
	once   sync.Once
}

func (n *nativeSnapshot) Release() {
	n.once.Do(func() {
		n.s.stopTracking(n.writes)
		n.snap.Close()
		n.s.fs.RemoveAll(n.dir)
		n.s.views.Done()
	})
}

// checkpointAt makes a Pebble checkpoint holding exactly the state of the
// snapshot: flush, hard-link checkpoint, then, in the checkpoint (opened
// as a database of its own), every key written since the snapshot is put
// back to its value in the snapshot. It returns the names of the files the
// checkpoint shares with the live database (identical hard links).
func (n *nativeSnapshot) checkpointAt() (linked map[string]bool, err error) {
	s := n.s
	if err := s.flush(s.db); err != nil {
		return nil, fmt.Errorf("cannot flush pebble state for checkpoint %d: %w", n.id, err)
	}
	s.fs.RemoveAll(n.dir) // debris of an earlier attempt with this id
	if err := s.db.Checkpoint(n.dir); err != nil {
		return nil, fmt.Errorf("cannot make pebble checkpoint %d in %s: %w", n.id, n.dir, err)
	}
	// Every write the checkpoint can hold happened before this point.
	s.stopTracking(n.writes)
	names, err := s.fs.List(n.dir)
	if err != nil {
		return nil, fmt.Errorf("cannot list pebble checkpoint %s: %w", n.dir, err)
	}
	linked = map[string]bool{}
	for _, name := range names {
		if strings.HasSuffix(name, ".sst") {
			linked[name] = true
		}
	}
	if len(n.writes.ends) == 0 {
		return linked, nil
	}
	if err := s.disk.Err(); err != nil {
		return nil, err // no new MANIFEST on a full disk
	}
	o := s.pebbleOptions()
	cdb, err := pebble.Open(n.dir, o)
	if err != nil {
		return nil, fmt.Errorf("cannot open pebble checkpoint %d to rewind it: %w", n.id, err)
	}
	b := cdb.NewBatch()
	err = n.writes.each(func(key []byte) error {
		if s.closing.Load() {
			return s.closedWhy(errClosed)
		}
		v, closer, err := n.snap.Get(key)
		switch {
		case errors.Is(err, pebble.ErrNotFound):
			err = b.Delete(key, nil)
		case err == nil:
			err = b.Set(key, v, nil)
			closer.Close()
		}
		return err
	})
	if err == nil {
		err = b.Commit(pebble.NoSync)
	}
	b.Close()
	if err == nil {
		err = s.flush(cdb)
	}
	if cerr := cdb.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("cannot rewind pebble checkpoint %d to its snapshot: %w", n.id, err)
	}
	return linked, nil
}

func (n *nativeSnapshot) WriteKeyGroups(io.Writer) ([]int64, error) {
	return nil, errors.New("a native pebble snapshot is written with WriteHandle")
}

// WriteHandle implements state.HandleWriter: upload what the last
// completed checkpoint did not, reference the rest.
func (n *nativeSnapshot) WriteHandle(t state.SnapshotTarget) (checkpoint.KeyedStateHandle, error) {
	s := n.s
	linked, err := n.checkpointAt()
	if err != nil {
		return checkpoint.KeyedStateHandle{}, err
	}
	names, err := s.fs.List(n.dir)
	if err != nil {
		return checkpoint.KeyedStateHandle{}, fmt.Errorf("cannot list pebble checkpoint %s: %w", n.dir, err)
	}
	sort.Strings(names)
	s.mu.Lock()
	base := s.base
	s.mu.Unlock()
	inc := &checkpoint.IncrementalHandle{Backend: BackendName}
	ssts := map[string]checkpoint.NamedStream{}
	for _, name := range names {
		if s.closing.Load() {
			return checkpoint.KeyedStateHandle{}, s.closedWhy(errClosed)
		}
		if name == "" || strings.HasPrefix(name, ".") {
			continue
		}
		isSST := strings.HasSuffix(name, ".sst")
		if isSST && linked[name] {
			if f, ok := base[name]; ok {
				inc.Files = append(inc.Files, f)
				ssts[name] = f
				continue
			}
		}
		f, err := n.upload(t, name, isSST)
		if err != nil {
			return checkpoint.KeyedStateHandle{}, err
		}
		inc.Uploaded += f.Stream.Size
		inc.Files = append(inc.Files, f)
		// SSTs the rewind wrote have numbers the live database will use
		// for other files: never offer them for reuse.
		if isSST && linked[name] {
			ssts[name] = f
		}
	}
	s.mu.Lock()
	s.pending[n.id] = ssts
	s.mu.Unlock()
	return checkpoint.KeyedStateHandle{Incremental: inc}, nil
}

func (n *nativeSnapshot) upload(t state.SnapshotTarget, name string, shared bool) (checkpoint.NamedStream, error) {
	src, err := n.s.fs.Open(filepath.Join(n.dir, name))
	if err != nil {
		return checkpoint.NamedStream{}, fmt.Errorf("cannot read pebble file %s: %w", name, err)
	}
	defer src.Close()
	var w checkpoint.StreamWriter
	if shared {
		w, err = t.CreateShared(n.s.instance + "-" + name)
	} else {
		w, err = t.CreateStream(name)
	}
	if err != nil {
		return checkpoint.NamedStream{}, err
	}
	crc := crc32.New(castagnoli)
	if _, err := io.Copy(io.MultiWriter(w, crc), src); err != nil {
		w.Abort()
		return checkpoint.NamedStream{}, fmt.Errorf("cannot upload pebble file %s: %w", name, err)
	}
	h, err := w.Close()
	if err != nil {
		return checkpoint.NamedStream{}, fmt.Errorf("cannot upload pebble file %s: %w", name, err)
	}
	return checkpoint.NamedStream{Name: name, Stream: h, CRC: crc.Sum32()}, nil
}

// RestoreNative implements state.RawStore.
func (s *Store) RestoreNative(handles []checkpoint.KeyedStateHandle, open func(checkpoint.StreamHandle) (io.ReadCloser, error), r checkpoint.KeyGroupRange, reuse bool) error {
	for _, h := range handles {
		if h.Incremental.Backend != BackendName {
			return fmt.Errorf("cannot restore a %q snapshot into pebble state (this build reads %q)", h.Incremental.Backend, BackendName)
		}
	}
	// The database changes under the cache: write it back (for the keys
	// the restore does not replace) and empty it.
	if err := s.writeBack(); err != nil {
		return err
	}
	if s.cache != nil {
		s.cache.reset()
	}
	if len(handles) == 1 && handles[0].Range == r {
		// Same key groups: the checkpoint is the database.
		if err := s.db.Close(); err != nil {
			return err
		}
		s.db = nil
		if err := s.fs.RemoveAll(s.dbDir()); err != nil {
			return err
		}
		if err := s.download(handles[0].Incremental, open, s.dbDir()); err != nil {
			return err
		}
		if err := s.open(); err != nil {
			return err
		}
		if reuse {
			base := map[string]checkpoint.NamedStream{}
			for _, f := range handles[0].Incremental.Files {
				if strings.HasSuffix(f.Name, ".sst") && strings.HasPrefix(f.Stream.Path, state.SharedPrefix) {
					base[f.Name] = f
				}
			}
			s.mu.Lock()
			s.base = base
			s.mu.Unlock()
		}
		return nil
	}
	for i, h := range handles {
		both := h.Range.Intersect(r)
		if both.Len() == 0 {
			continue
		}
		tmp := filepath.Join(s.dir, fmt.Sprintf("restore-%d", i))
		if err := s.download(h.Incremental, open, tmp); err != nil {
			return err
		}
		err := s.copyRange(tmp, both)
		s.fs.RemoveAll(tmp)
		if err != nil {
			return fmt.Errorf("cannot restore key groups %s from pebble checkpoint: %w", both, err)
		}
	}
	return nil
}

// copyRange copies the key groups r and the state kinds from the database
// in dir into the store.
func (s *Store) copyRange(dir string, r checkpoint.KeyGroupRange) error {
	o := s.pebbleOptions()
	o.ReadOnly = true
	src, err := pebble.Open(dir, o)
	if err != nil {
		return err
	}
	defer src.Close()
	b := s.db.NewBatch()
	cp := func(k, v []byte) error {
		if err := b.Set(k, v, nil); err != nil {
			return err
		}
		if b.Len() > 4<<20 {
			if err := b.Commit(pebble.NoSync); err != nil {
				return err
			}
			b = s.db.NewBatch()
		}
		return nil
	}
	lo, hi := []byte{byte(r.Start >> 8), byte(r.Start)}, []byte{byte((r.End + 1) >> 8), byte(r.End + 1)}
	if err := scan(src, lo, hi, 0, cp); err != nil {
		b.Close()
		return err
	}
	if err := scan(src, []byte{0xFF, 0xFF}, nil, 0, cp); err != nil {
		b.Close()
		return err
	}
	return b.Commit(pebble.NoSync)
}

// download writes the files of h into dir, checking sizes and checksums.
func (s *Store) download(h *checkpoint.IncrementalHandle, open func(checkpoint.StreamHandle) (io.ReadCloser, error), dir string) error {
	if err := s.fs.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range h.Files {
		if f.Name == "" || strings.ContainsAny(f.Name, `/\`) || f.Name == "." || f.Name == ".." {
			return fmt.Errorf("pebble checkpoint file has a bad name %q", f.Name)
		}
		if err := s.downloadFile(f, open, filepath.Join(dir, f.Name)); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) downloadFile(f checkpoint.NamedStream, open func(checkpoint.StreamHandle) (io.ReadCloser, error), path string) error {
	where := f.Stream.Path
	if where == "" {
		where = "(inline)"
	}
	rc, err := open(f.Stream)
	if err != nil {
		return fmt.Errorf("cannot read pebble file %s (%s): %w", f.Name, where, err)
	}
	defer rc.Close()
	dst, err := s.fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("cannot write pebble file %s: %w", path, err)
	}
	crc := crc32.New(castagnoli)
	n, err := io.Copy(io.MultiWriter(dst, crc), rc)
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cannot download pebble file %s (%s): %w", f.Name, where, err)
	}
	if f.Stream.Size > 0 && n != f.Stream.Size {
		return fmt.Errorf("pebble file %s (%s) has %d bytes, the checkpoint recorded %d (truncated or replaced)", f.Name, where, n, f.Stream.Size)
	}
	if crc.Sum32() != f.CRC {
		return fmt.Errorf("pebble file %s (%s) is corrupted: CRC-32C %08x, the checkpoint recorded %08x", f.Name, where, crc.Sum32(), f.CRC)
	}
	return nil
}

type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(string, ...any) {}
func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error("pebble: " + fmt.Sprintf(format, args...))
}
func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error("pebble fatal: " + fmt.Sprintf(format, args...))
	panic(fmt.Sprintf("pebble: "+format, args...))
}

// ReadNative reads the entries of a native pebble snapshot without the Go
// types of keys and values (for `weir state dump`): it downloads the files
// of h into a temporary directory below tmp (checksums verified), opens
// them read-only and calls visit with every entry of h's key groups, in
// key group, state and key order. kind is the state's kind byte as the
// canonical stream records it.
func ReadNative(h checkpoint.KeyedStateHandle, open func(checkpoint.StreamHandle) (io.ReadCloser, error), tmp string, visit func(kg int, name string, kind byte, key, val []byte) error) error {
	if h.Incremental == nil || h.Incremental.Backend != BackendName {
		return fmt.Errorf("not a %s snapshot", BackendName)
	}
	dir, err := os.MkdirTemp(tmp, "weir-read-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	s := &Store{opts: Options{Logger: slog.Default()}, fs: vfs.Default}
	if err := s.download(h.Incremental, open, dir); err != nil {
		return err
	}
	db, err := pebble.Open(dir, &pebble.Options{ReadOnly: true, Logger: pebbleLogger{slog.Default()}})
	if err != nil {
		return fmt.Errorf("cannot open pebble snapshot: %w", err)
	}
	defer db.Close()
	return state.WalkRaw(dbView{db}, h.Range, visit)
}
