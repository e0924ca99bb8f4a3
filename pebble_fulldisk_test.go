package weir_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/internal/tmpfstest"
	"github.com/weirstream/weir/restart"
	"github.com/weirstream/weir/state/pebblestate"
)

// pebbleFullDiskJob is fullDiskJob with its state in pebble in dir,
// checkpointed every 100 ms.
func pebbleFullDiskJob(dir string, limit int64, opts ...weir.Option) (*weir.Environment, *weir.CollectSink[int64]) {
	return pebbleFullDiskJobWith(pebblestate.Options{Dir: dir}, limit,
		append([]weir.Option{weir.Checkpointing(100*time.Millisecond, weir.ExactlyOnce)}, opts...)...)
}

func pebbleFullDiskJobWith(po pebblestate.Options, limit int64, opts ...weir.Option) (*weir.Environment, *weir.CollectSink[int64]) {
	return fullDiskJob(limit, append([]weir.Option{weir.StateBackend(pebblestate.New(po))}, opts...)...)
}

// openFilesUnder counts the files this process has open below dir.
func openFilesUnder(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot list open files: %v", err)
	}
	var open []string
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, dir+"/") {
			open = append(open, l)
		}
	}
	return open
}

// The pebble working directory fills up (a 2 MiB tmpfs; the job's state
// grows past it): every attempt fails with an error naming the directory
// and ENOSPC, the job fails once its restarts are exhausted, and the
// process does not panic (pebble's Fatalf on a failed MANIFEST write used
// to crash it). The failed attempts close their databases: nothing is
// left open or behind in the directory (the tmpfs unmounts).
func TestPebbleLocalDirFull(t *testing.T) {
	dir := tmpfstest.Mount(t, 2<<20)
	env, _ := pebbleFullDiskJob(dir, 5000, weir.RestartStrategy(restart.FixedDelay(2, 10*time.Millisecond)),
		weir.CheckpointStorage(t.TempDir()))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	job, err := env.Start(ctx, "full")
	if err != nil {
		t.Fatal(err)
	}
	err = job.Wait()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("want the job to fail on the full disk, got %v (context: %v)", err, ctx.Err())
	}
	t.Logf("the job failed as expected: %v", err)
	for _, want := range []string{"local state directory " + dir, "no space left on device"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the job's error does not say %q: %v", want, err)
		}
	}
	if n := job.Restarts(); n != 2 {
		t.Errorf("the job restarted %d times, want 2", n)
	}
	if open := openFilesUnder(t, dir); len(open) > 0 {
		t.Errorf("files left open in %s after the job failed: %v", dir, open)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != ".weir-ballast" {
			t.Errorf("left in %s: %s", dir, e.Name())
		}
	}
}

// Once room is made (a filler file on the disk removed), a restore of the
// last completed checkpoint finishes the input: both runs' committed
// output has every key exactly once.
func TestPebbleLocalDirFullRestore(t *testing.T) {
	dir := tmpfstest.Mount(t, 16<<20)
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 14<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	chk := t.TempDir()
	const limit = 5000 // 2 × 5000 records of ~520 bytes: 5 MiB of state, 1 MiB of room
	env1, sink1 := pebbleFullDiskJob(dir, limit, weir.RestartStrategy(restart.None()), weir.CheckpointStorage(chk))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := env1.Execute(ctx, "full")
	if err == nil || ctx.Err() != nil {
		t.Fatalf("want the job to fail on the full disk, got %v (context: %v)", err, ctx.Err())
	}
	if !strings.Contains(err.Error(), "local state directory "+dir) || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("the error does not name %s and ENOSPC: %v", dir, err)
	}
	t.Logf("the job failed as expected: %v", err)
	if len(sink1.Committed()) == 0 {
		t.Fatal("the first run committed nothing: the test does not restore a point mid-way")
	}
	if open := openFilesUnder(t, dir); len(open) > 0 {
		t.Fatalf("files left open in %s after the job failed: %v", dir, open)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	env2, sink2 := pebbleFullDiskJob(dir, limit, weir.RestartStrategy(restart.None()), weir.CheckpointStorage(chk), weir.Restore("latest"))
	if err := env2.Execute(ctx, "full"); err != nil {
		t.Fatalf("the restore after room was made: %v", err)
	}
	checkEachKeyOnce(t, limit, sink1, sink2)
	if open := openFilesUnder(t, dir); len(open) > 0 {
		t.Fatalf("files left open in %s after the job finished: %v", dir, open)
	}
}

// Without checkpoints the full disk shows in the state writes: the write
// that finds the directory full fails the task with an error naming it.
func TestPebbleLocalDirFullOnWrite(t *testing.T) {
	dir := tmpfstest.Mount(t, 2<<20)
	env, _ := pebbleFullDiskJobWith(pebblestate.Options{Dir: dir, MemTableSize: 128 << 10}, 5000, weir.RestartStrategy(restart.None()))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := env.Execute(ctx, "full")
	if err == nil || ctx.Err() != nil {
		t.Fatalf("want the job to fail on the full disk, got %v (context: %v)", err, ctx.Err())
	}
	t.Logf("the job failed as expected: %v", err)
	for _, want := range []string{`cannot write state "`, "local state directory " + dir + " is full (no space left on device)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the job's error does not say %q: %v", want, err)
		}
	}
	if open := openFilesUnder(t, dir); len(open) > 0 {
		t.Errorf("files left open in %s after the job failed: %v", dir, open)
	}
}
