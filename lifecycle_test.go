package weir_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/internal/s3test"
	"github.com/weirstream/weir/restart"
	"github.com/weirstream/weir/storage"
)

// finalCounts are the counts the collecting sink committed last, by key.
func finalCounts(sink *weir.CollectSink[weir.KV[int64, int64]]) map[int64]int64 {
	final := map[int64]int64{}
	for _, kv := range sink.Committed() {
		final[kv.Key] = kv.Value
	}
	return final
}

func wantCounts(t *testing.T, got map[int64]int64, want int64) {
	t.Helper()
	for k := int64(0); k < 10; k++ {
		if got[k] != want {
			t.Fatalf("key %d counted %d, want %d (all: %v)", k, got[k], want, got)
		}
	}
}

// checkpointsIn lists the completed checkpoints of dir by kind.
func checkpointsIn(t *testing.T, dir string) (checkpoints, savepoints []checkpoint.ID) {
	t.Helper()
	st, err := storage.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := st.Completed(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		md, err := st.ReadMetadata(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if md.Kind == checkpoint.KindSavepoint {
			savepoints = append(savepoints, id)
		} else {
			checkpoints = append(checkpoints, id)
		}
	}
	return checkpoints, savepoints
}

func waitCompleted(t *testing.T, job *weir.JobClient, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		done := 0
		for _, s := range job.Checkpoints() {
			if s.Completed && s.Kind == checkpoint.KindCheckpoint {
				done++
			}
		}
		if done >= n {
			return
		}
		select {
		case <-job.Done():
			t.Fatalf("the job ended after %d checkpoints (want %d): %v", done, n, job.Wait())
		case <-time.After(2 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d checkpoints completed", done)
		}
	}
}

// Stop with a savepoint, restore from it in the same storage and run past
// several checkpoints: the savepoint is never deleted and restores again;
// the earlier run's checkpoints are the job's own, retained or deleted by
// the same rule (RetainedCheckpoints) as the new run's.
func TestSavepointSurvivesRestoreInSameStorage(t *testing.T) {
	dir := t.TempDir()
	retain := weir.RetainedCheckpoints(2)
	env, _ := countJob(t, dir, 1500, retain)
	job, err := env.Start(context.Background(), "count")
	if err != nil {
		t.Fatal(err)
	}
	waitCompleted(t, job, 3)
	sp, err := job.StopWithSavepoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := job.Wait(); err != nil {
		t.Fatal(err)
	}
	run1, sps := checkpointsIn(t, dir)
	if len(sps) != 1 || len(run1) == 0 {
		t.Fatalf("after the stop: checkpoints %v, savepoints %v", run1, sps)
	}

	for round := 1; round <= 2; round++ {
		env, sink := countJob(t, dir, 1500, retain, weir.Restore(sp))
		job, err := env.Start(context.Background(), "count")
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		waitCompleted(t, job, 4)
		if err := job.Wait(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		wantCounts(t, finalCounts(sink), 300)
		cks, now := checkpointsIn(t, dir)
		if !slices.Equal(now, sps) {
			t.Fatalf("round %d: savepoints %v, want %v kept", round, now, sps)
		}
		if _, err := os.Stat(filepath.Join(strings.TrimPrefix(sp, "file://"), "_metadata")); err != nil {
			t.Fatalf("round %d: the savepoint is gone: %v", round, err)
		}
		if len(cks) != 2 {
			t.Fatalf("round %d: %d checkpoints retained (%v), want 2", round, len(cks), cks)
		}
		for _, id := range run1 {
			if slices.Contains(cks, id) {
				t.Fatalf("round %d: the first run's checkpoint %d was kept beyond the retained count: %v", round, id, cks)
			}
		}
	}
}

// A corrupted state file in the latest checkpoint ends the job after one
// attempt, whatever the restart strategy, with an error that names the
// checkpoint and the file and lists the intact checkpoints.
func TestCorruptedCheckpointIsNotRetried(t *testing.T) {
	dir := t.TempDir()
	env, _ := countJob(t, dir, 3000, weir.RetainedCheckpoints(3))
	job, err := env.Start(context.Background(), "count")
	if err != nil {
		t.Fatal(err)
	}
	waitCompleted(t, job, 4)
	job.Cancel()
	job.Wait()
	md := latestMetadata(t, dir)
	files, _ := filepath.Glob(filepath.Join(filepath.Dir(md), "*.keyed"))
	if len(files) == 0 {
		t.Fatal("no keyed state file")
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files[0], flip(raw, len(raw)/2), 0o644); err != nil {
		t.Fatal(err)
	}
	latest := filepath.Base(filepath.Dir(md))
	for _, s := range []restart.Strategy{
		restart.FixedDelay(1000, 10*time.Millisecond),
		restart.FailureRate(1000, time.Minute, 10*time.Millisecond),
		restart.ExponentialDelay(10*time.Millisecond, 100*time.Millisecond, 2, time.Minute, 0),
		restart.None(),
	} {
		t.Run(s.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			env, _ := countJob(t, dir, 3000, weir.Restore("latest"), weir.RestartStrategy(s))
			job, err := env.Start(ctx, "count")
			if err != nil {
				t.Fatal(err)
			}
			err = job.Wait()
			if err == nil || ctx.Err() != nil {
				t.Fatalf("want a failure, got %v (context %v)", err, ctx.Err())
			}
			if job.Restarts() != 0 {
				t.Errorf("restarted %d times", job.Restarts())
			}
			msg := err.Error()
			for _, want := range []string{"cannot restore checkpoint", latest, filepath.Base(files[0]), "intact checkpoints", "chk-"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error does not name %q: %v", want, err)
				}
			}
			// The intact ones listed are the other retained checkpoints.
			if strings.Count(msg[strings.Index(msg, "intact checkpoints"):], "chk-") < 2 {
				t.Errorf("fewer than two intact checkpoints listed: %v", err)
			}
		})
	}

	// The newest _metadata corrupted: --restore latest names it and lists
	// the intact older checkpoints.
	raw, _ = os.ReadFile(md)
	os.WriteFile(md, flip(raw, len(raw)/2), 0o644)
	env, _ = countJob(t, dir, 3000, weir.Restore("latest"))
	err = env.Execute(context.Background(), "count")
	if err == nil || !strings.Contains(err.Error(), md) || !strings.Contains(err.Error(), "intact checkpoints") {
		t.Fatalf("corrupted newest metadata: %v", err)
	}
}

// fullDisk fails every write of a blob (a state stream, a _metadata),
// like a full disk.
type fullDisk struct {
	storage.BlobStore
	writes atomic.Int64
}

var errDiskFull = errors.New("no space left on device")

func (f *fullDisk) Create(context.Context, string) (storage.BlobWriter, error) {
	f.writes.Add(1)
	return nil, errDiskFull
}
func (f *fullDisk) Put(context.Context, string, []byte) error {
	f.writes.Add(1)
	return errDiskFull
}

// lineCounter counts the lines written to it.
type lineCounter struct {
	mu    sync.Mutex
	lines int
	buf   bytes.Buffer
}

func (l *lineCounter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines += bytes.Count(p, []byte("\n"))
	if l.buf.Len() < 1<<16 {
		l.buf.Write(p)
	}
	return len(p), nil
}

// Storage that fails every write, unlimited tolerable failures, a bounded
// source: the final checkpoint is retried with a backoff, the job ends
// with an error once its bound passed (not retried: a restart cannot
// help), and the log stays short. It used to retry the final checkpoint
// 500 times a second, forever.
func TestFailingStorageEndsJob(t *testing.T) {
	st, err := storage.NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fs := &fullDisk{BlobStore: st}
	logs := &lineCounter{}
	env, _ := countJob(t, "", 200, weir.CheckpointStorageOf(storage.New(fs)), weir.TolerableCheckpointFailures(-1),
		weir.FinalCheckpointTimeout(2*time.Second), weir.RestartStrategy(restart.FixedDelay(1000, 10*time.Millisecond)),
		weir.Logger(slog.New(slog.NewTextHandler(logs, nil))))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	err = env.Execute(ctx, "count")
	took := time.Since(start)
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "final checkpoint did not complete") || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("want the final checkpoint's failure, got %v after %s", err, took)
	}
	if took > 10*time.Second {
		t.Errorf("the job took %s to fail", took)
	}
	if n := fs.writes.Load(); n > 200 {
		t.Errorf("%d writes tried in %s: the retries do not back off", n, took)
	}
	logs.mu.Lock()
	defer logs.mu.Unlock()
	if logs.lines > 30 {
		t.Errorf("%d log lines:\n%s", logs.lines, logs.buf.String())
	}
}

// slowStore delays the closing of state streams while slow is set, so
// that checkpoints expire.
type slowStore struct {
	storage.BlobStore
	slow atomic.Bool
}

type slowStream struct {
	storage.BlobWriter
	s *slowStore
}

func (s *slowStore) Create(ctx context.Context, key string) (storage.BlobWriter, error) {
	w, err := s.BlobStore.Create(ctx, key)
	if err != nil {
		return nil, err
	}
	return slowStream{w, s}, nil
}

func (w slowStream) Close() error {
	if w.s.slow.Load() {
		time.Sleep(60 * time.Millisecond)
	}
	return w.BlobWriter.Close()
}

// Checkpoints that time out again and again leave nothing behind: once
// the job ends, the storage holds exactly the retained checkpoint, on a
// file system and on S3 alike. Expired checkpoints used to keep their
// directories and state files forever.
func TestExpiredCheckpointsLeaveNothing(t *testing.T) {
	for _, kind := range []string{"file", "s3"} {
		t.Run(kind, func(t *testing.T) {
			var st *storage.Storage
			if kind == "file" {
				f, err := storage.NewFile(t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				st = f
			} else {
				st = s3test.Start(t, "jobs/expiry")
			}
			ss := &slowStore{BlobStore: st.Store()}
			ss.slow.Store(true)
			env, sink := countJob(t, "", 1200, weir.CheckpointStorageOf(storage.New(ss)), weir.CheckpointTimeout(30*time.Millisecond),
				weir.TolerableCheckpointFailures(-1))
			job, err := env.Start(context.Background(), "count")
			if err != nil {
				t.Fatal(err)
			}
			// Let checkpoints expire for a while, then let them complete.
			deadline := time.Now().Add(10 * time.Second)
			for expired(job) < 5 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			ss.slow.Store(false)
			if err := job.Wait(); err != nil {
				t.Fatal(err)
			}
			if n := expired(job); n < 5 {
				t.Fatalf("only %d checkpoints expired: the run proves nothing", n)
			}
			wantCounts(t, finalCounts(sink), 240)
			completed, err := st.Completed(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			incomplete, err := st.Incomplete(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if len(completed) != 1 || len(incomplete) != 0 {
				t.Fatalf("storage holds completed %v and incomplete %v, want only the retained one", completed, incomplete)
			}
			if f, ok := st.Store().(*storage.FileStore); ok {
				entries, _ := os.ReadDir(f.Root())
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				if !slices.Equal(names, []string{fmt.Sprintf("chk-%d", completed[0])}) {
					t.Fatalf("the checkpoint directory holds %v", names)
				}
			}
		})
	}
}

func expired(job *weir.JobClient) int {
	n := 0
	for _, s := range job.Checkpoints() {
		if strings.Contains(s.Reason, "expired") {
			n++
		}
	}
	return n
}
