package weir_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/storage"
)

// Two jobs started on one checkpoint directory: the second fails at once
// with an error naming the directory and the holder (before the lock, both
// wrote chk-1 of the same names and failed each other's checkpoints, with
// "already exists" as the only hint, and swept each other's debris). The
// holder runs to an exactly-once end; readers and a restore into another
// directory need no lock; the lock is gone when the job has ended.
func TestTwoJobsOneCheckpointDir(t *testing.T) {
	dir := t.TempDir()
	env1, sink1 := countJobAt(t, dir, 400, 400)
	job1, err := env1.Start(context.Background(), "count")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for job1.LatestCheckpoint() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint")
		}
		select {
		case <-job1.Done():
			t.Fatalf("the job ended before its first checkpoint: %v", job1.Wait())
		case <-time.After(2 * time.Millisecond):
		}
	}

	for _, opts := range [][]weir.Option{nil, {weir.Restore("latest")}} {
		env2, _ := countJob(t, dir, 400, opts...)
		job2, err := env2.Start(context.Background(), "count")
		if err == nil {
			job2.Cancel()
			job2.Wait()
			t.Fatalf("a second job started on %s while the first runs", dir)
		}
		if !errors.Is(err, storage.ErrLocked) {
			t.Fatalf("the second job failed, but not for the lock: %v", err)
		}
		for _, want := range []string{dir, "job count", fmt.Sprintf("pid %d", os.Getpid())} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the error does not name %q: %v", want, err)
			}
		}
	}

	// Readers: listing, and a restore into a directory of its own.
	st, err := storage.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := st.Completed(context.Background())
	if err != nil || len(ids) == 0 {
		t.Fatalf("listing the locked directory: %v %v", ids, err)
	}
	env3, _ := countJob(t, t.TempDir(), 400, weir.Restore(storage.Location(st, ids[len(ids)-1])))
	if err := env3.Execute(context.Background(), "count"); err != nil {
		t.Fatalf("a restore from the locked directory into another one: %v", err)
	}

	if err := job1.Wait(); err != nil {
		t.Fatal(err)
	}
	checkCounts(t, sink1.Committed(), 80)
	// The lock ended with the job: the same directory starts again.
	env4, _ := countJob(t, dir, 400, weir.Restore("latest"))
	if err := env4.Execute(context.Background(), "count"); err != nil {
		t.Fatalf("the directory stayed locked after the job ended: %v", err)
	}
}

// checkCounts asserts that each of the 10 keys of a count job reached want.
func checkCounts(t *testing.T, committed []weir.KV[int64, int64], want int64) {
	t.Helper()
	final := map[int64]int64{}
	for _, kv := range committed {
		final[kv.Key] = kv.Value
	}
	for k := int64(0); k < 10; k++ {
		if final[k] != want {
			t.Fatalf("key %d counted %d, want %d (final %v)", k, final[k], want, final)
		}
	}
}

// A job manager locks its checkpoint directory as a local job does: a
// second job manager on the same directory fails; task managers, which
// share the directory with it, take no lock (TestClusterFailover runs
// them); the lock ends with the job manager's job.
func TestClusterJobManagerLocksCheckpointDir(t *testing.T) {
	dir := t.TempDir()
	sink := weir.NewCollectSink[seqOut]()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	job, err := clusterJob(dir, freeAddr(t), clusterOpts{Role: roleJM}, sink, 2, 10).Start(ctx, "cluster")
	if err != nil {
		t.Fatal(err)
	}
	job2, err := clusterJob(dir, freeAddr(t), clusterOpts{Role: roleJM}, sink, 2, 10).Start(ctx, "cluster")
	if err == nil {
		job2.Cancel()
		job2.Wait()
		t.Fatal("a second job manager started on the same checkpoint directory")
	}
	if !errors.Is(err, storage.ErrLocked) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("want the directory %s locked, got %v", dir, err)
	}
	job.Cancel()
	job.Wait()
	job3, err := clusterJob(dir, freeAddr(t), clusterOpts{Role: roleJM}, sink, 2, 10).Start(ctx, "cluster")
	if err != nil {
		t.Fatalf("the lock outlived the job manager's job: %v", err)
	}
	job3.Cancel()
	job3.Wait()
}
