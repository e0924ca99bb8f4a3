package state

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/weirstream/weir/checkpoint"
)

func TestKeyGroupAssignment(t *testing.T) {
	// Every key group, one by one, for the sizes jobs use.
	for maxP := 1; maxP <= 256; maxP++ {
		for p := 1; p <= maxP; p++ {
			owner := make([]int, maxP)
			for i := range owner {
				owner[i] = -1
			}
			for s := range p {
				r := RangeForSubtask(maxP, p, s)
				if r.Len() == 0 {
					t.Fatalf("maxP %d p %d: subtask %d owns no key group", maxP, p, s)
				}
				for kg := r.Start; kg <= r.End; kg++ {
					if owner[kg] != -1 {
						t.Fatalf("maxP %d p %d: key group %d owned twice", maxP, p, kg)
					}
					owner[kg] = s
					if got := SubtaskForKeyGroup(maxP, p, kg); got != s {
						t.Fatalf("maxP %d p %d: key group %d in range of %d, SubtaskForKeyGroup says %d", maxP, p, kg, s, got)
					}
				}
			}
			for kg, o := range owner {
				if o == -1 {
					t.Fatalf("maxP %d p %d: key group %d owned by nobody", maxP, p, kg)
				}
			}
		}
	}
	// Every (maxP, p) up to 1024: the ranges tile [0, maxP) in subtask
	// order, and SubtaskForKeyGroup (monotone in the key group) gives s at
	// both ends of s's range, hence everywhere in it.
	for maxP := 1; maxP <= 1024; maxP++ {
		for p := 1; p <= maxP; p++ {
			next := 0
			for s := range p {
				r := RangeForSubtask(maxP, p, s)
				if r.Start != next || r.End < r.Start {
					t.Fatalf("maxP %d p %d: subtask %d has %s after key group %d", maxP, p, s, r, next-1)
				}
				if SubtaskForKeyGroup(maxP, p, r.Start) != s || SubtaskForKeyGroup(maxP, p, r.End) != s {
					t.Fatalf("maxP %d p %d: SubtaskForKeyGroup disagrees with %s of subtask %d", maxP, p, r, s)
				}
				next = r.End + 1
			}
			if next != maxP {
				t.Fatalf("maxP %d p %d: ranges end at %d", maxP, p, next-1)
			}
		}
	}
	// Flink's maximum, a few parallelisms.
	for _, p := range []int{1, 3, 7, 100, 1000, 32767, 32768} {
		for s := range p {
			r := RangeForSubtask(32768, p, s)
			if SubtaskForKeyGroup(32768, p, r.Start) != s || SubtaskForKeyGroup(32768, p, r.End) != s {
				t.Fatalf("maxP 32768 p %d: subtask %d range %s disagrees", p, s, r)
			}
		}
	}
}

// Golden values: the hash decides which subtask owns a key, so a change
// would break every restore. These must never change.
func TestHashStability(t *testing.T) {
	i64 := HasherFor(CodecFor[int64]())
	str := HasherFor(CodecFor[string]())
	type pair struct{ A, B int }
	js := HasherFor(CodecFor[pair]())
	got := fmt.Sprintf("%d %d %d %d %d %d %d", i64(0), i64(1), i64(-1), i64(1<<40), str(""), str("even"), js(pair{1, 2}))
	const want = "1669671676 1392991556 1651860712 2851483426 0 2707362363 2377773948"
	if got != want {
		t.Fatalf("key hashes changed:\n got %s\nwant %s", got, want)
	}
	// Narrower integer types hash like the same value in int64.
	if HasherFor(CodecFor[int32]())(-7) != i64(-7) || HasherFor(CodecFor[int]())(42) != i64(42) {
		t.Fatal("int32/int keys hash differently from int64 keys of the same value")
	}
	if Murmur3String("hello, world") != Murmur3Bytes([]byte("hello, world")) {
		t.Fatal("string and bytes murmur disagree")
	}
	// The published murmur3 x86_32 test vector (seed 0).
	if got := Murmur3String("The quick brown fox jumps over the lazy dog"); got != 0x2e4ff723 {
		t.Fatalf("murmur3 of the test vector = %#x, want 0x2e4ff723", got)
	}
}

func TestCodecs(t *testing.T) {
	roundTrip(t, CodecFor[int64](), -1<<62)
	roundTrip(t, CodecFor[int](), 12345)
	roundTrip(t, CodecFor[uint8](), 255)
	roundTrip(t, CodecFor[float64](), 3.25)
	roundTrip(t, CodecFor[bool](), true)
	roundTrip(t, CodecFor[string](), "héllo")
	type s struct {
		A int
		B string
	}
	roundTrip(t, CodecFor[s](), s{1, "x"})
	if _, err := CodecFor[int64]().Decode([]byte{0x80}); err == nil {
		t.Fatal("bad varint accepted")
	}
	if _, err := CodecFor[int8]().Decode(CodecFor[int64]().Append(nil, 1000)); err == nil {
		t.Fatal("overflow accepted")
	}
	if _, err := CodecFor[bool]().Decode([]byte{7}); err == nil {
		t.Fatal("bad bool accepted")
	}
	if _, err := CodecFor[s]().Decode([]byte("{")); err == nil {
		t.Fatal("bad JSON accepted")
	}
}

func roundTrip[T comparable](t *testing.T, c Codec[T], v T) {
	t.Helper()
	got, err := c.Decode(c.Append(nil, v))
	if err != nil || got != v {
		t.Fatalf("%T round trip: %v %v", v, got, err)
	}
}

func newBackend(r checkpoint.KeyGroupRange) *HeapKeyedBackend[int64] {
	c := CodecFor[int64]()
	return NewHeapKeyedBackend(c, HasherFor(c), 128, r)
}

// fill puts key -> key*10 for every key of the backend's range among
// 0..n-1, and returns those keys.
func fill(b *HeapKeyedBackend[int64], st ValueState[int64], n int) map[int64]int64 {
	want := map[int64]int64{}
	for k := int64(0); k < int64(n); k++ {
		if !b.r.Contains(KeyGroupOf(b.hash(k), 128)) {
			continue
		}
		b.SetCurrentKey(k)
		st.Update(k * 10)
		want[k] = k * 10
	}
	return want
}

func snapshotBytes(t *testing.T, s KeyedSnapshot, r checkpoint.KeyGroupRange) ([]byte, checkpoint.KeyedStateHandle) {
	t.Helper()
	var buf bytes.Buffer
	offs, err := s.WriteKeyGroups(&buf)
	if err != nil {
		t.Fatal(err)
	}
	s.Release()
	return buf.Bytes(), checkpoint.KeyedStateHandle{Range: r, Offsets: offs, Stream: checkpoint.StreamHandle{Size: int64(buf.Len())}}
}

func readAll(t *testing.T, b *HeapKeyedBackend[int64], st ValueState[int64], n int) map[int64]int64 {
	got := map[int64]int64{}
	for k := int64(0); k < int64(n); k++ {
		if !b.r.Contains(KeyGroupOf(b.hash(k), 128)) {
			continue
		}
		b.SetCurrentKey(k)
		if v, ok := st.Value(); ok {
			got[k] = v
		}
	}
	return got
}

func TestValueStateAndClear(t *testing.T) {
	b := newBackend(checkpoint.KeyGroupRange{Start: 0, End: 127})
	st, err := GetValueState[int64, int64](b, "v", CodecFor[int64]())
	if err != nil {
		t.Fatal(err)
	}
	want := fill(b, st, 5000)
	for k := int64(0); k < 5000; k += 3 {
		b.SetCurrentKey(k)
		st.Clear()
		delete(want, k)
	}
	got := readAll(t, b, st, 5000)
	if len(got) != len(want) || b.NumKeys("v") != len(want) {
		t.Fatalf("%d keys, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("key %d = %d, want %d", k, got[k], v)
		}
	}
	if _, err := GetValueState[int64, string](b, "v", CodecFor[string]()); err == nil {
		t.Fatal("registering a state twice with another type succeeded")
	}
}

// The snapshot written while the task keeps updating state equals the
// state at the moment of Snapshot (run with -race).
func TestCopyOnWriteSnapshotUnderConcurrentWrites(t *testing.T) {
	r := checkpoint.KeyGroupRange{Start: 0, End: 127}
	b := newBackend(r)
	st, _ := GetValueState[int64, int64](b, "v", CodecFor[int64]())
	want := fill(b, st, 20000)
	snap := b.Snapshot()
	var wg sync.WaitGroup
	var data []byte
	var h checkpoint.KeyedStateHandle
	wg.Add(1)
	go func() {
		defer wg.Done()
		data, h = snapshotBytes(t, snap, r)
	}()
	// Meanwhile: overwrite, delete and add keys, and take a second snapshot.
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 50000 {
		k := int64(rng.IntN(30000))
		b.SetCurrentKey(k)
		if i%7 == 0 {
			st.Clear()
		} else {
			st.Update(-k)
		}
		if i == 25000 {
			b.Snapshot().Release()
		}
	}
	wg.Wait()
	restored := newBackend(r)
	rst, _ := GetValueState[int64, int64](restored, "v", CodecFor[int64]())
	if err := restored.Restore(bytes.NewReader(data), h); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, restored, rst, 30000)
	if len(got) != len(want) {
		t.Fatalf("snapshot has %d keys, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("snapshot: key %d = %d, want %d (a write after the snapshot leaked in)", k, got[k], v)
		}
	}
}

// Rescaling 1 -> 3 -> 2: the union of what the new subtasks restore equals
// the original state, every key exactly once.
func TestRescaleRoundTrip(t *testing.T) {
	full := checkpoint.KeyGroupRange{Start: 0, End: 127}
	b := newBackend(full)
	st, _ := GetValueState[int64, int64](b, "v", CodecFor[int64]())
	want := fill(b, st, 3000)
	data, h := snapshotBytes(t, b.Snapshot(), full)
	type blob struct {
		data []byte
		h    checkpoint.KeyedStateHandle
	}
	handles := []blob{{data, h}}
	for _, p := range []int{3, 2} {
		var next []blob
		union := map[int64]int64{}
		for s := range p {
			r := RangeForSubtask(128, p, s)
			nb := newBackend(r)
			for _, old := range handles {
				if old.h.Range.Intersect(r).Len() > 0 {
					if err := nb.Restore(bytes.NewReader(old.data), old.h); err != nil {
						t.Fatal(err)
					}
				}
			}
			// Lazy registration: the state is registered after the restore.
			nst, _ := GetValueState[int64, int64](nb, "v", CodecFor[int64]())
			for k, v := range readAll(t, nb, nst, 3000) {
				if _, dup := union[k]; dup {
					t.Fatalf("p=%d: key %d restored twice", p, k)
				}
				union[k] = v
			}
			d, hh := snapshotBytes(t, nb.Snapshot(), r)
			next = append(next, blob{d, hh})
		}
		if len(union) != len(want) {
			t.Fatalf("p=%d: %d keys restored, want %d", p, len(union), len(want))
		}
		for k, v := range want {
			if union[k] != v {
				t.Fatalf("p=%d: key %d = %d, want %d", p, k, union[k], v)
			}
		}
		handles = next
	}
}

// A state never registered after a restore survives the next snapshot.
func TestUnregisteredStateSurvives(t *testing.T) {
	full := checkpoint.KeyGroupRange{Start: 0, End: 127}
	b := newBackend(full)
	st, _ := GetValueState[int64, int64](b, "v", CodecFor[int64]())
	want := fill(b, st, 100)
	data, h := snapshotBytes(t, b.Snapshot(), full)
	b2 := newBackend(full)
	if err := b2.Restore(bytes.NewReader(data), h); err != nil {
		t.Fatal(err)
	}
	data2, h2 := snapshotBytes(t, b2.Snapshot(), full)
	b3 := newBackend(full)
	if err := b3.Restore(bytes.NewReader(data2), h2); err != nil {
		t.Fatal(err)
	}
	st3, _ := GetValueState[int64, int64](b3, "v", CodecFor[int64]())
	if got := readAll(t, b3, st3, 100); len(got) != len(want) {
		t.Fatalf("%d keys survived, want %d", len(got), len(want))
	}
}

func TestCorruptedSnapshot(t *testing.T) {
	full := checkpoint.KeyGroupRange{Start: 0, End: 127}
	b := newBackend(full)
	st, _ := GetValueState[int64, int64](b, "v", CodecFor[int64]())
	fill(b, st, 500)
	data, h := snapshotBytes(t, b.Snapshot(), full)
	for i := 0; i < len(data); i += 7 {
		c := bytes.Clone(data)
		c[i] ^= 0x41
		nb := newBackend(full)
		GetValueState[int64, int64](nb, "v", CodecFor[int64]())
		if err := nb.Restore(bytes.NewReader(c), h); err == nil {
			t.Fatalf("flipped byte %d: restored without error", i)
		}
	}
	nb := newBackend(full)
	err := nb.Restore(bytes.NewReader(data[:len(data)/2]), h)
	if err == nil || !strings.Contains(err.Error(), "key group") {
		t.Fatalf("truncated: %v", err)
	}
}

func TestOperatorStateRedistribution(t *testing.T) {
	old := [][]checkpoint.ListStateSnapshot{
		{{Name: "split", Mode: checkpoint.SplitEvenly, Entries: [][]byte{{1}, {2}, {3}}}, {Name: "u", Mode: checkpoint.Union, Entries: [][]byte{{9}}}},
		{{Name: "split", Mode: checkpoint.SplitEvenly, Entries: [][]byte{{4}, {5}}}, {Name: "u", Mode: checkpoint.Union, Entries: [][]byte{{8}}}},
	}
	out := Redistribute(old, 3)
	var all []byte
	for s, sub := range out {
		for _, l := range sub {
			switch l.Name {
			case "split":
				for _, e := range l.Entries {
					all = append(all, e[0])
				}
			case "u":
				if len(l.Entries) != 2 {
					t.Fatalf("subtask %d: union state has %d entries, want 2", s, len(l.Entries))
				}
			}
		}
	}
	if !bytes.Equal(all, []byte{1, 2, 3, 4, 5}) {
		t.Fatalf("split entries %v, want each of 1..5 exactly once", all)
	}
	ob := NewOperatorBackend(out[0])
	if _, err := GetListState[float64](ob, "split", checkpoint.SplitEvenly, CodecFor[float64]()); err == nil {
		t.Fatal("one-byte entries decoded as float64 without error")
	}
	ob = NewOperatorBackend(nil)
	ls, _ := GetListState[int64](ob, "pos", checkpoint.SplitEvenly, CodecFor[int64]())
	ls.Add(7)
	ls.Add(-3)
	snap, _ := ob.Snapshot()
	ob2 := NewOperatorBackend(snap)
	ls2, err := GetListState[int64](ob2, "pos", checkpoint.SplitEvenly, CodecFor[int64]())
	if err != nil || len(ls2.Get()) != 2 || ls2.Get()[0] != 7 || ls2.Get()[1] != -3 {
		t.Fatalf("list state round trip: %v %v", ls2.Get(), err)
	}
}
