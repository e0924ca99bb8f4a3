package weir_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/cluster"
	"github.com/weirstream/weir/connector/files"
	"github.com/weirstream/weir/internal/tlstest"
	"github.com/weirstream/weir/restart"
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

// clusterJob is the keyed counter of TestFailureInjection as one process
// of a cluster.
func clusterJob(dir, jm string, o clusterOpts, sink weir.Sink[seqOut], keys int, perKey int64, opts ...weir.Option) *weir.Environment {
	o.JobManager = jm
	o.HeartbeatTimeout = 2 * time.Second
	env := weir.NewEnvironment(append([]weir.Option{
		weir.Parallelism(2),
		weir.Checkpointing(20*time.Millisecond, weir.ExactlyOnce),
		weir.CheckpointStorage(dir),
		weir.RestartStrategy(restart.FixedDelay(100, 20*time.Millisecond)),
		o.option(),
	}, opts...)...)
	gen := weir.Generator(keys, perKey, func(p int, off int64) seqRec { return seqRec{Key: int64(p), Seq: off + 1} }).WithRate(5000)
	src := weir.FromSource[seqRec](env, gen, "seq").UID("src")
	counted := weir.Process(weir.KeyBy(src, func(r seqRec) int64 { return r.Key }), &counter{}).UID("count")
	counted.SinkTo(sink).UID("sink")
	return env
}

// checkExactlyOnce asserts every record of every key was counted once and
// its count equals its sequence number.
func checkExactlyOnce(t *testing.T, got []seqOut, keys int, perKey int64) {
	t.Helper()
	seen := map[[2]int64]int{}
	for _, o := range got {
		if o.Cnt != o.Seq {
			t.Fatalf("key %d record %d counted as %d: state affected twice or lost", o.Key, o.Seq, o.Cnt)
		}
		seen[[2]int64{o.Key, o.Seq}]++
	}
	for k := range int64(keys) {
		for s := int64(1); s <= perKey; s++ {
			switch n := seen[[2]int64{k, s}]; n {
			case 1:
			case 0:
				t.Fatalf("key %d record %d lost", k, s)
			default:
				t.Fatalf("key %d record %d emitted %d times", k, s, n)
			}
		}
	}
}

// A job manager and two task managers in one test process, over real TCP
// (gRPC control plane, network data plane): a task manager stops mid-run
// and comes back; the job fails over and the output is exactly once.
func TestClusterFailover(t *testing.T) {
	const keys, perKey = 4, 1500
	dir := t.TempDir()
	jm := freeAddr(t)
	sink := weir.NewCollectSink[seqOut]()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	job, err := clusterJob(dir, jm, clusterOpts{Role: roleJM}, sink, keys, perKey).Start(ctx, "cluster")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	runTM := func(ctx context.Context, name string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := clusterJob(dir, jm, clusterOpts{Role: roleTM, Name: name}, sink, keys, perKey).Execute(ctx, "cluster")
			if err != nil && ctx.Err() == nil {
				t.Errorf("task manager %s: %v", name, err)
			}
		}()
	}
	tm1, stop1 := context.WithCancel(ctx)
	runTM(tm1, "tm-1")
	runTM(ctx, "tm-2")
	for job.LatestCheckpoint() < 3 {
		select {
		case <-job.Done():
			t.Fatalf("job ended early: %v", job.Wait())
		case <-time.After(5 * time.Millisecond):
		}
	}
	stop1() // tm-1 goes away mid-run
	time.Sleep(300 * time.Millisecond)
	runTM(ctx, "tm-1") // and comes back
	if err := job.Wait(); err != nil {
		t.Fatalf("job: %v", err)
	}
	wg.Wait()
	if job.Restarts() == 0 {
		t.Fatal("losing a task manager did not fail the job over")
	}
	checkExactlyOnce(t, sink.Committed(), keys, perKey)
}

// A savepoint that does not stop the job, then a task manager lost before
// the next checkpoint: the job fails over to the checkpoint before the
// savepoint, and the file sink's output is exactly once, with no
// committed file changed or replaced at any time.
func TestClusterSavepointThenLostTaskManager(t *testing.T) {
	const keys, perKey = 4, 8000
	dir, out := t.TempDir(), t.TempDir()
	jm := freeAddr(t)
	sink := files.SinkWith(out, files.SinkOptions{Suffix: ".txt", RollSize: 400}, func(dst []byte, o seqOut) []byte {
		return fmt.Appendf(dst, "%d %d %d\n", o.Key, o.Seq, o.Cnt)
	})
	pause := weir.MinPauseBetweenCheckpoints(300 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	job, err := clusterJob(dir, jm, clusterOpts{Role: roleJM}, sink, keys, perKey, pause).Start(ctx, "cluster")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	runTM := func(ctx context.Context, name string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := clusterJob(dir, jm, clusterOpts{Role: roleTM, Name: name}, sink, keys, perKey, pause).Execute(ctx, "cluster")
			if err != nil && ctx.Err() == nil {
				t.Errorf("task manager %s: %v", name, err)
			}
		}()
	}
	// Committed files never change.
	var changed atomic.Value
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		seen := map[string]bool{}
		for {
			files, err := committedFiles(out)
			if err == nil {
				now := map[string]bool{}
				for _, f := range files {
					now[f] = true
				}
				for f := range seen {
					if !now[f] {
						changed.CompareAndSwap(nil, f)
					}
				}
				seen = now
			}
			select {
			case <-stopWatch:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	tm1, stop1 := context.WithCancel(ctx)
	runTM(tm1, "tm-1")
	runTM(ctx, "tm-2")
	for job.LatestCheckpoint() < 2 {
		select {
		case <-job.Done():
			t.Fatalf("job ended early: %v", job.Wait())
		case <-time.After(5 * time.Millisecond):
		}
	}
	if _, err := job.TriggerSavepoint(ctx); err != nil {
		t.Fatal(err)
	}
	before := job.LatestCheckpoint()
	stop1() // tm-1 is lost right after the savepoint
	time.Sleep(200 * time.Millisecond)
	runTM(ctx, "tm-1")
	if err := job.Wait(); err != nil {
		t.Fatalf("job: %v", err)
	}
	wg.Wait()
	close(stopWatch)
	<-watched
	if job.Restarts() == 0 {
		t.Fatal("losing a task manager did not fail the job over")
	}
	if f := changed.Load(); f != nil {
		t.Fatalf("committed file %v changed or disappeared", f)
	}
	var rows []seqOut
	for _, r := range readRows(t, out) {
		rows = append(rows, seqOut{r.Key, r.Seq, r.Cnt})
	}
	t.Logf("latest checkpoint at the loss: %d; %d rows", before, len(rows))
	checkExactlyOnce(t, rows, keys, perKey)
}

// Without enough task slots an attempt fails with the reason.
func TestClusterNotEnoughSlots(t *testing.T) {
	dir := t.TempDir()
	jm := freeAddr(t)
	env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(20*time.Millisecond, weir.ExactlyOnce),
		weir.CheckpointStorage(dir), weir.RestartStrategy(restart.None()),
		clusterOpts{Role: roleJM, JobManager: jm, SlotTimeout: 300 * time.Millisecond}.option())
	src := weir.FromSource(env, weir.Generator(2, 10, func(p int, off int64) int64 { return off }), "gen").UID("gen")
	weir.Count(weir.KeyBy(src, func(k int64) int64 { return k })).UID("count").SinkTo(weir.DiscardSink[weir.KV[int64, int64]]{}).UID("sink")
	err := env.Execute(context.Background(), "slots")
	if err == nil || !strings.Contains(err.Error(), "not enough task slots") || !strings.Contains(err.Error(), "needs 2") {
		t.Fatalf("want a clear slot error, got %v", err)
	}
}

// A task manager with the wrong token is refused.
func TestClusterRefusesWrongToken(t *testing.T) {
	dir := t.TempDir()
	jm := freeAddr(t)
	sink := weir.NewCollectSink[seqOut]()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	job, err := clusterJob(dir, jm, clusterOpts{Role: roleJM, Token: "s3cret", SlotTimeout: time.Second}, sink, 1, 10).Start(ctx, "cluster")
	if err != nil {
		t.Fatal(err)
	}
	err = clusterJob(dir, jm, clusterOpts{Role: roleTM, Token: "guess"}, sink, 1, 10).Execute(ctx, "cluster")
	if err == nil || !strings.Contains(err.Error(), "refused the cluster token") {
		t.Fatalf("task manager with a wrong token: %v", err)
	}
	job.Cancel()
	job.Wait()
}

// Broadcast state across processes: the broadcast side and the main side
// of a connected stream cross the network between task managers.
func TestClusterBroadcast(t *testing.T) {
	dir := t.TempDir()
	jm := freeAddr(t)
	sink := weir.NewCollectSink[int64]()
	build := func(o clusterOpts) *weir.Environment {
		o.JobManager = jm
		env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(10*time.Millisecond, weir.ExactlyOnce),
			weir.CheckpointStorage(dir), weir.RestartStrategy(restart.None()), o.option())
		nums := weir.FromSource(env, weir.Generator(2, 1000, func(p int, off int64) int64 { return int64(p)*100000 + off }).WithRate(5000), "nums").UID("nums")
		factors := weir.FromSource(env, weir.Generator(1, 1, func(int, int64) factor { return factor{"x", 3} }).WithRate(10), "factors").
			SetParallelism(1).UID("factors")
		weir.ConnectBroadcastNonKeyed(nums, factors, &scaler{failAt: -999, failed: new(atomic.Bool)}).UID("scale").SinkTo(sink).UID("sink")
		return env
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	job, err := build(clusterOpts{Role: roleJM}).Start(ctx, "scale")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := build(clusterOpts{Role: roleTM, Name: fmt.Sprint("tm-", i)}).Execute(ctx, "scale"); err != nil {
				t.Errorf("task manager %d: %v", i, err)
			}
		}()
	}
	if err := job.Wait(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	var want []int64
	for p := range int64(2) {
		for off := range int64(1000) {
			want = append(want, (p*100000+off)*3)
		}
	}
	want = append(want, -1, -2)
	got := sorted(sink.Committed(), func(a, b int64) int { return int(a - b) })
	want = sorted(want, func(a, b int64) int { return int(a - b) })
	if !slices.Equal(got, want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
}

// selfSignedTLS returns a TLS config whose certificate (for 127.0.0.1) is
// also its only trusted CA.
func selfSignedTLS(t *testing.T) *tls.Config {
	cert, pool := tlstest.SelfSigned(t)
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// A cluster with TLS on the control and data planes runs a job exactly
// once.
func TestClusterTLS(t *testing.T) {
	const keys, perKey = 2, 300
	dir := t.TempDir()
	jm := freeAddr(t)
	sink := weir.NewCollectSink[seqOut]()
	tlsConfig := selfSignedTLS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	job, err := clusterJob(dir, jm, clusterOpts{Role: roleJM, TLS: tlsConfig, Token: "t"}, sink, keys, perKey).Start(ctx, "cluster")
	if err != nil {
		t.Fatal(err)
	}
	// A task manager without TLS does not get in.
	plainCtx, plainCancel := context.WithTimeout(ctx, 500*time.Millisecond)
	err = clusterJob(dir, jm, clusterOpts{Role: roleTM, Name: "plain", Token: "t"}, sink, keys, perKey).Execute(plainCtx, "cluster")
	plainCancel()
	if err == nil {
		t.Fatal("a task manager without TLS ran against a TLS job manager")
	}
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := clusterOpts{Role: roleTM, Name: fmt.Sprint("tm-", i), TLS: tlsConfig, Token: "t"}
			if err := clusterJob(dir, jm, o, sink, keys, perKey).Execute(ctx, "cluster"); err != nil {
				t.Errorf("task manager %d: %v", i, err)
			}
		}()
	}
	if err := job.Wait(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	checkExactlyOnce(t, sink.Committed(), keys, perKey)
}

// A job whose sources end at once: their reports may reach the job manager
// before it has started driving the attempt, and must not be lost (the job
// would wait for its final checkpoint forever).
func TestClusterSourcesEndAtOnce(t *testing.T) {
	for round := range 5 {
		dir := t.TempDir()
		jm := freeAddr(t)
		sink := weir.NewCollectSink[seqOut]()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		job, err := clusterJob(dir, jm, clusterOpts{Role: roleJM}, sink, 2, 3).Start(ctx, "cluster")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o := clusterOpts{Role: roleTM, Name: fmt.Sprint("tm-", i)}
				if err := clusterJob(dir, jm, o, sink, 2, 3).Execute(ctx, "cluster"); err != nil {
					t.Errorf("round %d, task manager %d: %v", round, i, err)
				}
			}()
		}
		if err := job.Wait(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		wg.Wait()
		cancel()
		checkExactlyOnce(t, sink.Committed(), 2, 3)
	}
}

// clusterOpts is a process's place in a test cluster.
type clusterOpts struct {
	Role             string
	JobManager       string
	Name             string
	Token            string
	TLS              *tls.Config
	HeartbeatTimeout time.Duration
	SlotTimeout      time.Duration
}

const (
	roleJM = "jobmanager"
	roleTM = "taskmanager"
)

func (o clusterOpts) option() weir.Option {
	co := cluster.Options{JobManager: o.JobManager, Name: o.Name, Token: o.Token, TLS: o.TLS,
		HeartbeatTimeout: o.HeartbeatTimeout, SlotTimeout: o.SlotTimeout}
	if o.Role == roleJM {
		return weir.Launch(cluster.AsJobManager(co))
	}
	return weir.Launch(cluster.AsTaskManager(co))
}
