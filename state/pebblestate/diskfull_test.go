package pebblestate_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/weirstream/weir/internal/tmpfstest"
	"github.com/weirstream/weir/state"
	"github.com/weirstream/weir/state/pebblestate"
	"github.com/weirstream/weir/state/statetest"
	"github.com/weirstream/weir/storage"
)

// setUntilFull writes incompressible values into s until a write fails
// and returns that error.
func setUntilFull(t *testing.T, s state.RawStore) error {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	val := make([]byte, 1024)
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		for j := range val {
			val[j] = byte(r.Uint32())
		}
		if err := s.Set(fmt.Appendf(nil, "\x00\x01k%08d", i), val); err != nil {
			return err
		}
	}
	t.Fatal("the disk did not fill up in 30 s")
	return nil
}

// The full disk guard: the first store puts a ballast in the directory;
// the write that finds the disk full releases it (pebble finishes its
// flush into that room, no Fatalf) and every store of the directory then
// fails its writes and snapshots with an error naming the directory; once
// there is room, the next store puts the ballast back and works, while
// the stores of before stay failed. Factories sharing the directory share
// the guard.
func TestDiskFullGuard(t *testing.T) {
	dir := tmpfstest.Mount(t, 8<<20)
	const reserve = 2 << 20
	f := pebblestate.New(pebblestate.Options{Dir: dir, MemTableSize: 256 << 10, DiskFullReserve: reserve, Logger: quiet})
	s1, err := f.NewRawStore(state.StoreInfo{Job: "j", OperatorUID: "op", Subtask: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	// Another factory (another job of the process) on the same directory
	// shares its guard.
	f2 := pebblestate.New(pebblestate.Options{Dir: dir, MemTableSize: 256 << 10, Logger: quiet})
	s2, err := f2.NewRawStore(state.StoreInfo{Job: "j2", OperatorUID: "op", Subtask: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	ballast := filepath.Join(dir, ".weir-ballast")
	if fi, err := os.Stat(ballast); err != nil || fi.Size() != reserve {
		t.Fatalf("ballast: %v %v, want %d bytes", fi, err, reserve)
	}
	filler := tmpfstest.Fill(t, dir)

	err = setUntilFull(t, s1)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("want an error naming %s and ENOSPC, got %v", dir, err)
	}
	var full *pebblestate.DiskFullError
	if !errors.As(err, &full) || full.Dir != dir {
		t.Fatalf("not a DiskFullError of %s: %v", dir, err)
	}
	t.Logf("the store failed as expected: %v", err)
	if _, err := os.Stat(ballast); !os.IsNotExist(err) {
		t.Fatalf("the ballast is still there: %v", err)
	}
	// Sticky, for every store of the directory and every write path.
	for i, s := range []state.RawStore{s1, s2} {
		if err := s.Set([]byte("\x00\x01x"), []byte("y")); !errors.As(err, &full) {
			t.Errorf("store %d: Set after the disk filled: %v", i+1, err)
		}
		if err := s.Delete([]byte("\x00\x01x")); !errors.As(err, &full) {
			t.Errorf("store %d: Delete after the disk filled: %v", i+1, err)
		}
		if _, err := s.View(); !errors.As(err, &full) {
			t.Errorf("store %d: View after the disk filled: %v", i+1, err)
		}
		if _, err := s.NativeSnapshot(7); !errors.As(err, &full) {
			t.Errorf("store %d: NativeSnapshot after the disk filled: %v", i+1, err)
		}
	}
	if _, ok, err := s1.Get([]byte("\x00\x01k00000000"), nil); err != nil || !ok {
		t.Errorf("reads still work: %v %v", ok, err)
	}

	// Still no room for a ballast: a new store says so.
	if _, err := f.NewRawStore(state.StoreInfo{Job: "j", OperatorUID: "op", Subtask: 2}); err == nil ||
		!errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("a store opened on the full disk: want an error naming %s and ENOSPC, got %v", dir, err)
	} else {
		t.Logf("no room for the ballast: %v", err)
	}

	// Room again: the ballast is back and a new store works.
	if err := s1.Close(); err != nil {
		t.Fatalf("close of the failed store: %v", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	s3, err := f.NewRawStore(state.StoreInfo{Job: "j", OperatorUID: "op", Subtask: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	if fi, err := os.Stat(ballast); err != nil || fi.Size() != reserve {
		t.Fatalf("ballast after the trip: %v %v, want %d bytes", fi, err, reserve)
	}
	if err := s3.Set([]byte("\x00\x01x"), []byte("y")); err != nil {
		t.Fatalf("a store opened after room was made: %v", err)
	}
	if err := s2.Set([]byte("\x00\x01x"), []byte("y")); !errors.As(err, &full) {
		t.Fatalf("a store of before the trip works again: %v", err)
	}
	// And it trips again when the disk fills up again.
	filler = tmpfstest.Fill(t, dir)
	if err := setUntilFull(t, s3); !errors.As(err, &full) {
		t.Fatalf("second fill: %v", err)
	}
	os.Remove(filler)
}

// Without a configured reserve the ballast is the default, capped at a
// 16th of a small file system.
func TestDiskFullReserveDefault(t *testing.T) {
	dir := tmpfstest.Mount(t, 4<<20)
	f := pebblestate.New(pebblestate.Options{Dir: dir, Logger: quiet})
	s, err := f.NewRawStore(state.StoreInfo{Job: "j", OperatorUID: "op"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if fi, err := os.Stat(filepath.Join(dir, ".weir-ballast")); err != nil || fi.Size() != 256<<10 {
		t.Fatalf("ballast: %v %v, want 256 KiB", fi, err)
	}
	if got := pebblestate.DefaultDiskFullReserve(16 << 20); got != 36<<20 {
		t.Fatalf("default reserve %d", got)
	}
}

// A checkpoint whose flush keeps failing (pebble retries a failed flush
// forever, and DB.Flush waited for it) gives up when its store closes:
// the task that failed can close its state and end (it hung in Close,
// leaving the database open).
func TestSnapshotFlushFailingForever(t *testing.T) {
	var failing atomic.Bool
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsWrite && strings.HasSuffix(op.Path, ".sst") {
			return errors.New("injected disk failure")
		}
		return nil
	})
	// Options.Logger unset: pebble's errors go to the task's logger.
	logged := &countHandler{}
	f := pebblestate.New(pebblestate.Options{Dir: t.TempDir(), FS: errorfs.Wrap(vfs.Default, inj)})
	s, err := f.NewRawStore(state.StoreInfo{Job: "j", OperatorUID: "op", Logger: slog.New(logged)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("\x00\x01a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	snap, err := s.NativeSnapshot(1)
	if err != nil {
		t.Fatal(err)
	}
	written := make(chan error, 1)
	go func() {
		_, err := statetest.WriteSnapshot(snap, storage.NewMemory("hang"), 1, "x")
		snap.Release()
		written <- err
	}()
	time.Sleep(200 * time.Millisecond)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs behind a checkpoint whose flush keeps failing")
	}
	if err := <-written; err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("the checkpoint of a closed store: %v", err)
	}
	// Pebble retries the flush at once, thousands of times a second: the
	// store logs 5 of them a second.
	if n := logged.n.Load(); n == 0 || n > 10 {
		t.Fatalf("%d of pebble's flush errors reached the task's logger, want 1 to 10", n)
	} else {
		t.Logf("%d pebble errors logged (the flush was retried until the store closed)", n)
	}
}

type countHandler struct{ n atomic.Int64 }

func (h *countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "injected disk failure") {
		h.n.Add(1)
	}
	return nil
}
func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countHandler) WithGroup(string) slog.Handler      { return h }
