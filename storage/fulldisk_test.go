package storage

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/internal/tmpfstest"
)

// On a full disk a state blob and the commit point fail with errors that
// name the blob and wrap ENOSPC, leave no temporary file, and leave the
// previous checkpoint the latest one; with room again, the same commit
// succeeds.
func TestFullDisk(t *testing.T) {
	dir := tmpfstest.Mount(t, 256<<10)
	s, err := NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.CreateStream(ctx, 1, "a")
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("state"))
	h, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, sampleMetadata(1, h)); err != nil {
		t.Fatal(err)
	}
	filler := tmpfstest.Fill(t, dir)

	w, err = s.CreateStream(ctx, 2, "a")
	if err == nil {
		_, err = io.Copy(w, io.LimitReader(zeros{}, 64<<10))
		if err == nil {
			_, err = w.Close()
		}
		w.Abort()
	}
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), filepath.Join(dir, "chk-2", "a")) {
		t.Fatalf("want ENOSPC naming %s/chk-2/a, got %v", dir, err)
	}
	md := sampleMetadata(2, h)
	err = s.Commit(ctx, md)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), filepath.Join(dir, "chk-2", "_metadata")) {
		t.Fatalf("want the commit of checkpoint 2 to fail with ENOSPC naming its _metadata, got %v", err)
	}
	if id, ok, err := s.Latest(ctx); err != nil || !ok || id != 1 {
		t.Fatalf("latest after a failed commit: %d %v %v", id, ok, err)
	}
	keys, _ := s.Store().List(ctx, "chk-")
	for _, k := range keys {
		if strings.Contains(k, ".tmp-") {
			t.Errorf("temporary file left: %s", k)
		}
	}
	if _, err := s.ReadMetadata(ctx, 1); err != nil {
		t.Fatalf("checkpoint 1 after the failures: %v", err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, md); err != nil {
		t.Fatalf("commit with room again: %v", err)
	}
	if id, _, _ := s.Latest(ctx); id != checkpoint.ID(2) {
		t.Fatalf("latest %d, want 2", id)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }
