package pebblestate_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/internal/leaktest"
	"github.com/weirstream/weir/state"
	"github.com/weirstream/weir/state/pebblestate"
	"github.com/weirstream/weir/state/statetest"
	"github.com/weirstream/weir/storage"
)

func TestMain(m *testing.M) { leaktest.Main(m) }

// The conformance suite (package statetest) runs against the pebble
// backend with incremental checkpoints and with full checkpoints, and
// savepoints move between them and the heap backend. The tests below it
// are about what only pebble does: native files, injected disk faults.
//
// Two more runs cover the entry cache: a cache of 2 KiB, full after a
// few dozen entries, so that nearly every access writes the cache back
// and empties it (the backend's contents must not depend on when that
// happens), and no cache at all.
func TestConformance(t *testing.T) {
	for _, b := range []statetest.Backend{pebbleBackend(false, nil), pebbleBackend(true, nil),
		pebbleBackendWith("pebble-tiny-cache", pebblestate.Options{EntryCacheSize: 2 << 10}),
		pebbleBackendWith("pebble-no-cache", pebblestate.Options{EntryCacheSize: -1})} {
		t.Run(b.Name, func(t *testing.T) { statetest.Run(t, b) })
	}
}

func TestSavepointsAcrossBackends(t *testing.T) {
	statetest.SavepointsAcross(t, statetest.Heap(), pebbleBackend(false, nil), pebbleBackend(true, nil))
}

// pebbleBackend is the pebble backend with incremental (native) or full
// checkpoints, its files on fs (nil: the disk).
func pebbleBackend(full bool, fs vfs.FS) statetest.Backend {
	name := "pebble-incremental"
	if full {
		name = "pebble-full"
	}
	return pebbleBackendWith(name, pebblestate.Options{Full: full, FS: fs})
}

// pebbleBackendWith is the pebble backend with opts (Dir and Logger
// filled in).
func pebbleBackendWith(name string, opts pebblestate.Options) statetest.Backend {
	return statetest.Backend{
		Name: name,
		New: func(t *testing.T, r checkpoint.KeyGroupRange) state.KeyedBackend[string] {
			return newPebbleWith[string](t, opts, r)
		},
		NewInt64: func(t *testing.T, r checkpoint.KeyGroupRange) state.KeyedBackend[int64] {
			return newPebbleWith[int64](t, opts, r)
		},
		Settle: settle,
	}
}

// settle flushes the backend's memtable and waits until no flush or
// compaction runs (at most a minute).
func settle(t *testing.T, kb state.KeyedBackend[string]) {
	db := kb.(*state.RawKeyedBackend[string]).Store().(*pebblestate.Store).DB()
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	for idle, deadline := 0, time.Now().Add(time.Minute); idle < 5 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := db.Metrics(); m.Flush.NumInProgress == 0 && m.Compact.NumInProgress == 0 {
			idle++
		} else {
			idle = 0
		}
	}
}

// newPebble returns a pebble backend with the keys and codec the suite
// uses (state.CodecFor[K]), closed at tb's cleanup.
func newPebble[K comparable](tb testing.TB, full bool, fs vfs.FS, r checkpoint.KeyGroupRange) *state.RawKeyedBackend[K] {
	tb.Helper()
	return newPebbleWith[K](tb, pebblestate.Options{Full: full, FS: fs}, r)
}

// newPebbleWith is newPebble with opts (Dir and Logger filled in).
func newPebbleWith[K comparable](tb testing.TB, opts pebblestate.Options, r checkpoint.KeyGroupRange) *state.RawKeyedBackend[K] {
	tb.Helper()
	opts.Dir, opts.Logger = tb.TempDir(), quiet
	f := pebblestate.New(opts)
	store, err := f.NewRawStore(state.StoreInfo{Job: "j", OperatorUID: "op", Subtask: r.Start})
	if err != nil {
		tb.Fatal(err)
	}
	c := state.CodecFor[K]()
	b, err := state.NewRawKeyedBackend[K](store, c, state.HasherFor(c), statetest.MaxParallelism, r, func(err error) { tb.Errorf("state failure: %v", err) })
	if err != nil {
		tb.Fatal(err)
	}
	b.ReuseRestoredFiles = true
	tb.Cleanup(func() { b.Close() })
	return b
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func full() checkpoint.KeyGroupRange { return statetest.FullRange() }

func setKey(b state.KeyedBackend[string], k string) { statetest.SetKey(b, k) }

func keys(n int) []string { return statetest.Keys(n) }

func snapshot(t *testing.T, b state.KeyedBackend[string], st *storage.Storage, id checkpoint.ID, kind checkpoint.Kind) checkpoint.KeyedStateHandle {
	t.Helper()
	return statetest.Snapshot(t, b, st, id, kind)
}

// TestIncrementalReusesFiles: a checkpoint after a small change uploads
// only the new SSTs; unchanged files are referenced, not uploaded again.
func TestIncrementalReusesFiles(t *testing.T) {
	k := pebbleBackend(false, nil)
	b := k.New(t, full())
	v, _ := state.GetValueState[string, string](b, "v", state.CodecFor[string]())
	rnd := rand.New(rand.NewPCG(1, 2))
	val := func() string { // incompressible
		b := make([]byte, 1000)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		return string(b)
	}
	var big string
	for _, key := range keys(5000) {
		setKey(b, key)
		big = val()
		v.Update(big)
	}
	st := storage.NewMemory("inc")
	h1 := snapshot(t, b, st, 1, checkpoint.KindCheckpoint)
	b.NotifyCheckpointComplete(1)
	setKey(b, "key-0001")
	v.Update("changed")
	h2 := snapshot(t, b, st, 2, checkpoint.KindCheckpoint)
	if h1.Incremental == nil || h2.Incremental == nil {
		t.Fatal("incremental checkpoints expected")
	}
	if h1.Incremental.Uploaded < 5000*1000/2 {
		t.Fatalf("first checkpoint uploaded %d bytes, expected the whole state", h1.Incremental.Uploaded)
	}
	if h2.Incremental.Uploaded > h1.Incremental.Uploaded/10 {
		t.Fatalf("second checkpoint uploaded %d bytes after one change (first: %d)", h2.Incremental.Uploaded, h1.Incremental.Uploaded)
	}
	b2 := statetest.Restore(t, k, full(), st, h2)
	v2, _ := state.GetValueState[string, string](b2, "v", state.CodecFor[string]())
	setKey(b2, "key-0001")
	if got, _ := v2.Value(); got != "changed" {
		t.Fatalf("restored %q", got)
	}
	setKey(b2, "key-4999")
	if got, _ := v2.Value(); got != big {
		t.Fatal("restored value of an unchanged key is wrong")
	}
}

// TestCorruptedSharedFile: a damaged or missing shared file is a clear
// error naming the file.
func TestCorruptedSharedFile(t *testing.T) {
	k := pebbleBackend(false, nil)
	b := k.New(t, full())
	v, _ := state.GetValueState[string, int](b, "v", state.CodecFor[int]())
	for i, key := range keys(100) {
		setKey(b, key)
		v.Update(i)
	}
	dir := t.TempDir()
	st, err := storage.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := snapshot(t, b, st, 1, checkpoint.KindCheckpoint)
	var sst string
	for _, f := range h.Incremental.Files {
		if strings.HasPrefix(f.Stream.Path, storage.SharedPrefix) {
			sst = filepath.Join(dir, filepath.FromSlash(f.Stream.Path))
		}
	}
	if sst == "" {
		t.Fatal("no shared file uploaded")
	}
	data, _ := os.ReadFile(sst)
	data[len(data)/2] ^= 0xFF
	os.WriteFile(sst, data, 0o644)
	b2 := k.New(t, full())
	err = b2.RestoreHandles([]checkpoint.KeyedStateHandle{h}, st.Opener(context.Background()))
	if err == nil || !strings.Contains(err.Error(), "corrupted") || !strings.Contains(err.Error(), ".sst") {
		t.Fatalf("restore from a corrupted shared file: %v", err)
	}
	os.Remove(sst)
	b3 := k.New(t, full())
	if err := b3.RestoreHandles([]checkpoint.KeyedStateHandle{h}, st.Opener(context.Background())); err == nil || !strings.Contains(err.Error(), ".sst") {
		t.Fatalf("restore with a missing shared file: %v", err)
	}
	// A heap backend refuses a native snapshot with a clear error.
	if err := statetest.Heap().New(t, full()).RestoreHandles([]checkpoint.KeyedStateHandle{h}, st.Opener(context.Background())); err == nil || !strings.Contains(err.Error(), "savepoint") {
		t.Fatalf("heap restore of a pebble checkpoint: %v", err)
	}
}

// TestSnapshotWriteFailure: with pebble's errorfs failing writes into the
// checkpoint directory, the snapshot fails with an error (the runtime
// declines the checkpoint), state stays usable, and the next snapshot
// succeeds.
func TestSnapshotWriteFailure(t *testing.T) {
	var failing atomic.Bool
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsWrite && strings.Contains(op.Path, "chk-") {
			return errors.New("injected disk failure")
		}
		return nil
	})
	fs := errorfs.Wrap(vfs.Default, inj)
	k := pebbleBackend(false, fs)
	b := k.New(t, full())
	v, _ := state.GetValueState[string, int](b, "v", state.CodecFor[int]())
	setKey(b, "a")
	v.Update(1)
	failing.Store(true)
	snap, err := b.SnapshotFor(1, checkpoint.KindCheckpoint)
	if err == nil {
		_, err = statetest.WriteSnapshot(snap, storage.NewMemory("f1"), 1, "x")
		snap.Release()
	}
	if err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("snapshot with a failing disk: %v", err)
	}
	failing.Store(false)
	v.Update(2)
	st := storage.NewMemory("f")
	h := snapshot(t, b, st, 2, checkpoint.KindCheckpoint)
	b2 := statetest.Restore(t, k, full(), st, h)
	v2, _ := state.GetValueState[string, int](b2, "v", state.CodecFor[int]())
	setKey(b2, "a")
	if got, _ := v2.Value(); got != 2 {
		t.Fatalf("after a failed snapshot, the next one restored %d, want 2", got)
	}
}

// TestReadNative: ReadNative reads a native snapshot without the Go types (weir state dump).
func TestReadNative(t *testing.T) {
	k := pebbleBackend(false, nil)
	b := k.New(t, full())
	v, _ := state.GetValueState[string, string](b, "v", state.CodecFor[string]())
	for _, key := range keys(50) {
		setKey(b, key)
		v.Update("val-" + key)
	}
	st := storage.NewMemory("rn")
	h := snapshot(t, b, st, 1, checkpoint.KindCheckpoint)
	got := map[string]string{}
	err := pebblestate.ReadNative(h, st.Opener(context.Background()), t.TempDir(), func(kg int, name string, kind byte, key, val []byte) error {
		if name != "v" || kind != 1 {
			t.Errorf("entry of state %q kind %d", name, kind)
		}
		c := state.CodecFor[string]()
		if want := state.KeyGroupOf(state.HasherFor(c)(string(key)), statetest.MaxParallelism); want != kg {
			t.Errorf("key %s in key group %d, belongs to %d", key, kg, want)
		}
		got[string(key)] = string(val)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 50 || got["key-0007"] != "val-key-0007" {
		t.Fatalf("read %d entries: %v", len(got), got)
	}
}
