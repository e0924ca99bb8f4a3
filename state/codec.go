package state

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"unsafe"
)

// Codec writes values of T into checkpoints and reads them back.
type Codec[T any] interface {
	// Append appends the encoding of v to dst.
	Append(dst []byte, v T) []byte
	// Decode reads a value from src, which holds exactly one encoding.
	Decode(src []byte) (T, error)
}

// CodecFor returns the built-in codec for T: a compact binary one for
// integers, floats, bool, string and []byte; JSON for every other type
// (exported fields only; give the operator your own Codec when that is not
// what you want).
func CodecFor[T any]() Codec[T] {
	var zero T
	var c any
	switch any(zero).(type) {
	case int:
		c = intCodec[int]{}
	case int8:
		c = intCodec[int8]{}
	case int16:
		c = intCodec[int16]{}
	case int32:
		c = intCodec[int32]{}
	case int64:
		c = intCodec[int64]{}
	case uint:
		c = uintCodec[uint]{}
	case uint8:
		c = uintCodec[uint8]{}
	case uint16:
		c = uintCodec[uint16]{}
	case uint32:
		c = uintCodec[uint32]{}
	case uint64:
		c = uintCodec[uint64]{}
	case float64:
		c = float64Codec{}
	case float32:
		c = float32Codec{}
	case bool:
		c = boolCodec{}
	case string:
		c = stringCodec{}
	case []byte:
		c = bytesCodec{}
	default:
		return jsonCodec[T]{}
	}
	return c.(Codec[T])
}

var errTrailing = errors.New("trailing bytes after value")

type signed interface {
	~int | ~int8 | ~int16 | ~int32 | ~int64
}
type unsigned interface {
	~uint | ~uint8 | ~uint16 | ~uint32 | ~uint64
}

type intCodec[T signed] struct{}

func (intCodec[T]) Append(dst []byte, v T) []byte { return binary.AppendVarint(dst, int64(v)) }
func (intCodec[T]) Decode(src []byte) (T, error) {
	v, n := binary.Varint(src)
	if n <= 0 {
		return 0, fmt.Errorf("bad varint in %d bytes", len(src))
	}
	if n != len(src) {
		return 0, errTrailing
	}
	if T(v) != 0 && int64(T(v)) != v {
		return 0, fmt.Errorf("value %d overflows %T", v, T(0))
	}
	return T(v), nil
}

type uintCodec[T unsigned] struct{}

func (uintCodec[T]) Append(dst []byte, v T) []byte { return binary.AppendUvarint(dst, uint64(v)) }
func (uintCodec[T]) Decode(src []byte) (T, error) {
	v, n := binary.Uvarint(src)
	if n <= 0 {
		return 0, fmt.Errorf("bad uvarint in %d bytes", len(src))
	}
	if n != len(src) {
		return 0, errTrailing
	}
	if uint64(T(v)) != v {
		return 0, fmt.Errorf("value %d overflows %T", v, T(0))
	}
	return T(v), nil
}

type float64Codec struct{}

func (float64Codec) Append(dst []byte, v float64) []byte {
	return binary.BigEndian.AppendUint64(dst, math.Float64bits(v))
}
func (float64Codec) Decode(src []byte) (float64, error) {
	if len(src) != 8 {
		return 0, fmt.Errorf("float64 needs 8 bytes, got %d", len(src))
	}
	return math.Float64frombits(binary.BigEndian.Uint64(src)), nil
}

type float32Codec struct{}

func (float32Codec) Append(dst []byte, v float32) []byte {
	return binary.BigEndian.AppendUint32(dst, math.Float32bits(v))
}
func (float32Codec) Decode(src []byte) (float32, error) {
	if len(src) != 4 {
		return 0, fmt.Errorf("float32 needs 4 bytes, got %d", len(src))
	}
	return math.Float32frombits(binary.BigEndian.Uint32(src)), nil
}

type boolCodec struct{}

func (boolCodec) Append(dst []byte, v bool) []byte {
	if v {
		return append(dst, 1)
	}
	return append(dst, 0)
}
func (boolCodec) Decode(src []byte) (bool, error) {
	if len(src) != 1 || src[0] > 1 {
		return false, fmt.Errorf("bad bool encoding %v", src)
	}
	return src[0] == 1, nil
}

type stringCodec struct{}

func (stringCodec) Append(dst []byte, v string) []byte { return append(dst, v...) }
func (stringCodec) Decode(src []byte) (string, error)  { return string(src), nil }

type bytesCodec struct{}

func (bytesCodec) Append(dst []byte, v []byte) []byte { return append(dst, v...) }
func (bytesCodec) Decode(src []byte) ([]byte, error)  { return append([]byte{}, src...), nil }

type jsonCodec[T any] struct{}

func (jsonCodec[T]) Append(dst []byte, v T) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Values that cannot be marshalled (channels, funcs) are a
		// programming error caught by the first checkpoint's test run.
		panic(fmt.Sprintf("weir: cannot encode %T as JSON for a checkpoint: %v (give the state a Codec)", v, err))
	}
	return append(dst, b...)
}

func (jsonCodec[T]) Decode(src []byte) (T, error) {
	var v T
	if err := json.Unmarshal(src, &v); err != nil {
		return v, fmt.Errorf("cannot decode %T from JSON: %w", v, err)
	}
	return v, nil
}

// HashFunc is the stable key hash that picks a key's key group.
type HashFunc[K comparable] func(K) uint32

// HasherFor returns the hash of keys of type K. Integer keys hash their
// value and string keys their bytes, without allocation; other keys are
// encoded with c into a scratch buffer and hashed, so the returned function
// is then not safe for concurrent use (create one per subtask).
func HasherFor[K comparable](c Codec[K]) HashFunc[K] {
	var zero K
	switch any(zero).(type) {
	case int, int64, uint, uint64:
		return func(k K) uint32 { return Murmur3Uint64(*(*uint64)(unsafe.Pointer(&k))) }
	case int32:
		return func(k K) uint32 { return Murmur3Uint64(uint64(int64(*(*int32)(unsafe.Pointer(&k))))) }
	case uint32:
		return func(k K) uint32 { return Murmur3Uint64(uint64(*(*uint32)(unsafe.Pointer(&k)))) }
	case int16:
		return func(k K) uint32 { return Murmur3Uint64(uint64(int64(*(*int16)(unsafe.Pointer(&k))))) }
	case uint16:
		return func(k K) uint32 { return Murmur3Uint64(uint64(*(*uint16)(unsafe.Pointer(&k)))) }
	case int8:
		return func(k K) uint32 { return Murmur3Uint64(uint64(int64(*(*int8)(unsafe.Pointer(&k))))) }
	case uint8:
		return func(k K) uint32 { return Murmur3Uint64(uint64(*(*uint8)(unsafe.Pointer(&k)))) }
	case string:
		return func(k K) uint32 { return Murmur3String(*(*string)(unsafe.Pointer(&k))) }
	}
	var buf []byte
	return func(k K) uint32 {
		buf = c.Append(buf[:0], k)
		return Murmur3Bytes(buf)
	}
}
