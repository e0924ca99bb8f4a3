package state

import (
	"encoding/binary"
	"fmt"
	"iter"
)

// Reducing and aggregating state are built on a value state whose value is
// the reduced value or the accumulator, and so are list and map states
// with a time-to-live (the whole list or map is one value and expires
// whole; see collections.go for the per-entry list and map states). A
// stored value is never modified in place (Add builds a new list), which is
// what the copy-on-write snapshots need. They are written into snapshots
// as value states of their encoded form, so a restore reads them back into
// the same kind of state by name.

// sliceCodec encodes a list as uvarint(count) and each element
// length-prefixed with uvarint.
type sliceCodec[T any] struct{ c Codec[T] }

func (s sliceCodec[T]) Append(dst []byte, v []T) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(v)))
	for _, x := range v {
		start := len(dst)
		dst = prefixLength(s.c.Append(dst, x), start)
	}
	return dst
}

func (s sliceCodec[T]) Decode(src []byte) ([]T, error) { return decodeList(src, s.c.Decode) }

// CodecID implements VersionedCodec: "list(" the element codec ")".
func (s sliceCodec[T]) CodecID() string   { return "list(" + refOf(s.c) + ")" }
func (s sliceCodec[T]) CodecVersion() int { return 0 }

// decoderFrom reads lists whose elements another codec wrote, when the
// element codec reads that one.
func (s sliceCodec[T]) decoderFrom(id string, version int) func([]byte) ([]T, error) {
	args, ok := composedArgs(id, "list", 1)
	if version != 0 || !ok {
		return nil
	}
	dec := decoderForRef(s.c, args[0])
	if dec == nil {
		return nil
	}
	return func(src []byte) ([]T, error) { return decodeList(src, dec) }
}

// CanDecodeFrom and DecodeFrom implement MigratingCodec.
func (s sliceCodec[T]) CanDecodeFrom(id string, version int) bool {
	return s.decoderFrom(id, version) != nil
}

func (s sliceCodec[T]) DecodeFrom(id string, version int, src []byte) ([]T, error) {
	dec := s.decoderFrom(id, version)
	if dec == nil {
		return nil, fmt.Errorf("cannot decode a list of codec %s", codecRef(id, version))
	}
	return dec(src)
}

func decodeList[T any](src []byte, dec func([]byte) (T, error)) ([]T, error) {
	n, k := binary.Uvarint(src)
	if k <= 0 || n > uint64(len(src)) {
		return nil, fmt.Errorf("bad list length")
	}
	src = src[k:]
	out := make([]T, 0, n)
	for range n {
		l, k := binary.Uvarint(src)
		if k <= 0 || l > uint64(len(src)-k) {
			return nil, fmt.Errorf("list element %d is truncated", len(out))
		}
		v, err := dec(src[k : k+int(l)])
		if err != nil {
			return nil, fmt.Errorf("list element %d: %w", len(out), err)
		}
		out = append(out, v)
		src = src[k+int(l):]
	}
	if len(src) != 0 {
		return nil, errTrailing
	}
	return out, nil
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

type keyedList[T any] struct{ v ValueState[[]T] }

// listAsValue is a keyed list state with a time-to-live: a value state of
// the whole list, which expires whole; Add copies the list (O(length)).
func listAsValue[K comparable, T any](b KeyedBackend[K], name string, c Codec[T], ttl TTLConfig) (ListState[T], error) {
	v, err := getValueState[K, []T](b, name, sliceCodec[T]{c}, ttl)
	if err != nil {
		return nil, err
	}
	return keyedList[T]{v}, nil
}

func (l keyedList[T]) All() iter.Seq[T] {
	return func(yield func(T) bool) {
		for _, x := range l.Get() {
			if !yield(x) {
				return
			}
		}
	}
}

func (l keyedList[T]) AddAll(xs []T) {
	if len(xs) == 0 {
		return
	}
	old, _ := l.v.Value()
	l.v.Update(append(append(make([]T, 0, len(old)+len(xs)), old...), xs...))
}

func (l keyedList[T]) Get() []T {
	v, _ := l.v.Value()
	return v
}

func (l keyedList[T]) Update(v []T) {
	if len(v) == 0 {
		l.v.Clear()
		return
	}
	l.v.Update(append([]T(nil), v...))
}

func (l keyedList[T]) Add(x T) {
	old, _ := l.v.Value()
	n := make([]T, len(old)+1)
	copy(n, old)
	n[len(old)] = x
	l.v.Update(n)
}

func (l keyedList[T]) Clear() { l.v.Clear() }

// ReducingState keeps, per key, the reduction of every value added.
type ReducingState[T any] interface {
	Get() (T, bool)
	Add(v T)
	Clear()
}

type reducing[T any] struct {
	v      ValueState[T]
	reduce func(a, b T) T
}

// GetReducingState registers (or returns) the reducing state called name.
func GetReducingState[K comparable, T any](b KeyedBackend[K], name string, c Codec[T], reduce func(a, b T) T, opts ...Option) (ReducingState[T], error) {
	v, err := GetValueState[K, T](b, name, c, opts...)
	if err != nil {
		return nil, err
	}
	return reducing[T]{v: v, reduce: reduce}, nil
}

func (r reducing[T]) Get() (T, bool) { return r.v.Value() }
func (r reducing[T]) Clear()         { r.v.Clear() }
func (r reducing[T]) Add(x T) {
	if old, ok := r.v.Value(); ok {
		x = r.reduce(old, x)
	}
	r.v.Update(x)
}

// Aggregator folds IN values into an accumulator ACC and reads OUT from it.
// Add must not modify acc in place when ACC holds references (a map, a
// slice, a pointer): a snapshot may still be reading it. Return a new value.
type Aggregator[IN, ACC, OUT any] interface {
	CreateAccumulator() ACC
	Add(in IN, acc ACC) ACC
	Result(acc ACC) OUT
}

// AggregatingState keeps, per key, an accumulator of every value added.
type AggregatingState[IN, OUT any] interface {
	Get() (OUT, bool)
	Add(v IN)
	Clear()
}

type aggregating[IN, ACC, OUT any] struct {
	v   ValueState[ACC]
	agg Aggregator[IN, ACC, OUT]
}

// GetAggregatingState registers (or returns) the aggregating state called
// name; accumulators are checkpointed with c.
func GetAggregatingState[K comparable, IN, ACC, OUT any](b KeyedBackend[K], name string, c Codec[ACC], agg Aggregator[IN, ACC, OUT], opts ...Option) (AggregatingState[IN, OUT], error) {
	v, err := GetValueState[K, ACC](b, name, c, opts...)
	if err != nil {
		return nil, err
	}
	return aggregating[IN, ACC, OUT]{v: v, agg: agg}, nil
}

func (a aggregating[IN, ACC, OUT]) Get() (OUT, bool) {
	acc, ok := a.v.Value()
	if !ok {
		var zero OUT
		return zero, false
	}
	return a.agg.Result(acc), true
}

func (a aggregating[IN, ACC, OUT]) Add(x IN) {
	acc, ok := a.v.Value()
	if !ok {
		acc = a.agg.CreateAccumulator()
	}
	a.v.Update(a.agg.Add(x, acc))
}

func (a aggregating[IN, ACC, OUT]) Clear() { a.v.Clear() }

type mapCodec[UK comparable, UV any] struct {
	k Codec[UK]
	v Codec[UV]
}

func (m mapCodec[UK, UV]) Append(dst []byte, mv map[UK]UV) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(mv)))
	for k, v := range mv {
		start := len(dst)
		dst = prefixLength(m.k.Append(dst, k), start)
		start = len(dst)
		dst = prefixLength(m.v.Append(dst, v), start)
	}
	return dst
}

func (m mapCodec[UK, UV]) Decode(src []byte) (map[UK]UV, error) {
	return decodeMap(src, m.k.Decode, m.v.Decode)
}

// CodecID implements VersionedCodec: "map(" key codec "," value codec ")".
func (m mapCodec[UK, UV]) CodecID() string   { return "map(" + refOf(m.k) + "," + refOf(m.v) + ")" }
func (m mapCodec[UK, UV]) CodecVersion() int { return 0 }

// decoderFrom reads maps whose keys or values other codecs wrote, when the
// key and value codecs read those.
func (m mapCodec[UK, UV]) decoderFrom(id string, version int) func([]byte) (map[UK]UV, error) {
	args, ok := composedArgs(id, "map", 2)
	if version != 0 || !ok {
		return nil
	}
	kd, vd := decoderForRef(m.k, args[0]), decoderForRef(m.v, args[1])
	if kd == nil || vd == nil {
		return nil
	}
	return func(src []byte) (map[UK]UV, error) { return decodeMap(src, kd, vd) }
}

// CanDecodeFrom and DecodeFrom implement MigratingCodec.
func (m mapCodec[UK, UV]) CanDecodeFrom(id string, version int) bool {
	return m.decoderFrom(id, version) != nil
}

func (m mapCodec[UK, UV]) DecodeFrom(id string, version int, src []byte) (map[UK]UV, error) {
	dec := m.decoderFrom(id, version)
	if dec == nil {
		return nil, fmt.Errorf("cannot decode a map of codec %s", codecRef(id, version))
	}
	return dec(src)
}

func decodeMap[UK comparable, UV any](src []byte, kd func([]byte) (UK, error), vd func([]byte) (UV, error)) (map[UK]UV, error) {
	n, k := binary.Uvarint(src)
	if k <= 0 || n > uint64(len(src)) {
		return nil, fmt.Errorf("bad map length")
	}
	src = src[k:]
	out := make(map[UK]UV, n)
	next := func() ([]byte, error) {
		l, k := binary.Uvarint(src)
		if k <= 0 || l > uint64(len(src)-k) {
			return nil, fmt.Errorf("map entry %d is truncated", len(out))
		}
		b := src[k : k+int(l)]
		src = src[k+int(l):]
		return b, nil
	}
	for range n {
		kb, err := next()
		if err != nil {
			return nil, err
		}
		vb, err := next()
		if err != nil {
			return nil, err
		}
		key, err := kd(kb)
		if err != nil {
			return nil, fmt.Errorf("map key: %w", err)
		}
		val, err := vd(vb)
		if err != nil {
			return nil, fmt.Errorf("map value: %w", err)
		}
		out[key] = val
	}
	if len(src) != 0 {
		return nil, errTrailing
	}
	return out, nil
}

type keyedMap[UK comparable, UV any] struct{ v ValueState[map[UK]UV] }

// mapAsValue is a keyed map state with a time-to-live: a value state of
// the whole map, which expires whole. The map of a key is copied on every
// Put and Remove (the stored map is never modified in place, for the
// copy-on-write snapshots).
func mapAsValue[K, UK comparable, UV any](b KeyedBackend[K], name string, kc Codec[UK], vc Codec[UV], ttl TTLConfig) (MapState[UK, UV], error) {
	v, err := getValueState[K, map[UK]UV](b, name, mapCodec[UK, UV]{kc, vc}, ttl)
	if err != nil {
		return nil, err
	}
	return keyedMap[UK, UV]{v}, nil
}

func (m keyedMap[UK, UV]) Contains(k UK) bool { _, ok := m.Get(k); return ok }

func (m keyedMap[UK, UV]) IsEmpty() bool { return len(m.Entries()) == 0 }

func (m keyedMap[UK, UV]) All() iter.Seq2[UK, UV] {
	return func(yield func(UK, UV) bool) {
		for k, v := range m.Entries() {
			if !yield(k, v) {
				return
			}
		}
	}
}

func (m keyedMap[UK, UV]) Keys() iter.Seq[UK] {
	return func(yield func(UK) bool) {
		for k := range m.Entries() {
			if !yield(k) {
				return
			}
		}
	}
}

func (m keyedMap[UK, UV]) Values() iter.Seq[UV] {
	return func(yield func(UV) bool) {
		for _, v := range m.Entries() {
			if !yield(v) {
				return
			}
		}
	}
}

func (m keyedMap[UK, UV]) Get(k UK) (UV, bool) {
	cur, _ := m.v.Value()
	v, ok := cur[k]
	return v, ok
}

func (m keyedMap[UK, UV]) Put(k UK, v UV) {
	cur, _ := m.v.Value()
	n := make(map[UK]UV, len(cur)+1)
	for ck, cv := range cur {
		n[ck] = cv
	}
	n[k] = v
	m.v.Update(n)
}

func (m keyedMap[UK, UV]) Remove(k UK) {
	cur, _ := m.v.Value()
	if _, ok := cur[k]; !ok {
		return
	}
	if len(cur) == 1 {
		m.v.Clear()
		return
	}
	n := make(map[UK]UV, len(cur)-1)
	for ck, cv := range cur {
		if ck != k {
			n[ck] = cv
		}
	}
	m.v.Update(n)
}

func (m keyedMap[UK, UV]) Entries() map[UK]UV {
	cur, _ := m.v.Value()
	return cur
}

func (m keyedMap[UK, UV]) Clear() { m.v.Clear() }
