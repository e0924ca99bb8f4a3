package pebblestate

// A full working directory must fail the task, not the process. Pebble
// treats a failed MANIFEST write as fatal (Logger.Fatalf, on one of its
// goroutines, holding DB.mu: nothing can recover), and a flush that keeps
// failing blocks DB.Flush and writers stalled on full memtables forever.
// So, as CockroachDB does, the stores stop before pebble runs out:
//
//   - A ballast file (Options.DiskFullReserve bytes) in Options.Dir,
//     created when the first store opens, holds back space.
//   - Every store's file system is wrapped with vfs.OnDiskFull: the first
//     write that meets ENOSPC (writes are held meanwhile) deletes the
//     ballast and trips the guard with an error naming the directory; the
//     write is then retried once, into the freed space.
//   - A tripped guard makes the stores' writes (Set, Delete) and snapshots
//     return that error: the task fails through weir's normal error path,
//     closes its stores (deleting their directories) and restarts from the
//     last completed checkpoint. Meanwhile pebble's in-flight flushes may
//     finish into the freed space; compactions may not start or go on
//     writing, and a flush stops writing while less than flushMargin is
//     left, keeping room for the MANIFEST edits pebble must not fail.
//   - The next store to open re-creates the ballast (or fails with a clear
//     error if there is not room for it: the disk is still full) and gets
//     a fresh guard; stores opened before the trip stay failed.
//
// The guard is per directory: shared by the stores of a Factory, and by
// the factories of the process that use the same Options.Dir on the OS
// file system.

import (
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// ballastName is the ballast file in Options.Dir.
const ballastName = ".weir-ballast"

// flushMargin is the free space a flush keeps once the guard tripped.
const flushMargin = 64 << 10

// Pebble's write categories (compaction.go, getDiskWriteCategoryForCompaction).
const (
	catFlush      vfs.DiskWriteCategory = "pebble-memtable-flush"
	catCompaction vfs.DiskWriteCategory = "pebble-compaction"
	catBlob       vfs.DiskWriteCategory = "pebble-blob-file-rewrite"
)

// DefaultDiskFullReserve is the ballast size for a memtable size: the two
// memtables a store can have queued for flushing (more stall its writes)
// plus 4 MiB for MANIFEST edits and checkpoint copies.
func DefaultDiskFullReserve(memTableSize uint64) int64 {
	return 2*int64(memTableSize) + 4<<20
}

type diskGuard struct {
	inner   vfs.FS // the ballast is written and removed here
	fs      vfs.FS // vfs.OnDiskFull(inner): what the stores use
	dir     string
	reserve int64 // Options.DiskFullReserve
	memtab  uint64

	mu      sync.Mutex
	ballast int64 // size of the ballast in place, 0 if none
	cur     *diskTrip
}

// guards are the guards of the directories on the OS file system: the
// factories of a process that share a directory share its ballast (the
// first one's reserve).
var guards struct {
	sync.Mutex
	m map[string]*diskGuard
}

func newDiskGuard(opts Options) *diskGuard {
	if opts.FS != vfs.Default {
		return makeDiskGuard(opts)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return makeDiskGuard(opts)
	}
	guards.Lock()
	defer guards.Unlock()
	if g := guards.m[dir]; g != nil {
		return g
	}
	if guards.m == nil {
		guards.m = map[string]*diskGuard{}
	}
	g := makeDiskGuard(opts)
	guards.m[dir] = g
	return g
}

func makeDiskGuard(opts Options) *diskGuard {
	g := &diskGuard{inner: opts.FS, dir: opts.Dir, reserve: opts.DiskFullReserve, memtab: opts.MemTableSize}
	g.fs = vfs.OnDiskFull(opts.FS, g.onFull)
	return g
}

func (g *diskGuard) ballastPath() string { return filepath.Join(g.dir, ballastName) }

// size is the ballast size: Options.DiskFullReserve if set, else the
// default capped at 1/16 of the file system (a small disk stays usable).
func (g *diskGuard) size() int64 {
	if g.reserve != 0 {
		return max(g.reserve, 0)
	}
	n := DefaultDiskFullReserve(g.memtab)
	if du, err := g.inner.GetDiskUsage(g.dir); err == nil && du.TotalBytes > 0 {
		n = min(n, int64(du.TotalBytes/16))
	}
	return n &^ 4095
}

// arm puts the ballast in place if it is not (first store, or after a
// trip) and returns the guard state of a store opening now.
func (g *diskGuard) arm() (*diskTrip, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cur != nil && !g.cur.tripped() && g.ballastInPlace() {
		return g.cur, nil
	}
	if err := g.inner.MkdirAll(g.dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create pebble state directory %s: %w", g.dir, err)
	}
	if n := g.size(); n > 0 && !g.ballastInPlace() {
		if err := g.writeBallast(n); err != nil {
			return nil, fmt.Errorf("cannot reserve %d bytes against a full disk in local state directory %s (%s): %w", n, g.dir, ballastName, err)
		}
		g.ballast = n
	}
	if g.cur == nil || g.cur.tripped() {
		// A ballast put back after something else removed it keeps the
		// stores of before on the same guard state.
		g.cur = &diskTrip{dir: g.dir, done: make(chan struct{})}
	}
	return g.cur, nil
}

func (g *diskGuard) ballastInPlace() bool {
	if g.ballast == 0 {
		return g.size() == 0
	}
	fi, err := g.inner.Stat(g.ballastPath())
	return err == nil && fi.Size() == g.ballast
}

func (g *diskGuard) writeBallast(n int64) error {
	p := g.ballastPath()
	f, err := g.inner.Create(p, vfs.WriteCategoryUnspecified)
	if err == nil {
		err = allocate(f, n)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		g.inner.Remove(p)
	}
	return err
}

// onFull is vfs.OnDiskFull's callback (writes to the directory wait
// meanwhile): free the ballast and trip the guard.
func (g *diskGuard) onFull() {
	g.mu.Lock()
	defer g.mu.Unlock()
	freed := ""
	if g.ballast > 0 {
		if err := g.inner.Remove(g.ballastPath()); err == nil {
			freed = fmt.Sprintf("; released the %d bytes reserved in %s so that pebble can finish what it is writing", g.ballast, ballastName)
		}
		g.ballast = 0
	}
	if g.cur != nil {
		g.cur.trip(&DiskFullError{Dir: g.dir, detail: freed})
	}
}

// DiskFullError is the error of every store of a local state directory
// that ran out of space. It matches syscall.ENOSPC (errors.Is).
type DiskFullError struct {
	Dir    string
	detail string
}

func (e *DiskFullError) Error() string {
	return fmt.Sprintf("local state directory %s is full (no space left on device)%s", e.Dir, e.detail)
}

func (e *DiskFullError) Unwrap() error { return syscall.ENOSPC }

// diskTrip is the guard state the stores opened between two trips share.
type diskTrip struct {
	dir  string
	err  atomic.Pointer[DiskFullError]
	once sync.Once
	done chan struct{}
}

func (t *diskTrip) trip(err *DiskFullError) {
	t.once.Do(func() {
		t.err.Store(err)
		close(t.done)
	})
}

func (t *diskTrip) tripped() bool { return t.err.Load() != nil }

// Err is the sticky error of a tripped guard, nil otherwise (and for a
// store without guard).
func (t *diskTrip) Err() error {
	if t == nil {
		return nil
	}
	if e := t.err.Load(); e != nil {
		return e
	}
	return nil
}

// guardedFS is a store's file system: once its guard tripped, pebble's
// compactions cannot write and its flushes keep flushMargin free.
type guardedFS struct {
	vfs.FS
	t *diskTrip
}

func (fs guardedFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	compaction := cat == catCompaction || cat == catBlob
	if compaction {
		if err := fs.t.Err(); err != nil {
			return nil, err
		}
	}
	f, err := fs.FS.Create(name, cat)
	if err != nil || !compaction && cat != catFlush {
		return f, err
	}
	return &guardedFile{File: f, fs: fs, compaction: compaction}, nil
}

type guardedFile struct {
	vfs.File
	fs         guardedFS
	compaction bool
}

// check refuses a write of n bytes once the guard tripped: a compaction's
// always, a flush's when it would leave less than flushMargin.
func (f *guardedFile) check(n int) error {
	err := f.fs.t.Err()
	if err == nil {
		return nil
	}
	if f.compaction {
		return err
	}
	du, derr := f.fs.FS.GetDiskUsage(f.fs.t.dir)
	if derr == nil && du.AvailBytes >= uint64(n)+flushMargin {
		return nil
	}
	return fmt.Errorf("%w; pebble's flush stops to keep room for its MANIFEST", err)
}

func (f *guardedFile) Write(p []byte) (int, error) {
	if err := f.check(len(p)); err != nil {
		return 0, err
	}
	return f.File.Write(p)
}

func (f *guardedFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.check(len(p)); err != nil {
		return 0, err
	}
	return f.File.WriteAt(p, off)
}

// flush flushes db's memtable like db.Flush, which waits forever for a
// flush that keeps failing (pebble retries it): this one gives up when
// the guard trips or the store closes.
func (s *Store) flush(db *pebble.DB) error {
	if err := s.disk.Err(); err != nil {
		return err
	}
	done, err := db.AsyncFlush()
	if err != nil {
		return err
	}
	var tripped <-chan struct{}
	if s.disk != nil {
		tripped = s.disk.done
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return nil
		case <-tripped:
			return s.disk.Err()
		case <-tick.C:
			if s.closing.Load() {
				return s.closedWhy(errClosed)
			}
		}
	}
}

func writeZeros(f vfs.File, n int64) error {
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		m, err := f.Write(buf[:min(n, int64(len(buf)))])
		if err != nil {
			return err
		}
		n -= int64(m)
	}
	return f.Sync()
}

// closedWhy says why a snapshot stopped reading a closing store: the full
// disk that failed the task, rather than only that the task ended.
func (s *Store) closedWhy(err error) error {
	if err == errClosed {
		if derr := s.disk.Err(); derr != nil {
			return derr
		}
	}
	return err
}
