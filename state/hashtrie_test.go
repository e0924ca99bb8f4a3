package state

import (
	"bytes"
	"fmt"
	"maps"
	"math/bits"
	"math/rand/v2"
	"testing"

	"github.com/weirstream/weir/checkpoint"
)

// trieHashes are the hashes the model tests run the trie with: the real
// one, and bad ones that force what a good hash makes rare (long shared
// prefixes, full 64-bit collisions).
var trieHashes = map[string]func(int64) uint64{
	"good": hasherOf[int64](),
	// Keys share the low 60 bits: every pair goes 12 levels down.
	"high-bits": func(k int64) uint64 { return uint64(k%13) << 60 },
	// Few distinct hashes: collision buckets at full depth.
	"collide": func(k int64) uint64 { return uint64(k % 3) },
	// Many keys per 5-bit position at every level, some collisions.
	"narrow": func(k int64) uint64 { return uint64(k%5) | uint64(k%7)<<5 | uint64(k%11)<<35 },
}

// version is one version of a map under test and what it must hold.
type version struct {
	u     *userMap[int64, int64]
	model map[int64]int64
}

// TestHashTrieAgainstMap runs random puts, removes and clones against Go
// maps: every version (a clone and the version it was cloned from, both
// written afterwards) must hold exactly its model's entries, and the
// tries must keep their structural invariants.
func TestHashTrieAgainstMap(t *testing.T) {
	for name, hash := range trieHashes {
		t.Run(name, func(t *testing.T) {
			for seed := range uint64(20) {
				rng := rand.New(rand.NewPCG(seed, 7))
				keys := int64(2 + rng.IntN(400))
				vs := []version{{u: newUserMap[int64, int64](1), model: map[int64]int64{}}}
				for op := range 3000 {
					i := rng.IntN(len(vs))
					v := &vs[i]
					k := rng.Int64N(keys)
					switch r := rng.IntN(100); {
					case r < 50:
						v.u.put(k, int64(op), hash)
						v.model[k] = int64(op)
					case r < 85:
						v.u.remove(k, hash)
						delete(v.model, k)
					case r < 97:
						got, ok := v.u.get(k, hash)
						want, wok := v.model[k]
						if got != want || ok != wok {
							t.Fatalf("seed %d op %d: get(%d) = %d, %v; want %d, %v", seed, op, k, got, ok, want, wok)
						}
					default:
						// A snapshot: the clone is the version written from
						// now on, the original stays (and is written too,
						// which only a persistent structure allows).
						vs = append(vs, version{u: v.u.clone(uint64(op)), model: maps.Clone(v.model)})
						if len(vs) > 6 {
							vs = vs[1:]
						}
					}
					if op%97 == 0 {
						for j := range vs {
							checkVersion(t, fmt.Sprintf("seed %d op %d version %d", seed, op, j), vs[j], hash)
						}
					}
				}
				for j := range vs {
					checkVersion(t, fmt.Sprintf("seed %d end version %d", seed, j), vs[j], hash)
				}
			}
		})
	}
}

func checkVersion(t *testing.T, where string, v version, hash func(int64) uint64) {
	t.Helper()
	if v.u.len() != len(v.model) {
		t.Fatalf("%s: len %d, model holds %d", where, v.u.len(), len(v.model))
	}
	got := map[int64]int64{}
	for k, x := range v.u.all {
		if _, dup := got[k]; dup {
			t.Fatalf("%s: all yields %d twice", where, k)
		}
		got[k] = x
	}
	if !maps.Equal(got, v.model) {
		t.Fatalf("%s: all yields %v, model %v", where, got, v.model)
	}
	for k, x := range v.model {
		if y, ok := v.u.get(k, hash); !ok || y != x {
			t.Fatalf("%s: get(%d) = %d, %v; want %d", where, k, y, ok, x)
		}
	}
	if v.u.root != nil {
		if n := checkTrieNode(t, where, v.u.root, 0, 0, hash, true); n != len(v.model) {
			t.Fatalf("%s: trie holds %d entries, model %d", where, n, len(v.model))
		}
	}
}

// checkTrieNode checks the invariants of the node at shift whose
// position bits above shift are prefix, and returns its entry count.
func checkTrieNode(t *testing.T, where string, n *trieNode[int64, int64], shift uint, prefix uint64, hash func(int64) uint64, root bool) int {
	t.Helper()
	low := uint64(1)<<min(shift, 63) - 1
	if shift >= 64 {
		low = ^uint64(0)
	}
	for _, e := range n.entries {
		if hash(e.k)&low != prefix {
			t.Fatalf("%s: key %d (hash %x) under prefix %x at shift %d", where, e.k, hash(e.k), prefix, shift)
		}
	}
	if shift >= trieDepth {
		if n.dataMap != 0 || n.nodeMap != 0 || len(n.nodes) != 0 || len(n.entries) < 2 {
			t.Fatalf("%s: collision bucket with maps %x/%x, %d nodes, %d entries", where, n.dataMap, n.nodeMap, len(n.nodes), len(n.entries))
		}
		return len(n.entries)
	}
	if n.dataMap&n.nodeMap != 0 || bits.OnesCount32(n.dataMap) != len(n.entries) || bits.OnesCount32(n.nodeMap) != len(n.nodes) {
		t.Fatalf("%s: node at shift %d: data %x, nodes %x, %d entries, %d children", where, shift, n.dataMap, n.nodeMap, len(n.entries), len(n.nodes))
	}
	if !root && len(n.nodes) == 0 && len(n.entries) < 2 {
		t.Fatalf("%s: node at shift %d holds %d entries and no children (not canonical)", where, shift, len(n.entries))
	}
	total := 0
	for i, e := range n.entries {
		if bit := triePos(hash(e.k), shift); n.dataMap&bit == 0 || index(n.dataMap, bit) != i {
			t.Fatalf("%s: key %d at index %d of a node at shift %d, position %x", where, e.k, i, shift, bit)
		}
		total++
	}
	j := 0
	for p := range uint64(32) {
		if n.nodeMap&(1<<p) == 0 {
			continue
		}
		total += checkTrieNode(t, where, n.nodes[j], shift+trieBits, prefix|p<<shift, hash, false)
		j++
	}
	return total
}

// A write into a clone copies one path: a bounded number of nodes,
// however many entries the map holds; and the original is unchanged.
func TestHashTrieCloneCopiesOnePath(t *testing.T) {
	hash := hasherOf[int64]()
	u := newUserMap[int64, int64](1)
	const n = 100_000
	for i := range int64(n) {
		u.put(i, i, hash)
	}
	for _, size := range []int{1, n / 2, n - 1} {
		k := int64(size)
		allocs := testing.AllocsPerRun(20, func() {
			c := u.clone(2)
			c.put(k, -1, hash)
		})
		// At most one node (and its two arrays) per level, 100k entries
		// take about 4 levels; the clone itself is one more.
		if allocs > 16 {
			t.Errorf("clone and put into %d entries: %v allocations", n, allocs)
		}
	}
	c := u.clone(2)
	c.remove(n+5, hash) // absent: nothing to copy
	if c.root != u.root {
		t.Error("removing an absent key copied the root")
	}
	c.put(3, -3, hash)
	c.remove(4, hash)
	if v, _ := u.get(3, hash); v != 3 {
		t.Errorf("original holds %d for 3 after a put into its clone", v)
	}
	if _, ok := u.get(4, hash); !ok || u.len() != n {
		t.Errorf("original lost 4 (or its count, %d) after a remove from its clone", u.len())
	}
	if v, _ := c.get(3, hash); v != -3 || c.len() != n-1 {
		t.Errorf("clone: 3 -> %d, %d entries", v, c.len())
	}
}

func TestMapHasherDoesNotAllocate(t *testing.T) {
	type pair struct {
		a int64
		b string
	}
	hi, hs, hp := hasherOf[int64](), hasherOf[string](), hasherOf[pair]()
	s := "some key of a map"
	var sink uint64
	if a := testing.AllocsPerRun(100, func() {
		sink += hi(12345) + hs(s) + hp(pair{7, s})
	}); a != 0 {
		t.Errorf("hashing map keys allocates %v times", a)
	}
	if hi(1) == hi(2) || hs("a") == hs("b") || hp(pair{1, "a"}) == hp(pair{1, "b"}) {
		t.Error("distinct keys hash alike")
	}
	_ = sink
}

// TestHeapMapIterateWhileWriting iterates a key's map through the
// MapState iterators while putting and removing, taking snapshots (so
// that writes clone the map) and restoring them, against a Go map. An
// iteration yields only entries present when they are yielded, with
// their current value, each once, and every entry present throughout.
func TestHeapMapIterateWhileWriting(t *testing.T) {
	for name, hash := range trieHashes {
		t.Run(name, func(t *testing.T) {
			for seed := range uint64(8) {
				testIterateWhileWriting(t, seed, hash)
			}
		})
	}
}

func testIterateWhileWriting(t *testing.T, seed uint64, hash func(int64) uint64) {
	rng := rand.New(rand.NewPCG(seed, 11))
	r := checkpoint.KeyGroupRange{Start: 0, End: 127}
	be := newBackend(r)
	ms, err := GetMapState[int64, int64, int64](be, "m", CodecFor[int64](), CodecFor[int64]())
	if err != nil {
		t.Fatal(err)
	}
	ms.(*heapMap[int64, int64, int64]).hash = hash
	models := map[int64]map[int64]int64{}
	model := func(key int64) map[int64]int64 {
		if models[key] == nil {
			models[key] = map[int64]int64{}
		}
		return models[key]
	}
	keys := int64(1 + rng.IntN(300))
	put := func(key, k, v int64) {
		be.SetCurrentKey(key)
		ms.Put(k, v)
		model(key)[k] = v
	}
	remove := func(key, k int64) {
		be.SetCurrentKey(key)
		ms.Remove(k)
		delete(model(key), k)
	}
	type pending struct {
		s      KeyedSnapshot
		models map[int64]map[int64]int64
	}
	var snaps []pending
	snapshot := func() {
		c := map[int64]map[int64]int64{}
		for key, m := range models {
			if len(m) > 0 {
				c[key] = maps.Clone(m)
			}
		}
		snaps = append(snaps, pending{be.Snapshot(), c})
	}
	for round := range 40 {
		for range rng.IntN(200) {
			key := int64(rng.IntN(3))
			if rng.IntN(4) == 0 {
				remove(key, rng.Int64N(keys))
			} else {
				put(key, rng.Int64N(keys), rng.Int64N(1000))
			}
		}
		if rng.IntN(3) == 0 {
			snapshot()
		}
		key := int64(rng.IntN(3))
		be.SetCurrentKey(key)
		start := maps.Clone(model(key))
		removed := map[int64]bool{}
		seen := map[int64]bool{}
		for k, v := range ms.All() {
			m := model(key)
			if want, ok := m[k]; !ok || want != v {
				t.Fatalf("seed %d round %d: All yields %d=%d, the map holds %d (%v)", seed, round, k, v, want, ok)
			}
			if seen[k] {
				t.Fatalf("seed %d round %d: All yields %d twice", seed, round, k)
			}
			seen[k] = true
			for range rng.IntN(3) {
				switch x := rng.IntN(10); {
				case x < 3:
					removed[k] = true
					remove(key, k)
				case x < 6:
					other := rng.Int64N(keys)
					removed[other] = true
					remove(key, other)
				case x < 8:
					put(key, rng.Int64N(keys), rng.Int64N(1000))
				case x < 9:
					put(key+1, rng.Int64N(keys), 1) // another key's map
				default:
					snapshot()
				}
				be.SetCurrentKey(key)
			}
		}
		for k := range start {
			if !removed[k] && !seen[k] {
				t.Fatalf("seed %d round %d: All skipped %d, present throughout", seed, round, k)
			}
		}
		if got := ms.Entries(); !maps.Equal(got, model(key)) && !(len(got) == 0 && len(model(key)) == 0) {
			t.Fatalf("seed %d round %d: Entries %v, want %v", seed, round, got, model(key))
		}
		// Write the oldest snapshot: it holds the maps as they were.
		if len(snaps) > 2 || round == 39 {
			for _, p := range snaps {
				checkMapSnapshot(t, p.s, r, p.models)
				p.s.Release()
			}
			snaps = snaps[:0]
		}
	}
}

// checkMapSnapshot restores s into a new backend and checks that state
// "m" holds models.
func checkMapSnapshot(t *testing.T, s KeyedSnapshot, r checkpoint.KeyGroupRange, models map[int64]map[int64]int64) {
	t.Helper()
	var buf bytes.Buffer
	offs, err := s.WriteKeyGroups(&buf)
	if err != nil {
		t.Fatal(err)
	}
	nb := newBackend(r)
	h := checkpoint.KeyedStateHandle{Range: r, Offsets: offs, Stream: checkpoint.StreamHandle{Size: int64(buf.Len())}}
	if err := nb.Restore(bytes.NewReader(buf.Bytes()), h); err != nil {
		t.Fatal(err)
	}
	ms, err := GetMapState[int64, int64, int64](nb, "m", CodecFor[int64](), CodecFor[int64]())
	if err != nil {
		t.Fatal(err)
	}
	for key := range int64(4) {
		nb.SetCurrentKey(key)
		got, want := ms.Entries(), models[key]
		if len(got) != len(want) || !maps.Equal(got, want) {
			t.Fatalf("snapshot restores key %d as %v, want %v", key, got, want)
		}
	}
}

// TestHeapMapSnapshotWhileWriting writes a snapshot on another goroutine
// while the task puts, removes and iterates into the maps it captured
// (run it with -race): the snapshot holds the maps as they were.
func TestHeapMapSnapshotWhileWriting(t *testing.T) {
	r := checkpoint.KeyGroupRange{Start: 0, End: 127}
	be := newBackend(r)
	ms, err := GetMapState[int64, int64, int64](be, "m", CodecFor[int64](), CodecFor[int64]())
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 3))
	models := map[int64]map[int64]int64{}
	for key := range int64(4) {
		models[key] = map[int64]int64{}
		be.SetCurrentKey(key)
		for i := range int64(2000 + 1000*key) {
			ms.Put(i, i)
			models[key][i] = i
		}
	}
	for round := range 3 {
		s := be.Snapshot()
		want := map[int64]map[int64]int64{}
		for key, m := range models {
			if len(m) > 0 {
				want[key] = maps.Clone(m)
			}
		}
		var buf bytes.Buffer
		done := make(chan error)
		var offs []int64
		go func() {
			var err error
			offs, err = s.WriteKeyGroups(&buf)
			done <- err
		}()
		for range 3000 {
			key := rng.Int64N(4)
			be.SetCurrentKey(key)
			k := rng.Int64N(5000)
			switch rng.IntN(4) {
			case 0:
				ms.Remove(k)
				delete(models[key], k)
			case 1:
				for range ms.All() {
					break
				}
			default:
				ms.Put(k, int64(round))
				models[key][k] = int64(round)
			}
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		s.Release()
		nb := newBackend(r)
		h := checkpoint.KeyedStateHandle{Range: r, Offsets: offs, Stream: checkpoint.StreamHandle{Size: int64(buf.Len())}}
		if err := nb.Restore(bytes.NewReader(buf.Bytes()), h); err != nil {
			t.Fatal(err)
		}
		rs, err := GetMapState[int64, int64, int64](nb, "m", CodecFor[int64](), CodecFor[int64]())
		if err != nil {
			t.Fatal(err)
		}
		for key := range int64(4) {
			nb.SetCurrentKey(key)
			if got := rs.Entries(); !maps.Equal(got, want[key]) {
				t.Fatalf("round %d: the snapshot holds %d entries for key %d, want %d", round, len(got), key, len(want[key]))
			}
		}
	}
}
