package state

import (
	"fmt"
	"iter"

	"github.com/weirstream/weir/checkpoint"
)

// collTables is the per-key-group tables of a heap map or list state: per
// key a pointer to its collection C (*userMap or *userList).
type collTables[K comparable, C any] struct {
	b      *HeapKeyedBackend[K]
	groups []*kgTable[K, C]
	// hint is the slot where the current key was last found (a Get is
	// mostly followed by a Put of the same key), checked before use.
	hint int
}

// find returns the current key's slot in g (the table of its key group).
func (t *collTables[K, C]) find(g *kgTable[K, C]) (int, bool) {
	b := t.b
	if i := t.hint; uint(i) < uint(len(g.slots)) {
		if s := &g.slots[i]; s.used && s.hash == b.curHash && s.key == b.curKey {
			return i, true
		}
	}
	i, ok := g.find(b.curKey, b.curHash)
	if ok {
		t.hint = i
	}
	return i, ok
}

// writable returns the table of key group kg, cloned first if a live
// snapshot may still read it (see valueTable.writable). A clone copies the
// pointers, not the collections.
func (t *collTables[K, C]) writable(kg int) *kgTable[K, C] {
	g := t.groups[kg]
	if g == nil {
		g = newKGTable[K, C](t.b.epoch)
		t.groups[kg] = g
		return g
	}
	if g.owner != t.b.epoch {
		if t.b.live.Load() > 0 {
			g = g.clone(t.b.epoch)
			t.groups[kg] = g
		} else {
			g.owner = t.b.epoch
		}
	}
	return g
}

// cur returns the current key's collection.
func (t *collTables[K, C]) cur() (C, bool) {
	b := t.b
	if g := t.groups[b.curKG]; g != nil {
		if i, ok := t.find(g); ok {
			return g.slots[i].val, true
		}
	}
	var zero C
	return zero, false
}

func (t *collTables[K, C]) clearCurrent() {
	b := t.b
	g := t.groups[b.curKG]
	if g == nil {
		return
	}
	if _, ok := g.find(b.curKey, b.curHash); !ok {
		return
	}
	t.writable(b.curKG).remove(b.curKey, b.curHash)
}

func (t *collTables[K, C]) keys() int {
	n := 0
	for _, g := range t.groups {
		if g != nil {
			n += g.n
		}
	}
	return n
}

// decodeKey decodes a restored key of key group kg (relative) and checks
// that it belongs there.
func (t *collTables[K, C]) decodeKey(name string, kg int, key []byte) (K, uint32, error) {
	b := t.b
	k, err := b.keyCodec.Decode(key)
	if err != nil {
		return k, 0, fmt.Errorf("state %q, key group %d: bad key (encoded %x) for key codec %s: %w", name, kg+b.r.Start, key, b.keyID, err)
	}
	h := b.hash(k)
	if got := KeyGroupOf(h, b.maxP); got != kg+b.r.Start {
		return k, 0, wrongKeyGroupError(name, k, key, b.keyID, got, kg+b.r.Start)
	}
	return k, h, nil
}

// userMap is one key's map, stamped with the epoch it was created or
// cloned in: a map of an older epoch may be read by a live snapshot and
// is cloned before a write. Up to smallMap entries live inline, in the
// same allocation (most keys of a window operator hold one to a few
// windows, and a lookup then touches one cache line or two instead of a
// Go map's header and group); a larger map moves to a hash trie for good
// (see hashtrie.go), whose nodes the clones share: a clone copies the
// root pointer and takes a fresh edit token, and each version copies a
// node (one path, O(log n)) the first time it writes into it. So the
// first write into a key's map after a snapshot costs about what any
// write costs, however large the map.
//
// No Go map tier sits between the two: measured without the backend
// (BenchmarkHashTrieVsMap, on a loaded 2-core machine), Get and Put of
// the trie cost what a Go map's do at 10 to 1k entries (20-60 ns), so a
// Go map there would buy nothing and bring back a copy of up to its size.
// Only large maps pay for the trie: at 100k entries it costs 3-6 times a
// Go map's Get and Put (a miss or two per level, about 4 levels, against
// one or two), the price of the O(log n) first write after a snapshot.
type userMap[UK comparable, UV any] struct {
	owner uint64
	n     int // entries (in small while root is nil)
	small [smallMap]mapEntry[UK, UV]
	root  *trieNode[UK, UV]
	// token is the edit token of this version: it mutates the trie
	// nodes that carry it in place and copies the others.
	token uint64
}

// smallMap holds a sliding window's five windows per key (Nexmark q5:
// 10 s windows every 2 s) and the one opened before the oldest is
// cleaned up: at 4, q5's keys moved into the trie and the query made
// about 340 K events per CPU-second, at 6 about 420 K (noisy machine); the
// tumbling window count of BenchmarkWindowCount10k is the same at 4, 6 or 8.
const smallMap = 6

type mapEntry[UK comparable, UV any] struct {
	k UK
	v UV
}

func newUserMap[UK comparable, UV any](owner uint64) *userMap[UK, UV] {
	return &userMap[UK, UV]{owner: owner}
}

// get returns the value of k; hash is the trie's hash of map keys, as
// for every method below.
func (u *userMap[UK, UV]) get(k UK, hash func(UK) uint64) (UV, bool) {
	if u.root != nil {
		return trieGet(u.root, k, hash(k))
	}
	for i := range u.n {
		if u.small[i].k == k {
			return u.small[i].v, true
		}
	}
	var zero UV
	return zero, false
}

func (u *userMap[UK, UV]) put(k UK, v UV, hash func(UK) uint64) {
	if u.root != nil {
		if triePut(&u.root, k, hash(k), v, u.token, hash) {
			u.n++
		}
		return
	}
	for i := range u.n {
		if u.small[i].k == k {
			u.small[i].v = v
			return
		}
	}
	if u.n < smallMap {
		u.small[u.n] = mapEntry[UK, UV]{k, v}
		u.n++
		return
	}
	if u.token == 0 {
		u.token = newEditToken()
	}
	for i := range u.n {
		triePut(&u.root, u.small[i].k, hash(u.small[i].k), u.small[i].v, u.token, hash)
	}
	triePut(&u.root, k, hash(k), v, u.token, hash)
	u.small, u.n = [smallMap]mapEntry[UK, UV]{}, u.n+1
}

func (u *userMap[UK, UV]) remove(k UK, hash func(UK) uint64) {
	if u.root != nil {
		if root, ok := trieRemove(u.root, k, hash(k), 0, u.token); ok {
			u.root = root
			u.n--
		}
		return
	}
	for i := range u.n {
		if u.small[i].k == k {
			u.n--
			u.small[i] = u.small[u.n]
			u.small[u.n] = mapEntry[UK, UV]{}
			return
		}
	}
}

func (u *userMap[UK, UV]) len() int { return u.n }

// all yields the entries as they are. The map must not change meanwhile:
// it serves snapshots (over a version nobody writes) and Entries; the
// iterators of MapState use heapMap.iterate.
func (u *userMap[UK, UV]) all(yield func(UK, UV) bool) {
	if u.root != nil {
		trieAll(u.root, yield)
		return
	}
	for i := range u.n {
		if !yield(u.small[i].k, u.small[i].v) {
			return
		}
	}
}

// clone returns a copy of u stamped with owner. The two share u's trie
// and each takes a fresh edit token, so that neither mutates a node the
// other reads. (The backend never writes u after cloning it, but a
// version written after its clone must not change the clone either.)
func (u *userMap[UK, UV]) clone(owner uint64) *userMap[UK, UV] {
	c := *u
	c.owner = owner
	c.token = 0
	if u.root != nil {
		u.token = newEditToken()
		c.token = newEditToken()
	}
	return &c
}

// heapMap is a MapState of the heap backend.
type heapMap[K, UK comparable, UV any] struct {
	collTables[K, *userMap[UK, UV]]
	name string
	meta checkpoint.StateMeta
	kc   Codec[UK]
	vc   Codec[UV]
	dec  mapDecoders[UK, UV]
	// hash hashes map keys for the tries (hasherOf).
	hash func(UK) uint64
	// writes counts the writes into the state's maps, so that an
	// iteration knows whether its map may have changed since it started.
	writes uint64
}

func getHeapMap[K, UK comparable, UV any](b *HeapKeyedBackend[K], name string, kc Codec[UK], vc Codec[UV]) (*heapMap[K, UK, UV], error) {
	meta := stateMeta(name, kindMap, Codec[map[UK]UV](mapCodec[UK, UV]{kc, vc}), b.keyID, b.keyVersion)
	if t, ok := b.states[name]; ok {
		m, ok := t.(*heapMap[K, UK, UV])
		if !ok {
			return nil, fmt.Errorf("state %q is already registered as %s state (%T), not as this map state", name, t.kind(), t)
		}
		return m, nil
	}
	if err := checkCollectionKind(name, kindMap, b.stored[name]); err != nil {
		return nil, err
	}
	m := &heapMap[K, UK, UV]{collTables: collTables[K, *userMap[UK, UV]]{b: b, groups: make([]*kgTable[K, *userMap[UK, UV]], b.nGroups)},
		name: name, meta: meta, kc: kc, vc: vc, hash: hasherOf[UK]()}
	if err := m.useStored(b.stored[name]); err != nil {
		return nil, err
	}
	if err := restoreRaw(b, name, kindMap, m); err != nil {
		return nil, err
	}
	delete(b.stored, name)
	b.states[name] = m
	return m, nil
}

// restoreRaw hands the restored entries of state name nobody registered
// yet to t, the state registered now: entries of its kind, or whole values
// of the format before per-entry storage.
func restoreRaw[K comparable](b *HeapKeyedBackend[K], name string, kind stateKind, t interface {
	keyedTable
	restoreOld(kg int, key, val []byte) error
}) error {
	raw, ok := b.restored[name]
	if !ok {
		return nil
	}
	restore := t.restoreEntry
	switch raw.k {
	case kind:
	case kindValue:
		restore = t.restoreOld
	default:
		return fmt.Errorf("state %q was checkpointed as %s state, cannot restore it as %s state", name, raw.k, kind)
	}
	for kg, entries := range raw.groups {
		for _, e := range entries {
			if err := restore(kg, e.key, e.val); err != nil {
				return err
			}
		}
	}
	delete(b.restored, name)
	return nil
}

func (m *heapMap[K, UK, UV]) kind() stateKind              { return kindMap }
func (m *heapMap[K, UK, UV]) schema() checkpoint.StateMeta { return m.meta }
func (m *heapMap[K, UK, UV]) size() int                    { return m.keys() }
func (m *heapMap[K, UK, UV]) reserve(kg, n int)            {}

func (m *heapMap[K, UK, UV]) useStored(stored checkpoint.StateMeta) error {
	d, err := newMapDecoders(stored, m.meta, m.kc, m.vc)
	if err == nil {
		m.dec = d
	}
	return err
}

// mutable returns the current key's map, ready for a write: created if
// create and it does not exist (else nil), cloned if a live snapshot may
// read it.
func (m *heapMap[K, UK, UV]) mutable(create bool) *userMap[UK, UV] {
	b := m.b
	m.writes++
	g := m.groups[b.curKG]
	i, ok := -1, false
	if g != nil {
		i, ok = m.find(g)
	}
	if !ok {
		if !create {
			return nil
		}
		um := newUserMap[UK, UV](b.epoch)
		m.writable(b.curKG).put(b.curKey, b.curHash, um)
		return um
	}
	um := g.slots[i].val
	if um.owner == b.epoch {
		return um
	}
	if b.live.Load() == 0 {
		// No snapshot reads um or its trie any more: adopt it, with its
		// token (iterate gives a map a fresh token while it iterates,
		// so nodes an iteration walks stay immutable all the same).
		um.owner = b.epoch
		return um
	}
	g = m.writable(b.curKG)
	um = um.clone(b.epoch)
	g.slots[i].val = um // a table clone keeps the slots
	return um
}

func (m *heapMap[K, UK, UV]) Get(k UK) (UV, bool) {
	if um, ok := m.cur(); ok {
		return um.get(k, m.hash)
	}
	var zero UV
	return zero, false
}

func (m *heapMap[K, UK, UV]) Contains(k UK) bool { _, ok := m.Get(k); return ok }

func (m *heapMap[K, UK, UV]) Put(k UK, v UV) { m.mutable(true).put(k, v, m.hash) }

func (m *heapMap[K, UK, UV]) Remove(k UK) {
	if !m.Contains(k) {
		return
	}
	um := m.mutable(false)
	um.remove(k, m.hash)
	if um.len() == 0 {
		m.clearCurrent()
	}
}

func (m *heapMap[K, UK, UV]) Clear() { m.writes++; m.clearCurrent() }

func (m *heapMap[K, UK, UV]) IsEmpty() bool { _, ok := m.cur(); return !ok }

func (m *heapMap[K, UK, UV]) Entries() map[UK]UV {
	um, ok := m.cur()
	if !ok {
		return nil
	}
	e := make(map[UK]UV, um.n)
	for k, v := range um.all {
		e[k] = v
	}
	return e
}

func (m *heapMap[K, UK, UV]) All() iter.Seq2[UK, UV] {
	um, ok := m.cur()
	kg, key, h := m.b.curKG, m.b.curKey, m.b.curHash
	return func(yield func(UK, UV) bool) {
		if ok {
			m.iterate(um, kg, key, h, yield)
		}
	}
}

func (m *heapMap[K, UK, UV]) Keys() iter.Seq[UK] {
	um, ok := m.cur()
	kg, key, h := m.b.curKG, m.b.curKey, m.b.curHash
	return func(yield func(UK) bool) {
		if ok {
			m.iterate(um, kg, key, h, func(k UK, _ UV) bool { return yield(k) })
		}
	}
}

func (m *heapMap[K, UK, UV]) Values() iter.Seq[UV] {
	um, ok := m.cur()
	kg, key, h := m.b.curKG, m.b.curKey, m.b.curHash
	return func(yield func(UV) bool) {
		if ok {
			m.iterate(um, kg, key, h, func(_ UK, v UV) bool { return yield(v) })
		}
	}
}

// iterate yields the entries of um, the map of key (of hash h, in key
// group kg) when the iteration was created, while the caller may put and
// remove meanwhile. Like a Go map's range, an entry removed before it is
// reached is not produced, one removed or moved meanwhile is not skipped,
// and one added may or may not be.
//
// It walks um as it was when the walk started: the inline entries from a
// copy, the trie from its root, after giving um a fresh edit token, so
// that writes during the walk copy the nodes it walks instead of
// mutating them. While nothing was written into the state, each entry is
// produced as the walk finds it; after a write, it is looked up again in
// the key's current map (which may be a clone of um, or gone).
func (m *heapMap[K, UK, UV]) iterate(um *userMap[UK, UV], kg int, key K, h uint32, yield func(UK, UV) bool) {
	w := m.writes
	visit := func(k UK, v UV) bool {
		if m.writes != w {
			var ok bool
			if v, ok = m.lookup(kg, key, h, k); !ok {
				return true
			}
		}
		return yield(k, v)
	}
	root := um.root
	if root == nil {
		small, n := um.small, um.n
		for i := range n {
			if !visit(small[i].k, small[i].v) {
				return
			}
		}
		return
	}
	before := um.token
	um.token = newEditToken()
	token := um.token
	trieAll(root, visit)
	if um.token == token && um.root == root {
		// Nothing was written into um during the walk (a write would
		// have copied the root): the nodes may be mutated again.
		um.token = before
	}
}

// lookup returns the value of map key mk of key (of hash h, in key group
// kg).
func (m *heapMap[K, UK, UV]) lookup(kg int, key K, h uint32, mk UK) (UV, bool) {
	if g := m.groups[kg]; g != nil {
		if i, ok := g.find(key, h); ok {
			return g.slots[i].val.get(mk, m.hash)
		}
	}
	var zero UV
	return zero, false
}

// put adds a restored entry to key k of key group kg (relative).
func (m *heapMap[K, UK, UV]) put(kg int, k K, h uint32, mk UK, mv UV) {
	g := m.writable(kg)
	i, ok := g.find(k, h)
	if !ok {
		um := newUserMap[UK, UV](m.b.epoch)
		um.put(mk, mv, m.hash)
		g.put(k, h, um)
		return
	}
	um := g.slots[i].val
	if um.owner != m.b.epoch {
		um = um.clone(m.b.epoch)
		g.slots[i].val = um
	}
	um.put(mk, mv, m.hash)
}

func (m *heapMap[K, UK, UV]) restoreEntry(kg int, key, val []byte) error {
	k, h, err := m.decodeKey(m.name, kg, key)
	if err != nil {
		return err
	}
	mkb, mvb, err := splitMapEntry(val)
	if err != nil {
		return fmt.Errorf("state %q, key group %d: %w", m.name, kg+m.b.r.Start, err)
	}
	mk, err := m.dec.key(mkb)
	if err != nil {
		return fmt.Errorf("state %q, key group %d: bad map key for codec %s: %w", m.name, kg+m.b.r.Start, refOf(m.kc), err)
	}
	mv, err := m.dec.value(mvb)
	if err != nil {
		return fmt.Errorf("state %q, key group %d: bad map value for codec %s: %w", m.name, kg+m.b.r.Start, refOf(m.vc), err)
	}
	m.put(kg, k, h, mk, mv)
	return nil
}

// restoreOld restores a key's whole map of the format before per-entry
// storage.
func (m *heapMap[K, UK, UV]) restoreOld(kg int, key, val []byte) error {
	k, h, err := m.decodeKey(m.name, kg, key)
	if err != nil {
		return err
	}
	mv, err := m.dec.old(val)
	if err != nil {
		return fmt.Errorf("state %q, key group %d: cannot convert a map checkpointed as one value: %w", m.name, kg+m.b.r.Start, err)
	}
	for mk, v := range mv {
		m.put(kg, k, h, mk, v)
	}
	return nil
}

type frozenMap[K, UK comparable, UV any] struct {
	keyCodec Codec[K]
	kc       Codec[UK]
	vc       Codec[UV]
	groups   []*kgTable[K, *userMap[UK, UV]]
}

func (m *heapMap[K, UK, UV]) frozen() frozenTable {
	return &frozenMap[K, UK, UV]{keyCodec: m.b.keyCodec, kc: m.kc, vc: m.vc, groups: append([]*kgTable[K, *userMap[UK, UV]](nil), m.groups...)}
}

func (f *frozenMap[K, UK, UV]) kind() stateKind { return kindMap }

func (f *frozenMap[K, UK, UV]) count(kg int) int {
	g := f.groups[kg]
	if g == nil {
		return 0
	}
	n := 0
	for i := range g.slots {
		if s := &g.slots[i]; s.used {
			n += s.val.len()
		}
	}
	return n
}

func (f *frozenMap[K, UK, UV]) appendEntries(dst []byte, kg int) []byte {
	g := f.groups[kg]
	if g == nil {
		return dst
	}
	for i := range g.slots {
		s := &g.slots[i]
		if !s.used {
			continue
		}
		for mk, mv := range s.val.all {
			start := len(dst)
			dst = fixLength(f.keyCodec.Append(append(dst, 0), s.key), start)
			start = len(dst)
			dst = append(dst, 0)
			mkStart := len(dst)
			dst = fixLength(f.kc.Append(append(dst, 0), mk), mkStart)
			dst = fixLength(f.vc.Append(dst, mv), start)
		}
	}
	return dst
}

// userList is one key's list, stamped like userMap.
type userList[T any] struct {
	owner uint64
	items []T
}

// heapList is a keyed ListState of the heap backend.
type heapList[K comparable, T any] struct {
	collTables[K, *userList[T]]
	name string
	meta checkpoint.StateMeta
	c    Codec[T]
	dec  listDecoders[T]
}

func getHeapList[K comparable, T any](b *HeapKeyedBackend[K], name string, c Codec[T]) (*heapList[K, T], error) {
	meta := stateMeta(name, kindList, Codec[[]T](sliceCodec[T]{c}), b.keyID, b.keyVersion)
	if t, ok := b.states[name]; ok {
		l, ok := t.(*heapList[K, T])
		if !ok {
			return nil, fmt.Errorf("state %q is already registered as %s state (%T), not as this list state", name, t.kind(), t)
		}
		return l, nil
	}
	if err := checkCollectionKind(name, kindList, b.stored[name]); err != nil {
		return nil, err
	}
	l := &heapList[K, T]{collTables: collTables[K, *userList[T]]{b: b, groups: make([]*kgTable[K, *userList[T]], b.nGroups)},
		name: name, meta: meta, c: c}
	if err := l.useStored(b.stored[name]); err != nil {
		return nil, err
	}
	if err := restoreRaw(b, name, kindList, l); err != nil {
		return nil, err
	}
	delete(b.stored, name)
	b.states[name] = l
	return l, nil
}

func (l *heapList[K, T]) kind() stateKind              { return kindList }
func (l *heapList[K, T]) schema() checkpoint.StateMeta { return l.meta }
func (l *heapList[K, T]) size() int                    { return l.keys() }
func (l *heapList[K, T]) reserve(kg, n int)            {}

func (l *heapList[K, T]) useStored(stored checkpoint.StateMeta) error {
	d, err := newListDecoders(stored, l.meta, l.c)
	if err == nil {
		l.dec = d
	}
	return err
}

// mutable returns the current key's list ready for a write (see
// heapMap.mutable). The snapshot holds the slice header it captured, so
// appending in place to a list of the current epoch is safe.
func (l *heapList[K, T]) mutable() *userList[T] {
	b := l.b
	g := l.groups[b.curKG]
	i, ok := -1, false
	if g != nil {
		i, ok = g.find(b.curKey, b.curHash)
	}
	if !ok {
		ul := &userList[T]{owner: b.epoch}
		l.writable(b.curKG).put(b.curKey, b.curHash, ul)
		return ul
	}
	ul := g.slots[i].val
	if ul.owner == b.epoch {
		return ul
	}
	if b.live.Load() == 0 {
		ul.owner = b.epoch
		return ul
	}
	// A new header over the same array: lists only ever grow in place
	// (Update and Clear start a new list), so appends land past the
	// length the snapshot's header reads, and the first write after a
	// snapshot copies nothing, however long the list.
	g = l.writable(b.curKG)
	ul = &userList[T]{owner: b.epoch, items: ul.items}
	g.slots[i].val = ul
	return ul
}

func (l *heapList[K, T]) Get() []T {
	if ul, ok := l.cur(); ok {
		return ul.items
	}
	return nil
}

func (l *heapList[K, T]) All() iter.Seq[T] {
	ul, ok := l.cur()
	return func(yield func(T) bool) {
		if !ok {
			return
		}
		for _, x := range ul.items {
			if !yield(x) {
				return
			}
		}
	}
}

func (l *heapList[K, T]) Add(x T) {
	ul := l.mutable()
	ul.items = append(ul.items, x)
}

func (l *heapList[K, T]) AddAll(xs []T) {
	if len(xs) == 0 {
		return
	}
	ul := l.mutable()
	ul.items = append(ul.items, xs...)
}

func (l *heapList[K, T]) Update(xs []T) {
	if len(xs) == 0 {
		l.clearCurrent()
		return
	}
	l.clearCurrent()
	l.AddAll(xs)
}

func (l *heapList[K, T]) Clear() { l.clearCurrent() }

// appendRestored appends restored elements to key k of key group kg.
func (l *heapList[K, T]) appendRestored(kg int, k K, h uint32, xs ...T) {
	g := l.writable(kg)
	i, ok := g.find(k, h)
	if !ok {
		g.put(k, h, &userList[T]{owner: l.b.epoch, items: xs})
		return
	}
	ul := g.slots[i].val
	if ul.owner != l.b.epoch {
		ul = &userList[T]{owner: l.b.epoch, items: append([]T(nil), ul.items...)}
		g.slots[i].val = ul
	}
	ul.items = append(ul.items, xs...)
}

func (l *heapList[K, T]) restoreEntry(kg int, key, val []byte) error {
	k, h, err := l.decodeKey(l.name, kg, key)
	if err != nil {
		return err
	}
	x, err := l.dec.elem(val)
	if err != nil {
		return fmt.Errorf("state %q, key group %d: bad list element for codec %s: %w", l.name, kg+l.b.r.Start, refOf(l.c), err)
	}
	l.appendRestored(kg, k, h, x)
	return nil
}

func (l *heapList[K, T]) restoreOld(kg int, key, val []byte) error {
	k, h, err := l.decodeKey(l.name, kg, key)
	if err != nil {
		return err
	}
	xs, err := l.dec.old(val)
	if err != nil {
		return fmt.Errorf("state %q, key group %d: cannot convert a list checkpointed as one value: %w", l.name, kg+l.b.r.Start, err)
	}
	if len(xs) > 0 {
		l.appendRestored(kg, k, h, xs...)
	}
	return nil
}

type frozenList[K comparable, T any] struct {
	keyCodec Codec[K]
	c        Codec[T]
	groups   []*kgTable[K, *userList[T]]
}

// frozen captures the key group tables. A list written after the
// snapshot gets a new header (see mutable) and grows past the length the
// snapshot's header holds, so the snapshot reads each list's items as
// they were.
func (l *heapList[K, T]) frozen() frozenTable {
	return &frozenList[K, T]{keyCodec: l.b.keyCodec, c: l.c, groups: append([]*kgTable[K, *userList[T]](nil), l.groups...)}
}

func (f *frozenList[K, T]) kind() stateKind { return kindList }

func (f *frozenList[K, T]) count(kg int) int {
	g := f.groups[kg]
	if g == nil {
		return 0
	}
	n := 0
	for i := range g.slots {
		if s := &g.slots[i]; s.used {
			n += len(s.val.items)
		}
	}
	return n
}

func (f *frozenList[K, T]) appendEntries(dst []byte, kg int) []byte {
	g := f.groups[kg]
	if g == nil {
		return dst
	}
	for i := range g.slots {
		s := &g.slots[i]
		if !s.used {
			continue
		}
		for _, x := range s.val.items {
			start := len(dst)
			dst = fixLength(f.keyCodec.Append(append(dst, 0), s.key), start)
			start = len(dst)
			dst = fixLength(f.c.Append(append(dst, 0), x), start)
		}
	}
	return dst
}
