package state

import (
	"encoding/binary"
	"fmt"
	"io"
	"sort"

	"github.com/weirstream/weir/checkpoint"
)

// This file is the read side of the keyed snapshot stream for tools (the
// State Processor API's reader, `weir checkpoint inspect`, `weir state
// dump`): it reads a stream without the Go types of keys and values.

// StateKind is the kind of a keyed state as a snapshot stream records it:
// the kind byte of a state block (see the package documentation).
type StateKind byte

func (k StateKind) String() string { return stateKind(k).String() }

// HasTTL reports whether the values of states of this kind start with an
// 8-byte expiry (see TTLConfig).
func (k StateKind) HasTTL() bool { return stateKind(k) == kindValueTTL }

// RawEntry is one entry of a keyed snapshot stream, undecoded.
type RawEntry struct {
	// KeyGroup is the key group of the entry (absolute, not relative to
	// the handle's range).
	KeyGroup int
	// State is the name of the state; Kind its kind.
	State string
	Kind  StateKind
	// Key is the key's Codec encoding. Value is the value's Codec
	// encoding, preceded by the expiry for kinds with a TTL (see
	// Expiry).
	Key, Value []byte
}

// Expiry splits the value of a state with a time-to-live into its expiry
// (unix milliseconds) and the encoding of the user's value. ok is false
// for kinds without a TTL and for a value too short to hold an expiry.
func (e RawEntry) Expiry() (expiresAtMillis int64, value []byte, ok bool) {
	if !e.Kind.HasTTL() || len(e.Value) < 8 {
		return 0, e.Value, false
	}
	return int64(binary.BigEndian.Uint64(e.Value)), e.Value[8:], true
}

// ReadKeyGroups reads the keyed snapshot stream of h from r, positioned at
// the start of the stream, and calls visit with every entry: key group by
// key group in range order, within a key group state by state, the entries
// of a state in no particular order (the order the stream holds them).
//
// e.Key and e.Value point into a buffer the reader reuses: copy them to
// keep them after visit returns. Allocations are per key group section and
// state block, not per entry.
//
// It validates the stream as a restore does (it is the restore's own
// walker, WalkKeyGroups): each key group section is found by the handle's
// offsets, its checksum, version and framing are checked, and a state has
// the same kind in every key group. What it cannot check without the key
// type is that each key hashes into its key group: a restore does that
// when the state is registered. Corrupted or truncated input returns an
// error naming the key group (and state), never panics. An error visit
// returns stops the read and comes back wrapped (errors.Is finds it).
//
// An incremental handle (h.Incremental) holds no stream: an error.
func ReadKeyGroups(r io.Reader, h checkpoint.KeyedStateHandle, visit func(e RawEntry) error) error {
	if h.Incremental != nil {
		return fmt.Errorf("cannot read keyed state of key groups %s: it is an incremental %s snapshot, not a key-group stream", h.Range, h.Incremental.Backend)
	}
	var kinds map[string]StateKind
	var e RawEntry
	checked := false // e.State and e.Kind were checked against kinds
	return WalkKeyGroups(r, h, h.Range, func(kg int, name string, kind byte, key, val []byte) error {
		if !checked || name != e.State || StateKind(kind) != e.Kind {
			if kinds == nil {
				kinds = map[string]StateKind{}
			}
			if k, ok := kinds[name]; ok && k != StateKind(kind) {
				return fmt.Errorf("state %q is %s state here, %s state in another key group", name, StateKind(kind), k)
			}
			kinds[name] = StateKind(kind)
			e.State, e.Kind, checked = name, StateKind(kind), true
		}
		e.KeyGroup, e.Key, e.Value = kg, key, val
		return visit(e)
	})
}

// StateSize is what one keyed state holds in a snapshot stream.
type StateSize struct {
	Name string
	Kind StateKind
	// Entries is the number of entries (keys) of the state.
	Entries int64
	// Bytes is the size of the encoded keys and values; the stream adds
	// framing (lengths, state names, checksums) to it.
	Bytes int64
}

// StateSizes reads the keyed snapshot stream of h from r (as
// ReadKeyGroups does, with the same validation) and returns the entries
// and bytes of each state over the key groups of h, sorted by name.
func StateSizes(r io.Reader, h checkpoint.KeyedStateHandle) ([]StateSize, error) {
	return SizesOf(func(visit func(RawEntry) error) error { return ReadKeyGroups(r, h, visit) })
}

// SizesOf adds up the entries and bytes of each state that read visits
// (ReadKeyGroups, or a reader of native snapshots), sorted by name.
func SizesOf(read func(visit func(RawEntry) error) error) ([]StateSize, error) {
	byName := map[string]*StateSize{}
	var cur *StateSize
	err := read(func(e RawEntry) error {
		if cur == nil || cur.Name != e.State {
			if cur = byName[e.State]; cur == nil {
				cur = &StateSize{Name: e.State, Kind: e.Kind}
				byName[e.State] = cur
			}
		}
		cur.Entries++
		cur.Bytes += int64(len(e.Key) + len(e.Value))
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]StateSize, 0, len(byName))
	for _, s := range byName {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
