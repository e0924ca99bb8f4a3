package weir

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/state"
)

// bcEntry is a broadcast state entry in the format of
// docs/architecture.md: uvarint(len(key)) | key | value, with the codecs of
// state.CodecFor.
func bcEntry(key string, value int64) []byte {
	e := binary.AppendUvarint(nil, uint64(len(key)))
	e = append(e, key...)
	return state.CodecFor[int64]().Append(e, value)
}

// Broadcast state written in the documented format (what checkpoints of
// earlier builds hold) restores, and snapshots write it again byte for
// byte: subtask 0 the entries, sorted, the others the names alone;
// restored states nobody registers are carried forward the same way.
func TestBroadcastStateFormat(t *testing.T) {
	restored := []checkpoint.ListStateSnapshot{
		{Name: "weir/broadcast/rules", Mode: checkpoint.Union, Entries: [][]byte{bcEntry("b", 2), bcEntry("a", -1)}},
		{Name: "count", Mode: checkpoint.SplitEvenly, Entries: [][]byte{{7}}},
		{Name: "weir/broadcast/old", Mode: checkpoint.Union, Entries: [][]byte{bcEntry("x", 9)}},
	}
	for subtask := range 2 {
		t.Run(fmt.Sprint("subtask ", subtask), func(t *testing.T) {
			oc := &runtime.OperatorContext{OperatorName: "join", Subtask: subtask, Parallelism: 2, Restored: true, RestoredCheckpoint: 3, RestoredList: restored}
			core, rest := newBroadcastCore(oc)
			if len(rest) != 1 || rest[0].Name != "count" {
				t.Fatalf("list states left to the function: %+v", rest)
			}
			rules, err := GetBroadcastState[string, int64](&BroadcastContext{core: core}, "rules")
			if err != nil {
				t.Fatal(err)
			}
			if a, _ := rules.Get("a"); rules.Len() != 2 || a != -1 {
				t.Fatalf("restored %d rules, a = %d", rules.Len(), a)
			}
			core.writable = true
			rules.Put("c", 3)
			core.writable = false
			lists, err := core.snapshot()
			if err != nil {
				t.Fatal(err)
			}
			want := []checkpoint.ListStateSnapshot{
				{Name: "weir/broadcast/rules", Mode: checkpoint.Union, Entries: [][]byte{bcEntry("a", -1), bcEntry("b", 2), bcEntry("c", 3)}},
				{Name: "weir/broadcast/old", Mode: checkpoint.Union, Entries: [][]byte{bcEntry("x", 9)}},
			}
			if subtask != 0 {
				want[0].Entries, want[1].Entries = nil, nil
			}
			if !sameLists(lists, want) {
				t.Fatalf("snapshot\n%v\nwant\n%v", lists, want)
			}
			// The map stays the state: a second snapshot is the same.
			again, err := core.snapshot()
			if err != nil || !sameLists(again, want) {
				t.Fatalf("second snapshot %v (%v), want %v", again, err, want)
			}
		})
	}
}

func sameLists(a, b []checkpoint.ListStateSnapshot) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Mode != b[i].Mode || len(a[i].Entries) != len(b[i].Entries) {
			return false
		}
		for j := range a[i].Entries {
			if !bytes.Equal(a[i].Entries[j], b[i].Entries[j]) {
				return false
			}
		}
	}
	return true
}
