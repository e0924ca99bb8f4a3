package statetest

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/state"
	"github.com/weirstream/weir/storage"
)

// Map and list states stored per entry: random operations against a
// reference model with snapshots and restores interleaved, and restores of
// snapshots that hold them in the format before (one value per key).

func runCollections(t *testing.T, b Backend) {
	t.Run("CollectionsModel", func(t *testing.T) { testCollectionsModel(t, b) })
	for _, kind := range []checkpoint.Kind{checkpoint.KindCheckpoint, checkpoint.KindSavepoint} {
		t.Run("CollectionsOldFormat/"+kind.String(), func(t *testing.T) { testCollectionsOldFormat(t, b, kind) })
	}
}

type collModel struct {
	maps  map[string]map[string]int
	lists map[string][]string
}

func (m collModel) clone() collModel {
	c := collModel{maps: map[string]map[string]int{}, lists: map[string][]string{}}
	for k, v := range m.maps {
		c.maps[k] = maps.Clone(v)
	}
	for k, v := range m.lists {
		c.lists[k] = slices.Clone(v)
	}
	return c
}

type collStates struct {
	m state.MapState[string, int]
	l state.ListState[string]
}

func registerColl(t *testing.T, kb state.KeyedBackend[string]) collStates {
	t.Helper()
	return collStates{
		m: must[state.MapState[string, int]](t)(state.GetMapState[string, string, int](kb, "map", state.CodecFor[string](), state.CodecFor[int]())),
		l: must[state.ListState[string]](t)(state.GetKeyedListState[string, string](kb, "list", state.CodecFor[string]())),
	}
}

// check compares the states of key k with the model, through every read
// method.
func (s collStates) check(t *testing.T, kb state.KeyedBackend[string], m collModel, k, where string) {
	t.Helper()
	SetKey(kb, k)
	want := m.maps[k]
	if got := s.m.Entries(); len(got) != len(want) || len(want) > 0 && !maps.Equal(got, want) {
		t.Fatalf("%s: key %s: map %v, want %v", where, k, got, want)
	}
	if got := maps.Collect(s.m.All()); len(got) != len(want) || len(want) > 0 && !maps.Equal(got, want) {
		t.Fatalf("%s: key %s: All %v, want %v", where, k, got, want)
	}
	keys, vals := slices.Sorted(s.m.Keys()), slices.Sorted(s.m.Values())
	wk, wv := slices.Sorted(maps.Keys(want)), slices.Sorted(maps.Values(want))
	if !slices.Equal(keys, wk) || !slices.Equal(vals, wv) {
		t.Fatalf("%s: key %s: Keys %v Values %v, want %v %v", where, k, keys, vals, wk, wv)
	}
	if s.m.IsEmpty() != (len(want) == 0) {
		t.Fatalf("%s: key %s: IsEmpty %v with %d entries", where, k, s.m.IsEmpty(), len(want))
	}
	for mk, mv := range want {
		if got, ok := s.m.Get(mk); !ok || got != mv || !s.m.Contains(mk) {
			t.Fatalf("%s: key %s: Get(%s) = %d %v, want %d", where, k, mk, got, ok, mv)
		}
	}
	if s.m.Contains("absent") {
		t.Fatalf("%s: key %s: Contains an absent key", where, k)
	}
	wl := m.lists[k]
	if got := s.l.Get(); !slices.Equal(got, wl) {
		t.Fatalf("%s: key %s: list %q, want %q", where, k, got, wl)
	}
	if got := slices.Collect(s.l.All()); !slices.Equal(got, wl) {
		t.Fatalf("%s: key %s: All %q, want %q", where, k, got, wl)
	}
}

// Random Put, Remove, Clear, Add, AddAll, Update on maps and lists of a
// few keys; every few hundred operations a snapshot (checkpoint or
// savepoint) is taken, more operations go to the live state while it is
// written, and the test goes on with a backend restored from it and the
// model at the snapshot.
func testCollectionsModel(t *testing.T, b Backend) {
	rnd := rand.New(rand.NewPCG(5, uint64(len(b.Name))))
	ks := Keys(30)
	mks := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	st := storage.NewMemory("coll-model")
	kb := b.New(t, FullRange())
	s := registerColl(t, kb)
	m := collModel{maps: map[string]map[string]int{}, lists: map[string][]string{}}
	apply := func(kb state.KeyedBackend[string], s collStates, m collModel, step int) {
		k := ks[rnd.IntN(len(ks))]
		SetKey(kb, k)
		switch p := rnd.IntN(100); {
		case p < 35:
			mk, v := mks[rnd.IntN(len(mks))], rnd.IntN(1000)
			s.m.Put(mk, v)
			if m.maps[k] == nil {
				m.maps[k] = map[string]int{}
			}
			m.maps[k][mk] = v
		case p < 50:
			mk := mks[rnd.IntN(len(mks))]
			s.m.Remove(mk)
			delete(m.maps[k], mk)
			if len(m.maps[k]) == 0 {
				delete(m.maps, k)
			}
		case p < 53:
			s.m.Clear()
			delete(m.maps, k)
		case p < 80:
			x := fmt.Sprintf("%d", step)
			s.l.Add(x)
			m.lists[k] = append(m.lists[k], x)
		case p < 88:
			xs := []string{fmt.Sprintf("%d-a", step), fmt.Sprintf("%d-b", step)}
			s.l.AddAll(xs)
			m.lists[k] = append(m.lists[k], xs...)
		case p < 92:
			xs := []string{fmt.Sprintf("%d-u", step)}
			if rnd.IntN(3) == 0 {
				xs = nil
			}
			s.l.Update(xs)
			if len(xs) == 0 {
				delete(m.lists, k)
			} else {
				m.lists[k] = xs
			}
		case p < 94:
			s.l.Clear()
			delete(m.lists, k)
		default:
			s.check(t, kb, m, k, fmt.Sprintf("step %d", step))
		}
	}
	id := checkpoint.ID(0)
	for step := range 2000 {
		apply(kb, s, m, step)
		if step%400 != 399 {
			continue
		}
		id++
		kind := checkpoint.KindCheckpoint
		if id%2 == 0 {
			kind = checkpoint.KindSavepoint
		}
		snap, err := kb.SnapshotFor(id, kind)
		if err != nil {
			t.Fatal(err)
		}
		at := m.clone()
		for i := range 100 { // writes while the snapshot is written
			apply(kb, s, m, 100_000+step*1000+i)
		}
		h, err := WriteSnapshot(snap, st, id, fmt.Sprintf("c%d", id))
		snap.Release()
		if err != nil {
			t.Fatal(err)
		}
		h.Range = FullRange()
		kb.NotifyCheckpointComplete(id)
		for _, k := range ks { // the live state kept its writes
			s.check(t, kb, m, k, fmt.Sprintf("live after snapshot %d", id))
		}
		kb = Restore(t, b, FullRange(), st, h)
		s = registerColl(t, kb)
		m = at
		for _, k := range ks {
			s.check(t, kb, m, k, fmt.Sprintf("restored snapshot %d", id))
		}
	}
	// Rescale: two subtasks, each with its keys.
	h := Snapshot(t, kb, st, id+1, checkpoint.KindCheckpoint)
	for i := range 2 {
		r := state.RangeForSubtask(MaxParallelism, 2, i)
		nb := Restore(t, b, r, st, h)
		ns := registerColl(t, nb)
		for _, k := range ks {
			if Owns(r, k) {
				ns.check(t, nb, m, k, fmt.Sprintf("subtask %d of 2", i))
			}
		}
	}
}

// oldMapCodec and oldListCodec write what map and list states wrote before
// they were stored per entry: the whole collection as one value, with the
// codec identities those states recorded.
type oldMapCodec struct{}

func (oldMapCodec) Append(dst []byte, m map[string]int64) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(m)))
	keys := slices.Sorted(maps.Keys(m))
	for _, k := range keys {
		dst = binary.AppendUvarint(dst, uint64(len(k)))
		dst = append(dst, k...)
		v := binary.AppendVarint(nil, m[k])
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	return dst
}

func (oldMapCodec) Decode([]byte) (map[string]int64, error) { panic("not used") }
func (oldMapCodec) CodecID() string                         { return "map(string,varint:int64)" }
func (oldMapCodec) CodecVersion() int                       { return 0 }

type oldListCodec struct{}

func (oldListCodec) Append(dst []byte, l []string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(l)))
	for _, x := range l {
		dst = binary.AppendUvarint(dst, uint64(len(x)))
		dst = append(dst, x...)
	}
	return dst
}

func (oldListCodec) Decode([]byte) ([]string, error) { panic("not used") }
func (oldListCodec) CodecID() string                 { return "list(string)" }
func (oldListCodec) CodecVersion() int               { return 0 }

// A snapshot holding map and list states as one value per key (the format
// before per-entry storage) restores into map and list states, registered
// after the restore or before it, and at another parallelism.
func testCollectionsOldFormat(t *testing.T, b Backend, kind checkpoint.Kind) {
	st := storage.NewMemory("coll-old")
	kb := b.New(t, FullRange())
	om := must[state.ValueState[map[string]int64]](t)(state.GetValueState[string, map[string]int64](kb, "m", oldMapCodec{}))
	ol := must[state.ValueState[[]string]](t)(state.GetValueState[string, []string](kb, "l", oldListCodec{}))
	ks := Keys(100)
	for i, k := range ks {
		SetKey(kb, k)
		om.Update(map[string]int64{"x": int64(i), "y": -int64(i)})
		ol.Update([]string{k, "second", fmt.Sprint(i)})
	}
	h := Snapshot(t, kb, st, 1, kind)
	checkKeys := func(nb state.KeyedBackend[string], r checkpoint.KeyGroupRange, m state.MapState[string, int64], l state.ListState[string], where string) {
		t.Helper()
		n := 0
		for i, k := range ks {
			if !Owns(r, k) {
				continue
			}
			n++
			SetKey(nb, k)
			if got := m.Entries(); len(got) != 2 || got["x"] != int64(i) || got["y"] != -int64(i) {
				t.Fatalf("%s: map of %s: %v", where, k, got)
			}
			if got := l.Get(); !slices.Equal(got, []string{k, "second", fmt.Sprint(i)}) {
				t.Fatalf("%s: list of %s: %q", where, k, got)
			}
			// And they take per-entry writes.
			m.Put("z", 1)
			l.Add("third")
			if got, _ := m.Get("z"); got != 1 || len(l.Get()) != 4 {
				t.Fatalf("%s: writes after the conversion lost", where)
			}
		}
		if n == 0 {
			t.Fatalf("%s: no key in %s", where, r)
		}
	}
	for i := range 2 {
		r := state.RangeForSubtask(MaxParallelism, 2, i)
		nb := b.New(t, r)
		var m state.MapState[string, int64]
		var l state.ListState[string]
		if i == 1 { // registered before the restore
			m = must[state.MapState[string, int64]](t)(state.GetMapState[string, string, int64](nb, "m", state.CodecFor[string](), state.CodecFor[int64]()))
			l = must[state.ListState[string]](t)(state.GetKeyedListState[string, string](nb, "l", state.CodecFor[string]()))
		}
		if err := nb.RestoreHandles(Intersecting(r, []checkpoint.KeyedStateHandle{h}), st.Opener(t.Context())); err != nil {
			t.Fatalf("restore into %s: %v", r, err)
		}
		if i == 0 {
			m = must[state.MapState[string, int64]](t)(state.GetMapState[string, string, int64](nb, "m", state.CodecFor[string](), state.CodecFor[int64]()))
			l = must[state.ListState[string]](t)(state.GetKeyedListState[string, string](nb, "l", state.CodecFor[string]()))
		}
		checkKeys(nb, r, m, l, fmt.Sprintf("subtask %d of 2", i))
		// A snapshot after the conversion holds the new kinds and
		// restores.
		h2 := Snapshot(t, nb, st, checkpoint.ID(10+i), checkpoint.KindSavepoint)
		var kinds []string
		for _, sm := range h2.States {
			kinds = append(kinds, sm.Name+":"+sm.Kind)
		}
		sort.Strings(kinds)
		if fmt.Sprint(kinds) != "[l:list m:map]" {
			t.Fatalf("kinds after the conversion: %v", kinds)
		}
		rb := Restore(t, b, r, st, h2)
		rm := must[state.MapState[string, int64]](t)(state.GetMapState[string, string, int64](rb, "m", state.CodecFor[string](), state.CodecFor[int64]()))
		for _, k := range ks {
			if Owns(r, k) {
				SetKey(rb, k)
				if got, _ := rm.Get("z"); got != 1 || len(rm.Entries()) != 3 {
					t.Fatalf("converted map of %s after a savepoint: %v", k, rm.Entries())
				}
			}
		}
	}
}
