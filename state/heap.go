package state

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/weirstream/weir/checkpoint"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// HeapKeyedBackend keeps the keyed state of one operator in one subtask in
// memory, per state and per key group.
//
// Snapshots are copy-on-write at key-group granularity: Snapshot increments
// the backend's epoch and captures the current table of every (state, key
// group), which takes time proportional to the number of key groups, not to
// the state size. A write to a table created in an earlier epoch, while a
// snapshot is live, first clones the table; the snapshot goroutine only
// reads tables nobody mutates any more. Once every snapshot is released,
// writes mutate in place again.
//
// All methods but a snapshot's WriteKeyGroups and Release run on the task
// goroutine. ListState, MapState, ReducingState and timers will be further
// kinds of keyedTable in the same registry.
type HeapKeyedBackend[K comparable] struct {
	keyCodec Codec[K]
	hash     HashFunc[K]
	maxP     int
	r        checkpoint.KeyGroupRange

	curKey  K
	curHash uint32
	curKG   int // key group index relative to r.Start

	states map[string]keyedTable
	// restored holds entries of states not registered yet, decoded when the
	// state is registered (state may be created lazily).
	restored map[string][][]rawEntry // name -> key group index -> entries

	epoch uint64
	live  atomic.Int64 // snapshots not yet released
}

type rawEntry struct{ key, val []byte }

// keyedTable is one registered state, type-erased for snapshots.
type keyedTable interface {
	// frozen captures the current key group tables (under copy-on-write).
	frozen() frozenTable
	restoreEntry(kg int, key, val []byte) error
	size() int
}

type frozenTable interface {
	// appendKeyGroup appends the encoded entries of key group kg and
	// returns the count.
	appendKeyGroup(dst []byte, kg int) ([]byte, int)
}

// NewHeapKeyedBackend returns an empty backend for the key groups in r.
func NewHeapKeyedBackend[K comparable](keyCodec Codec[K], hash HashFunc[K], maxParallelism int, r checkpoint.KeyGroupRange) *HeapKeyedBackend[K] {
	return &HeapKeyedBackend[K]{keyCodec: keyCodec, hash: hash, maxP: maxParallelism, r: r,
		states: map[string]keyedTable{}, restored: map[string][][]rawEntry{}, epoch: 1}
}

// KeyGroupRange is the range of key groups the backend holds.
func (b *HeapKeyedBackend[K]) KeyGroupRange() checkpoint.KeyGroupRange { return b.r }

// SetCurrentKey scopes every state access to k.
func (b *HeapKeyedBackend[K]) SetCurrentKey(k K) { b.SetCurrentKeyHashed(k, b.hash(k)) }

// SetCurrentKeyHashed is SetCurrentKey with the key's hash already known.
// A key outside the backend's key groups is a routing bug and panics.
func (b *HeapKeyedBackend[K]) SetCurrentKeyHashed(k K, hash uint32) {
	kg := int(hash%uint32(b.maxP)) - b.r.Start
	if kg < 0 || kg >= b.r.Len() {
		panic(fmt.Sprintf("weir: key %v (key group %d) does not belong to this subtask's key groups %s", k, kg+b.r.Start, b.r))
	}
	b.curKey, b.curHash, b.curKG = k, hash, kg
}

// CurrentKey is the key state accesses are scoped to.
func (b *HeapKeyedBackend[K]) CurrentKey() K { return b.curKey }

// NumKeys is the number of keys with a value in state name.
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

// valueTable is the storage of one ValueState.
type valueTable[K comparable, V any] struct {
	b      *HeapKeyedBackend[K]
	name   string
	codec  Codec[V]
	groups []*kgTable[K, V]
}

// GetValueState registers (or returns) the value state called name.
func GetValueState[K comparable, V any](b *HeapKeyedBackend[K], name string, c Codec[V]) (ValueState[V], error) {
	if t, ok := b.states[name]; ok {
		vt, ok := t.(*valueTable[K, V])
		if !ok {
			return nil, fmt.Errorf("state %q is already registered with another type (%T)", name, t)
		}
		return vt, nil
	}
	t := &valueTable[K, V]{b: b, name: name, codec: c, groups: make([]*kgTable[K, V], b.r.Len())}
	for kg, entries := range b.restored[name] {
		for _, e := range entries {
			if err := t.restoreEntry(kg, e.key, e.val); err != nil {
				return nil, err
			}
		}
	}
	delete(b.restored, name)
	b.states[name] = t
	return t, nil
}

func (t *valueTable[K, V]) Value() (V, bool) {
	g := t.groups[t.b.curKG]
	if g == nil {
		var zero V
		return zero, false
	}
	return g.get(t.b.curKey, t.b.curHash)
}

// writable returns the table of key group kg, cloned first if a live
// snapshot may still read it.
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

func (t *valueTable[K, V]) Update(v V) {
	t.writable(t.b.curKG).put(t.b.curKey, t.b.curHash, v)
}

func (t *valueTable[K, V]) Clear() {
	if t.groups[t.b.curKG] == nil {
		return
	}
	t.writable(t.b.curKG).remove(t.b.curKey, t.b.curHash)
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

func (t *valueTable[K, V]) restoreEntry(kg int, key, val []byte) error {
	k, err := t.b.keyCodec.Decode(key)
	if err != nil {
		return fmt.Errorf("state %q, key group %d: bad key: %w", t.name, kg+t.b.r.Start, err)
	}
	v, err := t.codec.Decode(val)
	if err != nil {
		return fmt.Errorf("state %q, key group %d: bad value: %w", t.name, kg+t.b.r.Start, err)
	}
	h := t.b.hash(k)
	if int(h%uint32(t.b.maxP)) != kg+t.b.r.Start {
		return fmt.Errorf("state %q: key %v belongs to key group %d, found in %d (wrong max parallelism or key codec?)", t.name, k, h%uint32(t.b.maxP), kg+t.b.r.Start)
	}
	t.writable(kg).put(k, h, v)
	return nil
}

type frozenValues[K comparable, V any] struct {
	keyCodec Codec[K]
	codec    Codec[V]
	groups   []*kgTable[K, V]
}

func (t *valueTable[K, V]) frozen() frozenTable {
	return &frozenValues[K, V]{keyCodec: t.b.keyCodec, codec: t.codec, groups: append([]*kgTable[K, V](nil), t.groups...)}
}

func (f *frozenValues[K, V]) appendKeyGroup(dst []byte, kg int) ([]byte, int) {
	g := f.groups[kg]
	if g == nil || g.n == 0 {
		return dst, 0
	}
	for i, u := range g.used {
		if !u {
			continue
		}
		start := len(dst)
		dst = prefixLength(f.keyCodec.Append(dst, g.keys[i]), start)
		start = len(dst)
		dst = prefixLength(f.codec.Append(dst, g.vals[i]), start)
	}
	return dst, g.n
}

// prefixLength inserts uvarint(len(dst[start:])) at start.
func prefixLength(dst []byte, start int) []byte {
	n := len(dst) - start
	var scratch [binary.MaxVarintLen64]byte
	l := binary.PutUvarint(scratch[:], uint64(n))
	dst = append(dst, scratch[:l]...)
	copy(dst[start+l:], dst[start:start+n])
	copy(dst[start:], scratch[:l])
	return dst
}

// KeyedSnapshot is a frozen view of keyed state.
type KeyedSnapshot interface {
	// WriteKeyGroups writes the snapshot stream (see the package doc) and
	// returns the offset of each key group. It may run on any goroutine.
	WriteKeyGroups(w io.Writer) ([]int64, error)
	// Release frees the view; safe to call more than once.
	Release()
}

type heapSnapshot struct {
	b      interface{ releaseSnapshot() }
	r      checkpoint.KeyGroupRange
	names  []string
	tables []frozenTable
	raw    map[string][][]rawEntry
	once   sync.Once
}

func (b *HeapKeyedBackend[K]) releaseSnapshot() { b.live.Add(-1) }

// Snapshot freezes the current state (the synchronous part of a checkpoint).
func (b *HeapKeyedBackend[K]) Snapshot() KeyedSnapshot {
	b.live.Add(1)
	b.epoch++
	s := &heapSnapshot{b: b, r: b.r, raw: map[string][][]rawEntry{}}
	for name := range b.states {
		s.names = append(s.names, name)
	}
	for name, raw := range b.restored {
		s.names = append(s.names, name)
		s.raw[name] = raw // immutable once restored
	}
	sort.Strings(s.names)
	for _, name := range s.names {
		if t, ok := b.states[name]; ok {
			s.tables = append(s.tables, t.frozen())
		} else {
			s.tables = append(s.tables, nil)
		}
	}
	return s
}

func (s *heapSnapshot) Release() { s.once.Do(s.b.releaseSnapshot) }

// WriteKeyGroups implements KeyedSnapshot.
func (s *heapSnapshot) WriteKeyGroups(w io.Writer) ([]int64, error) {
	bw := bufio.NewWriterSize(w, 256<<10)
	offsets := make([]int64, s.r.Len())
	var pos int64
	var sec, body []byte
	for kg := range s.r.Len() {
		offsets[kg] = pos
		sec = sec[:0]
		nStates := 0
		var parts []byte
		for i, name := range s.names {
			var n int
			body = body[:0]
			if t := s.tables[i]; t != nil {
				body, n = t.appendKeyGroup(body, kg)
			} else if raw := s.raw[name]; kg < len(raw) {
				for _, e := range raw[kg] {
					body = binary.AppendUvarint(body, uint64(len(e.key)))
					body = append(body, e.key...)
					body = binary.AppendUvarint(body, uint64(len(e.val)))
					body = append(body, e.val...)
				}
				n = len(raw[kg])
			}
			if n == 0 {
				continue
			}
			nStates++
			parts = binary.AppendUvarint(parts, uint64(len(name)))
			parts = append(parts, name...)
			parts = binary.AppendUvarint(parts, uint64(n))
			parts = append(parts, body...)
		}
		sec = binary.AppendUvarint(sec, uint64(nStates))
		sec = append(sec, parts...)
		sec = binary.BigEndian.AppendUint32(sec, crc32.Checksum(sec, castagnoli))
		if _, err := bw.Write(sec); err != nil {
			return nil, fmt.Errorf("cannot write key group %d: %w", kg+s.r.Start, err)
		}
		pos += int64(len(sec))
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("cannot write keyed state: %w", err)
	}
	return offsets, nil
}

// Restore adds the key groups of h that fall in the backend's range, read
// from r (the stream h names). Call it once per handle; a job restoring at
// another parallelism passes every handle whose range intersects.
func (b *HeapKeyedBackend[K]) Restore(r io.Reader, h checkpoint.KeyedStateHandle) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("cannot read keyed state: %w", err)
	}
	if len(h.Offsets) != h.Range.Len() {
		return fmt.Errorf("keyed state handle has %d offsets for key groups %s", len(h.Offsets), h.Range)
	}
	both := h.Range.Intersect(b.r)
	for kg := both.Start; kg <= both.End; kg++ {
		i := kg - h.Range.Start
		start := h.Offsets[i]
		end := int64(len(data))
		if i+1 < len(h.Offsets) {
			end = h.Offsets[i+1]
		}
		if start < 0 || end > int64(len(data)) || start > end {
			return fmt.Errorf("key group %d: offsets [%d,%d) outside the %d-byte stream (truncated?)", kg, start, end, len(data))
		}
		if err := b.restoreKeyGroup(kg, data[start:end]); err != nil {
			return fmt.Errorf("key group %d: %w", kg, err)
		}
	}
	return nil
}

var errShort = errors.New("section ends early (truncated or corrupted)")

func (b *HeapKeyedBackend[K]) restoreKeyGroup(kg int, sec []byte) error {
	if len(sec) < 4 {
		return errShort
	}
	body := sec[:len(sec)-4]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(sec[len(sec)-4:]) {
		return errors.New("checksum mismatch (corrupted)")
	}
	rd := reader{b: body}
	nStates := rd.uvarint()
	for range nStates {
		name := string(rd.bytes())
		n := rd.uvarint()
		if rd.err != nil {
			return rd.err
		}
		t, registered := b.states[name]
		for range n {
			k, v := rd.bytes(), rd.bytes()
			if rd.err != nil {
				return fmt.Errorf("state %q: %w", name, rd.err)
			}
			if registered {
				if err := t.restoreEntry(kg-b.r.Start, k, v); err != nil {
					return err
				}
				continue
			}
			raw := b.restored[name]
			if raw == nil {
				raw = make([][]rawEntry, b.r.Len())
				b.restored[name] = raw
			}
			raw[kg-b.r.Start] = append(raw[kg-b.r.Start], rawEntry{key: k, val: v})
		}
	}
	if rd.err != nil {
		return rd.err
	}
	if len(rd.b) != 0 {
		return fmt.Errorf("%d unexpected bytes at the end of the section", len(rd.b))
	}
	return nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errShort
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}
