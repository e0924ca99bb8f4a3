package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/rest"
	"github.com/weirstream/weir/rest/client"
)

// startRESTJob runs a small keyed count in this process with its REST API
// on a loopback port, and returns the API's URL.
func startRESTJob(t *testing.T, name, token string) (*weir.JobClient, string, string) {
	t.Helper()
	dir := t.TempDir()
	started := make(chan *rest.Server, 1)
	env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(50*time.Millisecond, weir.ExactlyOnce), weir.CheckpointStorage(dir),
		weir.Launch(rest.Serving(rest.Config{Listen: "127.0.0.1:0", Token: token}, nil, func(s *rest.Server) { started <- s })))
	src := weir.FromSource(env, weir.Generator(2, -1, func(p int, off int64) int64 { return off % 50 }).WithRate(20000), "numbers")
	weir.Count(weir.KeyBy(src, func(k int64) int64 { return k })).SinkTo(weir.DiscardSink[weir.KV[int64, int64]]{})
	ctx, cancel := context.WithCancel(context.Background())
	job, err := env.Start(ctx, name)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); job.Wait() })
	srv := <-started
	return job, srv.URL(), dir
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestJobVerbs(t *testing.T) {
	job, url, dir := startRESTJob(t, "cli-count", "tok")
	api := []string{"--jobmanager", url, "--token", "tok"}
	cmd := func(args ...string) string {
		t.Helper()
		out, err := runCmd(append(args, api...)...)
		if err != nil {
			t.Fatalf("weir %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	out := cmd("list")
	if !strings.Contains(out, "cli-count") || !strings.Contains(out, "JID") {
		t.Fatalf("list:\n%s", out)
	}
	var l client.JobList
	if err := json.Unmarshal([]byte(cmd("list", "-o", "json")), &l); err != nil || len(l.Jobs) != 1 || l.Jobs[0].Name != "cli-count" {
		t.Fatalf("list -o json: %+v %v", l, err)
	}
	waitFor(t, "three finished checkpoints", func() bool { return len(job.Checkpoints()) >= 3 })
	out = cmd("describe", l.Jobs[0].ID)
	for _, want := range []string{"job cli-count", "state:     RUNNING", "PARALLELISM", "Source: numbers", "checkpoints:", "latest completed:"} {
		if !strings.Contains(out, want) {
			t.Fatalf("describe: no %q in\n%s", want, out)
		}
	}
	out = cmd("checkpoints", "cli-count", "--limit", "3")
	// The newest row may be a checkpoint still in progress.
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 4 || !strings.Contains(lines[2], "COMPLETED") {
		t.Fatalf("checkpoints: want a header and 3 rows:\n%s", out)
	}
	out = cmd("checkpoint", "trigger", "cli-count")
	if !strings.HasPrefix(out, "checkpoint ") || !strings.Contains(out, "completed") {
		t.Fatalf("checkpoint trigger: %s", out)
	}
	out = cmd("savepoint", "cli-count", dir)
	loc := strings.TrimSpace(out[strings.Index(out, ": ")+2:])
	if !strings.HasPrefix(out, "savepoint ") || !strings.HasPrefix(loc, dir) {
		t.Fatalf("savepoint: %s", out)
	}
	if _, err := os.Stat(filepath.Join(loc, "_metadata")); err != nil {
		t.Fatalf("no savepoint at %s: %v", loc, err)
	}
	// The existing verbs see it.
	if out := cmd("checkpoint", "list", dir); !strings.Contains(out, "savepoint") {
		t.Fatalf("checkpoint list: %s", out)
	}
	if _, err := runCmd("savepoint", "cli-count", t.TempDir(), "--jobmanager", url, "--token", "tok"); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("savepoint elsewhere: %v", err)
	}
	if _, err := runCmd("list", "--jobmanager", url); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("without the token: %v", err)
	}
	out = cmd("stop", "cli-count")
	if !strings.HasPrefix(out, "savepoint ") || !strings.Contains(out, dir) {
		t.Fatalf("stop: %s", out)
	}
	if err := job.Wait(); err != nil {
		t.Fatalf("stopped job: %v", err)
	}
}

func TestCancelVerb(t *testing.T) {
	job, url, _ := startRESTJob(t, "cli-cancel", "")
	waitFor(t, "a checkpoint", func() bool { return len(job.Checkpoints()) > 0 })
	out, err := runCmd("cancel", "cli-cancel", "--jobmanager", url)
	if err != nil || !strings.Contains(out, "cancelling") {
		t.Fatalf("cancel: %v %s", err, out)
	}
	if err := job.Wait(); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled job: %v", err)
	}
	if _, err := runCmd("list", "--jobmanager", "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "cannot reach") {
		t.Fatalf("no API: %v", err)
	}
}
