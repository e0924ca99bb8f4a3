package statetest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/state"
	"github.com/weirstream/weir/storage"
)

// Timer queues (state.TimerService): add, deduplication, delete and poll
// order; random operations against a sorted slice with snapshots and
// restores interleaved; restores into other key group ranges; kind
// conflicts with other states; savepoints across backends.

func runTimers(t *testing.T, b Backend) {
	t.Run("Timers", func(t *testing.T) { testTimersBasic(t, b) })
	t.Run("TimersModel/spread", func(t *testing.T) { testTimersModel(t, b, Keys(40), 300) })
	// Few key groups with hundreds of timers each: caches of the earliest
	// timers overflow and refill.
	t.Run("TimersModel/dense", func(t *testing.T) { testTimersModel(t, b, keysInGroups(60, 3), 3000) })
	t.Run("TimersRescale", func(t *testing.T) { testTimersRescale(t, b) })
	t.Run("TimersKindConflicts", func(t *testing.T) { testTimersKindConflicts(t, b) })
	t.Run("TimersSavepoint", func(t *testing.T) { testTimersSavepoint(t, b, b) })
}

// timerQueue registers the timer queue name of kb; a backend without
// timers skips the test.
func timerQueue(t *testing.T, kb state.KeyedBackend[string], name string) state.TimerQueue[string] {
	t.Helper()
	if _, ok := kb.(state.TimerService[string]); !ok {
		t.Skipf("%T holds no timers", kb)
	}
	q, err := state.GetTimerQueue(kb, name)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func testTimersBasic(t *testing.T, b Backend) {
	kb := b.New(t, FullRange())
	q := timerQueue(t, kb, "event-timers")
	if _, ok := q.Peek(); ok {
		t.Fatal("an empty queue has a timer")
	}
	add := func(k string, ts int64, ns string) { SetKey(kb, k); q.Add(ts, ns) }
	add("a", 30, "")
	add("b", 10, "w1")
	add("a", 30, "") // duplicate
	add("a", 30, "w1")
	add("c", -5, "")
	add("b", 20, "")
	add("c", math.MaxInt64, "")
	add("d", math.MinInt64, "x")
	if q.Len() != 7 {
		t.Fatalf("Len %d, want 7 (one duplicate)", q.Len())
	}
	if ts, ok := q.Peek(); !ok || ts != math.MinInt64 {
		t.Fatalf("Peek %d %v", ts, ok)
	}
	SetKey(kb, "b")
	q.Delete(20, "")
	q.Delete(20, "") // gone already
	q.Delete(10, "") // another namespace: not there
	SetKey(kb, "a")
	q.Delete(10, "w1") // another key's timer
	if q.Len() != 6 {
		t.Fatalf("Len %d after one delete, want 6", q.Len())
	}
	if tm, ok := q.Poll(math.MinInt64); !ok || tm != (state.Timer[string]{Timestamp: math.MinInt64, Key: "d", Namespace: "x"}) {
		t.Fatalf("Poll: %+v %v", tm, ok)
	}
	if tm, ok := q.Poll(-6); ok {
		t.Fatalf("Poll(-6) returned %+v, the earliest timer is at -5", tm)
	}
	want := []state.Timer[string]{{Timestamp: -5, Key: "c"}, {Timestamp: 10, Key: "b", Namespace: "w1"}}
	for _, w := range want {
		if tm, ok := q.Poll(10); !ok || tm != w {
			t.Fatalf("Poll(10): %+v %v, want %+v", tm, ok, w)
		}
	}
	var at30 []string
	for range 2 {
		tm, ok := q.Poll(30)
		if !ok || tm.Timestamp != 30 || tm.Key != "a" {
			t.Fatalf("Poll(30): %+v %v", tm, ok)
		}
		at30 = append(at30, tm.Namespace)
	}
	if sort.Strings(at30); at30[0] != "" || at30[1] != "w1" {
		t.Fatalf("timers at 30: namespaces %q", at30)
	}
	if _, ok := q.Poll(math.MaxInt64 - 1); ok {
		t.Fatal("polled a timer beyond the limit")
	}
	if tm, ok := q.Poll(math.MaxInt64); !ok || tm.Key != "c" || tm.Timestamp != math.MaxInt64 {
		t.Fatalf("Poll(MaxInt64): %+v %v", tm, ok)
	}
	if q.Len() != 0 {
		t.Fatalf("Len %d after draining", q.Len())
	}
	// A polled timer can be added again; two queues are independent.
	add("a", 30, "")
	p := timerQueue(t, kb, "proc-timers")
	if p.Len() != 0 || q.Len() != 1 {
		t.Fatalf("queues share timers: %d %d", p.Len(), q.Len())
	}
	if again := timerQueue(t, kb, "event-timers"); again.Len() != 1 {
		t.Fatal("registering a queue again does not return it")
	}
}

// keysInGroups returns n keys of the key groups 0 to groups-1.
func keysInGroups(n, groups int) []string {
	r := checkpoint.KeyGroupRange{Start: 0, End: groups - 1}
	var out []string
	for i := 0; len(out) < n; i++ {
		if k := fmt.Sprintf("key-%d", i); Owns(r, k) {
			out = append(out, k)
		}
	}
	return out
}

// timerModel is the reference: the timers, in no order.
type timerModel []state.Timer[string]

func (m timerModel) index(tm state.Timer[string]) int {
	for i, x := range m {
		if x == tm {
			return i
		}
	}
	return -1
}

func (m *timerModel) add(tm state.Timer[string]) {
	if m.index(tm) < 0 {
		*m = append(*m, tm)
	}
}

func (m *timerModel) remove(tm state.Timer[string]) bool {
	i := m.index(tm)
	if i < 0 {
		return false
	}
	(*m)[i] = (*m)[len(*m)-1]
	*m = (*m)[:len(*m)-1]
	return true
}

func (m timerModel) min() (int64, bool) {
	if len(m) == 0 {
		return 0, false
	}
	ts := int64(math.MaxInt64)
	for _, x := range m {
		ts = min(ts, x.Timestamp)
	}
	return ts, true
}

func (m timerModel) owned(r checkpoint.KeyGroupRange) timerModel {
	var out timerModel
	for _, x := range m {
		if Owns(r, x.Key) {
			out = append(out, x)
		}
	}
	return out
}

// checkPoll polls q with limit and checks the result against m.
func (m *timerModel) checkPoll(t *testing.T, q state.TimerQueue[string], limit int64, where string) {
	t.Helper()
	tm, ok := q.Poll(limit)
	ts, has := m.min()
	if has && ts <= limit {
		if !ok || tm.Timestamp != ts || !m.remove(tm) {
			t.Fatalf("%s: Poll(%d) = %+v %v, want a timer at %d of %v", where, limit, tm, ok, ts, *m)
		}
		return
	}
	if ok {
		t.Fatalf("%s: Poll(%d) = %+v, want none (earliest %d %v)", where, limit, tm, ts, has)
	}
}

// drain polls every timer of q and checks them against m (which it
// leaves as it is).
func (m timerModel) drain(t *testing.T, q state.TimerQueue[string], where string) {
	t.Helper()
	if q.Len() != len(m) {
		t.Fatalf("%s: %d timers, want %d", where, q.Len(), len(m))
	}
	c := append(timerModel(nil), m...)
	for len(c) > 0 {
		c.checkPoll(t, q, math.MaxInt64, where)
	}
	if tm, ok := q.Poll(math.MaxInt64); ok {
		t.Fatalf("%s: a timer left after draining: %+v", where, tm)
	}
}

// Random operations against the model; every few operations a snapshot
// (checkpoint or savepoint, alternately) is taken, a few more operations
// go to the live queue while it is written, and the test goes on with a
// backend restored from it and the model as it was at the snapshot.
func testTimersModel(t *testing.T, b Backend, ks []string, span int64) {
	rnd := rand.New(rand.NewPCG(7, uint64(len(b.Name))))
	nss := []string{"", "w1", "w2"}
	st := storage.NewMemory("timers-model")
	kb := b.New(t, FullRange())
	q := timerQueue(t, kb, "t")
	var m timerModel
	random := func() state.Timer[string] {
		return state.Timer[string]{Key: ks[rnd.IntN(len(ks))], Timestamp: rnd.Int64N(span) - 50, Namespace: nss[rnd.IntN(len(nss))]}
	}
	apply := func(q state.TimerQueue[string], kb state.KeyedBackend[string], m *timerModel, step int) {
		where := fmt.Sprintf("step %d", step)
		switch p := rnd.IntN(100); {
		case p < 45:
			tm := random()
			SetKey(kb, tm.Key)
			q.Add(tm.Timestamp, tm.Namespace)
			m.add(tm)
		case p < 60:
			tm := random()
			if len(*m) > 0 && rnd.IntN(2) == 0 {
				tm = (*m)[rnd.IntN(len(*m))]
			}
			SetKey(kb, tm.Key)
			q.Delete(tm.Timestamp, tm.Namespace)
			m.remove(tm)
		case p < 90:
			m.checkPoll(t, q, rnd.Int64N(span/4)-60, where)
		default:
			ts, ok := q.Peek()
			wts, wok := m.min()
			if ok != wok || ts != wts || q.Len() != len(*m) {
				t.Fatalf("%s: Peek %d %v Len %d, want %d %v %d", where, ts, ok, q.Len(), wts, wok, len(*m))
			}
		}
	}
	id := checkpoint.ID(0)
	for step := range 3000 {
		apply(q, kb, &m, step)
		if step%500 != 499 {
			continue
		}
		id++
		kind := checkpoint.KindCheckpoint
		if id%2 == 0 {
			kind = checkpoint.KindSavepoint
		}
		s, err := kb.SnapshotFor(id, kind)
		if err != nil {
			t.Fatal(err)
		}
		at := append(timerModel(nil), m...)
		for i := range 50 { // the live queue goes on; the snapshot must not see it
			apply(q, kb, &m, step*1000+i)
		}
		h, err := WriteSnapshot(s, st, id, fmt.Sprintf("t%d", id))
		s.Release()
		if err != nil {
			t.Fatal(err)
		}
		h.Range = FullRange()
		kb.NotifyCheckpointComplete(id)
		live, liveQ := m, q
		kb = Restore(t, b, FullRange(), st, h)
		q = timerQueue(t, kb, "t")
		m = at
		if q.Len() != len(m) {
			t.Fatalf("snapshot %d restored %d timers, want %d", id, q.Len(), len(m))
		}
		if id == 3 { // once: the live queue kept its own timers
			live.drain(t, liveQ, "live queue after a snapshot")
		}
	}
	m.drain(t, q, "end")
}

// Timers restore into other key group ranges (1 -> 3 -> 2 subtasks): each
// backend keeps only the timers of its key groups and polls them in order
// right after the restore.
func testTimersRescale(t *testing.T, b Backend) {
	rnd := rand.New(rand.NewPCG(3, 4))
	st := storage.NewMemory("timers-rescale")
	kb := b.New(t, FullRange())
	q := timerQueue(t, kb, "event-timers")
	var m timerModel
	for _, k := range Keys(500) {
		SetKey(kb, k)
		for range 1 + rnd.IntN(3) {
			tm := state.Timer[string]{Key: k, Timestamp: rnd.Int64N(10_000), Namespace: fmt.Sprint(rnd.IntN(2))}
			q.Add(tm.Timestamp, tm.Namespace)
			m.add(tm)
		}
	}
	h1 := Snapshot(t, kb, st, 1, checkpoint.KindCheckpoint)
	kb.NotifyCheckpointComplete(1)
	var hs3 []checkpoint.KeyedStateHandle
	var after3 timerModel
	for i := range 3 {
		r := state.RangeForSubtask(MaxParallelism, 3, i)
		b3 := Restore(t, b, r, st, h1)
		q3 := timerQueue(t, b3, "event-timers")
		mine := m.owned(r)
		if q3.Len() != len(mine) {
			t.Fatalf("subtask %d of 3 restored %d timers, want %d", i, q3.Len(), len(mine))
		}
		// Poll the first tenth, then add one timer per key.
		for range len(mine) / 10 {
			mine.checkPoll(t, q3, math.MaxInt64, fmt.Sprintf("subtask %d of 3", i))
		}
		for _, k := range Keys(500) {
			if Owns(r, k) {
				SetKey(b3, k)
				q3.Add(20_000, "late")
				mine.add(state.Timer[string]{Key: k, Timestamp: 20_000, Namespace: "late"})
			}
		}
		after3 = append(after3, mine...)
		hs3 = append(hs3, Snapshot(t, b3, st, 2, checkpoint.KindCheckpoint))
		b3.NotifyCheckpointComplete(2)
	}
	for i := range 2 {
		r := state.RangeForSubtask(MaxParallelism, 2, i)
		b2 := Restore(t, b, r, st, hs3...)
		after3.owned(r).drain(t, timerQueue(t, b2, "event-timers"), fmt.Sprintf("subtask %d of 2", i))
	}
}

// A timer queue and another kind of state cannot share a name, neither
// registered nor restored.
func testTimersKindConflicts(t *testing.T, b Backend) {
	kb := b.New(t, FullRange())
	timerQueue(t, kb, "t")
	if _, err := state.GetValueState[string, int](kb, "t", state.CodecFor[int]()); err == nil || !strings.Contains(err.Error(), `"t"`) {
		t.Fatalf("value state registered under a timer queue's name: %v", err)
	}
	must[state.ValueState[int]](t)(state.GetValueState[string, int](kb, "v", state.CodecFor[int]()))
	if _, err := state.GetTimerQueue(kb, "v"); err == nil || !strings.Contains(err.Error(), `"v"`) {
		t.Fatalf("timer queue registered under a value state's name: %v", err)
	}
	if _, err := state.GetTimerQueue(kb, ""); err == nil {
		t.Fatal("a timer queue without a name registered")
	}

	// Restored: a snapshot holding value state "v" and timers "t".
	v := must[state.ValueState[int]](t)(state.GetValueState[string, int](kb, "v", state.CodecFor[int]()))
	q := timerQueue(t, kb, "t")
	for _, k := range Keys(20) {
		SetKey(kb, k)
		v.Update(1)
		q.Add(5, "")
	}
	st := storage.NewMemory("timers-kinds")
	for _, kind := range []checkpoint.Kind{checkpoint.KindCheckpoint, checkpoint.KindSavepoint} {
		h := Snapshot(t, kb, st, checkpoint.ID(kind)+1, kind)
		r1 := Restore(t, b, FullRange(), st, h)
		if _, err := state.GetTimerQueue(r1, "v"); err == nil || !strings.Contains(err.Error(), `"v"`) || !strings.Contains(err.Error(), "value") {
			t.Fatalf("%s: restored value state registered as a timer queue: %v", kind, err)
		}
		r2 := Restore(t, b, FullRange(), st, h)
		if _, err := state.GetValueState[string, int](r2, "t", state.CodecFor[int]()); err == nil || !strings.Contains(err.Error(), `"t"`) || !strings.Contains(err.Error(), "timer") {
			t.Fatalf("%s: restored timer queue registered as value state: %v", kind, err)
		}
	}
}

// A savepoint with timers (and a value state beside them) restores into
// to, split over two subtasks; a restore into a backend that registered
// the queue before the restore works too.
func testTimersSavepoint(t *testing.T, from, to Backend) {
	rnd := rand.New(rand.NewPCG(11, 12))
	st := storage.NewMemory("timers-sp")
	kb := from.New(t, FullRange())
	q := timerQueue(t, kb, "proc-timers")
	v := must[state.ValueState[int]](t)(state.GetValueState[string, int](kb, "v", state.CodecFor[int]()))
	var m timerModel
	for i, k := range Keys(300) {
		SetKey(kb, k)
		v.Update(i)
		for range 2 {
			tm := state.Timer[string]{Key: k, Timestamp: rnd.Int64N(1000) - 500, Namespace: fmt.Sprintf("window-%d", rnd.IntN(3))}
			q.Add(tm.Timestamp, tm.Namespace)
			m.add(tm)
		}
	}
	h := Snapshot(t, kb, st, 9, checkpoint.KindSavepoint)
	if h.Incremental != nil {
		t.Fatal("a savepoint must be in the canonical format")
	}
	for i := range 2 {
		r := state.RangeForSubtask(MaxParallelism, 2, i)
		nb := to.New(t, r)
		if _, ok := nb.(state.TimerService[string]); !ok {
			t.Skipf("%T holds no timers", nb)
		}
		var q2 state.TimerQueue[string]
		if i == 1 { // registered before the restore
			q2 = timerQueue(t, nb, "proc-timers")
		}
		if err := nb.RestoreHandles([]checkpoint.KeyedStateHandle{h}, st.Opener(t.Context())); err != nil {
			t.Fatal(err)
		}
		if q2 == nil {
			q2 = timerQueue(t, nb, "proc-timers")
		}
		v2 := must[state.ValueState[int]](t)(state.GetValueState[string, int](nb, "v", state.CodecFor[int]()))
		for i, k := range Keys(300) {
			if Owns(r, k) {
				SetKey(nb, k)
				if got, _ := v2.Value(); got != i {
					t.Fatalf("value of %s: %d, want %d", k, got, i)
				}
			}
		}
		m.owned(r).drain(t, q2, fmt.Sprintf("%s -> %s, subtask %d of 2", from.Name, to.Name, i))
	}
}
