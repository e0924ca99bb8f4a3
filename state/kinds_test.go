package state

import (
	"bytes"
	"slices"
	"testing"

	"github.com/weirstream/weir/checkpoint"
)

type avg struct{}

func (avg) CreateAccumulator() [2]int64         { return [2]int64{} }
func (avg) Add(in int64, acc [2]int64) [2]int64 { return [2]int64{acc[0] + in, acc[1] + 1} }
func (avg) Result(acc [2]int64) float64         { return float64(acc[0]) / float64(acc[1]) }

// List, reducing and aggregating state survive a snapshot and restore, and
// a write after the snapshot does not leak into it.
func TestStateKinds(t *testing.T) {
	full := checkpoint.KeyGroupRange{Start: 0, End: 127}
	b := newBackend(full)
	list, err := GetKeyedListState[int64, string](b, "list", CodecFor[string]())
	if err != nil {
		t.Fatal(err)
	}
	mp, err := GetMapState[int64, string, int64](b, "words", CodecFor[string](), CodecFor[int64]())
	if err != nil {
		t.Fatal(err)
	}
	red, _ := GetReducingState[int64, int64](b, "max", CodecFor[int64](), func(a, c int64) int64 { return max(a, c) })
	agg, _ := GetAggregatingState[int64, int64, [2]int64, float64](b, "avg", CodecFor[[2]int64](), avg{})
	for k := int64(0); k < 50; k++ {
		b.SetCurrentKey(k)
		for i := int64(0); i < 3; i++ {
			list.Add(string(rune('a' + i)))
			red.Add(k*10 - i)
			agg.Add(i + k)
			mp.Put(string(rune('x'+i)), k+i)
		}
		mp.Remove("y")
	}
	snap := b.Snapshot()
	b.SetCurrentKey(7)
	list.Add("late") // after the snapshot: must not be in it
	red.Add(1000)
	mp.Put("late", 1)
	var buf bytes.Buffer
	offs, err := snap.WriteKeyGroups(&buf)
	if err != nil {
		t.Fatal(err)
	}
	snap.Release()

	r := newBackend(full)
	if err := r.Restore(bytes.NewReader(buf.Bytes()), checkpoint.KeyedStateHandle{Range: full, Offsets: offs}); err != nil {
		t.Fatal(err)
	}
	rl, _ := GetKeyedListState[int64, string](r, "list", CodecFor[string]())
	rr, _ := GetReducingState[int64, int64](r, "max", CodecFor[int64](), func(a, c int64) int64 { return max(a, c) })
	ra, _ := GetAggregatingState[int64, int64, [2]int64, float64](r, "avg", CodecFor[[2]int64](), avg{})
	rm, _ := GetMapState[int64, string, int64](r, "words", CodecFor[string](), CodecFor[int64]())
	for k := int64(0); k < 50; k++ {
		r.SetCurrentKey(k)
		if got := rl.Get(); !slices.Equal(got, []string{"a", "b", "c"}) {
			t.Fatalf("key %d list %v", k, got)
		}
		if got, _ := rr.Get(); got != k*10 {
			t.Fatalf("key %d max %d", k, got)
		}
		if got, _ := ra.Get(); got != float64(k)+1 {
			t.Fatalf("key %d avg %v", k, got)
		}
		if e := rm.Entries(); len(e) != 2 || e["x"] != k || e["z"] != k+2 {
			t.Fatalf("key %d map %v", k, e)
		}
		if _, ok := rm.Get("y"); ok {
			t.Fatalf("key %d: removed entry restored", k)
		}
	}
	b.SetCurrentKey(7)
	if got := list.Get(); len(got) != 4 {
		t.Fatalf("live list %v", got)
	}
	list.Clear()
	if got := list.Get(); got != nil {
		t.Fatalf("cleared list %v", got)
	}
	if _, err := (sliceCodec[string]{CodecFor[string]()}).Decode([]byte{5, 1}); err == nil {
		t.Fatal("truncated list decoded")
	}
}
