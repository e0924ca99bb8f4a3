package state

import (
	"fmt"
	"sort"
	"sync/atomic"

	"github.com/weirstream/weir/checkpoint"
)

// HeapKeyedBackend keeps the keyed state of one operator in one subtask in
// memory, per state and per key group.
//
// Snapshots are copy-on-write at key-group granularity: Snapshot increments
// the backend's epoch and captures the current table of every (state, key
// group), which takes time proportional to the number of key groups and
// states, not to the state size. A write to a table created in an earlier
// epoch, while a snapshot is live, first clones that table; the snapshot
// goroutine only reads tables nobody mutates any more. Once every snapshot
// is released, writes mutate in place again. Map and list states go one
// level further, per entry: the clone of a key's map or list copies no
// entries (see collections.go), so no write after a snapshot copies more
// than O(log n) of a key's map, however large.
//
// Every method runs on the task goroutine; only a KeyedSnapshot's
// WriteKeyGroups and Release may run elsewhere. The backend is not safe for
// concurrent use.
//
// Every registered state is a keyedTable (kind, copy-on-write freeze,
// restore of one entry): value tables over per-key-group kgTables, map
// and list states (heapMap, heapList: a pointer per key to its collection,
// see collections.go), and timer queues (heapTimerQueue, per-key-group
// heaps). The snapshot format
// carries a kind byte per state (see doc.go).
type HeapKeyedBackend[K comparable] struct {
	keyCodec Codec[K]
	hash     HashFunc[K]
	maxP     int
	r        checkpoint.KeyGroupRange
	// keyID and keyVersion identify keyCodec (CodecIdentity).
	keyID      string
	keyVersion int

	kg      keyGrouper
	nGroups int

	curKey  K
	curHash uint32
	curKG   int // key group index relative to r.Start

	states map[string]keyedTable
	// restored holds entries of states not registered yet; they are
	// decoded when the state is registered (states may be created lazily
	// while processing) and written back unchanged by snapshots until then.
	restored map[string]*rawState
	// stored holds the schemas restored snapshots recorded for states not
	// registered yet, checked when they are registered.
	stored map[string]checkpoint.StateMeta

	epoch uint64
	live  atomic.Int64 // snapshots not yet released
}

// stateKind is the kind of a keyed state, written into snapshots so that a
// state restores only into a state of the same kind.
type stateKind byte

const (
	kindValue stateKind = 1
	// kindTimers is a timer queue (TimerService): its entries are the
	// timer's key and its timestamp and namespace (see doc.go).
	kindTimers stateKind = 5
	// kindList and kindMap are list and map states stored per element and
	// per entry (see collections.go).
	kindList stateKind = 2
	kindMap  stateKind = 3
	// Reserved for a later kind: kindReducing = 4.

	// kindValueTTL is a value state with a time-to-live: every value is
	// prefixed with its expiry (see TTLConfig).
	kindValueTTL stateKind = 6
)

func (k stateKind) String() string {
	switch k {
	case kindValue:
		return "value"
	case kindValueTTL:
		return "value-with-ttl"
	case kindTimers:
		return "timers"
	case kindList:
		return "list"
	case kindMap:
		return "map"
	}
	return fmt.Sprintf("kind %d", byte(k))
}

// keyedTable is one registered state, type-erased for snapshots.
type keyedTable interface {
	kind() stateKind
	// schema is the state's schema as snapshots record it.
	schema() checkpoint.StateMeta
	// useStored prepares restoreEntry for entries a snapshot recorded
	// with schema stored (zero: recorded none): a *SchemaError if the
	// state's codec cannot read them.
	useStored(stored checkpoint.StateMeta) error
	// frozen captures the current key group tables (under copy-on-write).
	frozen() frozenTable
	// reserve makes room for n more entries in key group kg (relative to
	// the range), before restoring them.
	reserve(kg, n int)
	// restoreEntry adds one entry of key group kg (relative to the range).
	restoreEntry(kg int, key, val []byte) error
	size() int
}

// frozenTable is an immutable view of one state, read by the snapshot
// goroutine.
type frozenTable interface {
	kind() stateKind
	// count is the number of entries of key group kg.
	count(kg int) int
	// appendEntries appends the length-prefixed key and value of every
	// entry of key group kg.
	appendEntries(dst []byte, kg int) []byte
}

// NewHeapKeyedBackend returns an empty backend for the key groups in r,
// which must lie in [0, maxParallelism). keyCodec and hash must be the ones
// the job routes records with (see HasherFor); the backend calls hash on the
// task goroutine only. Invalid arguments are a programming error and panic.
func NewHeapKeyedBackend[K comparable](keyCodec Codec[K], hash HashFunc[K], maxParallelism int, r checkpoint.KeyGroupRange) *HeapKeyedBackend[K] {
	if maxParallelism <= 0 || maxParallelism > 1<<31-1 || r.Start < 0 || r.End >= maxParallelism || r.Len() == 0 {
		panic(fmt.Sprintf("weir: bad keyed backend: key groups %s of max parallelism %d", r, maxParallelism))
	}
	keyID, keyVersion := CodecIdentity(keyCodec)
	return &HeapKeyedBackend[K]{keyCodec: keyCodec, hash: hash, maxP: maxParallelism, r: r, keyID: keyID, keyVersion: keyVersion,
		kg: newKeyGrouper(maxParallelism), nGroups: r.Len(), states: map[string]keyedTable{}, restored: map[string]*rawState{},
		stored: map[string]checkpoint.StateMeta{}, epoch: 1}
}

// KeyGroupRange is the range of key groups the backend holds.
func (b *HeapKeyedBackend[K]) KeyGroupRange() checkpoint.KeyGroupRange { return b.r }

// SetCurrentKey scopes every state access to k.
func (b *HeapKeyedBackend[K]) SetCurrentKey(k K) { b.SetCurrentKeyHashed(k, b.hash(k)) }

// SetCurrentKeyHashed is SetCurrentKey with the key's hash (from the
// backend's HashFunc) already known, as the keyBy partitioner computed it.
// A key outside the backend's key groups is a routing bug and panics.
func (b *HeapKeyedBackend[K]) SetCurrentKeyHashed(k K, hash uint32) {
	kg := b.kg.of(hash) - b.r.Start
	if uint(kg) >= uint(b.nGroups) {
		b.wrongKeyGroup(k, kg)
	}
	b.curKey, b.curHash, b.curKG = k, hash, kg
}

//go:noinline
func (b *HeapKeyedBackend[K]) wrongKeyGroup(k K, kg int) {
	panic(fmt.Sprintf("weir: key %v (key group %d) does not belong to this subtask's key groups %s", k, kg+b.r.Start, b.r))
}

// CurrentKey is the key state accesses are scoped to.
func (b *HeapKeyedBackend[K]) CurrentKey() K { return b.curKey }

// NumKeys is the number of keys with a value in state name (0 for a state
// not registered yet).
func (b *HeapKeyedBackend[K]) NumKeys(name string) int {
	if t, ok := b.states[name]; ok {
		return t.size()
	}
	return 0
}

// ValueState is a single value per key.
type ValueState[V any] interface {
	// Value returns the current key's value and whether it has one.
	Value() (V, bool)
	// Update sets the current key's value.
	Update(v V)
	// Clear removes the current key's value.
	Clear()
}

// valueTable is the storage of one ValueState: one kgTable per key group,
// nil until the key group gets its first entry.
type valueTable[K comparable, V any] struct {
	b     *HeapKeyedBackend[K]
	name  string
	codec Codec[V]
	k     stateKind
	meta  checkpoint.StateMeta
	// decode decodes restored values: codec.Decode, or a migration from
	// the codec the restored snapshot recorded, migrateFrom (see
	// useStored).
	decode      func([]byte) (V, error)
	migrateFrom string
	// ttl is set for a state with a time-to-live: snapshots leave
	// expired entries out.
	ttl    *ttlAccess[V]
	groups []*kgTable[K, V]
	// hint is the slot of the last key Value or Update found: a
	// read-modify-write of one key probes the table once. It is only a
	// hint, checked against the slot's key before use.
	hint int
	// cleanKG and cleanSlot are the cursor of the TTL incremental cleanup.
	cleanKG, cleanSlot int
}

// getHeapValueState registers the value state called name, or returns it
// if it is already registered. Registering a name again with another value
// type or codec, or under a name a restored snapshot holds as another kind
// of state or with a codec c cannot read, is an error. Entries restored
// before the registration are decoded with c here (migrated, if c reads
// the recorded codec as a MigratingCodec).
func getHeapValueState[K comparable, V any](b *HeapKeyedBackend[K], name string, c Codec[V]) (*valueTable[K, V], error) {
	return getHeapTable(b, name, c, kindValue, nil)
}

func getHeapTable[K comparable, V any](b *HeapKeyedBackend[K], name string, c Codec[V], kind stateKind, ttl *ttlAccess[V]) (*valueTable[K, V], error) {
	if t, ok := b.states[name]; ok {
		vt, ok := t.(*valueTable[K, V])
		if !ok {
			return nil, fmt.Errorf("state %q is already registered with another type (%T)", name, t)
		}
		if vt.k != kind {
			return nil, fmt.Errorf("state %q is already registered as %s state, not %s state", name, vt.k, kind)
		}
		if id, v := CodecIdentity(c); id != vt.meta.Codec || v != vt.meta.CodecVersion {
			return nil, fmt.Errorf("state %q is already registered with codec %s, not %s", name, codecRef(vt.meta.Codec, vt.meta.CodecVersion), codecRef(id, v))
		}
		return vt, nil
	}
	if m, ok := b.stored[name]; ok && m.Kind == kindTimers.String() {
		return nil, fmt.Errorf("state %q was checkpointed as a timer queue, cannot restore it as %s state", name, kind)
	}
	t := &valueTable[K, V]{b: b, name: name, codec: c, k: kind, ttl: ttl, groups: make([]*kgTable[K, V], b.nGroups),
		meta: stateMeta(name, kind, c, b.keyID, b.keyVersion)}
	if err := t.useStored(b.stored[name]); err != nil {
		return nil, err
	}
	if raw, ok := b.restored[name]; ok {
		if raw.k != kind {
			return nil, fmt.Errorf("state %q was checkpointed as %s state, cannot restore it as %s state", name, raw.k, kind)
		}
		for kg, entries := range raw.groups {
			if len(entries) > 0 {
				t.reserve(kg, len(entries))
			}
			for _, e := range entries {
				if err := t.restoreEntry(kg, e.key, e.val); err != nil {
					return nil, err
				}
			}
		}
		delete(b.restored, name)
	}
	delete(b.stored, name)
	b.states[name] = t
	return t, nil
}

func (t *valueTable[K, V]) kind() stateKind { return t.k }

func (t *valueTable[K, V]) schema() checkpoint.StateMeta { return t.meta }

func (t *valueTable[K, V]) useStored(stored checkpoint.StateMeta) error {
	dec, migrate, err := restoreDecoder(stored, t.meta, t.codec)
	if err != nil {
		return err
	}
	t.decode, t.migrateFrom = dec, ""
	if migrate {
		t.migrateFrom = codecRef(stored.Codec, stored.CodecVersion)
	}
	return nil
}

func (t *valueTable[K, V]) Value() (V, bool) {
	b := t.b
	if g := t.groups[b.curKG]; g != nil {
		if i, ok := g.find(b.curKey, b.curHash); ok {
			t.hint = i
			return g.slots[i].val, true
		}
	}
	var zero V
	return zero, false
}

func (t *valueTable[K, V]) Update(v V) {
	b := t.b
	g := t.groups[b.curKG]
	if g == nil || g.owner != b.epoch {
		g = t.writable(b.curKG)
	}
	if i := t.hint; uint(i) < uint(len(g.slots)) {
		if s := &g.slots[i]; s.used && s.hash == b.curHash && s.key == b.curKey {
			s.val = v
			return
		}
	}
	t.hint = g.put(b.curKey, b.curHash, v)
}

func (t *valueTable[K, V]) Clear() {
	b := t.b
	g := t.groups[b.curKG]
	if g == nil {
		return
	}
	if _, ok := g.find(b.curKey, b.curHash); !ok {
		return // nothing to remove: do not clone a frozen table for it
	}
	t.writable(b.curKG).remove(b.curKey, b.curHash)
}

// writable returns the table of key group kg, cloned first if a live
// snapshot may still read it.
//
// Invariant: a table whose owner is the current epoch was created or cloned
// after the last Snapshot, so no snapshot references it. A table of an
// older epoch may be referenced by a snapshot; if any snapshot is live it
// is cloned, otherwise (all released) it is adopted in place.
func (t *valueTable[K, V]) writable(kg int) *kgTable[K, V] {
	g := t.groups[kg]
	if g == nil {
		g = newKGTable[K, V](t.b.epoch)
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

func (t *valueTable[K, V]) size() int {
	n := 0
	for _, g := range t.groups {
		if g != nil {
			n += g.n
		}
	}
	return n
}

func (t *valueTable[K, V]) reserve(kg, n int) { t.writable(kg).reserve(n) }

func (t *valueTable[K, V]) restoreEntry(kg int, key, val []byte) error {
	b := t.b
	k, err := b.keyCodec.Decode(key)
	if err != nil {
		return fmt.Errorf("state %q, key group %d: bad key (encoded %x) for key codec %s: %w", t.name, kg+b.r.Start, key, b.keyID, err)
	}
	v, err := t.decode(val)
	if err != nil {
		if t.migrateFrom != "" {
			return fmt.Errorf("state %q, key group %d: cannot migrate a value from codec %s to %s: %w", t.name, kg+b.r.Start, t.migrateFrom, codecRef(t.meta.Codec, t.meta.CodecVersion), err)
		}
		return fmt.Errorf("state %q, key group %d: bad value for codec %s: %w", t.name, kg+b.r.Start, codecRef(t.meta.Codec, t.meta.CodecVersion), err)
	}
	h := b.hash(k)
	if got := KeyGroupOf(h, b.maxP); got != kg+b.r.Start {
		return wrongKeyGroupError(t.name, k, key, b.keyID, got, kg+b.r.Start)
	}
	t.writable(kg).put(k, h, v)
	return nil
}

type frozenValues[K comparable, V any] struct {
	keyCodec Codec[K]
	codec    Codec[V]
	k        stateKind
	ttl      *ttlAccess[V]
	now      int64 // expiry reference time of the snapshot (TTL states)
	groups   []*kgTable[K, V]
}

func (t *valueTable[K, V]) frozen() frozenTable {
	f := &frozenValues[K, V]{keyCodec: t.b.keyCodec, codec: t.codec, k: t.k, ttl: t.ttl, groups: append([]*kgTable[K, V](nil), t.groups...)}
	if t.ttl != nil {
		f.now = t.ttl.now()
	}
	return f
}

func (f *frozenValues[K, V]) kind() stateKind { return f.k }

func (f *frozenValues[K, V]) count(kg int) int {
	g := f.groups[kg]
	if g == nil {
		return 0
	}
	if f.ttl == nil {
		return g.n
	}
	n := 0
	for i := range g.slots {
		if s := &g.slots[i]; s.used && f.ttl.expiry(&s.val) > f.now {
			n++
		}
	}
	return n
}

func (f *frozenValues[K, V]) appendEntries(dst []byte, kg int) []byte {
	g := f.groups[kg]
	if g == nil {
		return dst
	}
	for i := range g.slots {
		s := &g.slots[i]
		if !s.used || f.ttl != nil && f.ttl.expiry(&s.val) <= f.now {
			continue
		}
		start := len(dst)
		dst = fixLength(f.keyCodec.Append(append(dst, 0), s.key), start)
		start = len(dst)
		dst = fixLength(f.codec.Append(append(dst, 0), s.val), start)
	}
	return dst
}

// rawState holds the entries of a restored state nobody registered yet, as
// they were read. It is immutable, so snapshots share it.
type rawState struct {
	k      stateKind
	groups [][]rawEntry // key group index (relative to the range) -> entries
}

type rawEntry struct{ key, val []byte }

func (r *rawState) kind() stateKind  { return r.k }
func (r *rawState) count(kg int) int { return len(r.groups[kg]) }
func (r *rawState) appendEntries(dst []byte, kg int) []byte {
	for _, e := range r.groups[kg] {
		dst = appendLengthPrefixed(dst, e.key)
		dst = appendLengthPrefixed(dst, e.val)
	}
	return dst
}

// Snapshot freezes the current state: the synchronous part of a
// checkpoint, to be called on the task goroutine between two records. It
// takes time proportional to the number of states and key groups; the
// returned snapshot is written by WriteKeyGroups, on any goroutine, while
// the task keeps updating state. Release it when done (written or aborted)
// so that writes stop copying.
func (b *HeapKeyedBackend[K]) Snapshot() KeyedSnapshot {
	b.live.Add(1)
	b.epoch++
	s := &heapSnapshot{release: b.releaseSnapshot, r: b.r}
	s.names = make([]string, 0, len(b.states)+len(b.restored))
	for name := range b.states {
		s.names = append(s.names, name)
	}
	for name := range b.restored {
		s.names = append(s.names, name)
	}
	sort.Strings(s.names)
	s.tables = make([]frozenTable, len(s.names))
	s.metas = make([]checkpoint.StateMeta, 0, len(s.names))
	for i, name := range s.names {
		if t, ok := b.states[name]; ok {
			s.tables[i] = t.frozen()
			s.metas = append(s.metas, t.schema())
		} else {
			s.tables[i] = b.restored[name]
			if m, ok := b.stored[name]; ok { // else restored from a snapshot without schema
				s.metas = append(s.metas, m)
			}
		}
	}
	return s
}

func (b *HeapKeyedBackend[K]) releaseSnapshot() { b.live.Add(-1) }
