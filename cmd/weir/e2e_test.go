package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/connector/files"
	"github.com/weirstream/weir/rest"
)

// The operator's round trip through the CLI: a job writing into the
// exactly-once file sink, "weir savepoint", "weir stop" (with its final
// savepoint), then the job started again from the stop's savepoint and run
// to the end of its input. The committed files hold every record exactly
// once.
func TestSavepointStopRestoreExactlyOnce(t *testing.T) {
	const partitions, perPartition = 2, 20000
	ckpts, out := t.TempDir(), t.TempDir()
	gen := func(p int, off int64) int64 { return int64(p)*1_000_000 + off }
	build := func(env *weir.Environment, rate float64) {
		g := weir.Generator(partitions, perPartition, gen)
		if rate > 0 {
			g = g.WithRate(rate)
		}
		nums := weir.FromSource(env, g, "numbers").UID("numbers")
		nums.SinkTo(files.Sink(out, ".txt", files.Lines[int64])).UID("files")
	}

	// The first run: slow enough (200 records/s per partition, 100 s of
	// input) that it is stopped long before its input ends.
	started := make(chan *rest.Server, 1)
	env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(100*time.Millisecond, weir.ExactlyOnce), weir.CheckpointStorage(ckpts),
		weir.Launch(rest.Serving(rest.Config{Listen: "127.0.0.1:0"}, nil, func(s *rest.Server) { started <- s })))
	build(env, 200)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	job, err := env.Start(ctx, "e2e-files")
	if err != nil {
		t.Fatal(err)
	}
	defer job.Wait()
	var url string
	select {
	case srv := <-started:
		url = srv.URL()
	case <-job.Done():
		t.Fatalf("the job ended before serving its REST API: %v", job.Wait())
	}
	waitForJob(t, job, "a completed checkpoint", func() bool { return len(job.Checkpoints()) > 0 })
	cli := func(args ...string) string {
		t.Helper()
		o, err := runCmd(append(args, "--jobmanager", url)...)
		if err != nil {
			t.Fatalf("weir %s: %v\n%s", strings.Join(args, " "), err, o)
		}
		return o
	}
	location := func(o string) string {
		i := strings.Index(o, ": ")
		if !strings.HasPrefix(o, "savepoint ") || i < 0 {
			t.Fatalf("no savepoint location in %q", o)
		}
		return strings.TrimSpace(o[i+2:])
	}
	sp := location(cli("savepoint", "e2e-files"))
	if _, err := os.Stat(filepath.Join(sp, "_metadata")); err != nil {
		t.Fatalf("savepoint %s: %v", sp, err)
	}
	stopped := location(cli("stop", "e2e-files"))
	if stopped == sp {
		t.Fatalf("stop reported the earlier savepoint %s", sp)
	}
	if err := job.Wait(); err != nil {
		t.Fatalf("the stopped job: %v", err)
	}
	if out := cli("checkpoint", "list", ckpts); strings.Count(out, "savepoint") < 2 {
		t.Fatalf("checkpoint list should show both savepoints:\n%s", out)
	}
	before := committed(t, out)
	if len(before) == 0 || len(before) >= partitions*perPartition {
		t.Fatalf("the first run committed %d records; want some, not all %d", len(before), partitions*perPartition)
	}

	// The second run restores the stop's savepoint and reads to the end.
	env2 := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(100*time.Millisecond, weir.ExactlyOnce), weir.CheckpointStorage(ckpts),
		weir.Restore(stopped))
	build(env2, 0)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel2()
	if err := env2.Execute(ctx2, "e2e-files"); err != nil {
		t.Fatalf("the job restored from %s: %v", stopped, err)
	}
	got := committed(t, out)
	for p := range partitions {
		for off := range int64(perPartition) {
			v := gen(p, off)
			if n := got[v]; n != 1 {
				t.Fatalf("record %d committed %d times, want exactly once", v, n)
			}
			delete(got, v)
		}
	}
	if len(got) > 0 {
		t.Fatalf("%d records that the source never produced", len(got))
	}
}

// waitForJob waits for cond, failing when the job ends first or after a
// generous deadline.
func waitForJob(t *testing.T, job *weir.JobClient, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for !cond() {
		select {
		case <-job.Done():
			t.Fatalf("the job ended while waiting for %s: %v", what, job.Wait())
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// committed counts the records in the committed files of dir (names not
// starting with a dot); a file left in progress or pending is an error.
func committed(t *testing.T, dir string) map[int64]int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int64]int{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Fatalf("left in progress or pending: %s", e.Name())
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			v, err := strconv.ParseInt(sc.Text(), 10, 64)
			if err != nil {
				t.Fatalf("%s: bad line %q", e.Name(), sc.Text())
			}
			got[v]++
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(fmt.Errorf("cannot read %s: %w", e.Name(), err))
		}
	}
	return got
}
