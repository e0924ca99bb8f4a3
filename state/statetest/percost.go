package statetest

import (
	"fmt"
	"maps"
	"runtime"
	"slices"
	"testing"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/state"
)

// Per-entry costs: a write into a map or list of 100k entries costs what
// it costs into one of 10 (Go allocations and bytes allocated per
// operation, not time), with and without a snapshot being written; and
// the per-entry iterators stop when the loop breaks and tolerate removals
// of the entry being visited.

func runPerEntry(t *testing.T, b Backend) {
	t.Run("PerEntryCostFlat", func(t *testing.T) { testPerEntryCostFlat(t, b) })
	t.Run("CollectionsIteration", func(t *testing.T) { testCollectionsIteration(t, b) })
}

// opCost is what a batch of operations allocated, per operation.
type opCost struct{ allocs, bytes float64 }

func (c opCost) String() string { return fmt.Sprintf("%.1f allocs, %.0f B", c.allocs, c.bytes) }

// measure runs op n times and returns the Go allocations per run.
// Allocations of other goroutines (a backend's background work) count
// too, which is why the comparison below has slack.
func measure(n int, op func(i int)) opCost {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range n {
		op(i)
	}
	runtime.ReadMemStats(&after)
	return opCost{float64(after.Mallocs-before.Mallocs) / float64(n), float64(after.TotalAlloc-before.TotalAlloc) / float64(n)}
}

// measureMin runs measure three times and keeps the least allocations
// and bytes: a backend's background work (pebble flushing and compacting
// the 100k entries just written) lands in some runs and not others,
// while a write that copied or read the collection would cost its size
// in every run.
func measureMin(n int, op func(i int)) opCost {
	c := measure(n, op)
	for range 2 {
		d := measure(n, op)
		c.allocs, c.bytes = min(c.allocs, d.allocs), min(c.bytes, d.bytes)
	}
	return c
}

// flat fails unless big costs about what small costs: at most one more
// allocation per operation, and at most twice small's bytes plus 16 KiB.
// A write that copied or read the collection would cost at least its
// size, 100k entries are over 800 KB; the slack absorbs what a backend's
// background work (pebble's memtable and flushes) allocates meanwhile.
func flat(t *testing.T, what string, small, big opCost) {
	t.Helper()
	t.Logf("%s: 10 entries %v; 100k entries %v", what, small, big)
	if big.allocs > small.allocs+1 || big.bytes > 2*small.bytes+16<<10 {
		t.Errorf("%s is not flat: into 10 entries %v per op, into 100k %v per op", what, small, big)
	}
}

func testPerEntryCostFlat(t *testing.T, b Backend) {
	const big, ops = 100_000, 4000
	setup := func(size int) (state.KeyedBackend[string], state.MapState[int64, int64], state.ListState[int64]) {
		kb := b.New(t, FullRange())
		m := must[state.MapState[int64, int64]](t)(state.GetMapState[string, int64, int64](kb, "m", state.CodecFor[int64](), state.CodecFor[int64]()))
		l := must[state.ListState[int64]](t)(state.GetKeyedListState[string, int64](kb, "l", state.CodecFor[int64]()))
		SetKey(kb, "k")
		for i := range size {
			m.Put(int64(i), int64(i))
			l.Add(int64(i))
		}
		return kb, m, l
	}
	type costs struct{ put, insert, add, putSnap, addSnap opCost }
	run := func(size int) costs {
		kb, m, l := setup(size)
		if b.Settle != nil {
			b.Settle(t, kb)
		}
		var c costs
		// Overwrite existing entries (the map keeps its size).
		c.put = measureMin(ops, func(i int) { m.Put(int64(i*7919%size), int64(i)) })
		// Insert a new entry and remove it again.
		c.insert = measureMin(ops, func(i int) { m.Put(-1-int64(i), 1); m.Remove(-1 - int64(i)) })
		added := 0
		c.add = measureMin(ops, func(i int) { l.Add(int64(i)); added++ })
		// The first write of each collection after a snapshot, while the
		// snapshot is being written: copy-on-write must not copy the
		// collection.
		snap, err := kb.SnapshotFor(1, checkpoint.KindCheckpoint)
		if err != nil {
			t.Fatal(err)
		}
		c.putSnap = measure(1, func(int) { m.Put(0, -1) })
		c.addSnap = measure(1, func(int) { l.Add(-1) })
		snap.Release()
		// The snapshot read what it saw: the collections still hold their
		// entries.
		if got, want := len(l.Get()), size+added+1; got != want {
			t.Fatalf("list of %d entries after the test holds %d", want, got)
		}
		if v, _ := m.Get(0); v != -1 || len(m.Entries()) != size {
			t.Fatalf("map of %d entries: %d entries, m[0] = %d", size, len(m.Entries()), v)
		}
		return c
	}
	small, large := run(10), run(big)
	flat(t, "MapState.Put (overwrite)", small.put, large.put)
	flat(t, "MapState.Put+Remove (new entry)", small.insert, large.insert)
	flat(t, "ListState.Add", small.add, large.add)
	firstAfterSnapshot(t, "ListState.Add after a snapshot", small.addSnap, large.addSnap)
	firstAfterSnapshot(t, "MapState.Put after a snapshot", small.putSnap, large.putSnap)
}

// firstAfterSnapshot fails if the one write measured after a snapshot
// allocated 64 KiB more into the collection of 100k entries than into the
// one of 10: a copy of the collection is over 800 KB. (One operation is
// too few to compare allocation counts: a backend's background work
// allocates too.)
func firstAfterSnapshot(t *testing.T, what string, small, big opCost) {
	t.Helper()
	t.Logf("%s: 10 entries %v; 100k entries %v", what, small, big)
	if big.bytes > small.bytes+64<<10 {
		t.Errorf("%s copies the collection: into 10 entries %v, into 100k %v", what, small, big)
	}
}

// The iterators stop when the loop breaks, and removing the entry being
// visited (every one of them) leaves an empty map; a list's All stops
// when the loop breaks too.
func testCollectionsIteration(t *testing.T, b Backend) {
	kb := b.New(t, FullRange())
	s := registerColl(t, kb)
	SetKey(kb, "k")
	want := map[string]int{}
	for i := range 50 {
		k := fmt.Sprintf("e%02d", i)
		s.m.Put(k, i)
		want[k] = i
		s.l.Add(k)
	}
	n := 0
	for k, v := range s.m.All() {
		if want[k] != v {
			t.Fatalf("All gave %s=%d, want %d", k, v, want[k])
		}
		if n++; n == 3 {
			break
		}
	}
	n = 0
	for range s.m.Keys() {
		if n++; n == 3 {
			break
		}
	}
	for range s.m.Values() {
		if n++; n == 6 {
			break
		}
	}
	var first []string
	for x := range s.l.All() {
		if first = append(first, x); len(first) == 3 {
			break
		}
	}
	if !slices.Equal(first, []string{"e00", "e01", "e02"}) {
		t.Fatalf("list All, first three: %q", first)
	}
	// Remove every entry while iterating.
	seen := map[string]int{}
	for k, v := range s.m.All() {
		seen[k] = v
		s.m.Remove(k)
	}
	if !maps.Equal(seen, want) {
		t.Fatalf("All while removing visited %d of %d entries", len(seen), len(want))
	}
	if !s.m.IsEmpty() || len(s.m.Entries()) != 0 || s.m.Contains("e00") {
		t.Fatalf("map not empty after removing every entry: %v", s.m.Entries())
	}
	// Other keys' collections are not touched.
	SetKey(kb, "other")
	if !s.m.IsEmpty() || len(s.l.Get()) != 0 {
		t.Fatal("another key sees entries")
	}
	SetKey(kb, "k")
	if got := len(s.l.Get()); got != 50 {
		t.Fatalf("list holds %d, want 50", got)
	}
}
