// Package tmpfstest mounts small tmpfs file systems for tests of what
// happens when a disk is full.
package tmpfstest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// Mount mounts a tmpfs of size bytes on a new temporary directory and
// unmounts it when the test ends. It needs root (mount(8)); without it,
// or when the mount fails, the test skips, except in CI (CI=true), where
// it fails.
func Mount(t testing.TB, size int64) string {
	t.Helper()
	skip := func(why string) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot mount a tmpfs (CI=true): %s", why)
		}
		t.Skipf("cannot mount a tmpfs, which this test needs to fill a disk: %s (run as root; skipped because CI is not set)", why)
	}
	if os.Geteuid() != 0 {
		skip("not root")
	}
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.FormatInt(size, 10), "tmpfs", dir).CombinedOutput()
	if err != nil {
		skip(err.Error() + ": " + string(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("cannot unmount the tmpfs on %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// Fill writes the file dir/filler until the file system is full and
// returns its path (remove it to make room again).
func Fill(t testing.TB, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return p
		}
	}
}
