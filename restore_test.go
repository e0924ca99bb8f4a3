package weir_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/restart"
	"github.com/weirstream/weir/state/pebblestate"
	"github.com/weirstream/weir/storage"
)

// countJob is a keyed count over a bounded generator, into a collecting
// sink; limit records per partition, 2 partitions, 10 keys.
func countJob(t *testing.T, dir string, limit int64, opts ...weir.Option) (*weir.Environment, *weir.CollectSink[weir.KV[int64, int64]]) {
	t.Helper()
	return countJobAt(t, dir, limit, 2000, opts...)
}

// slowRate is the rate (per partition) of a count job that a test stops
// or fails mid-stream: slow enough that it cannot reach its end before
// the checkpoints the test waits for, however long they take on a loaded
// machine.
const slowRate = 200

// countJobAt is countJob at rate records per second per partition (0:
// unbounded).
func countJobAt(t *testing.T, dir string, limit int64, rate float64, opts ...weir.Option) (*weir.Environment, *weir.CollectSink[weir.KV[int64, int64]]) {
	t.Helper()
	base := []weir.Option{weir.Parallelism(2), weir.Checkpointing(20*time.Millisecond, weir.ExactlyOnce),
		weir.CheckpointStorage(dir), weir.RestartStrategy(restart.None())}
	env := weir.NewEnvironment(append(base, opts...)...)
	sink := weir.NewCollectSink[weir.KV[int64, int64]]()
	src := weir.FromSource(env, weir.Generator(2, limit, func(p int, off int64) int64 { return off % 10 }).WithRate(rate), "gen").UID("gen")
	weir.Count(weir.KeyBy(src, func(k int64) int64 { return k })).UID("count").SinkTo(sink).UID("sink")
	return env, sink
}

// A job cancelled mid-way keeps its checkpoints (retain on cancel); a new
// run with Restore("latest") resumes from the newest one, continues the
// checkpoint ids above it, and ends with exactly-once counts.
func TestResumeLatestAfterCancel(t *testing.T) {
	dir := t.TempDir()
	env, _ := countJob(t, dir, 600)
	ctx, cancel := context.WithCancel(context.Background())
	job, err := env.Start(ctx, "count")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for job.LatestCheckpoint() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoints")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := job.Wait(); err == nil {
		t.Fatal("a cancelled job reported success")
	}
	firstMax := job.LatestCheckpoint()
	if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("chk-%d", firstMax), "_metadata")); err != nil {
		t.Fatalf("latest checkpoint not retained on cancel: %v", err)
	}

	env2, sink2 := countJob(t, dir, 600, weir.Restore("latest"))
	job2, err := env2.Start(context.Background(), "count")
	if err != nil {
		t.Fatal(err)
	}
	if err := job2.Wait(); err != nil {
		t.Fatal(err)
	}
	cps := job2.Checkpoints()
	if len(cps) == 0 || cps[0].ID <= firstMax {
		t.Fatalf("checkpoint ids did not continue above %d: %+v", firstMax, cps)
	}
	// The second run restored counts: its committed outputs continue where
	// the restored checkpoint ended, and each key reaches exactly 120
	// (2 partitions x 600 records / 10 keys).
	final := map[int64]int64{}
	for _, kv := range sink2.Committed() {
		final[kv.Key] = kv.Value
	}
	for k := int64(0); k < 10; k++ {
		if final[k] != 120 {
			t.Fatalf("key %d counted %d, want 120 (final %v)", k, final[k], final)
		}
	}
}

// Bad input gets a clear error, never a panic.
func TestBadInput(t *testing.T) {
	// Invalid configuration names what is wrong.
	for _, tc := range []struct {
		opt  weir.Option
		want string
	}{
		{weir.Parallelism(0), "parallelism must be at least 1"},
		{weir.Checkpointing(-time.Second, weir.ExactlyOnce), "checkpoint interval must be positive"},
		{weir.MaxParallelism(0), "max parallelism must be between"},
		{weir.BufferTimeout(-1), "buffer timeout must not be negative"},
		{weir.CheckpointStorage("s4://nowhere"), "unsupported checkpoint storage scheme"},
		{weir.TolerableCheckpointFailures(-5), "tolerable checkpoint failures"},
	} {
		env := weir.NewEnvironment(weir.Checkpointing(time.Second, weir.ExactlyOnce), tc.opt)
		weir.FromSlice(env, []int{1}).Print()
		err := env.Execute(context.Background(), "bad")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want error containing %q, got %v", tc.want, err)
		}
	}

	// A job without a sink, and one with a keyed operator wider than the
	// max parallelism.
	env := weir.NewEnvironment()
	weir.FromSlice(env, []int{1})
	if err := env.Execute(context.Background(), "nosink"); err == nil || !strings.Contains(err.Error(), "no sink") {
		t.Errorf("no sink: %v", err)
	}

	// An unknown restore path.
	env, _ = countJob(t, t.TempDir(), 10, weir.Restore(filepath.Join(t.TempDir(), "missing", "chk-3")))
	if err := env.Execute(context.Background(), "count"); err == nil || !strings.Contains(err.Error(), "cannot restore from") {
		t.Errorf("unknown restore path: %v", err)
	}

	// A checkpoint directory with no checkpoint in it.
	empty := t.TempDir()
	env, _ = countJob(t, t.TempDir(), 10, weir.Restore(empty))
	if err := env.Execute(context.Background(), "count"); err == nil || !strings.Contains(err.Error(), "no completed checkpoint") {
		t.Errorf("empty checkpoint dir: %v", err)
	}

	// A corrupted and a truncated _metadata.
	dir := t.TempDir()
	env, _ = countJob(t, dir, 100)
	if err := runUntilCheckpoint(env); err != nil {
		t.Fatal(err)
	}
	md := latestMetadata(t, dir)
	raw, _ := os.ReadFile(md)
	for name, bad := range map[string][]byte{
		"corrupted": flip(raw, len(raw)/2),
		"truncated": raw[:len(raw)/3],
		"empty":     {},
	} {
		os.WriteFile(md, bad, 0o644)
		env, _ := countJob(t, t.TempDir(), 100, weir.Restore(filepath.Dir(md)))
		err := env.Execute(context.Background(), "count")
		if err == nil || !strings.Contains(err.Error(), md) {
			t.Errorf("%s metadata: want an error naming %s, got %v", name, md, err)
		}
	}

	// A checkpoint whose keyed state file was removed.
	dir = t.TempDir()
	env, _ = countJob(t, dir, 100)
	if err := runUntilCheckpoint(env); err != nil {
		t.Fatal(err)
	}
	md = latestMetadata(t, dir)
	files, _ := filepath.Glob(filepath.Join(filepath.Dir(md), "*.keyed"))
	for _, f := range files {
		os.Truncate(f, 3)
	}
	env, _ = countJob(t, t.TempDir(), 100, weir.Restore(filepath.Dir(md)))
	if err := env.Execute(context.Background(), "count"); err == nil || !strings.Contains(err.Error(), "cannot restore keyed state") {
		t.Errorf("damaged state file: %v", err)
	}

	// Restoring with another max parallelism.
	env, _ = countJob(t, t.TempDir(), 100, weir.Restore(filepath.Dir(latestMetadata(t, dir))), weir.MaxParallelism(64))
	if err := env.Execute(context.Background(), "count"); err == nil || !strings.Contains(err.Error(), "max parallelism") {
		t.Errorf("other max parallelism: %v", err)
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0xff
	return c
}

// runUntilCheckpoint runs a job until it completed a checkpoint, then
// cancels it (checkpoints are retained on cancel).
func runUntilCheckpoint(env *weir.Environment) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	job, err := env.Start(ctx, "count")
	if err != nil {
		return err
	}
	for job.LatestCheckpoint() == 0 {
		select {
		case <-job.Done():
			return job.Wait()
		case <-time.After(2 * time.Millisecond):
		}
	}
	cancel()
	job.Wait()
	return nil
}

func latestMetadata(t *testing.T, dir string) string {
	t.Helper()
	ms, _ := filepath.Glob(filepath.Join(dir, "chk-*", "_metadata"))
	if len(ms) == 0 {
		t.Fatalf("no checkpoint in %s", dir)
	}
	best, bestID := "", int64(-1)
	for _, m := range ms {
		var id int64
		for _, c := range strings.TrimPrefix(filepath.Base(filepath.Dir(m)), "chk-") {
			id = id*10 + int64(c-'0')
		}
		if id > bestID {
			best, bestID = m, id
		}
	}
	return best
}

// Alignment and timing figures are recorded per subtask and checkpoint.
func TestCheckpointStatsRecorded(t *testing.T) {
	env, _ := countJob(t, t.TempDir(), 200)
	job, err := env.Start(context.Background(), "count")
	if err != nil {
		t.Fatal(err)
	}
	if err := job.Wait(); err != nil {
		t.Fatal(err)
	}
	var completed int
	for _, s := range job.Checkpoints() {
		if !s.Completed {
			continue
		}
		completed++
		if len(s.Subtasks) != 4 { // 2 source subtasks + 2 count subtasks
			t.Fatalf("checkpoint %d has stats of %d subtasks, want 4: %+v", s.ID, len(s.Subtasks), job.Checkpoints())
		}
		if s.Kind != checkpoint.KindCheckpoint || s.FinishedAt.Before(s.TriggeredAt) {
			t.Fatalf("bad stats %+v", s)
		}
	}
	if completed == 0 {
		t.Fatal("no completed checkpoint")
	}
}

// Rescaling a running job: keyed counts and source offsets survive
// parallelism 2 -> 4 -> 1, with nothing lost or counted twice.
func TestRescale(t *testing.T) {
	t.Run("heap", func(t *testing.T) { testRescale(t, 3000) })
	t.Run("pebble", func(t *testing.T) {
		testRescale(t, 3000, weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: t.TempDir()})))
	})
}

// testRescale runs limit records per partition (4 partitions, 10 keys):
// slowly (200/s) in the stages that are cancelled after three checkpoints,
// so that they cannot reach the end of the input even when a loaded
// machine makes pebble's checkpoints take seconds, and at full speed in
// the last.
func testRescale(t *testing.T, limit int64, backend ...weir.Option) {
	dir := t.TempDir()
	job := func(p int, rate float64, opts ...weir.Option) (*weir.Environment, *weir.CollectSink[weir.KV[int64, int64]]) {
		base := []weir.Option{weir.Parallelism(p), weir.Checkpointing(10*time.Millisecond, weir.ExactlyOnce),
			weir.CheckpointStorage(dir), weir.RestartStrategy(restart.None())}
		env := weir.NewEnvironment(append(append(base, backend...), opts...)...)
		sink := weir.NewCollectSink[weir.KV[int64, int64]]()
		src := weir.FromSource(env, weir.Generator(4, limit, func(p int, off int64) int64 { return (off + int64(p)) % 10 }).WithRate(rate), "gen").UID("gen")
		weir.Count(weir.KeyBy(src, func(k int64) int64 { return k })).UID("count").SinkTo(sink).UID("sink")
		return env, sink
	}
	final := map[int64]int64{}
	for i, p := range []int{2, 4, 1} {
		var opts []weir.Option
		if i > 0 {
			opts = append(opts, weir.Restore("latest"))
		}
		rate := 200.0
		if i == 2 {
			rate = 0 // unbounded
		}
		env, sink := job(p, rate, opts...)
		if i < 2 {
			if err := runUntilCheckpoints(env, 3); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := env.Execute(context.Background(), "count"); err != nil {
			t.Fatal(err)
		}
		for _, kv := range sink.Committed() {
			final[kv.Key] = kv.Value
		}
	}
	for k := int64(0); k < 10; k++ {
		if final[k] != 4*limit/10 {
			t.Fatalf("key %d counted %d, want %d (all: %v)", k, final[k], 4*limit/10, final)
		}
	}
}

// waitForCheckpoint waits until job completed checkpoint id; the test
// fails if the job ends first.
func waitForCheckpoint(t *testing.T, job *weir.JobClient, id checkpoint.ID) {
	t.Helper()
	for job.LatestCheckpoint() < id {
		select {
		case <-job.Done():
			t.Fatalf("the job ended before checkpoint %d: %v", id, job.Wait())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// runUntilCheckpoints runs a job until it completed n checkpoints, then
// cancels it (checkpoints are retained on cancel).
func runUntilCheckpoints(env *weir.Environment, n int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	job, err := env.Start(ctx, "count")
	if err != nil {
		return err
	}
	for done := 0; done < n; {
		done = 0
		for _, c := range job.Checkpoints() {
			if c.Completed {
				done++
			}
		}
		select {
		case <-job.Done():
			var stats []string
			for _, c := range job.Checkpoints() {
				stats = append(stats, fmt.Sprintf("%d:%v:%s:%s", c.ID, c.Completed, c.FinishedAt.Sub(c.TriggeredAt), c.Reason))
			}
			return fmt.Errorf("job ended before %d checkpoints: %v (checkpoints %v)", n, job.Wait(), stats)
		case <-time.After(2 * time.Millisecond):
		}
	}
	cancel()
	job.Wait()
	return nil
}

// lastThree keeps the last three values per key in list state and the
// per-key maximum in reducing state.
type lastThree struct {
	recent weir.ListState[int64]
	top    weir.ReducingState[int64]
}

func (f *lastThree) Open(ctx *weir.KeyedContext[int64]) (err error) {
	if f.recent, err = weir.GetListState[int64](ctx, "recent"); err != nil {
		return err
	}
	f.top, err = weir.GetReducingState[int64](ctx, "top", func(a, b int64) int64 { return max(a, b) })
	return err
}

func (f *lastThree) ProcessElement(ctx *weir.KeyedContext[int64], in int64, out weir.Collector[string]) error {
	f.recent.Add(in)
	if r := f.recent.Get(); len(r) > 3 {
		f.recent.Update(r[len(r)-3:])
	}
	f.top.Add(in)
	top, _ := f.top.Get()
	out.Collect(fmt.Sprintf("%d %v %d", ctx.CurrentKey(), f.recent.Get(), top))
	return nil
}

// List and reducing state survive a failure exactly once.
func TestListAndReducingStateAcrossFailure(t *testing.T) {
	env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(5*time.Millisecond, weir.ExactlyOnce),
		weir.CheckpointStorage(t.TempDir()), weir.RestartStrategy(restart.FixedDelay(2, 0)), weir.BufferSize(8))
	failed := false
	src := weir.FromSource(env, weir.Generator(1, 800, func(_ int, off int64) int64 { return off }).WithRate(40000), "gen").SetParallelism(1)
	mapped := weir.MapErr(src, func(v int64) (int64, error) {
		if v == 500 && !failed { // one failure, after some checkpoints
			failed = true
			return 0, fmt.Errorf("injected")
		}
		return v, nil
	}).SetParallelism(1)
	sink := weir.NewCollectSink[string]()
	weir.Process(weir.KeyBy(mapped, func(v int64) int64 { return v % 3 }), &lastThree{}).SinkTo(sink)
	job, err := env.Start(context.Background(), "kinds")
	if err != nil {
		t.Fatal(err)
	}
	if err := job.Wait(); err != nil {
		t.Fatal(err)
	}
	last := map[string]string{}
	for _, line := range sink.Committed() {
		k, rest, _ := strings.Cut(line, " ")
		last[k] = rest
	}
	// One partition read in order: per key the last three values are the
	// largest of 0..799 with v%3 == k.
	want := map[string]string{"0": "[792 795 798] 798", "1": "[793 796 799] 799", "2": "[791 794 797] 797"}
	for k, w := range want {
		if last[k] != w {
			t.Errorf("key %s: %q, want %q", k, last[k], w)
		}
	}
	if job.Restarts() != 1 {
		t.Fatalf("restarts %d", job.Restarts())
	}
}

// Stop with a savepoint ends the job cleanly with its sinks committed; a new
// run restored from the savepoint continues exactly once.
func TestStopWithSavepoint(t *testing.T) {
	dir := t.TempDir()
	env, sink := countJobAt(t, dir, 1500, slowRate)
	job, err := env.Start(context.Background(), "count")
	if err != nil {
		t.Fatal(err)
	}
	waitForCheckpoint(t, job, 2)
	path, err := job.StopWithSavepoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := job.Wait(); err != nil {
		t.Fatalf("a job stopped with a savepoint must end cleanly: %v", err)
	}
	stopped := map[int64]int64{}
	for _, kv := range sink.Committed() {
		stopped[kv.Key] = kv.Value
	}
	var total int64
	for _, v := range stopped {
		total += v
	}
	if total == 0 || total >= 3000 {
		t.Fatalf("stopped after %d of 3000 records: the stop did not happen mid-stream", total)
	}
	// The savepoint is kept and restores.
	env2, sink2 := countJob(t, dir, 1500, weir.Restore(path))
	if err := env2.Execute(context.Background(), "count"); err != nil {
		t.Fatal(err)
	}
	final := map[int64]int64{}
	for _, kv := range sink2.Committed() {
		final[kv.Key] = kv.Value
	}
	for k := int64(0); k < 10; k++ {
		if final[k] != 300 {
			t.Fatalf("key %d counted %d, want 300 (stopped at %v)", k, final[k], stopped)
		}
	}
}

// A checkpoint with state for an operator UID the job no longer has is a
// clear error, unless the job allows non-restored state.
func TestRestoreWithMissingUID(t *testing.T) {
	dir := t.TempDir()
	env, _ := countJob(t, dir, 100)
	if err := runUntilCheckpoint(env); err != nil {
		t.Fatal(err)
	}
	chk := filepath.Dir(latestMetadata(t, dir))
	renamed := func(opts ...weir.Option) *weir.Environment {
		base := []weir.Option{weir.Parallelism(2), weir.Checkpointing(20*time.Millisecond, weir.ExactlyOnce),
			weir.CheckpointStorage(t.TempDir()), weir.RestartStrategy(restart.None()), weir.Restore(chk)}
		e := weir.NewEnvironment(append(base, opts...)...)
		src := weir.FromSource(e, weir.Generator(2, 100, func(p int, off int64) int64 { return off % 10 }), "gen").UID("gen")
		weir.Count(weir.KeyBy(src, func(k int64) int64 { return k })).UID("count-v2").SinkTo(weir.DiscardSink[weir.KV[int64, int64]]{}).UID("sink")
		return e
	}
	err := renamed().Execute(context.Background(), "count")
	if err == nil || !strings.Contains(err.Error(), `operator UID "count"`) || !strings.Contains(err.Error(), "allow-non-restored-state") {
		t.Fatalf("missing UID: %v", err)
	}
	if err := renamed(weir.AllowNonRestoredState()).Execute(context.Background(), "count"); err != nil {
		t.Fatalf("with AllowNonRestoredState: %v", err)
	}
}

// failingStore fails the state uploads of chosen checkpoints.
type failingStore struct {
	storage.BlobStore
	fail func(id checkpoint.ID) bool
}

func (f failingStore) Create(ctx context.Context, key string) (storage.BlobWriter, error) {
	var id checkpoint.ID
	if _, err := fmt.Sscanf(key, "chk-%d/", &id); err == nil && f.fail(id) {
		return nil, fmt.Errorf("injected: disk full writing %s of checkpoint %d", key, id)
	}
	return f.BlobStore.Create(ctx, key)
}

// A failing write in the asynchronous part of a snapshot declines the
// checkpoint; within the tolerated failures the job keeps running (no
// restart), the next checkpoint succeeds, and the result is exactly once.
func TestFailingSnapshotWriteDeclines(t *testing.T) {
	st, err := storage.NewFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fs := failingStore{BlobStore: st, fail: func(id checkpoint.ID) bool { return id == 2 || id == 3 }}
	env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(10*time.Millisecond, weir.ExactlyOnce),
		weir.CheckpointStorageOf(storage.New(fs)), weir.TolerableCheckpointFailures(2), weir.RestartStrategy(restart.None()))
	sink := weir.NewCollectSink[weir.KV[int64, int64]]()
	src := weir.FromSource(env, weir.Generator(2, 1000, func(p int, off int64) int64 { return off % 10 }).WithRate(5000), "gen")
	weir.Count(weir.KeyBy(src, func(k int64) int64 { return k })).SinkTo(sink)
	job, err := env.Start(context.Background(), "declines")
	if err != nil {
		t.Fatal(err)
	}
	if err := job.Wait(); err != nil {
		t.Fatalf("the job must tolerate two failed checkpoints: %v", err)
	}
	var aborted, completedAfter int
	for _, c := range job.Checkpoints() {
		switch {
		case !c.Completed && (c.ID == 2 || c.ID == 3):
			aborted++
			if !strings.Contains(c.Reason, "disk full") {
				t.Errorf("checkpoint %d aborted for %q", c.ID, c.Reason)
			}
		case c.Completed && c.ID > 3:
			completedAfter++
		}
	}
	if aborted != 2 || completedAfter == 0 || job.Restarts() != 0 {
		t.Fatalf("aborted %d (want 2), completed after them %d, restarts %d", aborted, completedAfter, job.Restarts())
	}
	final := map[int64]int64{}
	for _, kv := range sink.Committed() {
		final[kv.Key] = kv.Value
	}
	for k := int64(0); k < 10; k++ {
		if final[k] != 200 {
			t.Fatalf("key %d counted %d, want 200", k, final[k])
		}
	}
	// One more failure than tolerated fails the job.
	fs.fail = func(id checkpoint.ID) bool { return true }
	env = weir.NewEnvironment(weir.Checkpointing(5*time.Millisecond, weir.ExactlyOnce),
		weir.CheckpointStorageOf(storage.New(fs)), weir.TolerableCheckpointFailures(1), weir.RestartStrategy(restart.None()))
	src = weir.FromSource(env, weir.Generator(1, -1, func(_ int, off int64) int64 { return off % 10 }).WithRate(1000), "gen")
	weir.Count(weir.KeyBy(src, func(k int64) int64 { return k })).SinkTo(weir.DiscardSink[weir.KV[int64, int64]]{})
	err = env.Execute(context.Background(), "fails")
	if err == nil || !strings.Contains(err.Error(), "consecutive checkpoint failures") {
		t.Fatalf("want the job to fail on too many checkpoint failures, got %v", err)
	}
}

// With RetainOnCancel(false) a cancelled job deletes its checkpoints.
func TestDeleteOnCancel(t *testing.T) {
	dir := t.TempDir()
	env, _ := countJob(t, dir, 1000, weir.RetainOnCancel(false))
	if err := runUntilCheckpoint(env); err != nil {
		t.Fatal(err)
	}
	if ms, _ := filepath.Glob(filepath.Join(dir, "chk-*", "_metadata")); len(ms) != 0 {
		t.Fatalf("checkpoints left after a cancel with RetainOnCancel(false): %v", ms)
	}
}
