package weir_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/connector/files"
	"github.com/weirstream/weir/internal/sinktest"
	"github.com/weirstream/weir/internal/tmpfstest"
	"github.com/weirstream/weir/restart"
	"github.com/weirstream/weir/storage"
)

type padRec struct {
	Key int64
	Pad string
}

// fullDiskJob keeps one record of 500 random (incompressible) bytes per
// key, one key per record of a generator of 2 partitions × limit records,
// and emits each key once (through a two-phase-commit sink) when its
// record arrives.
func fullDiskJob(limit int64, opts ...weir.Option) (*weir.Environment, *weir.CollectSink[int64]) {
	env := weir.NewEnvironment(append([]weir.Option{weir.Parallelism(2), weir.RestartStrategy(restart.None())}, opts...)...)
	gen := weir.Generator(2, limit, func(p int, off int64) padRec {
		r := rand.New(rand.NewPCG(uint64(p), uint64(off)))
		b := make([]byte, 500)
		for i := range b {
			b[i] = byte('a' + r.IntN(26))
		}
		return padRec{Key: off*2 + int64(p), Pad: string(b)}
	}).WithRate(2000)
	src := weir.FromSource(env, gen, "gen").UID("gen")
	last := weir.Reduce(weir.KeyBy(src, func(r padRec) int64 { return r.Key }), func(_, b padRec) padRec { return b }).UID("last")
	sink := weir.NewCollectSink[int64]()
	weir.Map(last, func(r padRec) int64 { return r.Key }).UID("key").SinkTo(sink).UID("sink")
	return env, sink
}

// checkEachKeyOnce checks that the committed output of the runs of a
// fullDiskJob holds every key exactly once.
func checkEachKeyOnce(t *testing.T, limit int64, runs ...*weir.CollectSink[int64]) {
	t.Helper()
	seen := map[int64]int{}
	for _, r := range runs {
		for _, k := range r.Committed() {
			seen[k]++
		}
	}
	for k := int64(0); k < 2*limit; k++ {
		if seen[k] != 1 {
			t.Fatalf("key %d emitted %d times over all runs", k, seen[k])
		}
	}
}

// Checkpoints into a directory that fills up (a 2 MiB tmpfs; the state
// grows past it) fail with an error naming the file and ENOSPC, count
// against the tolerated failures and then fail the job with that cause
// (no hang, no panic). The last completed checkpoint stays intact and is
// what a restore of the directory picks: no failed checkpoint left debris
// or a _metadata behind, and a restore from it (into a directory with
// room) continues exactly once.
func TestCheckpointsOnFullDisk(t *testing.T) {
	dir := tmpfstest.Mount(t, 2<<20)
	const limit = 5000 // 2 × 5000 records of ~520 bytes: 5 MiB of state, more than the disk
	env, sink1 := fullDiskJob(limit, weir.Checkpointing(100*time.Millisecond, weir.ExactlyOnce),
		weir.CheckpointStorage(dir), weir.TolerableCheckpointFailures(2))
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
	for _, want := range []string{dir, "no space left on device", "checkpoint failures exceed the 2 tolerated"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the job's error does not say %q: %v", want, err)
		}
	}
	t.Logf("the job failed as expected: %v", err)
	var lastDone, failed int
	for _, c := range job.Checkpoints() {
		switch {
		case c.Completed:
			lastDone = int(c.ID)
		case strings.Contains(c.Reason, "no space left on device"):
			failed++
		default:
			t.Errorf("checkpoint %d failed for %q", c.ID, c.Reason)
		}
	}
	if lastDone == 0 || failed < 3 {
		t.Fatalf("want completed checkpoints, then 3 failed for ENOSPC: last completed %d, failed %d", lastDone, failed)
	}

	st, err := storage.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	if id, ok, err := st.Latest(ctx); err != nil || !ok || int(id) != lastDone {
		t.Fatalf("the latest checkpoint in %s is %d (%v %v), want %d", dir, id, ok, err, lastDone)
	}
	if inc, err := st.Incomplete(ctx); err != nil || len(inc) != 0 {
		t.Fatalf("debris of failed checkpoints left: %v %v", inc, err)
	}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), ".tmp-") {
			t.Errorf("temporary file left: %s", p)
		}
		return nil
	})

	// The directory's latest checkpoint, restored where there is room,
	// finishes the input: run 1's committed output and run 2's have every
	// key exactly once.
	env2, sink2 := fullDiskJob(limit, weir.Checkpointing(100*time.Millisecond, weir.ExactlyOnce),
		weir.CheckpointStorage(t.TempDir()), weir.Restore(dir))
	if err := env2.Execute(ctx, "full"); err != nil {
		t.Fatalf("restore of checkpoint %d from %s: %v", lastDone, dir, err)
	}
	checkEachKeyOnce(t, limit, sink1, sink2)
	if len(sink1.Committed()) == 0 {
		t.Fatal("the first run committed nothing: the test did not restore a point mid-way")
	}
}

// The exactly-once file sink writing onto a full disk (a 1 MiB tmpfs, most
// of it taken by a filler file): the job fails with an error naming the
// sink's file and ENOSPC; the files it committed stay; once the filler is
// removed, a restore of the latest checkpoint settles the transactions
// and finishes with every record committed exactly once.
func TestFileSinkOnFullDisk(t *testing.T) {
	out := tmpfstest.Mount(t, 1<<20)
	filler := filepath.Join(out, ".filler")
	if err := os.WriteFile(filler, make([]byte, 800<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	chk := t.TempDir()
	const keys, perKey = 4, 8000 // 32000 lines of ~12 bytes: more than the 200 KiB left
	job := func(opts ...weir.Option) *weir.Environment {
		env := weir.NewEnvironment(append([]weir.Option{weir.Parallelism(2), weir.Checkpointing(50*time.Millisecond, weir.ExactlyOnce),
			weir.CheckpointStorage(chk), weir.RestartStrategy(restart.None())}, opts...)...)
		gen := weir.Generator(keys, perKey, func(p int, off int64) seqRec { return seqRec{Key: int64(p), Seq: off + 1} }).WithRate(10000)
		src := weir.FromSource[seqRec](env, gen, "seq").UID("src")
		counted := weir.Process(weir.KeyBy(src, func(r seqRec) int64 { return r.Key }), &counter{}).UID("count")
		counted.SinkTo(files.Sink(out, ".txt", func(dst []byte, r seqOut) []byte {
			return fmt.Appendf(dst, "%d %d %d\n", r.Key, r.Seq, r.Cnt)
		})).UID("files")
		return env
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := job().Execute(ctx, "files")
	if err == nil || ctx.Err() != nil {
		t.Fatalf("want the job to fail on the full disk, got %v (context: %v)", err, ctx.Err())
	}
	if !strings.Contains(err.Error(), "no space left on device") || !strings.Contains(err.Error(), out+"/.weir-files") {
		t.Fatalf("the error does not name the sink's file and ENOSPC: %v", err)
	}
	t.Logf("the job failed as expected: %v", err)
	before, err := committedFiles(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) == 0 {
		t.Fatal("nothing was committed before the disk filled up")
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := job(weir.Restore("latest")).Execute(ctx, "files"); err != nil {
		t.Fatalf("the restore after space was freed: %v", err)
	}
	after, err := committedFiles(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range before {
		if !slices.Contains(after, f) {
			t.Errorf("the committed file %s changed or went away", f)
		}
	}
	checkExactlyOnce(t, asSeqOut(readRows(t, out)), keys, perKey)
}

func asSeqOut(rows []sinktest.Row) []seqOut {
	out := make([]seqOut, len(rows))
	for i, r := range rows {
		out[i] = seqOut{Key: r.Key, Seq: r.Seq, Cnt: r.Cnt}
	}
	return out
}
