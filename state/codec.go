package state

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"unsafe"
)

// Codec writes values of T into checkpoints and reads them back. An
// encoding must be stable: checkpoints outlive the build that wrote them.
type Codec[T any] interface {
	// Append appends the encoding of v to dst and returns the extended
	// slice.
	Append(dst []byte, v T) []byte
	// Decode reads a value from src, which holds exactly one encoding. Bad
	// input returns an error, never panics. Decode must not keep src (or a
	// sub-slice of it) after it returns: the caller reuses the buffer.
	Decode(src []byte) (T, error)
}

// CodecFor returns the built-in codec for T:
//
//   - signed integers: zig-zag varint (binary.AppendVarint); unsigned
//     integers: uvarint. Decoding checks the value fits T.
//   - float32, float64: the IEEE 754 bits, big-endian (4 or 8 bytes).
//   - bool: one byte, 0 or 1.
//   - string, []byte: the bytes themselves (the stream frames them).
//   - a named type whose underlying type is one of the above (type UserID
//     int64) uses the encoding of the underlying type.
//   - every other type: encoding/json (exported fields only; values JSON
//     cannot encode, such as channels, fail the checkpoint). Pass your own
//     Codec when that is not what you want, or for speed.
//
// The choice is made once, here; the returned codec does no reflection per
// call. Codecs are stateless and safe for concurrent use. Each is a
// VersionedCodec; CodecIdentity lists their identities.
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
		return namedCodec[T]()
	}
	return c.(Codec[T])
}

// namedCodec returns the codec of T's underlying type when that is a basic
// type, JSON otherwise.
func namedCodec[T any]() Codec[T] {
	t := reflect.TypeFor[T]()
	switch t.Kind() {
	case reflect.Int:
		return via[T](intCodec[int]{})
	case reflect.Int8:
		return via[T](intCodec[int8]{})
	case reflect.Int16:
		return via[T](intCodec[int16]{})
	case reflect.Int32:
		return via[T](intCodec[int32]{})
	case reflect.Int64:
		return via[T](intCodec[int64]{})
	case reflect.Uint:
		return via[T](uintCodec[uint]{})
	case reflect.Uint8:
		return via[T](uintCodec[uint8]{})
	case reflect.Uint16:
		return via[T](uintCodec[uint16]{})
	case reflect.Uint32:
		return via[T](uintCodec[uint32]{})
	case reflect.Uint64:
		return via[T](uintCodec[uint64]{})
	case reflect.Uintptr:
		return via[T](uintCodec[uintptr]{})
	case reflect.Float32:
		return via[T](float32Codec{})
	case reflect.Float64:
		return via[T](float64Codec{})
	case reflect.Bool:
		return via[T](boolCodec{})
	case reflect.String:
		return via[T](stringCodec{})
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 && t.Elem().PkgPath() == "" {
			return via[T](bytesCodec{})
		}
	}
	return jsonCodec[T]{}
}

// viaCodec encodes T with the codec of U, T's underlying type (same memory
// layout, checked by namedCodec's kind switch).
type viaCodec[T, U any] struct{ c Codec[U] }

func via[T, U any](c Codec[U]) Codec[T] { return viaCodec[T, U]{c} }

func (v viaCodec[T, U]) Append(dst []byte, x T) []byte {
	return v.c.Append(dst, *(*U)(unsafe.Pointer(&x)))
}

func (v viaCodec[T, U]) Decode(src []byte) (T, error) {
	u, err := v.c.Decode(src)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("%T: %w", zero, err)
	}
	return *(*T)(unsafe.Pointer(&u)), nil
}

// CodecID implements VersionedCodec: a named type has the identity of its
// underlying type (same bytes, same range).
func (v viaCodec[T, U]) CodecID() string   { id, _ := CodecIdentity(v.c); return id }
func (v viaCodec[T, U]) CodecVersion() int { _, ver := CodecIdentity(v.c); return ver }

var errTrailing = errors.New("trailing bytes after value")

type signed interface {
	~int | ~int8 | ~int16 | ~int32 | ~int64
}
type unsigned interface {
	~uint | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~uintptr
}

type intCodec[T signed] struct{}

func (intCodec[T]) CodecID() string   { return "varint:" + reflect.TypeFor[T]().String() }
func (intCodec[T]) CodecVersion() int { return 0 }

func (intCodec[T]) Append(dst []byte, v T) []byte { return binary.AppendVarint(dst, int64(v)) }
func (intCodec[T]) Decode(src []byte) (T, error) {
	v, n := binary.Varint(src)
	if n <= 0 {
		return 0, fmt.Errorf("bad varint in %d bytes", len(src))
	}
	if n != len(src) {
		return 0, errTrailing
	}
	if int64(T(v)) != v {
		return 0, fmt.Errorf("value %d overflows %T", v, T(0))
	}
	return T(v), nil
}

type uintCodec[T unsigned] struct{}

func (uintCodec[T]) CodecID() string   { return "uvarint:" + reflect.TypeFor[T]().String() }
func (uintCodec[T]) CodecVersion() int { return 0 }

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

func (float64Codec) CodecID() string   { return "float64" }
func (float64Codec) CodecVersion() int { return 0 }

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

func (float32Codec) CodecID() string   { return "float32" }
func (float32Codec) CodecVersion() int { return 0 }

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

func (boolCodec) CodecID() string   { return "bool" }
func (boolCodec) CodecVersion() int { return 0 }

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

func (stringCodec) CodecID() string   { return "string" }
func (stringCodec) CodecVersion() int { return 0 }

func (stringCodec) Append(dst []byte, v string) []byte { return append(dst, v...) }
func (stringCodec) Decode(src []byte) (string, error)  { return string(src), nil }

type bytesCodec struct{}

func (bytesCodec) CodecID() string   { return "bytes" }
func (bytesCodec) CodecVersion() int { return 0 }

func (bytesCodec) Append(dst []byte, v []byte) []byte { return append(dst, v...) }
func (bytesCodec) Decode(src []byte) ([]byte, error)  { return append([]byte{}, src...), nil }

type jsonCodec[T any] struct{}

func (jsonCodec[T]) CodecID() string   { return "json:" + typeName(reflect.TypeFor[T]()) }
func (jsonCodec[T]) CodecVersion() int { return 0 }

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

// HashFunc is the stable key hash that picks a key's key group
// (KeyGroupOf). Changing what it returns for a key moves the key to another
// key group and breaks the restore of every existing checkpoint.
type HashFunc[K comparable] func(K) uint32

// HasherFor returns the hash of keys of type K, decided once by K's kind:
//
//   - integers (and named integer types): Murmur3Uint64 of the value
//     sign- or zero-extended to 64 bits, so int32(-7) and int64(-7) hash
//     alike; no allocation.
//   - strings (and named string types): Murmur3 of the bytes, no copy.
//   - every other K: c encodes the key into a scratch buffer that is then
//     hashed with Murmur3Bytes. That function reuses the buffer, so it is not
//     safe for concurrent use: create one per subtask. Float keys hash their
//     bits (-0 and +0 are different keys to routing).
//
// These hashes must never change (see TestHashStability).
func HasherFor[K comparable](c Codec[K]) HashFunc[K] {
	switch reflect.TypeFor[K]().Kind() {
	case reflect.Int:
		return hashSigned[K, int]
	case reflect.Int8:
		return hashSigned[K, int8]
	case reflect.Int16:
		return hashSigned[K, int16]
	case reflect.Int32:
		return hashSigned[K, int32]
	case reflect.Int64:
		return hashSigned[K, int64]
	case reflect.Uint:
		return hashUnsigned[K, uint]
	case reflect.Uint8:
		return hashUnsigned[K, uint8]
	case reflect.Uint16:
		return hashUnsigned[K, uint16]
	case reflect.Uint32:
		return hashUnsigned[K, uint32]
	case reflect.Uint64:
		return hashUnsigned[K, uint64]
	case reflect.Uintptr:
		return hashUnsigned[K, uintptr]
	case reflect.String:
		return hashString[K]
	}
	var buf []byte
	return func(k K) uint32 {
		buf = c.Append(buf[:0], k)
		return Murmur3Bytes(buf)
	}
}

func hashSigned[K comparable, U int | int8 | int16 | int32 | int64](k K) uint32 {
	return Murmur3Uint64(uint64(int64(*(*U)(unsafe.Pointer(&k)))))
}

func hashUnsigned[K comparable, U uint | uint8 | uint16 | uint32 | uint64 | uintptr](k K) uint32 {
	return Murmur3Uint64(uint64(*(*U)(unsafe.Pointer(&k))))
}

func hashString[K comparable](k K) uint32 { return Murmur3String(*(*string)(unsafe.Pointer(&k))) }
