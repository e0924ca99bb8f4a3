package state

import (
	"hash/maphash"
	"math/bits"
	"sync/atomic"
)

// A hash trie is the storage of a heap MapState's map beyond its inline
// entries (see userMap): a persistent hash array mapped trie in the
// compressed layout of Steindorfer and Vinju's CHAMP, with the ownership
// tokens of Clojure's transients.
//
// A node covers 5 bits of a key's 64-bit hash (the root bits 0-4, its
// children bits 5-9, ...) and holds two bitmaps over those 32 positions:
// dataMap marks the positions that hold one entry, inline in entries (in
// position order), nodeMap those that hold a child node, in nodes. Below
// the 13 levels that use up the hash, a node is a collision bucket: its
// entries share the whole hash and are scanned linearly. A lookup reads
// at most one node per level, so it is O(log32 n) with no rehashing.
//
// Every node carries the edit token of the map version allowed to mutate
// it in place. A write walks from the root to the entry and replaces each
// node of another token by a copy with its own token (path copying: at
// most one node per level, each at most 32 entries and 32 pointers), then
// mutates that path in place. Copying a map for a new version copies the
// root pointer and takes a fresh token (newEditToken): the versions share
// every node, and each copies lazily, path by path, only what it writes.
// So the first write after a snapshot costs O(log n), not O(n).
//
// The trie keeps one canonical shape per set of keys (a removal that
// leaves a child with a single entry and no children pulls the entry
// back up), so a map that shrinks does not keep a deep, sparse trie.
type trieNode[K comparable, V any] struct {
	edit    uint64
	dataMap uint32
	nodeMap uint32
	entries []mapEntry[K, V]
	nodes   []*trieNode[K, V]
}

// trieBits is the number of hash bits a level consumes; trieDepth hash
// bits are used in all, deeper nodes are collision buckets.
const (
	trieBits  = 5
	trieDepth = 64
)

// editTokens hands out the edit tokens of map versions: every version
// gets its own, never reused, so a node's token names the one version
// that may mutate it. Zero is nobody's token.
var editTokens atomic.Uint64

func newEditToken() uint64 { return editTokens.Add(1) }

func triePos(h uint64, shift uint) uint32 { return 1 << ((h >> shift) & 31) }

// index is the number of bits of m below bit: the index of that
// position's element in the compressed array.
func index(m, bit uint32) int { return bits.OnesCount32(m & (bit - 1)) }

// own returns n if token may mutate it, else a copy of n owned by token.
func (n *trieNode[K, V]) own(token uint64) *trieNode[K, V] {
	if n.edit == token {
		return n
	}
	return n.copyFor(token)
}

func (n *trieNode[K, V]) copyFor(token uint64) *trieNode[K, V] {
	c := &trieNode[K, V]{edit: token, dataMap: n.dataMap, nodeMap: n.nodeMap}
	if len(n.entries) > 0 {
		// One spare slot: the write that copies the node is often an
		// insertion into it.
		c.entries = make([]mapEntry[K, V], len(n.entries), len(n.entries)+1)
		copy(c.entries, n.entries)
	}
	if len(n.nodes) > 0 {
		c.nodes = append([]*trieNode[K, V](nil), n.nodes...)
	}
	return c
}

// trieGet returns the value of k (of hash h) in the trie under root.
func trieGet[K comparable, V any](root *trieNode[K, V], k K, h uint64) (V, bool) {
	n := root
	for shift := uint(0); n != nil; shift += trieBits {
		if shift >= trieDepth {
			for i := range n.entries {
				if n.entries[i].k == k {
					return n.entries[i].v, true
				}
			}
			break
		}
		bit := triePos(h, shift)
		if n.dataMap&bit != 0 {
			if e := &n.entries[index(n.dataMap, bit)]; e.k == k {
				return e.v, true
			}
			break
		}
		if n.nodeMap&bit == 0 {
			break
		}
		n = n.nodes[index(n.nodeMap, bit)]
	}
	var zero V
	return zero, false
}

// triePut sets k (of hash h) to v in the trie under *root, mutating the
// nodes token owns and copying the others on the path; hash hashes the
// key of an entry that must move one level down. It reports whether k
// is a new key.
func triePut[K comparable, V any](root **trieNode[K, V], k K, h uint64, v V, token uint64, hash func(K) uint64) bool {
	if *root == nil {
		*root = &trieNode[K, V]{edit: token, dataMap: triePos(h, 0), entries: []mapEntry[K, V]{{k, v}}}
		return true
	}
	p := root
	for shift := uint(0); ; shift += trieBits {
		n := (*p).own(token)
		*p = n
		if shift >= trieDepth {
			for i := range n.entries {
				if n.entries[i].k == k {
					n.entries[i].v = v
					return false
				}
			}
			n.entries = append(n.entries, mapEntry[K, V]{k, v})
			return true
		}
		bit := triePos(h, shift)
		if n.dataMap&bit != 0 {
			i := index(n.dataMap, bit)
			e := n.entries[i]
			if e.k == k {
				n.entries[i].v = v
				return false
			}
			// Two keys at one position: both move into a new child.
			n.removeEntry(i, bit)
			n.insertNode(bit, triePair(e, hash(e.k), mapEntry[K, V]{k, v}, h, shift+trieBits, token))
			return true
		}
		if n.nodeMap&bit != 0 {
			p = &n.nodes[index(n.nodeMap, bit)]
			continue
		}
		n.insertEntry(bit, mapEntry[K, V]{k, v})
		return true
	}
}

// insertEntry puts e at position bit, which holds nothing.
func (n *trieNode[K, V]) insertEntry(bit uint32, e mapEntry[K, V]) {
	i := index(n.dataMap, bit)
	n.entries = append(n.entries, mapEntry[K, V]{})
	copy(n.entries[i+1:], n.entries[i:])
	n.entries[i] = e
	n.dataMap |= bit
}

// removeEntry removes entries[i], at position bit.
func (n *trieNode[K, V]) removeEntry(i int, bit uint32) {
	last := len(n.entries) - 1
	copy(n.entries[i:], n.entries[i+1:])
	n.entries[last] = mapEntry[K, V]{} // drop the references it holds
	n.entries = n.entries[:last]
	n.dataMap &^= bit
}

// insertNode puts child at position bit, which holds nothing.
func (n *trieNode[K, V]) insertNode(bit uint32, child *trieNode[K, V]) {
	j := index(n.nodeMap, bit)
	n.nodes = append(n.nodes, nil)
	copy(n.nodes[j+1:], n.nodes[j:])
	n.nodes[j] = child
	n.nodeMap |= bit
}

// removeNode removes nodes[j], at position bit.
func (n *trieNode[K, V]) removeNode(j int, bit uint32) {
	last := len(n.nodes) - 1
	copy(n.nodes[j:], n.nodes[j+1:])
	n.nodes[last] = nil
	n.nodes = n.nodes[:last]
	n.nodeMap &^= bit
}

// triePair returns a node at shift holding a and b (of hashes ha and hb),
// through as many single-child nodes as their hashes share bits.
func triePair[K comparable, V any](a mapEntry[K, V], ha uint64, b mapEntry[K, V], hb uint64, shift uint, token uint64) *trieNode[K, V] {
	if shift >= trieDepth {
		return &trieNode[K, V]{edit: token, entries: []mapEntry[K, V]{a, b}}
	}
	ba, bb := triePos(ha, shift), triePos(hb, shift)
	if ba == bb {
		return &trieNode[K, V]{edit: token, nodeMap: ba, nodes: []*trieNode[K, V]{triePair(a, ha, b, hb, shift+trieBits, token)}}
	}
	if ba > bb {
		a, b = b, a
	}
	return &trieNode[K, V]{edit: token, dataMap: ba | bb, entries: []mapEntry[K, V]{a, b}}
}

// trieRemove removes k (of hash h) from the trie under n, at shift, and
// returns the new node (n, mutated if token owns it, else a copy; nothing
// is copied if k is absent) and whether k was there.
func trieRemove[K comparable, V any](n *trieNode[K, V], k K, h uint64, shift uint, token uint64) (*trieNode[K, V], bool) {
	if shift >= trieDepth {
		for i := range n.entries {
			if n.entries[i].k == k {
				n = n.own(token)
				last := len(n.entries) - 1
				n.entries[i] = n.entries[last]
				n.entries[last] = mapEntry[K, V]{}
				n.entries = n.entries[:last]
				return n, true
			}
		}
		return n, false
	}
	bit := triePos(h, shift)
	if n.dataMap&bit != 0 {
		i := index(n.dataMap, bit)
		if n.entries[i].k != k {
			return n, false
		}
		n = n.own(token)
		n.removeEntry(i, bit)
		return n, true
	}
	if n.nodeMap&bit == 0 {
		return n, false
	}
	j := index(n.nodeMap, bit)
	child, ok := trieRemove(n.nodes[j], k, h, shift+trieBits, token)
	if !ok {
		return n, false
	}
	n = n.own(token)
	if len(child.nodes) > 0 || len(child.entries) != 1 {
		n.nodes[j] = child
		return n, true
	}
	// The child holds one entry: it moves up into n (its hash has the
	// bits of the child's position), and the child goes.
	n.removeNode(j, bit)
	n.insertEntry(bit, child.entries[0])
	return n, true
}

// trieAll yields the entries of the trie under n (nil: none) until yield
// returns false, and reports whether it did not. It does not modify the
// trie, so it may run on any goroutine over nodes nobody mutates.
func trieAll[K comparable, V any](n *trieNode[K, V], yield func(K, V) bool) bool {
	if n == nil {
		return true
	}
	for i := range n.entries {
		if !yield(n.entries[i].k, n.entries[i].v) {
			return false
		}
	}
	for _, c := range n.nodes {
		if !trieAll(c, yield) {
			return false
		}
	}
	return true
}

// mapHashSeed seeds the hashes of map keys. They only place entries in
// the tries of this process (never in a snapshot), so a random seed keeps
// chosen keys from colliding on purpose.
var mapHashSeed = maphash.MakeSeed()

// hasherOf returns the hash of map keys of type UK for the trie:
// maphash.Comparable, or for the common key types a cheaper function
// (maphash.Comparable costs about 12 ns for an int64, the mix below 3).
// Neither allocates.
func hasherOf[UK comparable]() func(UK) uint64 {
	seed := maphash.Comparable(mapHashSeed, 0) // random bits for the integer mix
	var f any
	switch any(*new(UK)).(type) {
	case int64:
		f = func(k int64) uint64 { return mix64(uint64(k) ^ seed) }
	case int:
		f = func(k int) uint64 { return mix64(uint64(k) ^ seed) }
	case int32:
		f = func(k int32) uint64 { return mix64(uint64(k) ^ seed) }
	case uint64:
		f = func(k uint64) uint64 { return mix64(k ^ seed) }
	case uint32:
		f = func(k uint32) uint64 { return mix64(uint64(k) ^ seed) }
	case string:
		f = func(k string) uint64 { return maphash.String(mapHashSeed, k) }
	default:
		return func(k UK) uint64 { return maphash.Comparable(mapHashSeed, k) }
	}
	return f.(func(UK) uint64)
}

// mix64 is the finalizer of MurmurHash3's 64-bit variant: a bijection,
// so distinct integers never collide in all 64 bits.
func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}
