package state

import (
	"encoding/binary"
	"fmt"
	"time"
)

// TTLUpdate says which accesses renew an entry's time-to-live.
type TTLUpdate uint8

const (
	// OnCreateAndWrite renews the expiry when the value is written.
	OnCreateAndWrite TTLUpdate = iota
	// OnReadAndWrite also renews it when the value is read.
	OnReadAndWrite
)

// TTLConfig gives a keyed state a time-to-live (Flink's StateTtlConfig with
// the NeverReturnExpired visibility): an entry not renewed for TTL is
// expired, reads never return it, and it is cleaned up
//
//   - on access: reading an expired entry removes it;
//   - in full snapshots: checkpoints and savepoints leave expired entries
//     out, so a restore never brings them back;
//   - incrementally: every access of the state also checks a few other
//     entries (CleanupPerAccess) and removes the expired ones, so state
//     nobody reads again does not stay forever.
//
// Expiry is wall-clock time in milliseconds, stored with the value (8
// bytes, big-endian, before the value's encoding; the snapshot kind of the
// state is "value-with-ttl"). A state checkpointed with a TTL restores only
// into a state with a TTL and the other way round.
type TTLConfig struct {
	TTL    time.Duration
	Update TTLUpdate
	// CleanupPerAccess is the number of entries the incremental cleanup
	// checks per access (default 2; negative disables it).
	CleanupPerAccess int
	// Clock replaces time.Now (for tests).
	Clock func() time.Time
}

func (c TTLConfig) nowFunc() func() int64 {
	if c.Clock != nil {
		clock := c.Clock
		return func() int64 { return clock().UnixMilli() }
	}
	return func() int64 { return time.Now().UnixMilli() }
}

func (c TTLConfig) validate(name string) error {
	if c.TTL < time.Millisecond {
		return fmt.Errorf("state %q: time-to-live %v is below the 1ms resolution", name, c.TTL)
	}
	if c.Update > OnReadAndWrite {
		return fmt.Errorf("state %q: unknown TTL update type %d", name, c.Update)
	}
	return nil
}

// ttlValue is a value with its expiry (unix milliseconds).
type ttlValue[V any] struct {
	exp int64
	v   V
}

type ttlCodec[V any] struct{ c Codec[V] }

func (t ttlCodec[V]) Append(dst []byte, v ttlValue[V]) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(v.exp))
	return t.c.Append(dst, v.v)
}

func (t ttlCodec[V]) Decode(src []byte) (ttlValue[V], error) { return decodeTTL(src, t.c.Decode) }

// CodecID implements VersionedCodec: the identity of the value's codec
// (the state's kind, value-with-ttl, records the expiry).
func (t ttlCodec[V]) CodecID() string   { id, _ := CodecIdentity(t.c); return id }
func (t ttlCodec[V]) CodecVersion() int { _, v := CodecIdentity(t.c); return v }

// decoderFrom migrates the values after the expiry.
func (t ttlCodec[V]) decoderFrom(id string, version int) func([]byte) (ttlValue[V], error) {
	dec := decoderFor(t.c, id, version)
	if dec == nil {
		return nil
	}
	return func(src []byte) (ttlValue[V], error) { return decodeTTL(src, dec) }
}

func decodeTTL[V any](src []byte, dec func([]byte) (V, error)) (ttlValue[V], error) {
	if len(src) < 8 {
		return ttlValue[V]{}, fmt.Errorf("value with time-to-live has %d bytes, needs at least 8", len(src))
	}
	v, err := dec(src[8:])
	return ttlValue[V]{exp: int64(binary.BigEndian.Uint64(src)), v: v}, err
}

// ttlExpiry reads the expiry of an encoded value-with-ttl.
func ttlExpiry(enc []byte) (int64, bool) {
	if len(enc) < 8 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(enc)), true
}

// ttlAccess is what a table needs to leave expired entries out of
// snapshots.
type ttlAccess[V any] struct {
	expiry func(*V) int64
	now    func() int64
}

// ttlState is a ValueState[V] over a value state of ttlValue[V].
type ttlState[V any] struct {
	inner   ValueState[ttlValue[V]]
	ttl     int64 // milliseconds
	onRead  bool
	now     func() int64
	cleanup func(now int64) // incremental cleanup step; nil if disabled
}

func newTTLState[V any](inner ValueState[ttlValue[V]], cfg TTLConfig, now func() int64, cleanup func(now int64)) *ttlState[V] {
	if cfg.CleanupPerAccess < 0 {
		cleanup = nil
	}
	return &ttlState[V]{inner: inner, ttl: cfg.TTL.Milliseconds(), onRead: cfg.Update == OnReadAndWrite, now: now, cleanup: cleanup}
}

func (s *ttlState[V]) Value() (V, bool) {
	now := s.now()
	if s.cleanup != nil {
		s.cleanup(now)
	}
	tv, ok := s.inner.Value()
	if !ok {
		var zero V
		return zero, false
	}
	if tv.exp <= now {
		s.inner.Clear()
		var zero V
		return zero, false
	}
	if s.onRead {
		tv.exp = now + s.ttl
		s.inner.Update(tv)
	}
	return tv.v, true
}

func (s *ttlState[V]) Update(v V) {
	now := s.now()
	if s.cleanup != nil {
		s.cleanup(now)
	}
	s.inner.Update(ttlValue[V]{exp: now + s.ttl, v: v})
}

func (s *ttlState[V]) Clear() { s.inner.Clear() }

func getHeapTTLState[K comparable, V any](b *HeapKeyedBackend[K], name string, c Codec[V], cfg TTLConfig) (ValueState[V], error) {
	if err := cfg.validate(name); err != nil {
		return nil, err
	}
	now := cfg.nowFunc()
	acc := &ttlAccess[ttlValue[V]]{expiry: func(v *ttlValue[V]) int64 { return v.exp }, now: now}
	t, err := getHeapTable(b, name, Codec[ttlValue[V]](ttlCodec[V]{c}), kindValueTTL, acc)
	if err != nil {
		return nil, err
	}
	per := cfg.CleanupPerAccess
	if per == 0 {
		per = 2
	}
	return newTTLState[V](t, cfg, now, func(now int64) { t.cleanupStep(per, now) }), nil
}

// cleanupStep checks the next n slots of the incremental cleanup cursor
// and removes expired entries (TTL states only).
func (t *valueTable[K, V]) cleanupStep(n int, now int64) {
	for ; n > 0; n-- {
		if t.cleanKG >= len(t.groups) {
			t.cleanKG, t.cleanSlot = 0, 0
		}
		g := t.groups[t.cleanKG]
		if g == nil || t.cleanSlot >= len(g.slots) {
			t.cleanKG++
			t.cleanSlot = 0
			continue
		}
		s := &g.slots[t.cleanSlot]
		if s.used && t.ttl.expiry(&s.val) <= now {
			t.writable(t.cleanKG).remove(s.key, s.hash)
			t.hint = -1
			continue // a later entry may have moved into this slot
		}
		t.cleanSlot++
	}
}

func nowMillis() int64 { return time.Now().UnixMilli() }
