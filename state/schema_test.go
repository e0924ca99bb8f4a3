package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/checkpoint"
)

type order struct{ ID int }

type blob []byte

// opaqueCodec is a user codec that declares no identity.
type opaqueCodec struct{}

func (opaqueCodec) Append(dst []byte, v string) []byte { return append(dst, v...) }
func (opaqueCodec) Decode(src []byte) (string, error)  { return string(src), nil }

func TestCodecIdentity(t *testing.T) {
	const pkg = "github.com/weirstream/weir/state"
	for _, tc := range []struct {
		id      string
		version int
		want    string
	}{
		idOf(CodecFor[int64](), "varint:int64"),
		idOf(CodecFor[int](), "varint:int"),
		idOf(CodecFor[int8](), "varint:int8"),
		idOf(CodecFor[uint32](), "uvarint:uint32"),
		idOf(CodecFor[uintptr](), "uvarint:uintptr"),
		idOf(CodecFor[float64](), "float64"),
		idOf(CodecFor[float32](), "float32"),
		idOf(CodecFor[bool](), "bool"),
		idOf(CodecFor[string](), "string"),
		idOf(CodecFor[[]byte](), "bytes"),
		// A named type over a basic type is its underlying type.
		idOf(CodecFor[userID](), "varint:int64"),
		idOf(CodecFor[blob](), "bytes"),
		// Everything else is JSON of its type.
		idOf(CodecFor[order](), "json:"+pkg+".order"),
		idOf(CodecFor[*order](), "json:*state.order"),
		idOf(CodecFor[map[string]int](), "json:map[string]int"),
		idOf(CodecFor[[]int64](), "json:[]int64"),
		// Composed codecs.
		idOf[[]int64](sliceCodec[int64]{CodecFor[int64]()}, "list(varint:int64)"),
		idOf[map[string]order](mapCodec[string, order]{CodecFor[string](), CodecFor[order]()}, "map(string,json:"+pkg+".order)"),
		idOf[[]personV2](sliceCodec[personV2]{personV2Codec{}}, "list(person@2)"),
		idOf[ttlValue[personV2]](ttlCodec[personV2]{personV2Codec{}}, "person@2"),
		// A user codec declares its identity, or has its Go type's.
		idOf[personV1](personV1Codec{}, "person@1"),
		idOf[string](opaqueCodec{}, "state.opaqueCodec"),
	} {
		if got := codecRef(tc.id, tc.version); got != tc.want {
			t.Errorf("identity %q, want %q", got, tc.want)
		}
	}
	for _, ref := range []string{"x", "x@3", "a@b", "map(a@1,list(b@2))@4", "@"} {
		id, v := parseCodecRef(ref)
		if codecRef(id, v) != ref {
			t.Errorf("%q parses to %q %d", ref, id, v)
		}
	}
	if args, ok := composedArgs("map(a,list(map(b,c)))", "map", 2); !ok || args[0] != "a" || args[1] != "list(map(b,c))" {
		t.Errorf("composedArgs: %q %v", args, ok)
	}
}

func idOf[T any](c Codec[T], want string) struct {
	id      string
	version int
	want    string
} {
	id, v := CodecIdentity(c)
	return struct {
		id      string
		version int
		want    string
	}{id, v, want}
}

// personV1 is version 1 of a state's value type; personV2 splits the name.
type personV1 struct{ Name string }

type personV2 struct{ First, Last string }

// personV1Codec writes version 1 as JSON.
type personV1Codec struct{ jsonCodec[personV1] }

func (personV1Codec) CodecID() string   { return "person" }
func (personV1Codec) CodecVersion() int { return 1 }

// personV2Codec writes version 2 as JSON and reads version 1 (and
// personV1 written by the built-in JSON codec) by splitting the name.
type personV2Codec struct{ jsonCodec[personV2] }

func (personV2Codec) CodecID() string   { return "person" }
func (personV2Codec) CodecVersion() int { return 2 }

func (personV2Codec) CanDecodeFrom(id string, version int) bool {
	return id == "person" && version == 1 || id == "json:github.com/weirstream/weir/state.personV1" && version == 0
}

func (personV2Codec) DecodeFrom(id string, version int, src []byte) (personV2, error) {
	var v1 personV1
	if err := json.Unmarshal(src, &v1); err != nil {
		return personV2{}, fmt.Errorf("cannot decode person version 1: %w", err)
	}
	first, last, _ := strings.Cut(v1.Name, " ")
	return personV2{First: first, Last: last}, nil
}

var _ MigratingCodec[personV2] = personV2Codec{}

// snapshotOf writes a snapshot of b and returns its bytes and handle, with
// the schema a runtime records.
func snapshotOf[K comparable](t *testing.T, b *HeapKeyedBackend[K]) ([]byte, checkpoint.KeyedStateHandle) {
	t.Helper()
	s := b.Snapshot()
	defer s.Release()
	var buf bytes.Buffer
	offs, err := s.WriteKeyGroups(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), checkpoint.KeyedStateHandle{Range: b.r, Offsets: offs, Stream: checkpoint.StreamHandle{Size: int64(buf.Len())}, States: SnapshotStates(s)}
}

func restoreHeap[K comparable](t *testing.T, c Codec[K], data []byte, h checkpoint.KeyedStateHandle) (*HeapKeyedBackend[K], error) {
	t.Helper()
	b := NewHeapKeyedBackend(c, HasherFor(c), 128, h.Range)
	return b, b.Restore(bytes.NewReader(data), h)
}

// Every kind of keyed state records kind, value codec and key codec.
func TestHeapSnapshotRecordsSchema(t *testing.T) {
	b := newBackend(checkpoint.KeyGroupRange{Start: 0, End: 127})
	mustGet(GetValueState[int64, int64](b, "cnt", CodecFor[int64]()))
	mustGet(GetValueState[int64, string](b, "ttl", CodecFor[string](), WithTTL(TTLConfig{TTL: time.Hour})))
	mustGet(GetKeyedListState[int64, int64](b, "list", CodecFor[int64]()))
	mustGet(GetMapState[int64, string, personV2](b, "map", CodecFor[string](), personV2Codec{}))
	mustGet(GetReducingState[int64, float64](b, "max", CodecFor[float64](), func(a, b float64) float64 { return max(a, b) }))
	b.SetCurrentKey(1)
	_, h := snapshotOf(t, b)
	want := []checkpoint.StateMeta{
		{Name: "cnt", Kind: "value", Codec: "varint:int64", KeyCodec: "varint:int64"},
		{Name: "list", Kind: "list", Codec: "list(varint:int64)", KeyCodec: "varint:int64"},
		{Name: "map", Kind: "map", Codec: "map(string,person@2)", KeyCodec: "varint:int64"},
		{Name: "max", Kind: "value", Codec: "float64", KeyCodec: "varint:int64"},
		{Name: "ttl", Kind: "value-with-ttl", Codec: "string", KeyCodec: "varint:int64"},
	}
	if fmt.Sprint(h.States) != fmt.Sprint(want) {
		t.Fatalf("states\n%+v\nwant\n%+v", h.States, want)
	}
	// Registering a state again with another codec of the same type is an
	// error, not a silent switch.
	if _, err := GetValueState[int64, string](b, "ttl", opaqueCodec{}, WithTTL(TTLConfig{TTL: time.Hour})); err == nil || !strings.Contains(err.Error(), "already registered with codec string") {
		t.Fatalf("re-registration with another codec: %v", err)
	}
}

func mustGet[S any](s S, err error) S {
	if err != nil {
		panic(err)
	}
	return s
}

// A state checkpointed as int64 and registered as string is a
// *SchemaError naming the state and both codecs, whether it is registered
// after the restore (entries kept as bytes until then) or before.
func TestHeapChangedValueType(t *testing.T) {
	b := newBackend(checkpoint.KeyGroupRange{Start: 0, End: 127})
	fill(b, mustGet(GetValueState[int64, int64](b, "cnt", CodecFor[int64]())), 50)
	data, h := snapshotOf(t, b)

	check := func(err error) {
		t.Helper()
		var se *SchemaError
		if !errors.As(err, &se) || se.State != "cnt" || se.Stored.Codec != "varint:int64" || se.Registered.Codec != "string" {
			t.Fatalf("want a schema error of state cnt, got %v", err)
		}
		for _, w := range []string{`state "cnt"`, "value codec varint:int64", "codec string", "MigratingCodec"} {
			if !strings.Contains(err.Error(), w) {
				t.Fatalf("error %q does not say %q", err, w)
			}
		}
	}
	nb, err := restoreHeap(t, CodecFor[int64](), data, h)
	if err != nil {
		t.Fatal(err)
	}
	_, err = GetValueState[int64, string](nb, "cnt", CodecFor[string]())
	check(err)

	early := newBackend(h.Range)
	mustGet(GetValueState[int64, string](early, "cnt", CodecFor[string]()))
	check(early.Restore(bytes.NewReader(data), h))

	// A named type over int64 is the same schema.
	nb, _ = restoreHeap(t, CodecFor[int64](), data, h)
	st := mustGet(GetValueState[int64, userID](nb, "cnt", CodecFor[userID]()))
	nb.SetCurrentKey(7)
	if v, ok := st.Value(); !ok || v != 70 {
		t.Fatalf("named type: %v %v", v, ok)
	}
}

// A restored state nobody registers keeps its recorded schema in later
// snapshots, so the check still happens after a restore that skipped it.
func TestHeapUnregisteredStateKeepsSchema(t *testing.T) {
	b := newBackend(checkpoint.KeyGroupRange{Start: 0, End: 127})
	fill(b, mustGet(GetValueState[int64, int64](b, "cnt", CodecFor[int64]())), 50)
	data, h := snapshotOf(t, b)
	nb, err := restoreHeap(t, CodecFor[int64](), data, h)
	if err != nil {
		t.Fatal(err)
	}
	data2, h2 := snapshotOf(t, nb)
	if len(h2.States) != 1 || h2.States[0] != h.States[0] {
		t.Fatalf("unregistered state's schema not carried over: %+v", h2.States)
	}
	nb2, err := restoreHeap(t, CodecFor[int64](), data2, h2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := GetValueState[int64, string](nb2, "cnt", CodecFor[string]()); err == nil {
		t.Fatal("a changed type restored after a carried-over snapshot")
	}
}

// A changed key type is an error naming both key codecs; without a
// recorded schema, the error still shows the misread key.
func TestHeapChangedKeyType(t *testing.T) {
	b := newBackend(checkpoint.KeyGroupRange{Start: 0, End: 127})
	fill(b, mustGet(GetValueState[int64, int64](b, "cnt", CodecFor[int64]())), 50)
	data, h := snapshotOf(t, b)
	_, err := restoreHeap(t, CodecFor[string](), data, h)
	var se *SchemaError
	if !errors.As(err, &se) || se.State != "" || !strings.Contains(err.Error(), "keys have codec varint:int64") || !strings.Contains(err.Error(), "keys have codec string") {
		t.Fatalf("changed key type: %v", err)
	}
	old := h
	old.States = nil
	nb, err := restoreHeap(t, CodecFor[string](), data, old)
	if err != nil {
		t.Fatal(err) // the keys are decoded when the state is registered
	}
	_, err = GetValueState[string, int64](nb, "cnt", CodecFor[int64]())
	if err == nil || !strings.Contains(err.Error(), "encoded ") || !strings.Contains(err.Error(), "key codec string") || strings.Contains(err.Error(), "key  ") {
		t.Fatalf("changed key type without schema: %v", err)
	}
}

// A checkpoint without schema (written before it was recorded) restores
// without a check, and the next snapshot records the schema.
func TestHeapRestoreWithoutSchema(t *testing.T) {
	b := newBackend(checkpoint.KeyGroupRange{Start: 0, End: 127})
	want := fill(b, mustGet(GetValueState[int64, int64](b, "cnt", CodecFor[int64]())), 50)
	data, h := snapshotOf(t, b)
	h.States = nil
	nb, err := restoreHeap(t, CodecFor[int64](), data, h)
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, nb, mustGet(GetValueState[int64, int64](nb, "cnt", CodecFor[int64]())), 50)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if _, h2 := snapshotOf(t, nb); len(h2.States) != 1 || h2.States[0].Codec != "varint:int64" {
		t.Fatalf("schema after restore: %+v", h2.States)
	}
}

// A codec declaring version 2 that reads version 1 migrates a value
// state, a TTL state and a list state on restore; later snapshots record
// version 2 and restore without migration.
func TestHeapMigration(t *testing.T) {
	b := newBackend(checkpoint.KeyGroupRange{Start: 0, End: 127})
	v1 := mustGet(GetValueState[int64, personV1](b, "person", personV1Codec{}))
	ttl := mustGet(GetValueState[int64, personV1](b, "ttl", personV1Codec{}, WithTTL(TTLConfig{TTL: time.Hour})))
	list := mustGet(GetKeyedListState[int64, personV1](b, "list", personV1Codec{}))
	json1 := mustGet(GetValueState[int64, personV1](b, "json", CodecFor[personV1]()))
	for k := int64(0); k < 20; k++ {
		b.SetCurrentKey(k)
		p := personV1{Name: fmt.Sprintf("Ada Lovelace%d", k)}
		v1.Update(p)
		ttl.Update(p)
		list.Add(p)
		list.Add(personV1{Name: "Charles Babbage"})
		json1.Update(p)
	}
	data, h := snapshotOf(t, b)

	check := func(nb *HeapKeyedBackend[int64], where string) {
		t.Helper()
		v2 := mustGet(GetValueState[int64, personV2](nb, "person", personV2Codec{}))
		ttl2 := mustGet(GetValueState[int64, personV2](nb, "ttl", personV2Codec{}, WithTTL(TTLConfig{TTL: time.Hour})))
		list2 := mustGet(GetKeyedListState[int64, personV2](nb, "list", personV2Codec{}))
		json2 := mustGet(GetValueState[int64, personV2](nb, "json", personV2Codec{}))
		for k := int64(0); k < 20; k++ {
			nb.SetCurrentKey(k)
			want := personV2{First: "Ada", Last: fmt.Sprintf("Lovelace%d", k)}
			p, ok := v2.Value()
			pt, okt := ttl2.Value()
			pj, okj := json2.Value()
			l := list2.Get()
			if !ok || p != want || !okt || pt != want || !okj || pj != want || len(l) != 2 || l[0] != want || l[1] != (personV2{"Charles", "Babbage"}) {
				t.Fatalf("%s: key %d: %v %v, ttl %v %v, json %v %v, list %v", where, k, p, ok, pt, okt, pj, okj, l)
			}
		}
	}
	nb, err := restoreHeap(t, CodecFor[int64](), data, h)
	if err != nil {
		t.Fatal(err)
	}
	check(nb, "migrated")
	data2, h2 := snapshotOf(t, nb)
	for _, m := range h2.States {
		if m.Codec != "person" && m.Codec != "list(person@2)" || m.Codec == "person" && m.CodecVersion != 2 {
			t.Fatalf("schema after migration: %+v", h2.States)
		}
	}
	nb2, err := restoreHeap(t, CodecFor[int64](), data2, h2)
	if err != nil {
		t.Fatal(err)
	}
	check(nb2, "after a second snapshot")

	// Registered before the restore: the entries migrate as they are read.
	early := newBackend(h.Range)
	mustGet(GetValueState[int64, personV2](early, "person", personV2Codec{}))
	if err := early.Restore(bytes.NewReader(data), h); err != nil {
		t.Fatal(err)
	}
	st := mustGet(GetValueState[int64, personV2](early, "person", personV2Codec{}))
	early.SetCurrentKey(3)
	if p, _ := st.Value(); p != (personV2{"Ada", "Lovelace3"}) {
		t.Fatalf("registered before restore: %v", p)
	}

	// A version the codec does not read (a newer one) is an error that
	// says so.
	newer := h
	newer.States = append([]checkpoint.StateMeta(nil), h.States...)
	for i := range newer.States {
		if newer.States[i].Name == "person" {
			newer.States[i].CodecVersion = 3
		}
	}
	nb3, err := restoreHeap(t, CodecFor[int64](), data, newer)
	if err != nil {
		t.Fatal(err)
	}
	_, err = GetValueState[int64, personV2](nb3, "person", personV2Codec{})
	if err == nil || !strings.Contains(err.Error(), "version 3 of codec person") || !strings.Contains(err.Error(), "registers version 2") || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("newer version: %v", err)
	}
}

// Handles of one checkpoint that record a state differently cannot be
// restored together.
func TestHeapConflictingSchemas(t *testing.T) {
	b := newBackend(checkpoint.KeyGroupRange{Start: 0, End: 63})
	fill(b, mustGet(GetValueState[int64, int64](b, "cnt", CodecFor[int64]())), 50)
	d1, h1 := snapshotOf(t, b)
	b2 := newBackend(checkpoint.KeyGroupRange{Start: 64, End: 127})
	st := mustGet(GetValueState[int64, string](b2, "cnt", CodecFor[string]()))
	for _, k := range ownedKeys(b2, 50) {
		b2.SetCurrentKey(k)
		st.Update("x")
	}
	d2, h2 := snapshotOf(t, b2)
	nb := newBackend(checkpoint.KeyGroupRange{Start: 0, End: 127})
	if err := nb.Restore(bytes.NewReader(d1), h1); err != nil {
		t.Fatal(err)
	}
	if err := nb.Restore(bytes.NewReader(d2), h2); err == nil || !strings.Contains(err.Error(), `state "cnt" has codec`) {
		t.Fatalf("conflicting schemas: %v", err)
	}
}
