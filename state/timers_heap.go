package state

import (
	"fmt"

	"github.com/weirstream/weir/checkpoint"
)

// timerKey identifies a timer: a queue holds at most one per (key,
// timestamp, namespace).
type timerKey[K comparable] struct {
	key K
	ts  int64
	ns  string
}

// timerEntry is a timer in a kgTimers heap, with its heap position, so
// that the heap's swaps update positions in place instead of in the index.
type timerEntry[K comparable] struct {
	timerKey[K]
	pos int32
}

// kgTimers is the timers of one key group of a heap timer queue: a binary
// min-heap by timestamp and an index from timer to its entry (which knows
// its heap position), so that Add deduplicates and Delete finds its timer
// without a scan, both in O(log n), and sifting touches no map.
// Copy-on-write like kgTable: a live snapshot may reference it, and the
// queue clones it (heap, entries and index) before the first write in a
// later epoch.
type kgTimers[K comparable] struct {
	owner uint64
	heap  []*timerEntry[K]
	index map[timerKey[K]]*timerEntry[K]
}

func (g *kgTimers[K]) less(i, j int) bool { return g.heap[i].ts < g.heap[j].ts }

func (g *kgTimers[K]) swap(i, j int) {
	g.heap[i], g.heap[j] = g.heap[j], g.heap[i]
	g.heap[i].pos = int32(i)
	g.heap[j].pos = int32(j)
}

func (g *kgTimers[K]) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !g.less(i, p) {
			return
		}
		g.swap(i, p)
		i = p
	}
}

func (g *kgTimers[K]) down(i int) {
	n := len(g.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && g.less(r, l) {
			m = r
		}
		if !g.less(m, i) {
			return
		}
		g.swap(i, m)
		i = m
	}
}

// push adds e, whose timer is not in g.
func (g *kgTimers[K]) push(e *timerEntry[K]) {
	e.pos = int32(len(g.heap))
	g.heap = append(g.heap, e)
	g.index[e.timerKey] = e
	g.up(len(g.heap) - 1)
}

// removeAt removes the timer at heap position i and returns its entry,
// which nothing references any more.
func (g *kgTimers[K]) removeAt(i int) *timerEntry[K] {
	e := g.heap[i]
	last := len(g.heap) - 1
	if i != last {
		g.swap(i, last)
	}
	g.heap[last] = nil
	g.heap = g.heap[:last]
	delete(g.index, e.timerKey)
	if i < last {
		g.down(i)
		g.up(i)
	}
	return e
}

func (g *kgTimers[K]) clone(owner uint64) *kgTimers[K] {
	entries := make([]timerEntry[K], len(g.heap))
	c := &kgTimers[K]{owner: owner, heap: make([]*timerEntry[K], len(g.heap), cap(g.heap)), index: make(map[timerKey[K]]*timerEntry[K], len(g.index))}
	for i, e := range g.heap {
		entries[i] = *e
		c.heap[i] = &entries[i]
		c.index[e.timerKey] = &entries[i]
	}
	return c
}

// heapTimerQueue is a TimerQueue of the heap backend: a kgTimers per key
// group and a kgOrder over them.
type heapTimerQueue[K comparable] struct {
	b      *HeapKeyedBackend[K]
	name   string
	meta   checkpoint.StateMeta
	groups []*kgTimers[K] // nil until the key group gets a timer
	order  kgOrder
	n      int
	// free holds entries of removed timers for reuse: an entry removed
	// from a group the current epoch owns is referenced by no snapshot.
	free []*timerEntry[K]
}

// TimerQueue implements TimerService: it registers the timer queue called
// name, or returns it if it is registered already. A name registered or
// restored as another kind of state is an error.
func (b *HeapKeyedBackend[K]) TimerQueue(name string) (TimerQueue[K], error) {
	if name == "" {
		return nil, fmt.Errorf("a timer queue needs a name")
	}
	if t, ok := b.states[name]; ok {
		q, ok := t.(*heapTimerQueue[K])
		if !ok {
			return nil, fmt.Errorf("state %q is already registered as %s state, not as a timer queue", name, t.kind())
		}
		return q, nil
	}
	if m, ok := b.stored[name]; ok && m.Kind != "" && m.Kind != kindTimers.String() {
		return nil, fmt.Errorf("state %q was checkpointed as %s state, cannot restore it as a timer queue", name, m.Kind)
	}
	q := &heapTimerQueue[K]{b: b, name: name, groups: make([]*kgTimers[K], b.nGroups), order: newKGOrder(b.nGroups),
		meta: checkpoint.StateMeta{Name: name, Kind: kindTimers.String(), Codec: timerCodecID, KeyCodec: b.keyID, KeyCodecVersion: b.keyVersion}}
	if err := q.useStored(b.stored[name]); err != nil {
		return nil, err
	}
	if raw, ok := b.restored[name]; ok {
		if raw.k != kindTimers {
			return nil, fmt.Errorf("state %q was checkpointed as %s state, cannot restore it as a timer queue", name, raw.k)
		}
		for kg, entries := range raw.groups {
			for _, e := range entries {
				if err := q.restoreEntry(kg, e.key, e.val); err != nil {
					return nil, err
				}
			}
		}
		delete(b.restored, name)
	}
	delete(b.stored, name)
	b.states[name] = q
	return q, nil
}

func (q *heapTimerQueue[K]) kind() stateKind { return kindTimers }

func (q *heapTimerQueue[K]) schema() checkpoint.StateMeta { return q.meta }

func (q *heapTimerQueue[K]) useStored(stored checkpoint.StateMeta) error {
	if stored.Codec != "" && (stored.Codec != timerCodecID || stored.CodecVersion != 0) {
		return &SchemaError{State: q.name, Stored: stored, Registered: q.meta}
	}
	return nil
}

// writable returns the timers of key group kg, cloned first if a live
// snapshot may still read them (see valueTable.writable).
func (q *heapTimerQueue[K]) writable(kg int) *kgTimers[K] {
	g := q.groups[kg]
	if g == nil {
		g = &kgTimers[K]{owner: q.b.epoch, index: map[timerKey[K]]*timerEntry[K]{}}
		q.groups[kg] = g
		return g
	}
	if g.owner != q.b.epoch {
		if q.b.live.Load() > 0 {
			g = g.clone(q.b.epoch)
			q.groups[kg] = g
		} else {
			g.owner = q.b.epoch
		}
	}
	return g
}

// fix updates the key group order after a change of kg's timers.
func (q *heapTimerQueue[K]) fix(kg int) {
	if g := q.groups[kg]; g != nil && len(g.heap) > 0 {
		q.order.set(kg, g.heap[0].ts)
	} else {
		q.order.remove(kg)
	}
}

func (q *heapTimerQueue[K]) add(kg int, t timerKey[K]) {
	if g := q.groups[kg]; g != nil {
		if _, ok := g.index[t]; ok {
			return
		}
	}
	g := q.writable(kg)
	var e *timerEntry[K]
	if n := len(q.free); n > 0 {
		e, q.free = q.free[n-1], q.free[:n-1]
	} else {
		e = new(timerEntry[K])
	}
	e.timerKey = t
	g.push(e)
	q.n++
	if g.heap[0] == e {
		q.order.set(kg, t.ts)
	}
}

// Add implements TimerQueue.
func (q *heapTimerQueue[K]) Add(ts int64, ns string) {
	q.add(q.b.curKG, timerKey[K]{key: q.b.curKey, ts: ts, ns: ns})
}

// Delete implements TimerQueue.
func (q *heapTimerQueue[K]) Delete(ts int64, ns string) {
	kg := q.b.curKG
	g := q.groups[kg]
	if g == nil {
		return
	}
	t := timerKey[K]{key: q.b.curKey, ts: ts, ns: ns}
	e, ok := g.index[t]
	if !ok {
		return
	}
	q.recycle(q.writable(kg).removeAt(int(e.pos))) // a clone keeps the positions
	q.n--
	q.fix(kg)
}

// Peek implements TimerQueue.
func (q *heapTimerQueue[K]) Peek() (int64, bool) {
	_, ts, ok := q.order.peek()
	return ts, ok
}

// Poll implements TimerQueue.
func (q *heapTimerQueue[K]) Poll(limit int64) (Timer[K], bool) {
	kg, ts, ok := q.order.peek()
	if !ok || ts > limit {
		return Timer[K]{}, false
	}
	e := q.writable(kg).removeAt(0)
	t := Timer[K]{Timestamp: e.ts, Key: e.key, Namespace: e.ns}
	q.recycle(e)
	q.n--
	q.fix(kg)
	return t, true
}

// recycle keeps a removed timer's entry for the next Add.
func (q *heapTimerQueue[K]) recycle(e *timerEntry[K]) {
	*e = timerEntry[K]{}
	if len(q.free) < 1024 {
		q.free = append(q.free, e)
	}
}

// Len implements TimerQueue.
func (q *heapTimerQueue[K]) Len() int { return q.n }

func (q *heapTimerQueue[K]) size() int { return q.n }

func (q *heapTimerQueue[K]) reserve(int, int) {}

func (q *heapTimerQueue[K]) restoreEntry(kg int, key, val []byte) error {
	b := q.b
	k, err := b.keyCodec.Decode(key)
	if err != nil {
		return fmt.Errorf("timer queue %q, key group %d: bad key (encoded %x) for key codec %s: %w", q.name, kg+b.r.Start, key, b.keyID, err)
	}
	ts, ns, err := parseTimerValue(val)
	if err != nil {
		return fmt.Errorf("timer queue %q, key group %d: %w", q.name, kg+b.r.Start, err)
	}
	if got := KeyGroupOf(b.hash(k), b.maxP); got != kg+b.r.Start {
		return wrongKeyGroupError(q.name, k, key, b.keyID, got, kg+b.r.Start)
	}
	q.add(kg, timerKey[K]{key: k, ts: ts, ns: string(ns)})
	return nil
}

// frozenTimers is a snapshot's view of a heap timer queue: the kgTimers
// of every key group at the snapshot, which nobody mutates any more.
type frozenTimers[K comparable] struct {
	keyCodec Codec[K]
	groups   []*kgTimers[K]
}

func (q *heapTimerQueue[K]) frozen() frozenTable {
	return &frozenTimers[K]{keyCodec: q.b.keyCodec, groups: append([]*kgTimers[K](nil), q.groups...)}
}

func (f *frozenTimers[K]) kind() stateKind { return kindTimers }

func (f *frozenTimers[K]) count(kg int) int {
	if g := f.groups[kg]; g != nil {
		return len(g.heap)
	}
	return 0
}

func (f *frozenTimers[K]) appendEntries(dst []byte, kg int) []byte {
	g := f.groups[kg]
	if g == nil {
		return dst
	}
	for i := range g.heap {
		t := g.heap[i]
		start := len(dst)
		dst = fixLength(f.keyCodec.Append(append(dst, 0), t.key), start)
		start = len(dst)
		dst = fixLength(appendTimerValue(append(dst, 0), t.ts, t.ns), start)
	}
	return dst
}
