package statetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/state"
	"github.com/weirstream/weir/storage"
)

// The state schema: every backend records the schema of its states in
// every kind of snapshot, rejects a changed value or key type on restore,
// restores snapshots without a schema, and migrates a state whose codec
// reads the recorded one.

// personV1 is version 1 of a state's value; personV2 splits the name.
type personV1 struct{ Name string }

type personV2 struct{ First, Last string }

type personV1Codec struct{}

func (personV1Codec) Append(dst []byte, v personV1) []byte {
	b, _ := json.Marshal(v)
	return append(dst, b...)
}

func (personV1Codec) Decode(src []byte) (v personV1, err error) { return v, json.Unmarshal(src, &v) }
func (personV1Codec) CodecID() string                           { return "person" }
func (personV1Codec) CodecVersion() int                         { return 1 }

// personV2Codec is version 2 and reads version 1.
type personV2Codec struct{}

func (personV2Codec) Append(dst []byte, v personV2) []byte {
	b, _ := json.Marshal(v)
	return append(dst, b...)
}

func (personV2Codec) Decode(src []byte) (v personV2, err error) {
	// Version 1 bytes decode as version 2 without error (JSON ignores
	// unknown fields) but lose the name: the migration must run.
	return v, json.Unmarshal(src, &v)
}
func (personV2Codec) CodecID() string   { return "person" }
func (personV2Codec) CodecVersion() int { return 2 }
func (personV2Codec) CanDecodeFrom(id string, version int) bool {
	return id == "person" && version == 1
}

func (personV2Codec) DecodeFrom(_ string, _ int, src []byte) (personV2, error) {
	var v1 personV1
	if err := json.Unmarshal(src, &v1); err != nil {
		return personV2{}, err
	}
	first, last, _ := strings.Cut(v1.Name, " ")
	return personV2{First: first, Last: last}, nil
}

var _ state.MigratingCodec[personV2] = personV2Codec{}

// versioned gives a codec another version.
type versioned struct {
	personV1Codec
	v int
}

func (v versioned) CodecVersion() int { return v.v }

// failingV2 is personV2Codec whose migration fails on one name.
type failingV2 struct{ personV2Codec }

func (failingV2) DecodeFrom(id string, version int, src []byte) (personV2, error) {
	p, err := personV2Codec{}.DecodeFrom(id, version, src)
	if err == nil && p.Last == "bad" {
		err = errors.New("cannot split this name")
	}
	return p, err
}

func ttlOpt() state.Option {
	return state.WithTTL(state.TTLConfig{TTL: time.Hour, Clock: func() time.Time { return time.Unix(1_700_000_000, 0) }})
}

// writeV1 fills a backend with version 1 states and an int64 count, and
// snapshots it as checkpoint 1 of the given kind.
func writeV1(t *testing.T, b Backend, st *storage.Storage, kind checkpoint.Kind, ks []string) checkpoint.KeyedStateHandle {
	t.Helper()
	kb := b.New(t, FullRange())
	cnt := must[state.ValueState[int64]](t)(state.GetValueState[string, int64](kb, "cnt", state.CodecFor[int64]()))
	other := must[state.ValueState[int64]](t)(state.GetValueState[string, int64](kb, "other", state.CodecFor[int64]()))
	p := must[state.ValueState[personV1]](t)(state.GetValueState[string, personV1](kb, "person", personV1Codec{}))
	pt := must[state.ValueState[personV1]](t)(state.GetValueState[string, personV1](kb, "person-ttl", personV1Codec{}, ttlOpt()))
	pl := must[state.ListState[personV1]](t)(state.GetKeyedListState[string, personV1](kb, "people", personV1Codec{}))
	for i, key := range ks {
		SetKey(kb, key)
		cnt.Update(int64(i))
		other.Update(int64(i))
		v := personV1{Name: "Ada " + key}
		p.Update(v)
		pt.Update(v)
		pl.Add(v)
		pl.Add(personV1{Name: "Charles Babbage"})
	}
	h := Snapshot(t, kb, st, 1, kind)
	kb.NotifyCheckpointComplete(1)
	want := []checkpoint.StateMeta{
		{Name: "cnt", Kind: "value", Codec: "varint:int64", KeyCodec: "string"},
		{Name: "other", Kind: "value", Codec: "varint:int64", KeyCodec: "string"},
		{Name: "people", Kind: "list", Codec: "list(person@1)", KeyCodec: "string"},
		{Name: "person", Kind: "value", Codec: "person", CodecVersion: 1, KeyCodec: "string"},
		{Name: "person-ttl", Kind: "value-with-ttl", Codec: "person", CodecVersion: 1, KeyCodec: "string"},
	}
	if fmt.Sprint(h.States) != fmt.Sprint(want) {
		t.Fatalf("%s snapshot records\n%+v\nwant\n%+v", kind, h.States, want)
	}
	return h
}

func testSchema(t *testing.T, b Backend, kind checkpoint.Kind) {
	ks := Keys(200)
	st := storage.NewMemory("schema")
	h := writeV1(t, b, st, kind, ks)

	// A changed value type is a schema error naming the state and both
	// codecs.
	kb := Restore(t, b, FullRange(), st, h)
	_, err := state.GetValueState[string, string](kb, "cnt", state.CodecFor[string]())
	var se *state.SchemaError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), `state "cnt"`) || !strings.Contains(err.Error(), "varint:int64") || !strings.Contains(err.Error(), "codec string") {
		t.Fatalf("changed value type: %v", err)
	}
	// So is a new version the codec does not read.
	_, err = state.GetValueState[string, personV1](kb, "person", versioned{personV1Codec{}, 2})
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "version 1 of codec person") {
		t.Fatalf("changed version: %v", err)
	}

	// A migration, while rescaling 1 -> 2; "other" is left unregistered
	// and keeps its schema.
	var hs []checkpoint.KeyedStateHandle
	for i := range 2 {
		r := state.RangeForSubtask(MaxParallelism, 2, i)
		b2 := Restore(t, b, r, st, h)
		checkV2(t, b2, r, ks, "migrated")
		hs = append(hs, Snapshot(t, b2, st, 2, checkpoint.KindCheckpoint))
		b2.NotifyCheckpointComplete(2)
	}
	for _, h2 := range hs {
		got := map[string]string{}
		for _, m := range h2.States {
			got[m.Name] = fmt.Sprintf("%s@%d", m.Codec, m.CodecVersion)
		}
		if got["person"] != "person@2" || got["person-ttl"] != "person@2" || got["people"] != "list(person@2)@0" || got["other"] != "varint:int64@0" {
			t.Fatalf("schema after the migration: %+v", h2.States)
		}
	}
	// Restored again, the states read as version 2 without a migration: a
	// backend keeping bytes rewrote them.
	b3 := Restore(t, b, FullRange(), st, hs...)
	checkV2(t, b3, FullRange(), ks, "restored after the migration")
	if _, err := state.GetValueState[string, string](b3, "other", state.CodecFor[string]()); !errors.As(err, &se) {
		t.Fatalf("the schema of an unregistered state was lost: %v", err)
	}

	// A snapshot without a schema (an older checkpoint) restores without
	// a check.
	old := h
	old.States = nil
	b4 := Restore(t, b, FullRange(), st, old)
	cnt := must[state.ValueState[int64]](t)(state.GetValueState[string, int64](b4, "cnt", state.CodecFor[int64]()))
	for i, key := range ks {
		SetKey(b4, key)
		if v, ok := cnt.Value(); !ok || v != int64(i) {
			t.Fatalf("restored without schema: %s = %v %v", key, v, ok)
		}
	}
}

func checkV2(t *testing.T, b state.KeyedBackend[string], r checkpoint.KeyGroupRange, ks []string, where string) {
	t.Helper()
	p := must[state.ValueState[personV2]](t)(state.GetValueState[string, personV2](b, "person", personV2Codec{}))
	pt := must[state.ValueState[personV2]](t)(state.GetValueState[string, personV2](b, "person-ttl", personV2Codec{}, ttlOpt()))
	pl := must[state.ListState[personV2]](t)(state.GetKeyedListState[string, personV2](b, "people", personV2Codec{}))
	for _, key := range ks {
		if !Owns(r, key) {
			continue
		}
		SetKey(b, key)
		want := personV2{First: "Ada", Last: key}
		v, ok := p.Value()
		vt, okt := pt.Value()
		l := pl.Get()
		if !ok || v != want || !okt || vt != want || len(l) != 2 || l[0] != want || l[1] != (personV2{"Charles", "Babbage"}) {
			t.Fatalf("%s: %s: %v %v, ttl %v %v, list %v", where, key, v, ok, vt, okt, l)
		}
	}
}

// A changed key type is a schema error naming both key codecs, before
// any state is read.
func testChangedKeyType(t *testing.T, b Backend) {
	st := storage.NewMemory("schema")
	h := writeV1(t, b, st, checkpoint.KindCheckpoint, Keys(50))
	kb := b.NewInt64(t, FullRange())
	err := kb.RestoreHandles([]checkpoint.KeyedStateHandle{h}, st.Opener(context.Background()))
	var se *state.SchemaError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "keys have codec string") || !strings.Contains(err.Error(), "keys have codec varint:int64") {
		t.Fatalf("changed key type: %v", err)
	}
}

// A migration of a backend keeping bytes rewrites more entries than one
// scan chunk holds, in one key group; a value that does not migrate fails
// the registration with an error naming the state, the codecs and the key
// group.
func testMigrationLargeKeyGroup(t *testing.T, b Backend) {
	r := checkpoint.KeyGroupRange{Start: 0, End: 0}
	var ks []string
	for i := 0; len(ks) < 2500; i++ {
		if k := fmt.Sprintf("k%d", i); Owns(r, k) {
			ks = append(ks, k)
		}
	}
	st := storage.NewMemory("schema")
	kb := b.New(t, r)
	p := must[state.ValueState[personV1]](t)(state.GetValueState[string, personV1](kb, "person", personV1Codec{}))
	for _, key := range ks {
		SetKey(kb, key)
		p.Update(personV1{Name: "Ada " + key})
	}
	h := Snapshot(t, kb, st, 1, checkpoint.KindCheckpoint)
	b2 := Restore(t, b, r, st, h)
	p2 := must[state.ValueState[personV2]](t)(state.GetValueState[string, personV2](b2, "person", personV2Codec{}))
	for _, key := range ks {
		SetKey(b2, key)
		if v, ok := p2.Value(); !ok || v != (personV2{"Ada", key}) {
			t.Fatalf("%s: %v %v", key, v, ok)
		}
	}

	SetKey(kb, ks[1234])
	p.Update(personV1{Name: "Ada bad"})
	h = Snapshot(t, kb, st, 2, checkpoint.KindCheckpoint)
	b3 := Restore(t, b, r, st, h)
	_, err := state.GetValueState[string, personV2](b3, "person", failingV2{})
	if err == nil || !strings.Contains(err.Error(), `state "person"`) || !strings.Contains(err.Error(), "person@1") ||
		!strings.Contains(err.Error(), "key group 0") || !strings.Contains(err.Error(), "cannot split this name") {
		t.Fatalf("failing migration: %v", err)
	}
}
