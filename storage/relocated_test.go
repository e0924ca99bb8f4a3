package storage

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weirstream/weir/checkpoint"
)

// writeCheckpoint commits checkpoint id into a new storage root with one
// state blob, and returns the root and the blob's handle.
func writeCheckpoint(t *testing.T, id checkpoint.ID, mod func(*checkpoint.Metadata)) (string, checkpoint.StreamHandle) {
	t.Helper()
	root := t.TempDir()
	s, err := NewFile(root)
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.CreateStream(ctx, id, "1-0-0.keyed")
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("abc"))
	h, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	md := sampleMetadata(id, h)
	md.Kind = checkpoint.KindSavepoint
	if mod != nil {
		mod(md)
	}
	if err := s.Commit(ctx, md); err != nil {
		t.Fatal(err)
	}
	return root, h
}

// A savepoint directory copied and renamed restores from its new place,
// by path, by its _metadata and by URL; nothing can be written into it.
func TestRelocatedSavepoint(t *testing.T) {
	root, h := writeCheckpoint(t, 41, nil)
	moved := filepath.Join(t.TempDir(), "savepoint-before-upgrade")
	if err := os.CopyFS(moved, os.DirFS(filepath.Join(root, "chk-41"))); err != nil {
		t.Fatal(err)
	}
	RegisterScheme("relocatetest", func(_ context.Context, loc string) (BlobStore, error) {
		return NewFileStore(strings.TrimPrefix(loc, "relocatetest://"))
	})
	for _, path := range []string{moved, filepath.Join(moved, "_metadata"), "file://" + moved, "relocatetest://" + moved} {
		st, id, err := ResolveRestorePath(ctx, path)
		if err != nil || id != 41 {
			t.Fatalf("%s: checkpoint %d, %v", path, id, err)
		}
		md, err := st.ReadMetadata(ctx, id)
		if err != nil || md.CheckpointID != 41 {
			t.Fatalf("%s: metadata %v, %v", path, md, err)
		}
		r, err := st.OpenStream(ctx, h)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil || string(b) != "abc" {
			t.Fatalf("%s: state blob %q, %v", path, b, err)
		}
		if got := st.Store().Locate(h.Path); got != filepath.Join(moved, "1-0-0.keyed") {
			t.Fatalf("%s: blob located at %s", path, got)
		}
		if ids, err := st.Completed(ctx); err != nil || len(ids) != 1 || ids[0] != 41 {
			t.Fatalf("%s: completed %v, %v", path, ids, err)
		}
		if _, err := st.CreateStream(ctx, 42, "x"); err == nil {
			t.Fatalf("%s: wrote into a relocated checkpoint", path)
		}
	}
	// In place (chk-41 under its root) it is the root's checkpoint.
	st, id, err := ResolveRestorePath(ctx, filepath.Join(root, "chk-41"))
	if err != nil || id != 41 || st.String() != "file://"+root {
		t.Fatalf("in place: %v %d %v", st, id, err)
	}
}

// A checkpoint that uses shared files of its checkpoint directory does not
// restore once moved out of it, and the error says what to do.
func TestRelocatedIncrementalCheckpointRefused(t *testing.T) {
	root, _ := writeCheckpoint(t, 7, func(md *checkpoint.Metadata) {
		md.Kind = checkpoint.KindCheckpoint
		k := &md.Operators[1].Subtasks[0].Keyed[0]
		k.Offsets = nil
		k.Incremental = &checkpoint.IncrementalHandle{Backend: "pebble-v1", Files: []checkpoint.NamedStream{
			{Name: "000012.sst", Stream: checkpoint.StreamHandle{Path: SharedPrefix + "7-1-0-0-000012.sst", Size: 3}},
		}}
	})
	moved := filepath.Join(t.TempDir(), "copy")
	if err := os.CopyFS(moved, os.DirFS(filepath.Join(root, "chk-7"))); err != nil {
		t.Fatal(err)
	}
	_, _, err := ResolveRestorePath(ctx, moved)
	if err == nil || !strings.Contains(err.Error(), "checkpoint 7 refers to 1 shared files of the checkpoint directory it was taken in") ||
		!strings.Contains(err.Error(), "named chk-7, or take a savepoint") {
		t.Fatalf("moved incremental checkpoint: %v", err)
	}
	if _, id, err := ResolveRestorePath(ctx, filepath.Join(root, "chk-7")); err != nil || id != 7 {
		t.Fatalf("in place: %d %v", id, err)
	}
}
