package weir_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/restart"
	"github.com/weirstream/weir/storage"
)

// skewedCount is a keyed count whose upstream subtask 0 is slow at times,
// so that alignments take long and checkpoints overlap at the count.
func skewedCount(env *weir.Environment, perPartition int64) *weir.CollectSink[weir.KV[int64, int64]] {
	sink := weir.NewCollectSink[weir.KV[int64, int64]]()
	src := weir.FromSource(env, weir.Generator(2, perPartition, func(p int, off int64) int64 { return off % 10 }).WithRate(4000), "gen").UID("gen")
	slow := weir.MapWith(src, &slowFirst{})
	weir.Count(weir.KeyBy(slow, func(k int64) int64 { return k })).UID("count").SinkTo(sink).UID("sink")
	return sink
}

// slowFirst sleeps now and then in subtask 0 only.
type slowFirst struct {
	sub int
	n   int
}

func (f *slowFirst) InitializeState(ctx *weir.FunctionStateContext) error {
	f.sub = ctx.Subtask()
	return nil
}
func (f *slowFirst) SnapshotState(checkpoint.ID) error { return nil }
func (f *slowFirst) Map(v int64) (int64, error) {
	f.n++
	if f.sub == 0 && f.n%200 == 0 {
		time.Sleep(15 * time.Millisecond)
	}
	return v, nil
}

// Checkpoints that overlap at a task (a newer barrier overtakes an older
// one during its alignment) are aborted without counting as failures: a job
// that tolerates no checkpoint failure runs to its end without failing
// over, exactly once, in both modes. In at-least-once mode the older
// checkpoint ends silently (no decline): the coordinator subsumes it.
func TestOverlappingCheckpointsAreNoFailures(t *testing.T) {
	for _, mode := range []weir.Mode{weir.ExactlyOnce, weir.AtLeastOnce} {
		t.Run(mode.String(), func(t *testing.T) {
			env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(3*time.Millisecond, mode),
				weir.MaxConcurrentCheckpoints(4), weir.TolerableCheckpointFailures(0), weir.CheckpointStorage(t.TempDir()),
				weir.RestartStrategy(restart.None()), weir.BufferSize(16))
			sink := skewedCount(env, 3000)
			job, err := env.Start(context.Background(), "overlap")
			if err != nil {
				t.Fatal(err)
			}
			if err := job.Wait(); err != nil {
				t.Fatalf("the job failed: %v", err)
			}
			wantCounts(t, finalCounts(sink), 600)
			var completed, overtaken, declinedAtLeastOnce int
			for _, s := range job.Checkpoints() {
				switch {
				case s.Completed:
					completed++
				case strings.Contains(s.Reason, "subsumed") || strings.Contains(s.Reason, "newer"):
					overtaken++
				}
				if mode == weir.AtLeastOnce && strings.Contains(s.Reason, "declined") {
					declinedAtLeastOnce++
				}
			}
			t.Logf("%d completed, %d overtaken", completed, overtaken)
			if overtaken == 0 {
				t.Skip("no checkpoint was overtaken on this run: nothing to check")
			}
			if declinedAtLeastOnce > 0 {
				t.Errorf("at least once: %d checkpoints were declined; older ones must end without a decline", declinedAtLeastOnce)
			}
		})
	}
}

// slowCommit delays the metadata commit (the Put of a _metadata), so a
// checkpoint stays pending.
type slowCommit struct {
	storage.BlobStore
	delay time.Duration
}

func (s slowCommit) Put(ctx context.Context, key string, b []byte) error {
	if strings.HasSuffix(key, "/_metadata") {
		time.Sleep(s.delay)
	}
	return s.BlobStore.Put(ctx, key, b)
}

// A checkpoint requested while max-concurrent checkpoints are pending waits
// in the queue and completes, instead of failing.
func TestTriggeredCheckpointsQueue(t *testing.T) {
	st, err := storage.NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	env, _ := countJob(t, "", 4000, weir.CheckpointStorageOf(storage.New(slowCommit{st, 30 * time.Millisecond})),
		weir.MaxConcurrentCheckpoints(1))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	job, err := env.Start(ctx, "count")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	ids := make(chan checkpoint.ID, 5)
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := job.TriggerCheckpoint(ctx)
			if err != nil {
				errs <- err
				return
			}
			ids <- s.ID
		}()
	}
	wg.Wait()
	close(errs)
	close(ids)
	for err := range errs {
		t.Errorf("a requested checkpoint failed: %v", err)
	}
	if n := len(ids); n != 5 {
		t.Fatalf("%d of 5 requested checkpoints completed", n)
	}
	job.Cancel()
	job.Wait()
}
