package statetest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/state"
	"github.com/weirstream/weir/storage"
)

type sumAgg struct{}

func (sumAgg) CreateAccumulator() int64      { return 0 }
func (sumAgg) Add(v string, acc int64) int64 { return acc + int64(len(v)) }
func (sumAgg) Result(acc int64) string       { return fmt.Sprint(acc) }

// allStates registers one state of every kind.
type allStates struct {
	v   state.ValueState[int64]
	l   state.ListState[string]
	m   state.MapState[string, int]
	r   state.ReducingState[int64]
	a   state.AggregatingState[string, string]
	ttl state.ValueState[string]
}

func register(t *testing.T, b state.KeyedBackend[string], clock func() time.Time) *allStates {
	t.Helper()
	c := state.CodecFor[string]()
	return &allStates{
		v:   must[state.ValueState[int64]](t)(state.GetValueState[string, int64](b, "count", state.CodecFor[int64]())),
		l:   must[state.ListState[string]](t)(state.GetKeyedListState[string, string](b, "list", c)),
		m:   must[state.MapState[string, int]](t)(state.GetMapState[string, string, int](b, "map", c, state.CodecFor[int]())),
		r:   must[state.ReducingState[int64]](t)(state.GetReducingState[string, int64](b, "max", state.CodecFor[int64](), func(a, b int64) int64 { return max(a, b) })),
		a:   must[state.AggregatingState[string, string]](t)(state.GetAggregatingState[string, string, int64, string](b, "agg", state.CodecFor[int64](), sumAgg{})),
		ttl: must[state.ValueState[string]](t)(state.GetValueState[string, string](b, "session", c, state.WithTTL(state.TTLConfig{TTL: time.Minute, Clock: clock}))),
	}
}

// write applies round r of updates to key k.
func (s *allStates) write(k string, r int) {
	n, _ := s.v.Value()
	s.v.Update(n + 1)
	s.l.Add(fmt.Sprintf("%s/%d", k, r))
	s.m.Put(fmt.Sprint(r%3), r)
	s.r.Add(int64(r))
	s.a.Add(k)
	s.ttl.Update(fmt.Sprintf("%s@%d", k, r))
}

// check asserts the states of key k after rounds updates.
func (s *allStates) check(t *testing.T, where, k string, rounds int) {
	t.Helper()
	if n, _ := s.v.Value(); n != int64(rounds) {
		t.Fatalf("%s: %s: count %d, want %d", where, k, n, rounds)
	}
	l := s.l.Get()
	if len(l) != rounds || rounds > 0 && l[rounds-1] != fmt.Sprintf("%s/%d", k, rounds-1) {
		t.Fatalf("%s: %s: list %v, want %d entries", where, k, l, rounds)
	}
	if rounds > 0 {
		if v, ok := s.m.Get(fmt.Sprint((rounds - 1) % 3)); !ok || v != rounds-1 {
			t.Fatalf("%s: %s: map entry %v %v", where, k, v, ok)
		}
		if m, _ := s.r.Get(); m != int64(rounds-1) {
			t.Fatalf("%s: %s: reducing %d, want %d", where, k, m, rounds-1)
		}
		if a, _ := s.a.Get(); a != fmt.Sprint(rounds*len(k)) {
			t.Fatalf("%s: %s: aggregating %s, want %d", where, k, a, rounds*len(k))
		}
		if v, ok := s.ttl.Value(); !ok || v != fmt.Sprintf("%s@%d", k, rounds-1) {
			t.Fatalf("%s: %s: value with time-to-live %q %v", where, k, v, ok)
		}
	}
}

// Every kind of state survives a checkpoint and two rescales (1 -> 3 ->
// 2), and keeps taking writes in between.
func testKindsSnapshotRescale(t *testing.T, b Backend) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	st := storage.NewMemory("conformance")
	ks := Keys(300)

	// Parallelism 1: two rounds for every key.
	kb := b.New(t, FullRange())
	s := register(t, kb, clock)
	for r := range 2 {
		for _, key := range ks {
			SetKey(kb, key)
			s.write(key, r)
		}
	}
	for _, key := range ks {
		SetKey(kb, key)
		s.check(t, "p=1", key, 2)
	}
	h1 := Snapshot(t, kb, st, 1, checkpoint.KindCheckpoint)
	kb.NotifyCheckpointComplete(1)

	// Rescale 1 -> 3: one more round.
	var hs3 []checkpoint.KeyedStateHandle
	for i := range 3 {
		r := state.RangeForSubtask(MaxParallelism, 3, i)
		b3 := Restore(t, b, r, st, h1)
		s3 := register(t, b3, clock)
		for _, key := range ks {
			if !Owns(r, key) {
				continue
			}
			SetKey(b3, key)
			s3.check(t, "after 1->3", key, 2)
			s3.write(key, 2)
		}
		hs3 = append(hs3, Snapshot(t, b3, st, 2, checkpoint.KindCheckpoint))
		b3.NotifyCheckpointComplete(2)
	}
	// Rescale 3 -> 2: the third round survived.
	for i := range 2 {
		r := state.RangeForSubtask(MaxParallelism, 2, i)
		b2 := Restore(t, b, r, st, hs3...)
		s2 := register(t, b2, clock)
		for _, key := range ks {
			if !Owns(r, key) {
				continue
			}
			SetKey(b2, key)
			s2.check(t, "after 3->2", key, 3)
		}
	}
}

// A savepoint of from restores into to, at another parallelism, and holds
// every kind of state.
func testSavepoint(t *testing.T, from, to Backend) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	ks := Keys(200)
	st := storage.NewMemory("sp")
	b := from.New(t, FullRange())
	s := register(t, b, clock)
	for r := range 3 {
		for _, key := range ks {
			SetKey(b, key)
			s.write(key, r)
		}
	}
	h := Snapshot(t, b, st, 7, checkpoint.KindSavepoint)
	if h.Incremental != nil {
		t.Fatal("a savepoint must be in the canonical format")
	}
	for i := range 2 {
		r := state.RangeForSubtask(MaxParallelism, 2, i)
		b2 := Restore(t, to, r, st, h)
		s2 := register(t, b2, clock)
		for _, key := range ks {
			if Owns(r, key) {
				SetKey(b2, key)
				s2.check(t, "restored", key, 3)
			}
		}
	}
}

// Registering a state again returns the same state; registering its name
// as another kind of state or with another codec is an error, and so are
// an empty name and a time-to-live below the resolution.
func testRegistration(t *testing.T, b Backend) {
	kb := b.New(t, FullRange())
	v := must[state.ValueState[int64]](t)(state.GetValueState[string, int64](kb, "v", state.CodecFor[int64]()))
	SetKey(kb, "a")
	v.Update(41)
	again := must[state.ValueState[int64]](t)(state.GetValueState[string, int64](kb, "v", state.CodecFor[int64]()))
	if got, ok := again.Value(); !ok || got != 41 {
		t.Fatalf("registered again: %v %v, want the state registered first", got, ok)
	}
	again.Update(42)
	if got, _ := v.Value(); got != 42 {
		t.Fatalf("a state registered twice is two states: %d", got)
	}
	if _, err := state.GetValueState[string, string](kb, "v", state.CodecFor[string]()); err == nil || !strings.Contains(err.Error(), `state "v" is already registered`) {
		t.Fatalf("registered again with another codec: %v", err)
	}
	ttl := state.WithTTL(state.TTLConfig{TTL: time.Minute})
	if _, err := state.GetValueState[string, int64](kb, "v", state.CodecFor[int64](), ttl); err == nil || !strings.Contains(err.Error(), `state "v" is already registered`) {
		t.Fatalf("registered again with a time-to-live: %v", err)
	}
	must[state.ValueState[int64]](t)(state.GetValueState[string, int64](kb, "t", state.CodecFor[int64](), ttl))
	if _, err := state.GetValueState[string, int64](kb, "t", state.CodecFor[int64]()); err == nil || !strings.Contains(err.Error(), `state "t" is already registered`) {
		t.Fatalf("registered again without its time-to-live: %v", err)
	}
	if _, err := state.GetValueState[string, int64](kb, "", state.CodecFor[int64]()); err == nil {
		t.Fatal("a state without a name registered")
	}
	short := state.WithTTL(state.TTLConfig{TTL: time.Microsecond})
	if _, err := state.GetValueState[string, int64](kb, "short", state.CodecFor[int64](), short); err == nil || !strings.Contains(err.Error(), "resolution") {
		t.Fatalf("a time-to-live below the resolution: %v", err)
	}
	if _, err := state.GetValueState[string, int64](nil, "v", state.CodecFor[int64]()); err == nil || !strings.Contains(err.Error(), "no keyed state backend") {
		t.Fatalf("no backend: %v", err)
	}
}

// An expired value is never returned, OnReadAndWrite renews on read, full
// snapshots leave expired entries out, and a state with a time-to-live
// restores only as one.
func testTTL(t *testing.T, b Backend) {
	var nowMs atomic.Int64
	nowMs.Store(1_700_000_000_000)
	clock := func() time.Time { return time.UnixMilli(nowMs.Load()) }
	advance := func(d time.Duration) { nowMs.Add(d.Milliseconds()) }
	kb := b.New(t, FullRange())
	write := must[state.ValueState[int]](t)(state.GetValueState[string, int](kb, "w", state.CodecFor[int](),
		state.WithTTL(state.TTLConfig{TTL: 10 * time.Second, Clock: clock, CleanupPerAccess: -1})))
	read := must[state.ValueState[int]](t)(state.GetValueState[string, int](kb, "r", state.CodecFor[int](),
		state.WithTTL(state.TTLConfig{TTL: 10 * time.Second, Update: state.OnReadAndWrite, Clock: clock, CleanupPerAccess: -1})))
	SetKey(kb, "a")
	write.Update(1)
	read.Update(1)
	advance(6 * time.Second)
	if v, ok := write.Value(); !ok || v != 1 {
		t.Fatalf("value before expiry: %v %v", v, ok)
	}
	if _, ok := read.Value(); !ok { // renews "r" until +16s
		t.Fatal("read state expired early")
	}
	advance(6 * time.Second) // +12s
	if v, ok := write.Value(); ok {
		t.Fatalf("expired value returned: %v", v)
	}
	if _, ok := read.Value(); !ok {
		t.Fatal("OnReadAndWrite did not renew the time-to-live")
	}

	// A full snapshot (savepoint) leaves expired entries out.
	SetKey(kb, "b")
	write.Update(2)
	SetKey(kb, "c")
	write.Update(3)
	advance(5 * time.Second)
	SetKey(kb, "d")
	write.Update(4)          // expires at +27s
	advance(6 * time.Second) // b, c expired; d alive
	st := storage.NewMemory("ttl")
	h := Snapshot(t, kb, st, 1, checkpoint.KindSavepoint)
	var entries []string
	rc, err := st.OpenStream(context.Background(), h.Stream)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := state.WalkKeyGroups(rc, h, FullRange(), func(kg int, name string, kind byte, key, val []byte) error {
		entries = append(entries, name+"/"+string(key))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(entries)
	if got := strings.Join(entries, ","); got != "w/d" {
		t.Fatalf("savepoint holds %s, want w/d (expired entries left out)", got)
	}
	// A restore does not bring expired entries back, and a TTL state
	// restores only as a TTL state.
	b2 := Restore(t, b, FullRange(), st, h)
	if _, err := state.GetValueState[string, int](b2, "w", state.CodecFor[int]()); err == nil {
		t.Fatal("a TTL state restored as a state without TTL")
	}
}

// The incremental cleanup removes expired entries nobody reads again,
// driven by the accesses to other keys.
func testTTLIncrementalCleanup(t *testing.T, b Backend) {
	var nowMs atomic.Int64
	nowMs.Store(1_700_000_000_000)
	clock := func() time.Time { return time.UnixMilli(nowMs.Load()) }
	kb := b.New(t, FullRange())
	v := must[state.ValueState[int]](t)(state.GetValueState[string, int](kb, "v", state.CodecFor[int](),
		state.WithTTL(state.TTLConfig{TTL: time.Second, Clock: clock})))
	for _, key := range Keys(500) {
		SetKey(kb, key)
		v.Update(1)
	}
	nowMs.Add(2000) // all expired, never read again
	// Accesses to one other key drive the cleanup.
	SetKey(kb, "hot")
	for range 5000 {
		v.Update(2)
	}
	st := storage.NewMemory("c")
	// A native snapshot copies files as they are: count what is left
	// through a canonical savepoint taken with the clock far behind, so
	// that expiry does not filter anything.
	nowMs.Add(-2000)
	h := Snapshot(t, kb, st, 1, checkpoint.KindSavepoint)
	n := 0
	rc, err := st.OpenStream(context.Background(), h.Stream)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := state.WalkKeyGroups(rc, h, FullRange(), func(int, string, byte, []byte, []byte) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n > 1 {
		t.Fatalf("%d entries left after the incremental cleanup, want only the hot key", n)
	}
}

// The state a snapshot holds is the state when it was taken, whatever the
// task writes while the snapshot is written.
func testSnapshotIsolation(t *testing.T, b Backend, kind checkpoint.Kind) {
	kb := b.New(t, FullRange())
	v := must[state.ValueState[int]](t)(state.GetValueState[string, int](kb, "v", state.CodecFor[int]()))
	ks := Keys(2000)
	for i, key := range ks[:1000] {
		SetKey(kb, key)
		v.Update(i)
	}
	st := storage.NewMemory("iso")
	s, err := kb.SnapshotFor(1, kind)
	if err != nil {
		t.Fatal(err)
	}
	// After the barrier: overwrite, delete and add keys.
	for i, key := range ks {
		SetKey(kb, key)
		switch {
		case i < 300:
			v.Update(-i)
		case i < 600:
			v.Clear()
		default:
			v.Update(1_000_000 + i)
		}
	}
	h, err := WriteSnapshot(s, st, 1, "iso")
	s.Release()
	if err != nil {
		t.Fatal(err)
	}
	h.Range = FullRange()
	kb.NotifyCheckpointComplete(1)
	r := Restore(t, b, FullRange(), st, h)
	rv := must[state.ValueState[int]](t)(state.GetValueState[string, int](r, "v", state.CodecFor[int]()))
	for i, key := range ks {
		SetKey(r, key)
		got, ok := rv.Value()
		if i < 1000 && (!ok || got != i) || i >= 1000 && ok {
			t.Fatalf("key %s restored as %d %v, want the value at the snapshot", key, got, ok)
		}
	}
	// And the live state kept the later writes.
	SetKey(kb, ks[1500])
	if got, _ := v.Value(); got != 1_001_500 {
		t.Fatalf("live state lost a write made during the snapshot: %d", got)
	}
	// A second checkpoint after these writes holds them.
	h2 := Snapshot(t, kb, st, 2, checkpoint.KindCheckpoint)
	r2 := Restore(t, b, FullRange(), st, h2)
	rv2 := must[state.ValueState[int]](t)(state.GetValueState[string, int](r2, "v", state.CodecFor[int]()))
	SetKey(r2, ks[100])
	if got, _ := rv2.Value(); got != -100 {
		t.Fatalf("second checkpoint: key %s = %d, want -100", ks[100], got)
	}
	SetKey(r2, ks[400])
	if _, ok := rv2.Value(); ok {
		t.Fatal("second checkpoint: a cleared key came back")
	}
}

// A damaged, truncated or missing savepoint stream fails the restore with
// an error that names the stream (and the key group of damaged bytes); it
// never panics.
func testDamagedStream(t *testing.T, b Backend) {
	kb := b.New(t, FullRange())
	v := must[state.ValueState[string]](t)(state.GetValueState[string, string](kb, "v", state.CodecFor[string]()))
	for i, key := range Keys(300) {
		SetKey(kb, key)
		v.Update(strings.Repeat("x", i%200)) // some values need 2-byte lengths
	}
	dir := t.TempDir()
	st, err := storage.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := Snapshot(t, kb, st, 1, checkpoint.KindSavepoint)
	if h.Stream.Path == "" {
		t.Fatal("savepoint stream written inline into file storage")
	}
	path := filepath.Join(dir, filepath.FromSlash(h.Stream.Path))
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	restore := func(what string, data []byte) error {
		t.Helper()
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		nb := b.New(t, FullRange())
		err := nb.RestoreHandles([]checkpoint.KeyedStateHandle{h}, st.Opener(context.Background()))
		if err == nil {
			_, err = state.GetValueState[string, string](nb, "v", state.CodecFor[string]())
		}
		if err == nil {
			t.Fatalf("%s: restored without an error", what)
		}
		if !strings.Contains(err.Error(), filepath.Base(path)) {
			t.Fatalf("%s: the error does not name the stream %s: %v", what, h.Stream.Path, err)
		}
		return err
	}
	for _, at := range []int{0, 1, len(good) / 3, len(good) / 2, len(good) - 5, len(good) - 1} {
		d := append([]byte(nil), good...)
		d[at] ^= 0x41
		if err := restore(fmt.Sprintf("byte %d of %d flipped", at, len(good)), d); !strings.Contains(err.Error(), "key group") {
			t.Fatalf("byte %d flipped: the error does not name the key group: %v", at, err)
		}
	}
	for _, n := range []int{0, len(good) / 2, len(good) - 1} {
		restore(fmt.Sprintf("truncated to %d of %d bytes", n, len(good)), good[:n])
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	nb := b.New(t, FullRange())
	if err := nb.RestoreHandles([]checkpoint.KeyedStateHandle{h}, st.Opener(context.Background())); err == nil || !strings.Contains(err.Error(), filepath.Base(path)) {
		t.Fatalf("restore of a missing stream: %v", err)
	}
}
