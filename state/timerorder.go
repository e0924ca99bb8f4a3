package state

import (
	"encoding/binary"
	"fmt"
)

// kgOrder orders the key groups of a timer queue by the timestamp of their
// earliest timer: an indexed binary min-heap of key group indices (relative
// to the backend's range), so that Peek is O(1) and a change of one key
// group's head is O(log key groups). Both backends' timer queues keep one
// over their per-key-group queues.
type kgOrder struct {
	heap  []int32 // key group indices, heap-ordered by head
	pos   []int32 // pos[kg]: index of kg in heap, -1 when kg has no timer
	heads []int64 // heads[kg]: timestamp of kg's earliest timer
}

func newKGOrder(n int) kgOrder {
	o := kgOrder{pos: make([]int32, n), heads: make([]int64, n)}
	for i := range o.pos {
		o.pos[i] = -1
	}
	return o
}

// peek returns the key group with the earliest timer.
func (o *kgOrder) peek() (kg int, ts int64, ok bool) {
	if len(o.heap) == 0 {
		return 0, 0, false
	}
	kg = int(o.heap[0])
	return kg, o.heads[kg], true
}

// set records that key group kg's earliest timer is at ts.
func (o *kgOrder) set(kg int, ts int64) {
	i := o.pos[kg]
	if i < 0 {
		o.heads[kg] = ts
		o.heap = append(o.heap, int32(kg))
		o.pos[kg] = int32(len(o.heap) - 1)
		o.up(len(o.heap) - 1)
		return
	}
	old := o.heads[kg]
	o.heads[kg] = ts
	switch {
	case ts < old:
		o.up(int(i))
	case ts > old:
		o.down(int(i))
	}
}

// remove records that key group kg has no timer.
func (o *kgOrder) remove(kg int) {
	i := int(o.pos[kg])
	if i < 0 {
		return
	}
	last := len(o.heap) - 1
	o.swap(i, last)
	o.heap = o.heap[:last]
	o.pos[kg] = -1
	if i < last {
		o.down(i)
		o.up(i)
	}
}

func (o *kgOrder) less(i, j int) bool { return o.heads[o.heap[i]] < o.heads[o.heap[j]] }

func (o *kgOrder) swap(i, j int) {
	o.heap[i], o.heap[j] = o.heap[j], o.heap[i]
	o.pos[o.heap[i]] = int32(i)
	o.pos[o.heap[j]] = int32(j)
}

func (o *kgOrder) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !o.less(i, p) {
			return
		}
		o.swap(i, p)
		i = p
	}
}

func (o *kgOrder) down(i int) {
	n := len(o.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && o.less(r, l) {
			m = r
		}
		if !o.less(m, i) {
			return
		}
		o.swap(i, m)
		i = m
	}
}

// timerCodecID is the identity recorded as the "codec" of a timer queue's
// entries: a timestamp and a namespace (see appendTimerValue).
const timerCodecID = "timer(int64,string)"

// appendTimerValue appends the value of a timer entry in the canonical
// stream: the timestamp (milliseconds since 1970) as 8 bytes big-endian
// two's complement, then the namespace's bytes.
func appendTimerValue(dst []byte, ts int64, ns string) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(ts))
	return append(dst, ns...)
}

// parseTimerValue splits the value of a timer entry.
func parseTimerValue(v []byte) (ts int64, ns []byte, err error) {
	if len(v) < 8 {
		return 0, nil, fmt.Errorf("timer entry has %d bytes, needs at least 8 for its timestamp", len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), v[8:], nil
}

// TimerEntry splits the value of a timer entry of a key-group stream (a
// RawEntry of kind timers) into the timer's timestamp and namespace.
func TimerEntry(value []byte) (ts int64, namespace []byte, err error) {
	return parseTimerValue(value)
}

// IsTimers reports whether states of this kind are timer queues, whose
// entries are decoded with TimerEntry.
func (k StateKind) IsTimers() bool { return stateKind(k) == kindTimers }

// GetTimerQueue returns the timer queue called name of b, registering it
// on first use: b must implement TimerService (both backends of this
// package do).
func GetTimerQueue[K comparable](b KeyedBackend[K], name string) (TimerQueue[K], error) {
	if name == "" {
		return nil, fmt.Errorf("a timer queue needs a name")
	}
	ts, ok := b.(TimerService[K])
	if !ok {
		return nil, fmt.Errorf("timer queue %q: keyed state backend %T holds no timers", name, b)
	}
	return ts.TimerQueue(name)
}
