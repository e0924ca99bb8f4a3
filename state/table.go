package state

// kgTable holds one state's entries of one key group: an open-addressing
// hash table with linear probing, keyed by the key hash the backend already
// computed. Tables are copy-on-write: a table a live snapshot references is
// never mutated; the writer clones it first (see HeapKeyedBackend).
type kgTable[K comparable, V any] struct {
	owner  uint64 // backend epoch the table was created or cloned in
	hashes []uint32
	used   []bool
	keys   []K
	vals   []V
	n      int
	shift  uint32 // 32 - log2(len)
}

const minTableSize = 8

func newKGTable[K comparable, V any](owner uint64) *kgTable[K, V] {
	t := &kgTable[K, V]{owner: owner}
	t.alloc(minTableSize)
	return t
}

func (t *kgTable[K, V]) alloc(size int) {
	t.hashes = make([]uint32, size)
	t.used = make([]bool, size)
	t.keys = make([]K, size)
	t.vals = make([]V, size)
	t.shift = 32
	for s := size; s > 1; s >>= 1 {
		t.shift--
	}
}

// slot spreads the hash over the table with Fibonacci hashing, so the low
// bits (correlated with the key group) do not matter.
func (t *kgTable[K, V]) slot(h uint32) int { return int((h * 0x9E3779B1) >> t.shift) }

func (t *kgTable[K, V]) find(k K, h uint32) (int, bool) {
	mask := len(t.used) - 1
	for i := t.slot(h); ; i = (i + 1) & mask {
		if !t.used[i] {
			return i, false
		}
		if t.hashes[i] == h && t.keys[i] == k {
			return i, true
		}
	}
}

func (t *kgTable[K, V]) get(k K, h uint32) (V, bool) {
	i, ok := t.find(k, h)
	if !ok {
		var zero V
		return zero, false
	}
	return t.vals[i], true
}

func (t *kgTable[K, V]) put(k K, h uint32, v V) {
	i, ok := t.find(k, h)
	if ok {
		t.vals[i] = v
		return
	}
	if (t.n+1)*4 > len(t.used)*3 {
		t.grow()
		i, _ = t.find(k, h)
	}
	t.used[i], t.hashes[i], t.keys[i], t.vals[i] = true, h, k, v
	t.n++
}

func (t *kgTable[K, V]) grow() {
	old := *t
	t.alloc(len(old.used) * 2)
	t.n = 0
	for i, u := range old.used {
		if u {
			j, _ := t.find(old.keys[i], old.hashes[i])
			t.used[j], t.hashes[j], t.keys[j], t.vals[j] = true, old.hashes[i], old.keys[i], old.vals[i]
			t.n++
		}
	}
}

// remove deletes k with backward-shift deletion (no tombstones).
func (t *kgTable[K, V]) remove(k K, h uint32) {
	i, ok := t.find(k, h)
	if !ok {
		return
	}
	mask := len(t.used) - 1
	var zk K
	var zv V
	for {
		t.used[i], t.keys[i], t.vals[i] = false, zk, zv
		j := i
		for {
			j = (j + 1) & mask
			if !t.used[j] {
				t.n--
				return
			}
			home := t.slot(t.hashes[j])
			// Move j back into the hole at i unless its home lies in (i, j].
			if (i <= j && (home <= i || home > j)) || (i > j && home <= i && home > j) {
				t.used[i], t.hashes[i], t.keys[i], t.vals[i] = true, t.hashes[j], t.keys[j], t.vals[j]
				i = j
				break
			}
		}
	}
}

func (t *kgTable[K, V]) clone(owner uint64) *kgTable[K, V] {
	return &kgTable[K, V]{owner: owner, hashes: append([]uint32(nil), t.hashes...), used: append([]bool(nil), t.used...),
		keys: append([]K(nil), t.keys...), vals: append([]V(nil), t.vals...), n: t.n, shift: t.shift}
}
