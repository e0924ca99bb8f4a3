package state

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/weirstream/weir/checkpoint"
)

// A RawKeyedBackend stores one key per timer, with an empty value:
//
//	key group  2 bytes, big-endian
//	queue name UTF-8, then one 0x00 byte
//	timestamp  8 bytes, big-endian, sign bit flipped (so that byte order
//	           is time order, negative timestamps first)
//	keyLen     uvarint
//	key        keyLen bytes: the key's Codec encoding
//	namespace  the rest
//
// so that a key group's timers iterate in time order and a timer's key is
// its identity (Add of an existing timer writes the same key again).
// Snapshots in the canonical stream translate each key into the stream's
// timer entry (key, then timestamp and namespace as the value) and back.

// rawTimerCache is the number of a key group's earliest timers a raw timer
// queue keeps in memory.
const rawTimerCache = 64

// appendTimerSuffix appends the part of a timer's raw key after the queue
// name.
func appendTimerSuffix(dst []byte, ts int64, key []byte, ns string) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(ts)^1<<63)
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	return append(dst, ns...)
}

// parseTimerSuffix splits the part of a timer's raw key after the queue
// name.
func parseTimerSuffix(s []byte) (ts int64, key, ns []byte, err error) {
	if len(s) < 9 {
		return 0, nil, nil, fmt.Errorf("malformed timer key %x", s)
	}
	ts = int64(binary.BigEndian.Uint64(s) ^ 1<<63)
	n, l := binary.Uvarint(s[8:])
	if l <= 0 || n > uint64(len(s)-8-l) {
		return 0, nil, nil, fmt.Errorf("malformed timer key %x", s)
	}
	key = s[8+l : 8+l+int(n)]
	return ts, key, s[8+l+int(n):], nil
}

// rawTimer is a cached timer: its timestamp and its raw key after the
// queue name.
type rawTimer struct {
	ts     int64
	suffix []byte
}

// rawKGTimers caches the earliest timers of one key group. Invariant: cache
// holds, sorted, the len(cache) smallest raw keys of the key group's
// timers in the store; all says that it holds every one of them. When
// all is false the cache is never empty (it is refilled from the store
// when it runs empty), so its first timer is the key group's earliest.
type rawKGTimers struct {
	cache []rawTimer
	all   bool
}

// find returns the position of suffix in the cache, or where it would go.
func (g *rawKGTimers) find(suffix []byte) (int, bool) {
	i := sort.Search(len(g.cache), func(i int) bool { return bytes.Compare(g.cache[i].suffix, suffix) >= 0 })
	return i, i < len(g.cache) && bytes.Equal(g.cache[i].suffix, suffix)
}

// covers reports whether a timer with this suffix, if it exists, is in the
// cache.
func (g *rawKGTimers) covers(suffix []byte) bool {
	return g.all || len(g.cache) > 0 && bytes.Compare(suffix, g.cache[len(g.cache)-1].suffix) < 0
}

// rawTimerQueue is a TimerQueue of a RawKeyedBackend: the timers in the
// store, the earliest of each key group cached (rawKGTimers) and a
// kgOrder over the key groups, so that Peek and Poll do not scan the store
// and Add and Delete of a timer inside a cache's span do not read it.
type rawTimerQueue[K comparable] struct {
	b      *RawKeyedBackend[K]
	name   string
	meta   checkpoint.StateMeta
	groups []rawKGTimers // per key group, relative to the range
	order  kgOrder
	n      int
	kbuf   []byte
	sbuf   []byte
}

// TimerQueue implements TimerService: it registers the timer queue called
// name, or returns it if it is registered already. A name registered or
// restored as another kind of state is an error. Registration reads the
// queue's timers once (to count them and fill the caches).
func (b *RawKeyedBackend[K]) TimerQueue(name string) (TimerQueue[K], error) {
	if name == "" {
		return nil, fmt.Errorf("a timer queue needs a name")
	}
	if err := checkRawName(name); err != nil {
		return nil, err
	}
	if t, ok := b.states[name]; ok {
		q, ok := t.(*rawTimerQueue[K])
		if !ok {
			return nil, fmt.Errorf("state %q is already registered as %s state, not as a timer queue", name, t.kind())
		}
		return q, nil
	}
	if m, ok := b.stored[name]; ok && m.Kind != "" && m.Kind != kindTimers.String() {
		return nil, fmt.Errorf("state %q was checkpointed as %s state, cannot restore it as a timer queue", name, m.Kind)
	}
	if old, ok := b.kinds[name]; ok && old != kindTimers {
		return nil, fmt.Errorf("state %q was checkpointed as %s state, cannot restore it as a timer queue", name, old)
	}
	if err := b.setKind(name, kindTimers); err != nil {
		return nil, err
	}
	q := &rawTimerQueue[K]{b: b, name: name,
		meta: checkpoint.StateMeta{Name: name, Kind: kindTimers.String(), Codec: timerCodecID, KeyCodec: b.keyID, KeyCodecVersion: b.keyVersion}}
	if err := b.register(q); err != nil {
		return nil, err
	}
	if err := q.reload(); err != nil {
		delete(b.states, name)
		return nil, err
	}
	return q, nil
}

func (q *rawTimerQueue[K]) kind() stateKind { return kindTimers }

func (q *rawTimerQueue[K]) schema() checkpoint.StateMeta { return q.meta }

func (q *rawTimerQueue[K]) adopt(stored checkpoint.StateMeta) error {
	if stored.Codec != "" && (stored.Codec != timerCodecID || stored.CodecVersion != 0) {
		return &SchemaError{State: q.name, Stored: stored, Registered: q.meta}
	}
	return nil
}

// bounds returns the store range of the queue's timers in key group kg
// (absolute).
func (q *rawTimerQueue[K]) bounds(kg int) (lower, upper []byte) {
	lower = appendKGPrefix(nil, kg, q.name)
	upper = append([]byte(nil), lower...)
	upper[len(upper)-1] = 1
	return lower, upper
}

// reload counts the timers in the store and fills every key group's cache:
// at registration and after a restore.
func (q *rawTimerQueue[K]) reload() error {
	b := q.b
	q.groups = make([]rawKGTimers, b.r.Len())
	q.order = newKGOrder(b.r.Len())
	q.n = 0
	for kg := b.r.Start; kg <= b.r.End; kg++ {
		g := &q.groups[kg-b.r.Start]
		lower, upper := q.bounds(kg)
		count := 0
		err := b.store.Scan(lower, upper, 0, func(k, _ []byte) error {
			count++
			if count <= rawTimerCache {
				s := append([]byte(nil), k[len(lower):]...)
				ts, _, _, err := parseTimerSuffix(s)
				if err != nil {
					return err
				}
				g.cache = append(g.cache, rawTimer{ts: ts, suffix: s})
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("cannot read timer queue %q, key group %d: %w", q.name, kg, err)
		}
		g.all = count <= rawTimerCache
		q.n += count
		q.fix(kg - b.r.Start)
	}
	return nil
}

// refill reads the earliest timers of key group kg (relative) into its
// empty cache.
func (q *rawTimerQueue[K]) refill(kg int) {
	g := &q.groups[kg]
	lower, upper := q.bounds(kg + q.b.r.Start)
	g.cache = g.cache[:0]
	err := q.b.store.Scan(lower, upper, rawTimerCache, func(k, _ []byte) error {
		s := append([]byte(nil), k[len(lower):]...)
		ts, _, _, err := parseTimerSuffix(s)
		if err != nil {
			return err
		}
		g.cache = append(g.cache, rawTimer{ts: ts, suffix: s})
		return nil
	})
	if err != nil {
		q.b.fail(fmt.Errorf("cannot read timer queue %q, key group %d: %w", q.name, kg+q.b.r.Start, err))
	}
	g.all = len(g.cache) < rawTimerCache
}

func (q *rawTimerQueue[K]) fix(kg int) {
	if g := &q.groups[kg]; len(g.cache) > 0 {
		q.order.set(kg, g.cache[0].ts)
	} else {
		q.order.remove(kg)
	}
}

// current sets q.kbuf to the raw key of the current key's timer at ts in
// ns and returns it and its suffix.
func (q *rawTimerQueue[K]) current(ts int64, ns string) (key, suffix []byte) {
	b := q.b
	q.kbuf = appendKGPrefix(q.kbuf[:0], b.curKG, q.name)
	p := len(q.kbuf)
	q.kbuf = appendTimerSuffix(q.kbuf, ts, b.keyEnc, ns)
	return q.kbuf, q.kbuf[p:]
}

// exists reports whether the timer with this key and suffix is in key
// group kg (relative): from the cache when it covers the suffix, else from
// the store.
func (q *rawTimerQueue[K]) exists(kg int, key, suffix []byte) (bool, error) {
	g := &q.groups[kg]
	if _, ok := g.find(suffix); ok {
		return true, nil
	}
	if g.covers(suffix) {
		return false, nil
	}
	var ok bool
	var err error
	q.sbuf, ok, err = q.b.store.Get(key, q.sbuf[:0])
	return ok, err
}

// Add implements TimerQueue.
func (q *rawTimerQueue[K]) Add(ts int64, ns string) {
	kg := q.b.curKG - q.b.r.Start
	key, suffix := q.current(ts, ns)
	ok, err := q.exists(kg, key, suffix)
	if err == nil && !ok {
		err = q.b.store.Set(key, nil)
	}
	if err != nil {
		q.b.fail(fmt.Errorf("cannot add a timer to queue %q: %w", q.name, err))
		return
	}
	if ok {
		return
	}
	q.n++
	g := &q.groups[kg]
	if !g.covers(suffix) {
		return // beyond the cache: read when the cache runs empty
	}
	i, _ := g.find(suffix)
	g.cache = append(g.cache, rawTimer{})
	copy(g.cache[i+1:], g.cache[i:])
	g.cache[i] = rawTimer{ts: ts, suffix: append([]byte(nil), suffix...)}
	if len(g.cache) > rawTimerCache {
		g.cache[len(g.cache)-1] = rawTimer{}
		g.cache = g.cache[:len(g.cache)-1]
		g.all = false
	}
	if i == 0 {
		q.order.set(kg, ts)
	}
}

// Delete implements TimerQueue.
func (q *rawTimerQueue[K]) Delete(ts int64, ns string) {
	kg := q.b.curKG - q.b.r.Start
	key, suffix := q.current(ts, ns)
	ok, err := q.exists(kg, key, suffix)
	if err == nil && ok {
		err = q.b.store.Delete(key)
	}
	if err != nil {
		q.b.fail(fmt.Errorf("cannot delete a timer of queue %q: %w", q.name, err))
		return
	}
	if !ok {
		return
	}
	q.n--
	g := &q.groups[kg]
	if i, ok := g.find(suffix); ok {
		q.removeCached(kg, i)
	}
}

// removeCached drops cache entry i of key group kg (relative), refilling
// the cache when it runs empty and more timers are in the store.
func (q *rawTimerQueue[K]) removeCached(kg, i int) {
	g := &q.groups[kg]
	copy(g.cache[i:], g.cache[i+1:])
	g.cache[len(g.cache)-1] = rawTimer{}
	g.cache = g.cache[:len(g.cache)-1]
	if len(g.cache) == 0 && !g.all {
		q.refill(kg)
	}
	if i == 0 {
		q.fix(kg)
	}
}

// Peek implements TimerQueue.
func (q *rawTimerQueue[K]) Peek() (int64, bool) {
	_, ts, ok := q.order.peek()
	return ts, ok
}

// Poll implements TimerQueue.
func (q *rawTimerQueue[K]) Poll(limit int64) (Timer[K], bool) {
	kg, ts, ok := q.order.peek()
	if !ok || ts > limit {
		return Timer[K]{}, false
	}
	b := q.b
	g := &q.groups[kg]
	s := g.cache[0].suffix
	q.kbuf = appendKGPrefix(q.kbuf[:0], kg+b.r.Start, q.name)
	q.kbuf = append(q.kbuf, s...)
	_, kenc, ns, err := parseTimerSuffix(s)
	var t Timer[K]
	if err == nil {
		t.Timestamp, t.Namespace = ts, string(ns)
		t.Key, err = b.keyCodec.Decode(kenc)
	}
	if err == nil {
		err = b.store.Delete(q.kbuf)
	}
	q.n--
	q.removeCached(kg, 0)
	if err != nil {
		b.fail(fmt.Errorf("cannot poll timer queue %q, key group %d: %w", q.name, kg+b.r.Start, err))
		return Timer[K]{}, false
	}
	return t, true
}

// Len implements TimerQueue.
func (q *rawTimerQueue[K]) Len() int { return q.n }

// timerEntryOf translates a timer's raw key suffix into the canonical
// stream's entry: the key's encoding (pointing into suffix) and the value,
// appended to vbuf.
func timerEntryOf(suffix, vbuf []byte) (key, val []byte, err error) {
	ts, key, ns, err := parseTimerSuffix(suffix)
	if err != nil {
		return nil, nil, err
	}
	val = binary.BigEndian.AppendUint64(vbuf[:0], uint64(ts))
	return key, append(val, ns...), nil
}
