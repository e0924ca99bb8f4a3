package pebblestate_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/state"
	"github.com/weirstream/weir/state/pebblestate"
	"github.com/weirstream/weir/storage"
)

// The conformance suite: every test runs against the heap backend, the
// pebble backend with incremental checkpoints and the pebble backend with
// full checkpoints.

const maxP = 128

type backendKind struct {
	name string
	new  func(t *testing.T, r checkpoint.KeyGroupRange) state.KeyedBackend[string]
}

func heapKind() backendKind {
	return backendKind{"heap", func(t *testing.T, r checkpoint.KeyGroupRange) state.KeyedBackend[string] {
		c := state.CodecFor[string]()
		return state.NewHeapKeyedBackend[string](c, state.HasherFor(c), maxP, r)
	}}
}

func pebbleKind(full bool, fs vfs.FS) backendKind {
	name := "pebble-incremental"
	if full {
		name = "pebble-full"
	}
	return backendKind{name, func(t *testing.T, r checkpoint.KeyGroupRange) state.KeyedBackend[string] {
		f := pebblestate.New(pebblestate.Options{Dir: t.TempDir(), Full: full, FS: fs, Logger: quiet})
		store, err := f.NewRawStore(state.StoreInfo{Job: "j", OperatorUID: "op", Subtask: r.Start})
		if err != nil {
			t.Fatal(err)
		}
		c := state.CodecFor[string]()
		b, err := state.NewRawKeyedBackend[string](store, c, state.HasherFor(c), maxP, r, func(err error) { t.Errorf("state failure: %v", err) })
		if err != nil {
			t.Fatal(err)
		}
		b.ReuseRestoredFiles = true
		t.Cleanup(func() { b.Close() })
		return b
	}}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func pebbleFactory(dir string, full bool) *pebblestate.Factory {
	return pebblestate.New(pebblestate.Options{Dir: dir, Full: full, Logger: quiet})
}

func allKinds() []backendKind {
	return []backendKind{heapKind(), pebbleKind(false, nil), pebbleKind(true, nil)}
}

func full() checkpoint.KeyGroupRange { return checkpoint.KeyGroupRange{Start: 0, End: maxP - 1} }

func setKey(b state.KeyedBackend[string], k string) {
	b.SetCurrentKeyHashed(k, state.HasherFor(state.CodecFor[string]())(k))
}

// snapshot writes a snapshot of b as checkpoint id into st.
func snapshot(t *testing.T, b state.KeyedBackend[string], st *storage.Storage, id checkpoint.ID, kind checkpoint.Kind) checkpoint.KeyedStateHandle {
	t.Helper()
	s, err := b.SnapshotFor(id, kind)
	if err != nil {
		t.Fatalf("snapshot %d: %v", id, err)
	}
	defer s.Release()
	h, err := writeSnapshot(s, st, id, fmt.Sprintf("kg%d", b.KeyGroupRange().Start))
	if err != nil {
		t.Fatalf("write snapshot %d: %v", id, err)
	}
	h.Range = b.KeyGroupRange()
	return h
}

func writeSnapshot(s state.KeyedSnapshot, st *storage.Storage, id checkpoint.ID, name string) (checkpoint.KeyedStateHandle, error) {
	if hw, ok := s.(state.HandleWriter); ok {
		return hw.WriteHandle(storage.NewTarget(context.Background(), st, id, name))
	}
	w, err := st.CreateStream(context.Background(), id, name)
	if err != nil {
		return checkpoint.KeyedStateHandle{}, err
	}
	offs, err := s.WriteKeyGroups(w)
	if err != nil {
		w.Abort()
		return checkpoint.KeyedStateHandle{}, err
	}
	sh, err := w.Close()
	return checkpoint.KeyedStateHandle{Stream: sh, Offsets: offs, States: state.SnapshotStates(s)}, err
}

func restore(t *testing.T, k backendKind, r checkpoint.KeyGroupRange, st *storage.Storage, hs ...checkpoint.KeyedStateHandle) state.KeyedBackend[string] {
	t.Helper()
	b := k.new(t, r)
	var mine []checkpoint.KeyedStateHandle
	for _, h := range hs {
		if h.Range.Intersect(r).Len() > 0 {
			mine = append(mine, h)
		}
	}
	if err := b.RestoreHandles(mine, st.Opener(context.Background())); err != nil {
		t.Fatalf("restore %s into %s: %v", r, k.name, err)
	}
	return b
}

func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("key-%04d", i)
	}
	return out
}

type sumAgg struct{}

func (sumAgg) CreateAccumulator() int64      { return 0 }
func (sumAgg) Add(v string, acc int64) int64 { return acc + int64(len(v)) }
func (sumAgg) Result(acc int64) string       { return fmt.Sprint(acc) }

// allStates registers one state of every kind.
type allStates struct {
	v   state.ValueState[int64]
	l   state.ListState[string]
	m   state.MapState[string, int]
	r   state.ReducingState[int64]
	a   state.AggregatingState[string, string]
	ttl state.ValueState[string]
}

func register(t *testing.T, b state.KeyedBackend[string], clock func() time.Time) *allStates {
	t.Helper()
	c := state.CodecFor[string]()
	var s allStates
	var err error
	must := func(e error) {
		if e != nil {
			t.Helper()
			t.Fatal(e)
		}
	}
	s.v, err = state.GetValueState[string, int64](b, "count", state.CodecFor[int64]())
	must(err)
	s.l, err = state.GetKeyedListState[string, string](b, "list", c)
	must(err)
	s.m, err = state.GetMapState[string, string, int](b, "map", c, state.CodecFor[int]())
	must(err)
	s.r, err = state.GetReducingState[string, int64](b, "max", state.CodecFor[int64](), func(a, b int64) int64 { return max(a, b) })
	must(err)
	s.a, err = state.GetAggregatingState[string, string, int64, string](b, "agg", state.CodecFor[int64](), sumAgg{})
	must(err)
	s.ttl, err = state.GetValueState[string, string](b, "session", c, state.WithTTL(state.TTLConfig{TTL: time.Minute, Clock: clock}))
	must(err)
	return &s
}

// write applies round r of updates to key k.
func (s *allStates) write(k string, r int) {
	n, _ := s.v.Value()
	s.v.Update(n + 1)
	s.l.Add(fmt.Sprintf("%s/%d", k, r))
	s.m.Put(fmt.Sprint(r%3), r)
	s.r.Add(int64(r))
	s.a.Add(k)
	s.ttl.Update(fmt.Sprintf("%s@%d", k, r))
}

// check asserts the states of key k after rounds updates.
func (s *allStates) check(t *testing.T, where, k string, rounds int) {
	t.Helper()
	if n, _ := s.v.Value(); n != int64(rounds) {
		t.Fatalf("%s: %s: count %d, want %d", where, k, n, rounds)
	}
	l := s.l.Get()
	if len(l) != rounds || rounds > 0 && l[rounds-1] != fmt.Sprintf("%s/%d", k, rounds-1) {
		t.Fatalf("%s: %s: list %v, want %d entries", where, k, l, rounds)
	}
	if rounds > 0 {
		if v, ok := s.m.Get(fmt.Sprint((rounds - 1) % 3)); !ok || v != rounds-1 {
			t.Fatalf("%s: %s: map entry %v %v", where, k, v, ok)
		}
		if m, _ := s.r.Get(); m != int64(rounds-1) {
			t.Fatalf("%s: %s: reducing %d, want %d", where, k, m, rounds-1)
		}
		if a, _ := s.a.Get(); a != fmt.Sprint(rounds*len(k)) {
			t.Fatalf("%s: %s: aggregating %s, want %d", where, k, a, rounds*len(k))
		}
	}
}

func TestConformanceKindsSnapshotRescale(t *testing.T) {
	for _, k := range allKinds() {
		t.Run(k.name, func(t *testing.T) {
			now := time.Unix(1_700_000_000, 0)
			clock := func() time.Time { return now }
			st := storage.NewMemory("conformance")
			ks := keys(300)

			// Parallelism 1: two rounds for every key.
			b := k.new(t, full())
			s := register(t, b, clock)
			for r := range 2 {
				for _, key := range ks {
					setKey(b, key)
					s.write(key, r)
				}
			}
			for _, key := range ks {
				setKey(b, key)
				s.check(t, "p=1", key, 2)
			}
			h1 := snapshot(t, b, st, 1, checkpoint.KindCheckpoint)
			b.NotifyCheckpointComplete(1)

			// Rescale 1 -> 3: one more round.
			var hs3 []checkpoint.KeyedStateHandle
			for i := range 3 {
				r := state.RangeForSubtask(maxP, 3, i)
				b3 := restore(t, k, r, st, h1)
				s3 := register(t, b3, clock)
				for _, key := range ks {
					if !r.Contains(state.KeyGroupOf(state.HasherFor(state.CodecFor[string]())(key), maxP)) {
						continue
					}
					setKey(b3, key)
					s3.check(t, "after 1->3", key, 2)
					s3.write(key, 2)
				}
				hs3 = append(hs3, snapshot(t, b3, st, 2, checkpoint.KindCheckpoint))
				b3.NotifyCheckpointComplete(2)
			}
			// Rescale 3 -> 2: the third round survived.
			for i := range 2 {
				r := state.RangeForSubtask(maxP, 2, i)
				b2 := restore(t, k, r, st, hs3...)
				s2 := register(t, b2, clock)
				for _, key := range ks {
					if !r.Contains(state.KeyGroupOf(state.HasherFor(state.CodecFor[string]())(key), maxP)) {
						continue
					}
					setKey(b2, key)
					s2.check(t, "after 3->2", key, 3)
				}
			}
		})
	}
}

// TestConformanceSavepointAcrossBackends writes a savepoint with every
// backend and restores it into every backend.
func TestConformanceSavepointAcrossBackends(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	ks := keys(200)
	for _, from := range allKinds() {
		for _, to := range allKinds() {
			t.Run(from.name+"->"+to.name, func(t *testing.T) {
				st := storage.NewMemory("sp")
				b := from.new(t, full())
				s := register(t, b, clock)
				for r := range 3 {
					for _, key := range ks {
						setKey(b, key)
						s.write(key, r)
					}
				}
				h := snapshot(t, b, st, 7, checkpoint.KindSavepoint)
				if h.Incremental != nil {
					t.Fatal("a savepoint must be in the canonical format")
				}
				for i := range 2 {
					r := state.RangeForSubtask(maxP, 2, i)
					b2 := restore(t, to, r, st, h)
					s2 := register(t, b2, clock)
					for _, key := range ks {
						if r.Contains(state.KeyGroupOf(state.HasherFor(state.CodecFor[string]())(key), maxP)) {
							setKey(b2, key)
							s2.check(t, "restored", key, 3)
						}
					}
				}
			})
		}
	}
}

// TestConformanceTTL: an expired value is never returned, OnReadAndWrite
// renews on read, full snapshots leave expired entries out, and the
// incremental cleanup removes entries nobody reads.
func TestConformanceTTL(t *testing.T) {
	for _, k := range allKinds() {
		t.Run(k.name, func(t *testing.T) {
			var nowMs atomic.Int64
			nowMs.Store(1_700_000_000_000)
			clock := func() time.Time { return time.UnixMilli(nowMs.Load()) }
			advance := func(d time.Duration) { nowMs.Add(d.Milliseconds()) }
			b := k.new(t, full())
			write, err := state.GetValueState[string, int](b, "w", state.CodecFor[int](), state.WithTTL(state.TTLConfig{TTL: 10 * time.Second, Clock: clock, CleanupPerAccess: -1}))
			if err != nil {
				t.Fatal(err)
			}
			read, err := state.GetValueState[string, int](b, "r", state.CodecFor[int](), state.WithTTL(state.TTLConfig{TTL: 10 * time.Second, Update: state.OnReadAndWrite, Clock: clock, CleanupPerAccess: -1}))
			if err != nil {
				t.Fatal(err)
			}
			setKey(b, "a")
			write.Update(1)
			read.Update(1)
			advance(6 * time.Second)
			if v, ok := write.Value(); !ok || v != 1 {
				t.Fatalf("value before expiry: %v %v", v, ok)
			}
			if _, ok := read.Value(); !ok { // renews "r" until +16s
				t.Fatal("read state expired early")
			}
			advance(6 * time.Second) // +12s
			if v, ok := write.Value(); ok {
				t.Fatalf("expired value returned: %v", v)
			}
			if _, ok := read.Value(); !ok {
				t.Fatal("OnReadAndWrite did not renew the time-to-live")
			}

			// Full snapshot (savepoint) leaves expired entries out.
			setKey(b, "b")
			write.Update(2)
			setKey(b, "c")
			write.Update(3)
			advance(5 * time.Second)
			setKey(b, "d")
			write.Update(4)          // expires at +27s
			advance(6 * time.Second) // b, c expired; d alive
			st := storage.NewMemory("ttl")
			h := snapshot(t, b, st, 1, checkpoint.KindSavepoint)
			var entries []string
			rc, _ := st.OpenStream(context.Background(), h.Stream)
			if err := state.WalkKeyGroups(rc, h, full(), func(kg int, name string, kind byte, key, val []byte) error {
				entries = append(entries, name+"/"+string(key))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			sort.Strings(entries)
			if got := strings.Join(entries, ","); got != "w/d" {
				t.Fatalf("savepoint holds %s, want w/d (expired entries left out)", got)
			}
			// A restore does not bring expired entries back, and a TTL
			// state restores only as a TTL state.
			b2 := restore(t, k, full(), st, h)
			if _, err := state.GetValueState[string, int](b2, "w", state.CodecFor[int]()); err == nil {
				t.Fatal("a TTL state restored as a state without TTL")
			}
		})
	}
}

func TestConformanceTTLIncrementalCleanup(t *testing.T) {
	for _, k := range allKinds() {
		t.Run(k.name, func(t *testing.T) {
			var nowMs atomic.Int64
			nowMs.Store(1_700_000_000_000)
			clock := func() time.Time { return time.UnixMilli(nowMs.Load()) }
			b := k.new(t, full())
			v, err := state.GetValueState[string, int](b, "v", state.CodecFor[int](), state.WithTTL(state.TTLConfig{TTL: time.Second, Clock: clock}))
			if err != nil {
				t.Fatal(err)
			}
			old := keys(500)
			for _, key := range old {
				setKey(b, key)
				v.Update(1)
			}
			nowMs.Add(2000) // all expired, never read again
			// Accesses to one other key drive the cleanup.
			setKey(b, "hot")
			for range 5000 {
				v.Update(2)
			}
			st := storage.NewMemory("c")
			// A native snapshot copies files as they are: count what is
			// left through a canonical savepoint taken with the clock far
			// behind, so that expiry does not filter anything.
			nowMs.Add(-2000)
			h := snapshot(t, b, st, 1, checkpoint.KindSavepoint)
			n := 0
			rc, _ := st.OpenStream(context.Background(), h.Stream)
			if err := state.WalkKeyGroups(rc, h, full(), func(int, string, byte, []byte, []byte) error { n++; return nil }); err != nil {
				t.Fatal(err)
			}
			if n > 1 {
				t.Fatalf("%d entries left after the incremental cleanup, want only the hot key", n)
			}
		})
	}
}

// TestIncrementalReusesFiles: a checkpoint after a small change uploads
// only the new SSTs; unchanged files are referenced, not uploaded again.
func TestIncrementalReusesFiles(t *testing.T) {
	k := pebbleKind(false, nil)
	b := k.new(t, full())
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
	b2 := restore(t, k, full(), st, h2)
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
	k := pebbleKind(false, nil)
	b := k.new(t, full())
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
	b2 := k.new(t, full())
	err = b2.RestoreHandles([]checkpoint.KeyedStateHandle{h}, st.Opener(context.Background()))
	if err == nil || !strings.Contains(err.Error(), "corrupted") || !strings.Contains(err.Error(), ".sst") {
		t.Fatalf("restore from a corrupted shared file: %v", err)
	}
	os.Remove(sst)
	b3 := k.new(t, full())
	if err := b3.RestoreHandles([]checkpoint.KeyedStateHandle{h}, st.Opener(context.Background())); err == nil || !strings.Contains(err.Error(), ".sst") {
		t.Fatalf("restore with a missing shared file: %v", err)
	}
	// A heap backend refuses a native snapshot with a clear error.
	if err := heapKind().new(t, full()).RestoreHandles([]checkpoint.KeyedStateHandle{h}, st.Opener(context.Background())); err == nil || !strings.Contains(err.Error(), "savepoint") {
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
	k := pebbleKind(false, fs)
	b := k.new(t, full())
	v, _ := state.GetValueState[string, int](b, "v", state.CodecFor[int]())
	setKey(b, "a")
	v.Update(1)
	failing.Store(true)
	snap, err := b.SnapshotFor(1, checkpoint.KindCheckpoint)
	if err == nil {
		_, err = writeSnapshot(snap, storage.NewMemory("f1"), 1, "x")
		snap.Release()
	}
	if err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("snapshot with a failing disk: %v", err)
	}
	failing.Store(false)
	v.Update(2)
	st := storage.NewMemory("f")
	h := snapshot(t, b, st, 2, checkpoint.KindCheckpoint)
	b2 := restore(t, k, full(), st, h)
	v2, _ := state.GetValueState[string, int](b2, "v", state.CodecFor[int]())
	setKey(b2, "a")
	if got, _ := v2.Value(); got != 2 {
		t.Fatalf("after a failed snapshot, the next one restored %d, want 2", got)
	}
}

// ReadNative reads a native snapshot without the Go types (weir state dump).
func TestReadNative(t *testing.T) {
	k := pebbleKind(false, nil)
	b := k.new(t, full())
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
		if want := state.KeyGroupOf(state.HasherFor(c)(string(key)), maxP); want != kg {
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

// The state a snapshot holds is the state when it was taken, whatever the
// task writes while the snapshot is written (pebble makes its checkpoint
// after the synchronous part and rewinds what was written meanwhile), for
// every backend and snapshot kind.
func TestSnapshotIsolatedFromLaterWrites(t *testing.T) {
	for _, k := range allKinds() {
		for _, kind := range []checkpoint.Kind{checkpoint.KindCheckpoint, checkpoint.KindSavepoint} {
			t.Run(fmt.Sprintf("%s/%s", k.name, kind), func(t *testing.T) {
				b := k.new(t, full())
				v, _ := state.GetValueState[string, int](b, "v", state.CodecFor[int]())
				ks := keys(2000)
				for i, key := range ks[:1000] {
					setKey(b, key)
					v.Update(i)
				}
				st := storage.NewMemory("iso")
				s, err := b.SnapshotFor(1, kind)
				if err != nil {
					t.Fatal(err)
				}
				// After the barrier: overwrite, delete and add keys.
				for i, key := range ks {
					setKey(b, key)
					switch {
					case i < 300:
						v.Update(-i)
					case i < 600:
						v.Clear()
					default:
						v.Update(1_000_000 + i)
					}
				}
				h, err := writeSnapshot(s, st, 1, "iso")
				s.Release()
				if err != nil {
					t.Fatal(err)
				}
				h.Range = full()
				b.NotifyCheckpointComplete(1)
				r := restore(t, k, full(), st, h)
				rv, _ := state.GetValueState[string, int](r, "v", state.CodecFor[int]())
				for i, key := range ks {
					setKey(r, key)
					got, ok := rv.Value()
					if i < 1000 && (!ok || got != i) || i >= 1000 && ok {
						t.Fatalf("key %s restored as %d %v, want the value at the snapshot", key, got, ok)
					}
				}
				// And the live state kept the later writes.
				setKey(b, ks[1500])
				if got, _ := v.Value(); got != 1_001_500 {
					t.Fatalf("live state lost a write made during the snapshot: %d", got)
				}
				// A second checkpoint after these writes holds them.
				h2 := snapshot(t, b, st, 2, checkpoint.KindCheckpoint)
				r2 := restore(t, k, full(), st, h2)
				rv2, _ := state.GetValueState[string, int](r2, "v", state.CodecFor[int]())
				setKey(r2, ks[100])
				if got, _ := rv2.Value(); got != -100 {
					t.Fatalf("second checkpoint: key %s = %d, want -100", ks[100], got)
				}
				setKey(r2, ks[400])
				if _, ok := rv2.Value(); ok {
					t.Fatal("second checkpoint: a cleared key came back")
				}
			})
		}
	}
}
