// Package statetest is the conformance suite of keyed state backends
// (state.KeyedBackend): every backend runs the same tests, with
//
//	func TestConformance(t *testing.T) { statetest.Run(t, myBackend) }
//
// They cover every kind of keyed state (value, list, map, reducing,
// aggregating, with and without a time-to-live) through snapshots and
// rescaling (1 → 3 → 2 subtasks), savepoints restored into the same and
// into other backends (SavepointsAcross), time-to-live expiry and cleanup,
// snapshots isolated from the writes that follow them, the state schema
// (a changed value or key type is a *state.SchemaError, migrating codecs
// migrate), registration errors, damaged or missing snapshot streams,
// timer queues (state.TimerService; skipped for a backend without them)
// and map and list states stored per entry, including snapshots of the
// format before them.
//
// Tests of what only one backend does (native files, injected disk
// faults) stay with that backend; the helpers here (Snapshot, Restore,
// SetKey, ...) serve them too.
package statetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/state"
	"github.com/weirstream/weir/storage"
)

// MaxParallelism is the max parallelism (number of key groups) of every
// backend the suite makes.
const MaxParallelism = 128

// Backend is a keyed state backend under test. Go functions cannot be
// generic values, so there is one constructor per key type the suite
// uses.
type Backend struct {
	// Name names the backend in subtest names.
	Name string
	// New returns an empty backend with string keys, encoded and hashed
	// by state.CodecFor[string]() and state.HasherFor of it, holding the
	// key groups r of MaxParallelism. It releases what the backend holds
	// (Close, directories) at t's cleanup.
	New func(t *testing.T, r checkpoint.KeyGroupRange) state.KeyedBackend[string]
	// NewInt64 is New with int64 keys (state.CodecFor[int64]()): a
	// snapshot of string keys restored into it is a changed key type.
	NewInt64 func(t *testing.T, r checkpoint.KeyGroupRange) state.KeyedBackend[int64]
	// Settle, if set, waits until the backend's background work (flushes,
	// compactions) for what was written so far is done: the per-entry
	// cost test counts the allocations of the whole process.
	Settle func(t *testing.T, kb state.KeyedBackend[string])
}

// Heap is the heap backend (state.HeapKeyedBackend): the reference the
// other backends exchange savepoints with.
func Heap() Backend {
	return Backend{
		Name: "heap",
		New: func(t *testing.T, r checkpoint.KeyGroupRange) state.KeyedBackend[string] {
			c := state.CodecFor[string]()
			return state.NewHeapKeyedBackend[string](c, state.HasherFor(c), MaxParallelism, r)
		},
		NewInt64: func(t *testing.T, r checkpoint.KeyGroupRange) state.KeyedBackend[int64] {
			c := state.CodecFor[int64]()
			return state.NewHeapKeyedBackend[int64](c, state.HasherFor(c), MaxParallelism, r)
		},
	}
}

// Run runs the whole suite against b, one subtest per test.
func Run(t *testing.T, b Backend) {
	if b.New == nil || b.NewInt64 == nil {
		t.Fatalf("statetest: backend %q needs New and NewInt64", b.Name)
	}
	t.Run("KindsSnapshotRescale", func(t *testing.T) { testKindsSnapshotRescale(t, b) })
	t.Run("Savepoint", func(t *testing.T) { testSavepoint(t, b, b) })
	t.Run("Registration", func(t *testing.T) { testRegistration(t, b) })
	t.Run("TTL", func(t *testing.T) { testTTL(t, b) })
	t.Run("TTLIncrementalCleanup", func(t *testing.T) { testTTLIncrementalCleanup(t, b) })
	for _, kind := range []checkpoint.Kind{checkpoint.KindCheckpoint, checkpoint.KindSavepoint} {
		t.Run("SnapshotIsolation/"+kind.String(), func(t *testing.T) { testSnapshotIsolation(t, b, kind) })
	}
	for _, kind := range []checkpoint.Kind{checkpoint.KindCheckpoint, checkpoint.KindSavepoint} {
		t.Run("Schema/"+kind.String(), func(t *testing.T) { testSchema(t, b, kind) })
	}
	t.Run("ChangedKeyType", func(t *testing.T) { testChangedKeyType(t, b) })
	t.Run("MigrationLargeKeyGroup", func(t *testing.T) { testMigrationLargeKeyGroup(t, b) })
	t.Run("DamagedStream", func(t *testing.T) { testDamagedStream(t, b) })
	runTimers(t, b)
	runCollections(t, b)
	runPerEntry(t, b)
}

// SavepointsAcross checks that a savepoint written by each backend
// restores into each other one (savepoints are in the canonical format,
// whatever the backend), for every ordered pair of distinct backends. Run
// covers a backend's own savepoints.
func SavepointsAcross(t *testing.T, backends ...Backend) {
	for _, from := range backends {
		for _, to := range backends {
			if from.Name == to.Name {
				continue
			}
			t.Run(from.Name+"->"+to.Name, func(t *testing.T) { testSavepoint(t, from, to) })
			t.Run("Timers/"+from.Name+"->"+to.Name, func(t *testing.T) { testTimersSavepoint(t, from, to) })
		}
	}
}

// FullRange is every key group of MaxParallelism.
func FullRange() checkpoint.KeyGroupRange {
	return checkpoint.KeyGroupRange{Start: 0, End: MaxParallelism - 1}
}

var stringHash = state.HasherFor(state.CodecFor[string]())

// SetKey scopes b's state accesses to key k.
func SetKey(b state.KeyedBackend[string], k string) { b.SetCurrentKeyHashed(k, stringHash(k)) }

// Owns tells whether key k belongs to the key groups r.
func Owns(r checkpoint.KeyGroupRange, k string) bool {
	return r.Contains(state.KeyGroupOf(stringHash(k), MaxParallelism))
}

// Keys returns n distinct keys, "key-0000" on.
func Keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("key-%04d", i)
	}
	return out
}

// Snapshot takes the snapshot of b for checkpoint id of the given kind and
// writes it into st, as the runtime does: the synchronous part, then the
// stream or handle, then the release.
func Snapshot[K comparable](t *testing.T, b state.KeyedBackend[K], st *storage.Storage, id checkpoint.ID, kind checkpoint.Kind) checkpoint.KeyedStateHandle {
	t.Helper()
	s, err := b.SnapshotFor(id, kind)
	if err != nil {
		t.Fatalf("snapshot %d: %v", id, err)
	}
	defer s.Release()
	h, err := WriteSnapshot(s, st, id, fmt.Sprintf("kg%d", b.KeyGroupRange().Start))
	if err != nil {
		t.Fatalf("write snapshot %d: %v", id, err)
	}
	h.Range = b.KeyGroupRange()
	return h
}

// WriteSnapshot writes s into st as stream name of checkpoint id: a
// key-group stream with the schema s records, or the handle a
// state.HandleWriter writes itself. The caller sets the handle's Range and
// releases s.
func WriteSnapshot(s state.KeyedSnapshot, st *storage.Storage, id checkpoint.ID, name string) (checkpoint.KeyedStateHandle, error) {
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

// Restore returns a new backend of b for the key groups r, restored from
// the handles that intersect r (the ones the runtime would give it).
func Restore(t *testing.T, b Backend, r checkpoint.KeyGroupRange, st *storage.Storage, hs ...checkpoint.KeyedStateHandle) state.KeyedBackend[string] {
	t.Helper()
	nb := b.New(t, r)
	if err := nb.RestoreHandles(Intersecting(r, hs), st.Opener(context.Background())); err != nil {
		t.Fatalf("restore %s into %s: %v", r, b.Name, err)
	}
	return nb
}

// Intersecting returns the handles whose key groups intersect r.
func Intersecting(r checkpoint.KeyGroupRange, hs []checkpoint.KeyedStateHandle) []checkpoint.KeyedStateHandle {
	var mine []checkpoint.KeyedStateHandle
	for _, h := range hs {
		if h.Range.Intersect(r).Len() > 0 {
			mine = append(mine, h)
		}
	}
	return mine
}

// must returns the state of a Get*State call, failing the test on its
// error.
func must[S any](t *testing.T) func(S, error) S {
	return func(s S, err error) S {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}
