package rest_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/cluster"
	"github.com/weirstream/weir/rest"
	"github.com/weirstream/weir/rest/client"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// The job manager of a cluster serves the API: the task managers that
// registered, and the subtasks' metrics their heartbeats carry.
func TestClusterJobManagerServesAPI(t *testing.T) {
	dir, jm := t.TempDir(), freeAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	build := func(launcher weir.Option) *weir.Environment {
		env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(50*time.Millisecond, weir.ExactlyOnce),
			weir.CheckpointStorage(dir), launcher)
		src := weir.FromSource(env, weir.Generator(2, -1, func(p int, off int64) int64 { return off % 100 }).WithRate(5000), "numbers")
		weir.Count(weir.KeyBy(src, func(k int64) int64 { return k })).SinkTo(weir.DiscardSink[weir.KV[int64, int64]]{})
		return env
	}
	started := make(chan *rest.Server, 1)
	jmOpt := weir.Launch(rest.Serving(rest.Config{Listen: "127.0.0.1:0"}, cluster.AsJobManager(cluster.Options{JobManager: jm}),
		func(s *rest.Server) { started <- s }))
	job, err := build(jmOpt).Start(ctx, "cluster-api")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, name := range []string{"tm-1", "tm-2"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := build(weir.Launch(cluster.AsTaskManager(cluster.Options{JobManager: jm, Name: name}))).Execute(ctx, "cluster-api")
			// The job manager tells the task managers why the job ended.
			if err != nil && !strings.Contains(err.Error(), context.Canceled.Error()) {
				t.Errorf("task manager %s: %v", name, err)
			}
		}()
	}
	srv := <-started
	c, err := client.New(srv.URL(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "two task managers", func() (bool, error) {
		tms, err := c.TaskManagers(ctx)
		return err == nil && len(tms.TaskManagers) == 2 && tms.TaskManagers[0].ID == "tm-1" && tms.TaskManagers[0].DataPort != "", err
	})
	var j client.Job
	eventually(t, "metrics from both task managers", func() (bool, error) {
		j, err = c.Job(ctx, "cluster-api")
		return err == nil && j.StatusCounts["RUNNING"] == 4 && j.Vertices[1].Metrics.ReadRecords > 0, err
	})
	v, err := c.Vertex(ctx, "cluster-api", j.Vertices[1].ID)
	if err != nil {
		t.Fatal(err)
	}
	hosts := map[string]bool{}
	for _, st := range v.Subtasks {
		hosts[st.Host] = true
	}
	if !hosts["tm-1"] || !hosts["tm-2"] {
		t.Fatalf("subtasks of the counting vertex on %v, want tm-1 and tm-2", hosts)
	}
	eventually(t, "a completed checkpoint", func() (bool, error) {
		cps, err := c.Checkpoints(ctx, "cluster-api", 1)
		return err == nil && cps.Counts.Completed > 0, err
	})
	if err := c.Cancel(ctx, "cluster-api"); err != nil {
		t.Fatal(err)
	}
	if err := job.Wait(); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled job: %v", err)
	}
	cancel()
	wg.Wait()
}
