package state

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/weirstream/weir/checkpoint"
)

// RawStore is a local, ordered key-value store that holds keyed state as
// bytes: the storage engine under RawKeyedBackend (pebble, in package
// state/pebblestate). The backend lays keys out as
//
//	key group  2 bytes, big-endian
//	state name UTF-8, then one 0x00 byte
//	key        the key's Codec encoding
//
// so that a key group, and a state within it, are contiguous ranges, in
// the order the canonical snapshot stream writes them. The kinds of the
// states live under the 2-byte prefix FF FF ("k", 0x00, name → kind byte),
// outside every key group (max parallelism is at most 32768).
//
// A RawStore is used from the task goroutine, except for views and native
// snapshots, which the snapshot goroutine reads.
type RawStore interface {
	// Get appends the value of key to dst; ok is false if absent.
	Get(key, dst []byte) (val []byte, ok bool, err error)
	Set(key, val []byte) error
	Delete(key []byte) error
	// Scan calls fn with the entries of [lower, upper) in key order, at
	// most limit of them (0: all). k and v are valid only during fn.
	Scan(lower, upper []byte, limit int, fn func(k, v []byte) error) error
	// View returns a consistent, read-only view of the store as it is now,
	// cheaply (the synchronous part of a full snapshot).
	View() (RawView, error)
	// NativeSnapshot returns a native (incremental) snapshot for
	// checkpoint id, or nil if the store does not make them (or is
	// configured not to).
	NativeSnapshot(id checkpoint.ID) (KeyedSnapshot, error)
	// RestoreNative restores native snapshots: every key of the key
	// groups of r found in the handles.
	// reuse says the handles are in the storage the job checkpoints to,
	// so that later incremental checkpoints may reference their files.
	RestoreNative(handles []checkpoint.KeyedStateHandle, open func(checkpoint.StreamHandle) (io.ReadCloser, error), r checkpoint.KeyGroupRange, reuse bool) error
	NotifyCheckpointComplete(id checkpoint.ID)
	NotifyCheckpointAborted(id checkpoint.ID)
	Close() error
}

// RawView is a consistent read-only view of a RawStore.
type RawView interface {
	Scan(lower, upper []byte, limit int, fn func(k, v []byte) error) error
	Close() error
}

// MaxRawKeyGroups bounds the max parallelism of a RawKeyedBackend (the
// key group is 2 bytes and FF FF is the metadata prefix).
const MaxRawKeyGroups = 1 << 15

var rawMetaPrefix = []byte{0xFF, 0xFF, 'k', 0}

// RawKeyedBackend is a KeyedBackend over a RawStore: every access encodes
// the key and the value with their codecs and goes to the store.
type RawKeyedBackend[K comparable] struct {
	store    RawStore
	keyCodec Codec[K]
	hash     HashFunc[K]
	maxP     int
	r        checkpoint.KeyGroupRange
	kg       keyGrouper
	fail     func(error)
	// keyID and keyVersion identify keyCodec (CodecIdentity).
	keyID      string
	keyVersion int

	curKey K
	curKG  int    // absolute key group
	keyEnc []byte // encoding of curKey

	states map[string]rawTable
	kinds  map[string]stateKind    // every state known: registered or restored
	clocks map[string]func() int64 // clocks of the registered TTL states
	// stored holds the schemas restored snapshots recorded for states not
	// registered yet, checked (and migrated) when they are registered.
	stored map[string]checkpoint.StateMeta

	// listPrefix and listSeq are the last list key a restore of a
	// canonical stream wrote elements of, and its next sequence number.
	listPrefix []byte
	listSeq    uint64

	// ReuseRestoredFiles lets incremental checkpoints after a restore
	// reference the restored checkpoint's files instead of uploading them
	// again; set it only when the restored checkpoint lives in the storage
	// the job checkpoints to (and is thus protected by its retention).
	ReuseRestoredFiles bool
}

// StoreInfo names the operator and subtask a store is created for.
type StoreInfo struct {
	Job         string
	OperatorUID string
	Subtask     int
	// Logger is the task's logger (nil: none), for the store's own
	// errors.
	Logger *slog.Logger
}

// RawStoreFactory creates the store of one keyed operator in one subtask
// (pebblestate.New returns one).
type RawStoreFactory interface {
	NewRawStore(info StoreInfo) (RawStore, error)
	String() string
}

type rawTable interface {
	kind() stateKind
	// schema is the state's schema as snapshots record it.
	schema() checkpoint.StateMeta
	// adopt takes over the entries restored with schema stored: nothing
	// to do when it is the state's own, a rewrite of every entry when the
	// state's codec migrates it, a *SchemaError when it cannot read it.
	adopt(stored checkpoint.StateMeta) error
}

// NewRawKeyedBackend returns a backend over store for the key groups r of
// maxParallelism. fail is called with store errors met while reading or
// writing state (ValueState methods return no errors): the task fails
// over.
func NewRawKeyedBackend[K comparable](store RawStore, keyCodec Codec[K], hash HashFunc[K], maxParallelism int, r checkpoint.KeyGroupRange, fail func(error)) (*RawKeyedBackend[K], error) {
	if maxParallelism <= 0 || maxParallelism > MaxRawKeyGroups || r.Start < 0 || r.End >= maxParallelism || r.Len() == 0 {
		return nil, fmt.Errorf("bad keyed backend: key groups %s of max parallelism %d (at most %d with this backend)", r, maxParallelism, MaxRawKeyGroups)
	}
	keyID, keyVersion := CodecIdentity(keyCodec)
	b := &RawKeyedBackend[K]{store: store, keyCodec: keyCodec, hash: hash, maxP: maxParallelism, r: r, kg: newKeyGrouper(maxParallelism), fail: fail,
		keyID: keyID, keyVersion: keyVersion, states: map[string]rawTable{}, kinds: map[string]stateKind{}, clocks: map[string]func() int64{},
		stored: map[string]checkpoint.StateMeta{}}
	if err := b.loadKinds(); err != nil {
		return nil, err
	}
	return b, nil
}

// rawMetaUpper bounds the state kind entries: [rawMetaPrefix, rawMetaUpper).
var rawMetaUpper = []byte{0xFF, 0xFF, 'k', 1}

type scanFunc func(lower, upper []byte, limit int, fn func(k, v []byte) error) error

// readKinds reads the state kinds recorded in a store or view into kinds.
func readKinds(scan scanFunc, kinds map[string]stateKind) error {
	return scan(rawMetaPrefix, rawMetaUpper, 0, func(k, v []byte) error {
		if len(v) != 1 {
			return fmt.Errorf("corrupted state kind entry %q", k)
		}
		kinds[string(k[len(rawMetaPrefix):])] = stateKind(v[0])
		return nil
	})
}

func (b *RawKeyedBackend[K]) loadKinds() error { return readKinds(b.store.Scan, b.kinds) }

// WalkRaw calls visit with every entry of the key groups r in v, a view of
// a store laid out as RawKeyedBackend lays out keys: key group by key
// group, within one state by state (byte order of names), then by key.
// kind is the state's kind byte as the canonical stream records it; key
// and val are valid only during visit.
func WalkRaw(v RawView, r checkpoint.KeyGroupRange, visit func(kg int, name string, kind byte, key, val []byte) error) error {
	kinds := map[string]stateKind{}
	if err := readKinds(v.Scan, kinds); err != nil {
		return fmt.Errorf("cannot read state kinds: %w", err)
	}
	for kg := r.Start; kg <= r.End; kg++ {
		if err := walkRawKeyGroup(v, kinds, kg, func(name string, kind stateKind, key, val []byte) error {
			return visit(kg, name, byte(kind), key, val)
		}); err != nil {
			return err
		}
	}
	return nil
}

// walkRawKeyGroup visits the entries of key group kg in v, with the name
// and kind of their state (a name string is made once per state, not per
// entry).
func walkRawKeyGroup(v RawView, kinds map[string]stateKind, kg int, visit func(name string, kind stateKind, key, val []byte) error) error {
	var lo, hi [2]byte
	binary.BigEndian.PutUint16(lo[:], uint16(kg))
	binary.BigEndian.PutUint16(hi[:], uint16(kg+1))
	name, kind, started := "", stateKind(0), false
	var vbuf []byte
	err := v.Scan(lo[:], hi[:], 0, func(k, val []byte) error {
		rest := k[2:]
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			return fmt.Errorf("malformed key %q", k)
		}
		if !started || string(rest[:i]) != name {
			started, name = true, string(rest[:i])
			var ok bool
			if kind, ok = kinds[name]; !ok {
				return fmt.Errorf("state %q has no recorded kind", name)
			}
		}
		if kind == kindTimers { // one raw key per timer: into the stream's entry
			key, tv, err := timerEntryOf(rest[i+1:], vbuf)
			if err != nil {
				return fmt.Errorf("timer queue %q: %w", name, err)
			}
			vbuf = tv
			return visit(name, kind, key, tv)
		}
		if kind == kindMap || kind == kindList { // one raw key per entry
			key, v, ok, err := collectionEntryOf(kind, rest[i+1:], val, vbuf)
			if err != nil {
				return fmt.Errorf("state %q: %w", name, err)
			}
			if !ok {
				return nil // a list's counter
			}
			if kind == kindMap {
				vbuf = v
			}
			return visit(name, kind, key, v)
		}
		return visit(name, kind, rest[i+1:], val)
	})
	if err != nil {
		return fmt.Errorf("cannot read key group %d of keyed state: %w", kg, err)
	}
	return nil
}

func (b *RawKeyedBackend[K]) setKind(name string, k stateKind) error {
	if old, ok := b.kinds[name]; ok {
		if old != k {
			return fmt.Errorf("state %q was checkpointed as %s state, cannot use it as %s state", name, old, k)
		}
		return nil
	}
	b.kinds[name] = k
	return b.store.Set(append(append([]byte(nil), rawMetaPrefix...), name...), []byte{byte(k)})
}

// KeyGroupRange implements KeyedBackend.
func (b *RawKeyedBackend[K]) KeyGroupRange() checkpoint.KeyGroupRange { return b.r }

// SetCurrentKeyHashed implements KeyedBackend.
func (b *RawKeyedBackend[K]) SetCurrentKeyHashed(k K, hash uint32) {
	kg := b.kg.of(hash)
	if !b.r.Contains(kg) {
		panic(fmt.Sprintf("weir: key %v (key group %d) does not belong to this subtask's key groups %s", k, kg, b.r))
	}
	b.curKey, b.curKG = k, kg
	b.keyEnc = b.keyCodec.Append(b.keyEnc[:0], k)
}

// SetCurrentKey scopes every state access to k.
func (b *RawKeyedBackend[K]) SetCurrentKey(k K) { b.SetCurrentKeyHashed(k, b.hash(k)) }

// CurrentKey implements KeyedBackend.
func (b *RawKeyedBackend[K]) CurrentKey() K { return b.curKey }

// Store is the store under the backend.
func (b *RawKeyedBackend[K]) Store() RawStore { return b.store }

// Close implements KeyedBackend.
func (b *RawKeyedBackend[K]) Close() error { return b.store.Close() }

// NotifyCheckpointComplete implements KeyedBackend.
func (b *RawKeyedBackend[K]) NotifyCheckpointComplete(id checkpoint.ID) {
	b.store.NotifyCheckpointComplete(id)
}

// NotifyCheckpointAborted implements KeyedBackend.
func (b *RawKeyedBackend[K]) NotifyCheckpointAborted(id checkpoint.ID) {
	b.store.NotifyCheckpointAborted(id)
}

func appendKGPrefix(dst []byte, kg int, name string) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(kg))
	dst = append(dst, name...)
	return append(dst, 0)
}

func checkRawName(name string) error {
	if strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("state name %q contains a NUL byte", name)
	}
	return nil
}

// rawValue is a ValueState over a RawKeyedBackend.
type rawValue[K comparable, V any] struct {
	b     *RawKeyedBackend[K]
	name  string
	k     stateKind
	codec Codec[V]
	meta  checkpoint.StateMeta
	kbuf  []byte
	vbuf  []byte
}

func (t *rawValue[K, V]) kind() stateKind { return t.k }

func (t *rawValue[K, V]) schema() checkpoint.StateMeta { return t.meta }

func (t *rawValue[K, V]) adopt(stored checkpoint.StateMeta) error {
	dec, migrate, err := restoreDecoder(stored, t.meta, t.codec)
	if err != nil || !migrate {
		return err
	}
	err = t.b.rewrite(t.name, func(dst, old []byte) ([]byte, error) {
		v, err := dec(old)
		if err != nil {
			return nil, err
		}
		return t.codec.Append(dst, v), nil
	})
	if err != nil {
		return fmt.Errorf("cannot migrate state %q from codec %s to %s: %w", t.name, codecRef(stored.Codec, stored.CodecVersion), codecRef(t.meta.Codec, t.meta.CodecVersion), err)
	}
	return nil
}

// rewrite replaces the value of every entry of state name in the
// backend's key groups with what fn makes of it (a migration), scanning
// and writing in chunks.
func (b *RawKeyedBackend[K]) rewrite(name string, fn func(dst, old []byte) ([]byte, error)) error {
	const chunk = 1024
	var lower, upper, last []byte
	var keys, vals [][]byte
	for kg := b.r.Start; kg <= b.r.End; kg++ {
		// The state's entries in key group kg: [kg name 00, kg name 01).
		lower = appendKGPrefix(lower[:0], kg, name)
		upper = append(upper[:0], lower...)
		upper[len(upper)-1] = 1
		for {
			keys, vals = keys[:0], vals[:0]
			err := b.store.Scan(lower, upper, chunk, func(k, v []byte) error {
				nv, err := fn(nil, v)
				if err != nil {
					return fmt.Errorf("key group %d, key %x: %w", kg, k[2+len(name)+1:], err)
				}
				keys, vals = append(keys, append([]byte(nil), k...)), append(vals, nv)
				return nil
			})
			if err != nil {
				return err
			}
			for i, k := range keys {
				if err := b.store.Set(k, vals[i]); err != nil {
					return err
				}
			}
			if len(keys) < chunk {
				break
			}
			last = append(last[:0], keys[len(keys)-1]...)
			lower = append(append(lower[:0], last...), 0) // just after the last key
		}
	}
	return nil
}

func (t *rawValue[K, V]) key() []byte {
	t.kbuf = appendKGPrefix(t.kbuf[:0], t.b.curKG, t.name)
	t.kbuf = append(t.kbuf, t.b.keyEnc...)
	return t.kbuf
}

func (t *rawValue[K, V]) Value() (V, bool) {
	var zero V
	v, ok, err := t.b.store.Get(t.key(), t.vbuf[:0])
	if err != nil {
		t.b.fail(fmt.Errorf("cannot read state %q: %w", t.name, err))
		return zero, false
	}
	if !ok {
		return zero, false
	}
	t.vbuf = v[:0]
	x, err := t.codec.Decode(v)
	if err != nil {
		t.b.fail(fmt.Errorf("cannot decode state %q of key %v: %w", t.name, t.b.curKey, err))
		return zero, false
	}
	return x, true
}

func (t *rawValue[K, V]) Update(v V) {
	t.vbuf = t.codec.Append(t.vbuf[:0], v)
	if err := t.b.store.Set(t.key(), t.vbuf); err != nil {
		t.b.fail(fmt.Errorf("cannot write state %q: %w", t.name, err))
	}
}

func (t *rawValue[K, V]) Clear() {
	if err := t.b.store.Delete(t.key()); err != nil {
		t.b.fail(fmt.Errorf("cannot clear state %q: %w", t.name, err))
	}
}

func getRawValueState[K comparable, V any](b *RawKeyedBackend[K], name string, c Codec[V], ttl TTLConfig) (ValueState[V], error) {
	if err := checkRawName(name); err != nil {
		return nil, err
	}
	kind := kindValue
	if ttl.TTL > 0 {
		if err := ttl.validate(name); err != nil {
			return nil, err
		}
		kind = kindValueTTL
	}
	meta := stateMeta(name, kind, c, b.keyID, b.keyVersion)
	if m, ok := b.stored[name]; ok && m.Kind == kindTimers.String() {
		return nil, fmt.Errorf("state %q was checkpointed as a timer queue, cannot restore it as %s state", name, kind)
	}
	if t, ok := b.states[name]; ok {
		if t.kind() != kind {
			return nil, fmt.Errorf("state %q is already registered as %s state, not %s state", name, t.kind(), kind)
		}
		if old := t.schema(); old.Codec != meta.Codec || old.CodecVersion != meta.CodecVersion {
			return nil, fmt.Errorf("state %q is already registered with codec %s, not %s", name, codecRef(old.Codec, old.CodecVersion), codecRef(meta.Codec, meta.CodecVersion))
		}
		if kind == kindValueTTL {
			if vt, ok := t.(*rawValue[K, ttlValue[V]]); ok {
				return newTTLState[V](vt, ttl, ttl.nowFunc(), b.ttlCleaner(name, ttl)), nil
			}
		} else if vt, ok := t.(*rawValue[K, V]); ok {
			return vt, nil
		}
		return nil, fmt.Errorf("state %q is already registered with another type (%T)", name, t)
	}
	if err := b.setKind(name, kind); err != nil {
		return nil, err
	}
	if kind == kindValueTTL {
		t := &rawValue[K, ttlValue[V]]{b: b, name: name, k: kind, codec: ttlCodec[V]{c}, meta: meta}
		if err := b.register(t); err != nil {
			return nil, err
		}
		now := ttl.nowFunc()
		b.clocks[name] = now // full snapshots leave out what expired by this clock
		return newTTLState[V](t, ttl, now, b.ttlCleaner(name, ttl)), nil
	}
	t := &rawValue[K, V]{b: b, name: name, k: kind, codec: c, meta: meta}
	if err := b.register(t); err != nil {
		return nil, err
	}
	return t, nil
}

// RegisterValueState implements KeyedBackend.
func (b *RawKeyedBackend[K]) RegisterValueState(r ValueStateRequest[K]) error {
	return r.registerRaw(b)
}

// register adds a new state, after taking over (and migrating) what a
// restored snapshot holds of it.
func (b *RawKeyedBackend[K]) register(t rawTable) error {
	name := t.schema().Name
	if stored, ok := b.stored[name]; ok {
		if err := t.adopt(stored); err != nil {
			return err
		}
		delete(b.stored, name)
	}
	b.states[name] = t
	return nil
}

// schemas is the schema of every state the backend knows, sorted by
// name: registered ones, and restored ones not registered yet that the
// restored snapshot recorded a schema for.
func (b *RawKeyedBackend[K]) schemas() []checkpoint.StateMeta {
	out := make([]checkpoint.StateMeta, 0, len(b.states)+len(b.stored))
	for _, t := range b.states {
		out = append(out, t.schema())
	}
	for name, m := range b.stored {
		if _, ok := b.states[name]; !ok {
			out = append(out, m)
		}
	}
	return sortMetas(out)
}

// ttlCleaner returns the incremental cleanup of a TTL state: every 16th
// access it checks 16×CleanupPerAccess entries from a cursor that walks
// the state's entries key group by key group, and deletes expired ones.
func (b *RawKeyedBackend[K]) ttlCleaner(name string, cfg TTLConfig) func(now int64) {
	per := cfg.CleanupPerAccess
	if per == 0 {
		per = 2
	}
	var calls int
	kg := b.r.Start
	var cursor, lower, upper []byte
	var expired [][]byte
	return func(now int64) {
		calls++
		if calls%16 != 0 {
			return
		}
		budget := per * 16
		for budget > 0 {
			// The state's entries in key group kg: [kg name 00, kg name 01).
			lower = appendKGPrefix(lower[:0], kg, name)
			upper = append(upper[:0], lower...)
			upper[len(upper)-1] = 1
			if len(cursor) > 0 {
				lower = append(append(lower[:0], cursor...), 0) // just after the cursor
			}
			n := 0
			expired = expired[:0]
			err := b.store.Scan(lower, upper, budget, func(k, v []byte) error {
				n++
				cursor = append(cursor[:0], k...)
				if exp, ok := ttlExpiry(v); ok && exp <= now {
					expired = append(expired, append([]byte(nil), k...))
				}
				return nil
			})
			if err != nil {
				b.fail(fmt.Errorf("cannot clean up expired entries of state %q: %w", name, err))
				return
			}
			for _, k := range expired {
				if err := b.store.Delete(k); err != nil {
					b.fail(fmt.Errorf("cannot clean up expired entries of state %q: %w", name, err))
					return
				}
			}
			budget -= n
			if n == 0 || budget > 0 { // this key group is done: next one
				cursor = cursor[:0]
				if kg++; kg > b.r.End {
					kg = b.r.Start
					return
				}
			}
		}
	}
}

// SnapshotFor implements KeyedBackend: a native snapshot when the store
// makes them and the checkpoint is not a savepoint, else the canonical
// stream read from a consistent view.
func (b *RawKeyedBackend[K]) SnapshotFor(id checkpoint.ID, kind checkpoint.Kind) (KeyedSnapshot, error) {
	if kind != checkpoint.KindSavepoint {
		s, err := b.store.NativeSnapshot(id)
		if err != nil {
			return nil, err
		}
		if hw, ok := s.(HandleWriter); ok {
			return &nativeWithSchema{KeyedSnapshot: s, hw: hw, metas: b.schemas()}, nil
		}
		if s != nil {
			return s, nil
		}
	}
	v, err := b.store.View()
	if err != nil {
		return nil, err
	}
	// Expired entries are left out as of now, by each state's clock.
	nows := map[string]int64{}
	for name, c := range b.clocks {
		nows[name] = c()
	}
	return &rawSnapshot{v: v, r: b.r, now: nowMillis(), nows: nows, metas: b.schemas()}, nil
}

// nativeWithSchema adds the state schema to the handle of a store's
// native snapshot.
type nativeWithSchema struct {
	KeyedSnapshot
	hw    HandleWriter
	metas []checkpoint.StateMeta
}

func (n *nativeWithSchema) WriteHandle(t SnapshotTarget) (checkpoint.KeyedStateHandle, error) {
	h, err := n.hw.WriteHandle(t)
	if err == nil {
		h.States = n.metas
	}
	return h, err
}

func (n *nativeWithSchema) states() []checkpoint.StateMeta { return n.metas }

type rawSnapshot struct {
	v     RawView
	r     checkpoint.KeyGroupRange
	now   int64            // reference time of TTL states without a clock of their own
	nows  map[string]int64 // per registered TTL state
	metas []checkpoint.StateMeta
	once  sync.Once
}

func (s *rawSnapshot) Release() { s.once.Do(func() { s.v.Close() }) }

// states returns the schema of the snapshot's states (SnapshotStates).
func (s *rawSnapshot) states() []checkpoint.StateMeta { return s.metas }

func (s *rawSnapshot) WriteKeyGroups(w io.Writer) ([]int64, error) {
	kinds := map[string]stateKind{}
	if err := readKinds(s.v.Scan, kinds); err != nil {
		return nil, fmt.Errorf("cannot read state kinds: %w", err)
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	offsets := make([]int64, s.r.Len())
	var pos int64
	var sec, body, block []byte
	for kg := s.r.Start; kg <= s.r.End; kg++ {
		offsets[kg-s.r.Start] = pos
		body = body[:0] // the state blocks of this key group
		nStates := 0
		cur, curKind, count, now := "", stateKind(0), 0, s.now
		flush := func() {
			if count > 0 {
				body = binary.AppendUvarint(body, uint64(len(cur)))
				body = append(body, cur...)
				body = append(body, byte(curKind))
				body = binary.AppendUvarint(body, uint64(count))
				body = append(body, block...)
				nStates++
			}
			block, count = block[:0], 0
		}
		err := walkRawKeyGroup(s.v, kinds, kg, func(name string, kind stateKind, key, val []byte) error {
			if name != cur || count == 0 {
				flush()
				cur, curKind, now = name, kind, s.now
				if n, ok := s.nows[name]; ok {
					now = n
				}
			}
			if kind == kindValueTTL {
				if exp, ok := ttlExpiry(val); ok && exp <= now {
					return nil // expired: cleaned up by the full snapshot
				}
			}
			block = appendLengthPrefixed(block, key)
			block = appendLengthPrefixed(block, val)
			count++
			return nil
		})
		if err != nil {
			return nil, err
		}
		flush()
		sec = append(sec[:0], KeyedSnapshotVersion)
		sec = binary.AppendUvarint(sec, uint64(nStates))
		sec = append(sec, body...)
		sec = binary.BigEndian.AppendUint32(sec, crc32.Checksum(sec, castagnoli))
		if _, err := bw.Write(sec); err != nil {
			return nil, fmt.Errorf("cannot write key group %d of keyed state: %w", kg, err)
		}
		pos += int64(len(sec))
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("cannot write keyed state: %w", err)
	}
	return offsets, nil
}

// RestoreHandles implements KeyedBackend: canonical streams are read entry
// by entry into the store (checking that every key belongs to its key
// group), native handles go to the store.
//
// The schemas the handles recorded are checked first for the key codec;
// the value codecs of registered states are checked (and their entries
// migrated) after the entries are in the store, those of the other states
// when they are registered.
func (b *RawKeyedBackend[K]) RestoreHandles(handles []checkpoint.KeyedStateHandle, open func(checkpoint.StreamHandle) (io.ReadCloser, error)) error {
	var native []checkpoint.KeyedStateHandle
	restored := map[string]checkpoint.StateMeta{}
	b.listPrefix = nil
	for _, h := range handles {
		if err := checkKeyCodec(h.States, b.keyID, b.keyVersion); err != nil {
			return err
		}
		if err := mergeStored(restored, h.States); err != nil {
			return err
		}
		if h.Incremental != nil {
			native = append(native, h)
		}
	}
	if len(native) > 0 {
		if err := b.store.RestoreNative(native, open, b.r, b.ReuseRestoredFiles); err != nil {
			return err
		}
		if err := b.loadKinds(); err != nil {
			return err
		}
	}
	for _, h := range handles {
		if h.Incremental != nil {
			continue
		}
		err := restoreStream(h, open, func(r io.Reader, h checkpoint.KeyedStateHandle) error {
			return WalkKeyGroups(r, h, b.r, b.restoreEntry)
		})
		if err != nil {
			return err
		}
	}
	var unregistered []checkpoint.StateMeta
	for name, m := range restored {
		if t, ok := b.states[name]; ok {
			if err := t.adopt(m); err != nil {
				return err
			}
			continue
		}
		unregistered = append(unregistered, m)
	}
	for _, t := range b.states {
		if r, ok := t.(interface{ reload() error }); ok { // in-memory parts of registered states
			if err := r.reload(); err != nil {
				return err
			}
		}
	}
	return mergeStored(b.stored, unregistered)
}

func (b *RawKeyedBackend[K]) restoreEntry(kg int, name string, kind byte, key, val []byte) error {
	if err := checkRawName(name); err != nil {
		return err
	}
	if t, ok := b.states[name]; ok && stateKind(kind) == kindValue && (t.kind() == kindMap || t.kind() == kindList) {
		if err := b.checkKey(name, kg, key); err != nil {
			return err
		}
		// A map or list checkpointed as one value, restored after the
		// state was registered.
		if err := t.(interface {
			restoreOldValue(kg int, key, val []byte) error
		}).restoreOldValue(kg, key, val); err != nil {
			return fmt.Errorf("cannot convert state %q, checkpointed as one value per key, into a %s state: %w", name, t.kind(), err)
		}
		return nil
	}
	if err := b.setKind(name, stateKind(kind)); err != nil {
		return err
	}
	if err := b.checkKey(name, kg, key); err != nil {
		return err
	}
	if k := stateKind(kind); k == kindMap || k == kindList {
		return b.restoreCollectionEntry(kg, name, k, key, val)
	}
	full := appendKGPrefix(nil, kg, name)
	if stateKind(kind) == kindTimers {
		ts, ns, err := parseTimerValue(val)
		if err != nil {
			return fmt.Errorf("timer queue %q: %w", name, err)
		}
		return b.store.Set(appendTimerSuffix(full, ts, key, string(ns)), nil)
	}
	return b.store.Set(append(full, key...), val)
}

// checkKey checks that a restored key decodes and belongs to key group kg.
func (b *RawKeyedBackend[K]) checkKey(name string, kg int, key []byte) error {
	k, err := b.keyCodec.Decode(key)
	if err != nil {
		return fmt.Errorf("state %q: bad key (encoded %x) for key codec %s: %w", name, key, b.keyID, err)
	}
	if got := KeyGroupOf(b.hash(k), b.maxP); got != kg {
		return wrongKeyGroupError(name, k, key, b.keyID, got, kg)
	}
	return nil
}

// WalkKeyGroups reads the canonical key-group stream of h from r (at its
// start) and calls visit with every entry of the key groups in want, in
// stream order. It checks every section's checksum and structure and names
// the key group (and state) of any error.
func WalkKeyGroups(r io.Reader, h checkpoint.KeyedStateHandle, want checkpoint.KeyGroupRange, visit func(kg int, name string, kind byte, key, val []byte) error) error {
	if err := checkOffsets(h); err != nil {
		return err
	}
	return forEachSection(r, h, want, func(kg int, sec []byte) (bool, error) {
		return true, walkSection(kg, sec, visit)
	})
}

// forEachSection reads the key group sections of h that fall in want, in
// order, from r (at the start of the stream; skipped forward by seeking
// when r can, else by reading), and calls fn with each. fn reports whether
// the buffer holding sec may be reused for the next section.
func forEachSection(r io.Reader, h checkpoint.KeyedStateHandle, want checkpoint.KeyGroupRange, fn func(kg int, sec []byte) (reuse bool, err error)) error {
	both := h.Range.Intersect(want)
	if both.Len() == 0 {
		return nil
	}
	if first := h.Offsets[both.Start-h.Range.Start]; first > 0 {
		sk, ok := r.(io.Seeker)
		var err error
		if ok {
			_, err = sk.Seek(first, io.SeekCurrent)
		}
		if !ok || err != nil { // not seekable (a pipe): read and skip
			_, err = io.CopyN(io.Discard, r, first)
		}
		if err != nil {
			return fmt.Errorf("cannot skip to key group %d at offset %d: %w", both.Start, first, truncated(err))
		}
	}
	var buf []byte
	for kg := both.Start; kg <= both.End; kg++ {
		i := kg - h.Range.Start
		var sec []byte
		var err error
		switch {
		case i+1 < len(h.Offsets):
			sec, buf, err = readSection(r, buf, h.Offsets[i+1]-h.Offsets[i])
		case h.Stream.Size > 0:
			sec, buf, err = readSection(r, buf, h.Stream.Size-h.Offsets[i])
		default: // size unknown: the last key group runs to the end
			sec, err = io.ReadAll(r)
			buf = nil
		}
		if err != nil {
			return fmt.Errorf("cannot read key group %d: %w", kg, err)
		}
		reuse, err := fn(kg, sec)
		if err != nil {
			return fmt.Errorf("cannot read key group %d: %w", kg, err)
		}
		if !reuse {
			buf = nil
		}
	}
	return nil
}

func walkSection(kg int, sec []byte, visit func(kg int, name string, kind byte, key, val []byte) error) error {
	if len(sec) < 4 {
		return errShort
	}
	body := sec[:len(sec)-4]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(sec[len(sec)-4:]) {
		return errors.New("checksum mismatch (corrupted or truncated)")
	}
	rd := reader{b: body}
	if v := rd.byte(); rd.err == nil && (v == 0 || v > KeyedSnapshotVersion) {
		return fmt.Errorf("unknown keyed snapshot format version %d (this build reads up to %d)", v, KeyedSnapshotVersion)
	}
	nStates := rd.uvarint()
	for s := uint64(0); s < nStates && rd.err == nil; s++ {
		name := string(rd.bytes())
		kind := rd.byte()
		n := rd.uvarint()
		if rd.err != nil {
			break
		}
		if n > uint64(len(rd.b))/2 {
			return fmt.Errorf("state %q: %d entries in %d bytes: %w", name, n, len(rd.b), errShort)
		}
		for e := uint64(0); e < n; e++ {
			k, v := rd.bytes(), rd.bytes()
			if rd.err != nil {
				return fmt.Errorf("state %q: %w", name, rd.err)
			}
			if err := visit(kg, name, kind, k, v); err != nil {
				return err
			}
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

// StateNames lists the states the backend knows (registered or restored).
func (b *RawKeyedBackend[K]) StateNames() []string {
	out := make([]string, 0, len(b.kinds))
	for n := range b.kinds {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// checkOffsets validates the key group offsets of a stream handle.
func checkOffsets(h checkpoint.KeyedStateHandle) error {
	if len(h.Offsets) != h.Range.Len() {
		return fmt.Errorf("bad keyed state handle: %d offsets for key groups %s (corrupted metadata)", len(h.Offsets), h.Range)
	}
	for i, off := range h.Offsets {
		if off < 0 || (i > 0 && off < h.Offsets[i-1]) || (h.Stream.Size > 0 && off > h.Stream.Size) {
			return fmt.Errorf("bad keyed state handle: key group %d has offset %d outside the %d-byte stream (corrupted metadata)", h.Range.Start+i, off, h.Stream.Size)
		}
	}
	return nil
}
