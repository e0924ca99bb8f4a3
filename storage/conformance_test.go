package storage_test

import (
	"testing"

	"github.com/weirstream/weir/state"
	"github.com/weirstream/weir/storage"
	"github.com/weirstream/weir/storage/storagetest"
)

// TestConformance runs the conformance suite on the file and memory
// stores (package storage/s3 runs it on S3).
func TestConformance(t *testing.T) {
	t.Run("file", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) *storage.Storage {
			s, err := storage.Open(t.Context(), "file://"+t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return s
		})
	})
	t.Run("memory", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) *storage.Storage { return storage.NewMemory("test") })
	})
}

// State writes native snapshots to its own interface and names the shared
// area with its own constant, so that it need not import storage: both
// must match.
var _ state.SnapshotTarget = (*storage.Target)(nil)

func TestStateAgrees(t *testing.T) {
	if state.SharedPrefix != storage.SharedPrefix {
		t.Fatalf("state.SharedPrefix %q, storage.SharedPrefix %q", state.SharedPrefix, storage.SharedPrefix)
	}
}
