package state

import (
	"encoding/binary"
	"fmt"
	"iter"

	"github.com/weirstream/weir/checkpoint"
)

// Keyed map and list states are kinds of their own (kind 3 "map" and 2
// "list"), stored per entry: a Put, Remove or Add touches one entry, not
// the whole collection.
//
//   - The heap backend keeps a key's map (up to 6 entries inline, then a
//     persistent hash trie, see userMap) or list (a slice) behind a
//     pointer in the key group's kgTable, stamped with the epoch it was
//     created or cloned in. A snapshot captures the key group tables as
//     for value states (O(key groups), nothing per entry); the first
//     write to a key's collection of an older epoch while a snapshot is
//     live clones that collection's header, never its entries: a list
//     gets a new slice header over the same array (appends land past what
//     the snapshot reads), a map shares its trie with the snapshot's
//     version and copies one path of it, O(log n) nodes, on each write
//     into a part not copied yet (entry-level copy-on-write). A write with
//     no snapshot live mutates in place.
//   - A RawKeyedBackend (pebble) stores one key per map entry (key group,
//     name, 0x00, uvarint length of the key's encoding, the key's
//     encoding, the map key's encoding → the map value's encoding) and
//     per list element (the same, then an 8-byte big-endian sequence
//     number → the element's encoding), with the key's next sequence
//     number under the key without a suffix. An Add reads that 8-byte
//     counter, never the list.
//
// In the canonical stream a map state has one entry per map entry (the
// key's encoding; uvarint length of the map key's encoding, the map key's
// encoding, the map value's encoding) and a list state one entry per
// element (the key's encoding; the element's encoding), a key's elements
// contiguous and in list order.
//
// Snapshots written before these kinds held a map or list as one value
// state of the encoded collection (kind "value", codec "map(...)" or
// "list(...)"); registering the state converts them into per-entry
// storage.
//
// With a time-to-live (WithTTL), a map or list state is a value state of
// the whole collection, as before: it expires whole, and Put and Add copy
// it.

// MapState is a map per key.
type MapState[UK comparable, UV any] interface {
	// Get returns the value of k in the current key's map.
	Get(k UK) (UV, bool)
	// Put sets the value of k.
	Put(k UK, v UV)
	// Remove deletes k.
	Remove(k UK)
	// Contains reports whether the map has k.
	Contains(k UK) bool
	// Clear empties the current key's map.
	Clear()
	// IsEmpty reports whether the current key's map is empty.
	IsEmpty() bool
	// All, Keys and Values iterate over the current key's map, in no
	// particular order, without materialising it. The map may be
	// modified during an iteration: on the heap backend with the
	// semantics of ranging over a Go map (an entry removed before it is
	// reached is not produced, one added may or may not be), a
	// RawKeyedBackend iterates the store as it was when the iteration
	// started.
	All() iter.Seq2[UK, UV]
	Keys() iter.Seq[UK]
	Values() iter.Seq[UV]
	// Entries returns the current key's map, materialised; the caller
	// must not modify it.
	Entries() map[UK]UV
}

// GetMapState registers (or returns) the map state called name. Entries
// are stored one by one (see above), except with a time-to-live.
func GetMapState[K, UK comparable, UV any](b KeyedBackend[K], name string, kc Codec[UK], vc Codec[UV], opts ...Option) (MapState[UK, UV], error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	if o.ttl.TTL > 0 {
		return mapAsValue(b, name, kc, vc, o.ttl)
	}
	if name == "" {
		return nil, fmt.Errorf("keyed state needs a name")
	}
	if b == nil {
		return nil, fmt.Errorf("state %q: no keyed state backend (is the stream keyed?)", name)
	}
	r := &mapStateRequest[K, UK, UV]{name: name, kc: kc, vc: vc}
	if err := b.RegisterValueState(r); err != nil {
		return nil, err
	}
	if r.state == nil {
		return nil, fmt.Errorf("state %q: keyed state backend %T registered nothing", name, b)
	}
	return r.state, nil
}

// GetKeyedListState registers (or returns) the keyed list state called
// name: a list per key, stored element by element (see above), except
// with a time-to-live.
func GetKeyedListState[K comparable, T any](b KeyedBackend[K], name string, c Codec[T], opts ...Option) (ListState[T], error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	if o.ttl.TTL > 0 {
		return listAsValue(b, name, c, o.ttl)
	}
	if name == "" {
		return nil, fmt.Errorf("keyed state needs a name")
	}
	if b == nil {
		return nil, fmt.Errorf("state %q: no keyed state backend (is the stream keyed?)", name)
	}
	r := &listStateRequest[K, T]{name: name, c: c}
	if err := b.RegisterValueState(r); err != nil {
		return nil, err
	}
	if r.state == nil {
		return nil, fmt.Errorf("state %q: keyed state backend %T registered nothing", name, b)
	}
	return r.state, nil
}

// mapStateRequest and listStateRequest register map and list states
// through KeyedBackend.RegisterValueState, so that backends wrapping
// another one forward them.
type mapStateRequest[K, UK comparable, UV any] struct {
	name  string
	kc    Codec[UK]
	vc    Codec[UV]
	state MapState[UK, UV]
}

func (r *mapStateRequest[K, UK, UV]) Name() string   { return r.name }
func (r *mapStateRequest[K, UK, UV]) TTL() TTLConfig { return TTLConfig{} }

func (r *mapStateRequest[K, UK, UV]) registerHeap(b *HeapKeyedBackend[K]) error {
	s, err := getHeapMap(b, r.name, r.kc, r.vc)
	if err == nil {
		r.state = s
	}
	return err
}

func (r *mapStateRequest[K, UK, UV]) registerRaw(b *RawKeyedBackend[K]) error {
	s, err := getRawMap(b, r.name, r.kc, r.vc)
	if err == nil {
		r.state = s
	}
	return err
}

type listStateRequest[K comparable, T any] struct {
	name  string
	c     Codec[T]
	state ListState[T]
}

func (r *listStateRequest[K, T]) Name() string   { return r.name }
func (r *listStateRequest[K, T]) TTL() TTLConfig { return TTLConfig{} }

func (r *listStateRequest[K, T]) registerHeap(b *HeapKeyedBackend[K]) error {
	s, err := getHeapList(b, r.name, r.c)
	if err == nil {
		r.state = s
	}
	return err
}

func (r *listStateRequest[K, T]) registerRaw(b *RawKeyedBackend[K]) error {
	s, err := getRawList(b, r.name, r.c)
	if err == nil {
		r.state = s
	}
	return err
}

// mapDecoders decodes map entries restored with schema stored (zero:
// recorded none) for a map state of codecs kc and vc whose schema is cur:
// the codecs themselves, or the migrations of the element codecs from the
// recorded ones. old decodes a whole map of the format before per-entry
// storage (a value state of kind "value").
type mapDecoders[UK comparable, UV any] struct {
	key   func([]byte) (UK, error)
	value func([]byte) (UV, error)
	old   func([]byte) (map[UK]UV, error)
}

func newMapDecoders[UK comparable, UV any](stored, cur checkpoint.StateMeta, kc Codec[UK], vc Codec[UV]) (mapDecoders[UK, UV], error) {
	d := mapDecoders[UK, UV]{key: kc.Decode, value: vc.Decode}
	mc := mapCodec[UK, UV]{kc, vc}
	old, _, err := restoreDecoder(stored, cur, Codec[map[UK]UV](mc))
	if err != nil {
		return d, err
	}
	d.old = old
	if stored.Codec != "" && (stored.Codec != cur.Codec || stored.CodecVersion != cur.CodecVersion) {
		args, _ := composedArgs(stored.Codec, "map", 2)
		d.key, d.value = decoderForRef(kc, args[0]), decoderForRef(vc, args[1])
	}
	return d, nil
}

type listDecoders[T any] struct {
	elem func([]byte) (T, error)
	old  func([]byte) ([]T, error)
}

func newListDecoders[T any](stored, cur checkpoint.StateMeta, c Codec[T]) (listDecoders[T], error) {
	d := listDecoders[T]{elem: c.Decode}
	old, _, err := restoreDecoder(stored, cur, Codec[[]T](sliceCodec[T]{c}))
	if err != nil {
		return d, err
	}
	d.old = old
	if stored.Codec != "" && (stored.Codec != cur.Codec || stored.CodecVersion != cur.CodecVersion) {
		args, _ := composedArgs(stored.Codec, "list", 1)
		d.elem = decoderForRef(c, args[0])
	}
	return d, nil
}

// checkCollectionKind checks that a state registered as kind restores
// from what a snapshot recorded: the same kind, or the value state of the
// format before per-entry storage.
func checkCollectionKind(name string, kind stateKind, stored checkpoint.StateMeta) error {
	if stored.Kind == "" || stored.Kind == kind.String() || stored.Kind == kindValue.String() {
		return nil
	}
	return fmt.Errorf("state %q was checkpointed as %s state, cannot restore it as %s state", name, stored.Kind, kind)
}

// splitMapEntry splits the value of a map entry of the canonical stream.
func splitMapEntry(v []byte) (mk, mv []byte, err error) {
	n, l := binary.Uvarint(v)
	if l <= 0 || n > uint64(len(v)-l) {
		return nil, nil, fmt.Errorf("malformed map entry (%d bytes)", len(v))
	}
	return v[l : l+int(n)], v[l+int(n):], nil
}

// appendMapEntry appends the value of a map entry of the canonical stream.
func appendMapEntry(dst, mk, mv []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(mk)))
	return append(append(dst, mk...), mv...)
}
