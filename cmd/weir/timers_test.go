package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/state"
	"github.com/weirstream/weir/state/statetest"
)

// weir state dump prints the timers of a timer queue: key, timestamp and
// namespace, sorted by key group, key, then time.
func TestDumpTimers(t *testing.T) {
	dir := t.TempDir()
	st := mustStorage(t, dir)
	kb := statetest.Heap().New(t, statetest.FullRange())
	q, err := state.GetTimerQueue(kb, "event-timers")
	if err != nil {
		t.Fatal(err)
	}
	statetest.SetKey(kb, "b")
	q.Add(1_700_000_000_000, "")
	statetest.SetKey(kb, "a")
	q.Add(1_700_000_060_000, "window-2")
	q.Add(1_700_000_000_000, "window-1")
	h := statetest.Snapshot(t, kb, st, 4, checkpoint.KindSavepoint)
	md := &checkpoint.Metadata{Version: 2, JobName: "j", CheckpointID: 4, Kind: checkpoint.KindSavepoint, MaxParallelism: statetest.MaxParallelism,
		TriggeredAt: time.Unix(1, 0), CompletedAt: time.Unix(2, 0),
		Operators: []checkpoint.OperatorState{{UID: "win", Parallelism: 1, Subtasks: []checkpoint.OperatorSubtaskState{{Keyed: []checkpoint.KeyedStateHandle{h}}}}}}
	if err := st.Commit(t.Context(), md); err != nil {
		t.Fatal(err)
	}
	chk := filepath.Join(dir, "chk-4")
	out, notes, err := runCmdNotes("state", "dump", chk, "--operator", "win", "--state", "event-timers")
	if err != nil {
		t.Fatalf("dump: %v\n%s", err, notes)
	}
	// Key group order first: "b" is in an earlier key group than "a".
	want := "b\ttimer 1700000000000 (2023-11-14T22:13:20.000Z)\n" +
		"a\ttimer 1700000000000 (2023-11-14T22:13:20.000Z)\tnamespace window-1\n" +
		"a\ttimer 1700000060000 (2023-11-14T22:14:20.000Z)\tnamespace window-2\n"
	if out != want {
		t.Fatalf("dump printed\n%s\nwant\n%s", out, want)
	}
	if !strings.Contains(notes, "timer queue") {
		t.Fatalf("notes: %s", notes)
	}
	out, _, err = runCmdNotes("state", "dump", chk, "--operator", "win", "--state", "event-timers", "--json", "--limit", "2")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"key":"a","timestamp":1700000000000,"time":"2023-11-14T22:13:20.000Z","namespace":"window-1"}`) || strings.Count(out, "\n") != 2 {
		t.Fatalf("dump --json printed %s", out)
	}
}
