package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"

	"github.com/weirstream/weir/checkpoint"
)

// rawCollection is what a RawKeyedBackend's map and list states share:
// the store prefix of the current key's entries (see collections.go for
// the layout), conversion of restored entries, and the rewrite of every
// entry when the state is registered over entries of an older format or
// codec.
type rawCollection[K comparable] struct {
	b    *RawKeyedBackend[K]
	name string
	k    stateKind
	meta checkpoint.StateMeta
	pbuf []byte // prefix of the current key
	kbuf []byte
	vbuf []byte
}

func (c *rawCollection[K]) kind() stateKind              { return c.k }
func (c *rawCollection[K]) schema() checkpoint.StateMeta { return c.meta }

// prefix returns the store prefix of the current key's entries.
func (c *rawCollection[K]) prefix() []byte {
	c.pbuf = appendCollectionPrefix(c.pbuf[:0], c.b.curKG, c.name, c.b.keyEnc)
	return c.pbuf
}

func appendCollectionPrefix(dst []byte, kg int, name string, key []byte) []byte {
	dst = appendKGPrefix(dst, kg, name)
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	return append(dst, key...)
}

// prefixEnd returns the first key after every key starting with p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xFF {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// splitCollectionKey splits the part of a map or list entry's raw key
// after the state name into the key's encoding and the rest (the map key,
// or the list sequence number; empty for a list's counter).
func splitCollectionKey(s []byte) (key, rest []byte, err error) {
	n, l := binary.Uvarint(s)
	if l <= 0 || n > uint64(len(s)-l) {
		return nil, nil, fmt.Errorf("malformed key %x", s)
	}
	return s[l : l+int(n)], s[l+int(n):], nil
}

func (c *rawCollection[K]) fail(what string, err error) {
	c.b.fail(fmt.Errorf("cannot %s state %q: %w", what, c.name, err))
}

// clearCurrent deletes every entry of the current key.
func (c *rawCollection[K]) clearCurrent() {
	p := c.prefix()
	var keys [][]byte
	err := c.b.store.Scan(p, prefixEnd(p), 0, func(k, _ []byte) error {
		keys = append(keys, append([]byte(nil), k...))
		return nil
	})
	for _, k := range keys {
		if err != nil {
			break
		}
		err = c.b.store.Delete(k)
	}
	if err != nil {
		c.fail("clear", err)
	}
}

func (c *rawCollection[K]) isEmpty() bool {
	p := c.prefix()
	n := 0
	if err := c.b.store.Scan(p, prefixEnd(p), 1, func(_, _ []byte) error { n++; return nil }); err != nil {
		c.fail("read", err)
	}
	return n == 0
}

// errStop ends a scan early (an iteration the caller stopped).
var errStop = errors.New("stop")

// rewrite replaces every entry of the state in the backend's key groups by
// what conv makes of it (conv calls put for each new entry), reading each
// key group whole first: entries of the old and the new layout share the
// key range.
func (c *rawCollection[K]) rewrite(conv func(kg int, suffix, val []byte, put func(k, v []byte) error) error) error {
	b := c.b
	type kv struct{ k, v []byte }
	for kg := b.r.Start; kg <= b.r.End; kg++ {
		lower := appendKGPrefix(nil, kg, c.name)
		upper := append([]byte(nil), lower...)
		upper[len(upper)-1] = 1
		var old []kv
		err := b.store.Scan(lower, upper, 0, func(k, v []byte) error {
			old = append(old, kv{append([]byte(nil), k...), append([]byte(nil), v...)})
			return nil
		})
		if err != nil {
			return err
		}
		for _, e := range old {
			if err := b.store.Delete(e.k); err != nil {
				return err
			}
		}
		for _, e := range old {
			if err := conv(kg, e.k[len(lower):], e.v, b.store.Set); err != nil {
				return fmt.Errorf("key group %d: %w", kg, err)
			}
		}
	}
	return nil
}

// convert rewrites the entries of a state restored in the format before
// per-entry storage (kind value) with old and records the state's kind.
func (c *rawCollection[K]) convert(old func(kg int, suffix, val []byte, put func(k, v []byte) error) error) error {
	if err := c.rewrite(old); err != nil {
		return fmt.Errorf("cannot convert state %q, checkpointed as one value per key, into a %s state: %w", c.name, c.k, err)
	}
	c.b.kinds[c.name] = c.k
	return c.b.store.Set(append(append([]byte(nil), rawMetaPrefix...), c.name...), []byte{byte(c.k)})
}

// reload converts what a native restore brought into a registered state
// in the format before per-entry storage.
func (m *rawMap[K, UK, UV]) reload() error {
	if m.b.kinds[m.name] == kindValue {
		return m.convert(m.convertOld)
	}
	return nil
}

func (l *rawList[K, T]) reload() error {
	if l.b.kinds[l.name] == kindValue {
		return l.convert(l.convertOld)
	}
	return nil
}

// registerRawCollection registers c (kind c.k) with b: it checks the
// kinds a restore recorded, converts entries of the format before
// per-entry storage (a value state of the whole collection) with old,
// and migrates entries of another codec with migrate.
func registerRawCollection[K comparable](b *RawKeyedBackend[K], c *rawCollection[K], t rawTable, old func(kg int, suffix, val []byte, put func(k, v []byte) error) error, migrating bool, migrate func(kg int, suffix, val []byte, put func(k, v []byte) error) error) error {
	if err := checkRawName(c.name); err != nil {
		return err
	}
	if err := checkCollectionKind(c.name, c.k, b.stored[c.name]); err != nil {
		return err
	}
	prev, restored := b.kinds[c.name]
	switch {
	case !restored || prev == c.k:
	case prev == kindValue:
		migrating = false // old decodes with the recorded codec
		if err := c.convert(old); err != nil {
			return err
		}
	default:
		return fmt.Errorf("state %q was checkpointed as %s state, cannot use it as %s state", c.name, prev, c.k)
	}
	if err := b.setKind(c.name, c.k); err != nil {
		return err
	}
	delete(b.stored, c.name)
	if migrating {
		if err := c.rewrite(migrate); err != nil {
			return fmt.Errorf("cannot migrate state %q: %w", c.name, err)
		}
	}
	b.states[c.name] = t
	return nil
}

// rawMap is a MapState of a RawKeyedBackend: one store key per entry.
type rawMap[K, UK comparable, UV any] struct {
	rawCollection[K]
	kc  Codec[UK]
	vc  Codec[UV]
	dec mapDecoders[UK, UV]
}

func getRawMap[K, UK comparable, UV any](b *RawKeyedBackend[K], name string, kc Codec[UK], vc Codec[UV]) (MapState[UK, UV], error) {
	meta := stateMeta(name, kindMap, Codec[map[UK]UV](mapCodec[UK, UV]{kc, vc}), b.keyID, b.keyVersion)
	if t, ok := b.states[name]; ok {
		m, ok := t.(*rawMap[K, UK, UV])
		if !ok {
			return nil, fmt.Errorf("state %q is already registered as %s state (%T), not as this map state", name, t.kind(), t)
		}
		return m, nil
	}
	m := &rawMap[K, UK, UV]{rawCollection: rawCollection[K]{b: b, name: name, k: kindMap, meta: meta}, kc: kc, vc: vc}
	stored := b.stored[name]
	if err := m.adopt(stored); err != nil {
		return nil, err
	}
	migrating := stored.Codec != "" && (stored.Codec != meta.Codec || stored.CodecVersion != meta.CodecVersion)
	if err := registerRawCollection(b, &m.rawCollection, m, m.convertOld, migrating, m.migrate); err != nil {
		return nil, err
	}
	m.dec, _ = newMapDecoders(checkpoint.StateMeta{}, meta, kc, vc) // the state's own codecs from now on
	return m, nil
}

func (m *rawMap[K, UK, UV]) adopt(stored checkpoint.StateMeta) error {
	d, err := newMapDecoders(stored, m.meta, m.kc, m.vc)
	if err == nil {
		m.dec = d
	}
	return err
}

// convertOld writes the entries of a whole map of the old format (suffix:
// the key's encoding).
func (m *rawMap[K, UK, UV]) convertOld(kg int, suffix, val []byte, put func(k, v []byte) error) error {
	mv, err := m.dec.old(val)
	if err != nil {
		return fmt.Errorf("key %x: %w", suffix, err)
	}
	p := appendCollectionPrefix(nil, kg, m.name, suffix)
	for k, v := range mv {
		if err := put(m.kc.Append(append([]byte(nil), p...), k), m.vc.Append(nil, v)); err != nil {
			return err
		}
	}
	return nil
}

// migrate rewrites one entry decoded with the recorded codecs.
func (m *rawMap[K, UK, UV]) migrate(kg int, suffix, val []byte, put func(k, v []byte) error) error {
	key, mkb, err := splitCollectionKey(suffix)
	if err != nil {
		return err
	}
	mk, err := m.dec.key(mkb)
	if err != nil {
		return err
	}
	mv, err := m.dec.value(val)
	if err != nil {
		return err
	}
	return put(m.kc.Append(appendCollectionPrefix(nil, kg, m.name, key), mk), m.vc.Append(nil, mv))
}

func (m *rawMap[K, UK, UV]) key(k UK) []byte {
	m.kbuf = m.kc.Append(append(m.kbuf[:0], m.prefix()...), k)
	return m.kbuf
}

func (m *rawMap[K, UK, UV]) Get(k UK) (UV, bool) {
	var zero UV
	v, ok, err := m.b.store.Get(m.key(k), m.vbuf[:0])
	if err != nil {
		m.fail("read", err)
		return zero, false
	}
	if !ok {
		return zero, false
	}
	m.vbuf = v[:0]
	x, err := m.vc.Decode(v)
	if err != nil {
		m.fail("decode", err)
		return zero, false
	}
	return x, true
}

func (m *rawMap[K, UK, UV]) Contains(k UK) bool {
	_, ok, err := m.b.store.Get(m.key(k), m.vbuf[:0])
	if err != nil {
		m.fail("read", err)
	}
	return ok
}

func (m *rawMap[K, UK, UV]) Put(k UK, v UV) {
	key := m.key(k)
	m.vbuf = m.vc.Append(m.vbuf[:0], v)
	if err := m.b.store.Set(key, m.vbuf); err != nil {
		m.fail("write", err)
	}
}

func (m *rawMap[K, UK, UV]) Remove(k UK) {
	if err := m.b.store.Delete(m.key(k)); err != nil {
		m.fail("write", err)
	}
}

func (m *rawMap[K, UK, UV]) Clear()        { m.clearCurrent() }
func (m *rawMap[K, UK, UV]) IsEmpty() bool { return m.isEmpty() }

// scan calls fn with every entry of the current key (the map key's and
// value's encodings), from a store iterator: a consistent view.
func (m *rawMap[K, UK, UV]) scan(fn func(mk, mv []byte) bool) {
	p := append([]byte(nil), m.prefix()...)
	err := m.b.store.Scan(p, prefixEnd(p), 0, func(k, v []byte) error {
		if !fn(k[len(p):], v) {
			return errStop
		}
		return nil
	})
	if err != nil && err != errStop {
		m.fail("read", err)
	}
}

func (m *rawMap[K, UK, UV]) All() iter.Seq2[UK, UV] {
	return func(yield func(UK, UV) bool) {
		m.scan(func(mkb, mvb []byte) bool {
			mk, err := m.kc.Decode(mkb)
			if err != nil {
				m.fail("decode", err)
				return false
			}
			mv, err := m.vc.Decode(mvb)
			if err != nil {
				m.fail("decode", err)
				return false
			}
			return yield(mk, mv)
		})
	}
}

func (m *rawMap[K, UK, UV]) Keys() iter.Seq[UK] {
	return func(yield func(UK) bool) {
		m.scan(func(mkb, _ []byte) bool {
			mk, err := m.kc.Decode(mkb)
			if err != nil {
				m.fail("decode", err)
				return false
			}
			return yield(mk)
		})
	}
}

func (m *rawMap[K, UK, UV]) Values() iter.Seq[UV] {
	return func(yield func(UV) bool) {
		m.scan(func(_, mvb []byte) bool {
			mv, err := m.vc.Decode(mvb)
			if err != nil {
				m.fail("decode", err)
				return false
			}
			return yield(mv)
		})
	}
}

func (m *rawMap[K, UK, UV]) Entries() map[UK]UV {
	var out map[UK]UV
	for k, v := range m.All() {
		if out == nil {
			out = map[UK]UV{}
		}
		out[k] = v
	}
	return out
}

// restoreOldValue converts a whole map of the old format restored while
// the state is registered.
func (m *rawMap[K, UK, UV]) restoreOldValue(kg int, key, val []byte) error {
	return m.convertOld(kg, key, val, m.b.store.Set)
}

// rawList is a keyed ListState of a RawKeyedBackend: one store key per
// element, after the key's counter.
type rawList[K comparable, T any] struct {
	rawCollection[K]
	c   Codec[T]
	dec listDecoders[T]
}

func getRawList[K comparable, T any](b *RawKeyedBackend[K], name string, c Codec[T]) (ListState[T], error) {
	meta := stateMeta(name, kindList, Codec[[]T](sliceCodec[T]{c}), b.keyID, b.keyVersion)
	if t, ok := b.states[name]; ok {
		l, ok := t.(*rawList[K, T])
		if !ok {
			return nil, fmt.Errorf("state %q is already registered as %s state (%T), not as this list state", name, t.kind(), t)
		}
		return l, nil
	}
	l := &rawList[K, T]{rawCollection: rawCollection[K]{b: b, name: name, k: kindList, meta: meta}, c: c}
	stored := b.stored[name]
	if err := l.adopt(stored); err != nil {
		return nil, err
	}
	migrating := stored.Codec != "" && (stored.Codec != meta.Codec || stored.CodecVersion != meta.CodecVersion)
	if err := registerRawCollection(b, &l.rawCollection, l, l.convertOld, migrating, l.migrate); err != nil {
		return nil, err
	}
	l.dec, _ = newListDecoders(checkpoint.StateMeta{}, meta, c) // the state's own codecs from now on
	return l, nil
}

func (l *rawList[K, T]) adopt(stored checkpoint.StateMeta) error {
	d, err := newListDecoders(stored, l.meta, l.c)
	if err == nil {
		l.dec = d
	}
	return err
}

func (l *rawList[K, T]) convertOld(kg int, suffix, val []byte, put func(k, v []byte) error) error {
	xs, err := l.dec.old(val)
	if err != nil {
		return fmt.Errorf("key %x: %w", suffix, err)
	}
	p := appendCollectionPrefix(nil, kg, l.name, suffix)
	for i, x := range xs {
		if err := put(binary.BigEndian.AppendUint64(append([]byte(nil), p...), uint64(i)), l.c.Append(nil, x)); err != nil {
			return err
		}
	}
	return put(p, binary.BigEndian.AppendUint64(nil, uint64(len(xs))))
}

func (l *rawList[K, T]) migrate(kg int, suffix, val []byte, put func(k, v []byte) error) error {
	_, seq, err := splitCollectionKey(suffix)
	if err != nil {
		return err
	}
	full := appendKGPrefix(nil, kg, l.name)
	full = append(full, suffix...)
	if len(seq) == 0 { // the counter
		return put(full, val)
	}
	x, err := l.dec.elem(val)
	if err != nil {
		return err
	}
	return put(full, l.c.Append(nil, x))
}

func (l *rawList[K, T]) restoreOldValue(kg int, key, val []byte) error {
	return l.convertOld(kg, key, val, l.b.store.Set)
}

// next reads the current key's next sequence number.
func (l *rawList[K, T]) next() (uint64, error) {
	v, ok, err := l.b.store.Get(l.prefix(), l.vbuf[:0])
	if err != nil || !ok {
		return 0, err
	}
	l.vbuf = v[:0]
	if len(v) != 8 {
		return 0, fmt.Errorf("corrupted list counter (%d bytes)", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

func (l *rawList[K, T]) add(xs ...T) {
	seq, err := l.next()
	for _, x := range xs {
		if err != nil {
			break
		}
		l.kbuf = binary.BigEndian.AppendUint64(append(l.kbuf[:0], l.pbuf...), seq)
		l.vbuf = l.c.Append(l.vbuf[:0], x)
		err = l.b.store.Set(l.kbuf, l.vbuf)
		seq++
	}
	if err == nil {
		err = l.b.store.Set(l.pbuf, binary.BigEndian.AppendUint64(l.vbuf[:0], seq))
	}
	if err != nil {
		l.fail("write", err)
	}
}

func (l *rawList[K, T]) Add(x T) { l.add(x) }

func (l *rawList[K, T]) AddAll(xs []T) {
	if len(xs) > 0 {
		l.add(xs...)
	}
}

func (l *rawList[K, T]) Update(xs []T) {
	l.clearCurrent()
	if len(xs) > 0 {
		l.add(xs...)
	}
}

func (l *rawList[K, T]) Clear() { l.clearCurrent() }

func (l *rawList[K, T]) All() iter.Seq[T] {
	return func(yield func(T) bool) {
		p := append([]byte(nil), l.prefix()...)
		err := l.b.store.Scan(append(p, 0), prefixEnd(p), 0, func(k, v []byte) error {
			if len(k) != len(p)+8 {
				return nil
			}
			x, err := l.c.Decode(v)
			if err != nil {
				return err
			}
			if !yield(x) {
				return errStop
			}
			return nil
		})
		if err != nil && err != errStop {
			l.fail("read", err)
		}
	}
}

func (l *rawList[K, T]) Get() []T {
	var out []T
	for x := range l.All() {
		out = append(out, x)
	}
	return out
}

// collectionEntryOf translates the raw key suffix and value of a map or
// list entry into the canonical stream's entry; ok is false for a list's
// counter, which the stream leaves out.
func collectionEntryOf(kind stateKind, suffix, val, vbuf []byte) (key, v []byte, ok bool, err error) {
	key, rest, err := splitCollectionKey(suffix)
	if err != nil {
		return nil, nil, false, err
	}
	if kind == kindList {
		if len(rest) == 0 {
			return nil, nil, false, nil
		}
		return key, val, true, nil
	}
	return key, appendMapEntry(vbuf[:0], rest, val), true, nil
}

// restoreCollectionEntry writes one map or list entry of the canonical
// stream into the store. A list's elements come key by key in order; seq
// carries the next sequence number of the last key.
func (b *RawKeyedBackend[K]) restoreCollectionEntry(kg int, name string, kind stateKind, key, val []byte) error {
	p := appendCollectionPrefix(nil, kg, name, key)
	if kind == kindMap {
		mk, mv, err := splitMapEntry(val)
		if err != nil {
			return fmt.Errorf("state %q: %w", name, err)
		}
		return b.store.Set(append(p, mk...), mv)
	}
	if !bytes.Equal(p, b.listPrefix) {
		b.listPrefix = p
		b.listSeq = 0
		v, ok, err := b.store.Get(p, nil)
		if err != nil {
			return err
		}
		if ok && len(v) == 8 {
			b.listSeq = binary.BigEndian.Uint64(v)
		}
	}
	if err := b.store.Set(binary.BigEndian.AppendUint64(append([]byte(nil), p...), b.listSeq), val); err != nil {
		return err
	}
	b.listSeq++
	return b.store.Set(p, binary.BigEndian.AppendUint64(nil, b.listSeq))
}
