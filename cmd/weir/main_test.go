package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/storage"
)

func runCmd(args ...string) (string, error) {
	out, _, err := runCmdNotes(args...)
	return out, err
}

// runCmdNotes is runCmd that also returns what went to standard error.
func runCmdNotes(args ...string) (out, notes string, err error) {
	var o, e bytes.Buffer
	root := newRoot(&o)
	root.SetErr(&e)
	root.SetArgs(args)
	err = root.Execute()
	return o.String(), e.String(), err
}

func TestCheckpointListAndInspect(t *testing.T) {
	dir := t.TempDir()
	st, err := storage.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	md := &checkpoint.Metadata{Version: checkpoint.MetadataVersion, JobName: "parity", CheckpointID: 4,
		TriggeredAt: time.Unix(10, 0), CompletedAt: time.Unix(11, 0), MaxParallelism: 128,
		Operators: []checkpoint.OperatorState{{UID: "sum", Name: "Sum", Parallelism: 1, Subtasks: []checkpoint.OperatorSubtaskState{{
			Keyed: []checkpoint.KeyedStateHandle{{Range: checkpoint.KeyGroupRange{Start: 0, End: 127},
				Stream: checkpoint.StreamHandle{Path: "chk-4/1-0-0.keyed", Size: 99}, Offsets: make([]int64, 128)}},
		}}}}}
	if err := st.Commit(t.Context(), md); err != nil {
		t.Fatal(err)
	}
	out, err := runCmd("checkpoint", "list", dir)
	if err != nil || !strings.Contains(out, "4") || !strings.Contains(out, "checkpoint") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	// The metadata names a stream that does not exist: --sizes=false does
	// not read it, the default does and says what is missing.
	out, err = runCmd("checkpoint", "inspect", "--sizes=false", filepath.Join(dir, "chk-4"))
	if err != nil || !strings.Contains(out, "operator sum (Sum)") || !strings.Contains(out, "key groups [0,127], 99 bytes in chk-4/1-0-0.keyed") {
		t.Fatalf("inspect: %v\n%s", err, out)
	}
	out, err = runCmd("checkpoint", "inspect", "--json", "--sizes=false", dir)
	if err != nil || !strings.Contains(out, `"checkpointId": 4`) {
		t.Fatalf("inspect --json: %v\n%s", err, out)
	}
	out, err = runCmd("checkpoint", "inspect", dir)
	if err == nil || !strings.Contains(err.Error(), `cannot read keyed state of operator "sum" subtask 0 (chk-4/1-0-0.keyed): cannot open state blob: open `) ||
		!strings.Contains(out, "operator sum (Sum)") {
		t.Fatalf("inspect of a missing stream: %v\n%s", err, out)
	}
	if _, err := runCmd("checkpoint", "inspect", filepath.Join(dir, "chk-9")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing checkpoint: %v", err)
	}
}
