package rest_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/internal/tlstest"
	"github.com/weirstream/weir/rest"
	"github.com/weirstream/weir/rest/client"
	"github.com/weirstream/weir/restart"
	"github.com/weirstream/weir/storage"
)

// runningJob starts a small keyed count (two sources at a bounded rate,
// keyed by value into two counting subtasks) with checkpoints every 50 ms
// and its API on a loopback port.
type runningJob struct {
	job    *weir.JobClient
	srv    *rest.Server
	cli    *client.Client
	dir    string
	cancel context.CancelFunc
}

func startJob(t *testing.T, name string, cfg rest.Config) *runningJob {
	return startJobWith(t, name, cfg, false)
}

func startJobWith(t *testing.T, name string, cfg rest.Config, eventTime bool) *runningJob {
	t.Helper()
	dir := t.TempDir()
	started := make(chan *rest.Server, 1)
	cfg.Listen = "127.0.0.1:0"
	env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(50*time.Millisecond, weir.ExactlyOnce),
		weir.CheckpointStorage(dir), weir.Launch(rest.Serving(cfg, nil, func(s *rest.Server) { started <- s })))
	var src weir.Stream[int64]
	if eventTime {
		// Each record's timestamp is its offset: watermarks advance.
		gen := weir.Generator(2, -1, func(p int, off int64) int64 { return off }).WithRate(20000)
		src = weir.FromSourceWithWatermarks(env, gen, weir.ForMonotonousTimestamps[int64]().WithTimestampAssigner(func(v int64, _ int64) int64 { return v }), "numbers")
	} else {
		src = weir.FromSource(env, weir.Generator(2, -1, func(p int, off int64) int64 { return off % 100 }).WithRate(20000), "numbers")
	}
	counts := weir.Count(weir.KeyBy(src, func(k int64) int64 { return k }))
	counts.SinkTo(weir.DiscardSink[weir.KV[int64, int64]]{})
	ctx, cancel := context.WithCancel(context.Background())
	job, err := env.Start(ctx, name)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	srv := <-started
	cli, err := client.New(srv.URL(), cfg.Token, nil)
	if err != nil {
		t.Fatal(err)
	}
	rj := &runningJob{job: job, srv: srv, cli: cli, dir: dir, cancel: cancel}
	t.Cleanup(func() {
		cancel()
		job.Wait()
	})
	return rj
}

// eventually polls cond until it holds, failing the test after 30 s.
func eventually(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, err := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (last error: %v)", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// getJSON fetches a path and decodes it into a generic map, to assert the
// field names on the wire.
func getJSON(t *testing.T, base, path string) map[string]any {
	t.Helper()
	resp, err := http.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestAPIOfRunningJob(t *testing.T) {
	rj := startJob(t, "api-count", rest.Config{})
	ctx := context.Background()
	c := rj.cli

	jobs, err := c.Jobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs.Jobs) != 1 || jobs.Jobs[0].Name != "api-count" || len(jobs.Jobs[0].ID) != 32 {
		t.Fatalf("jobs: %+v", jobs)
	}
	id := jobs.Jobs[0].ID

	// The job graph: the source chain and the counting chain, joined by
	// a hash edge, each with parallelism 2, every subtask running.
	var job client.Job
	eventually(t, "every subtask running", func() (bool, error) {
		job, err = c.Job(ctx, id)
		return err == nil && job.StatusCounts["RUNNING"] == 4, err
	})
	if job.State != "RUNNING" || job.Name != "api-count" || len(job.Vertices) != 2 {
		t.Fatalf("job: %+v", job)
	}
	for _, v := range job.Vertices {
		if v.Parallelism != 2 || v.Status != "RUNNING" || v.Tasks["RUNNING"] != 2 {
			t.Fatalf("vertex: %+v", v)
		}
	}
	if len(job.Edges) != 1 || job.Edges[0].ShipStrategy != "HASH" || job.Edges[0].Source != job.Vertices[0].ID {
		t.Fatalf("edges: %+v", job.Edges)
	}
	// The job is also found by name.
	if byName, err := c.Job(ctx, "api-count"); err != nil || byName.ID != id {
		t.Fatalf("by name: %+v %v", byName, err)
	}
	srcV, countV := job.Vertices[0].ID, job.Vertices[1].ID

	// Records flow: the counting subtasks read what the sources write, and
	// the counts grow.
	var first client.VertexDetail
	eventually(t, "records read by the counting subtasks", func() (bool, error) {
		first, err = c.Vertex(ctx, id, countV)
		return err == nil && first.Subtasks[0].Metrics.ReadRecords > 0 && first.Subtasks[1].Metrics.ReadRecords > 0, err
	})
	eventually(t, "the counts to grow", func() (bool, error) {
		v, err := c.Vertex(ctx, id, countV)
		return err == nil && v.Subtasks[0].Metrics.ReadRecords > first.Subtasks[0].Metrics.ReadRecords, err
	})
	src, err := c.Vertex(ctx, id, srcV)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range src.Subtasks {
		if st.Status != "RUNNING" || st.Metrics.WriteRecords == 0 || st.Host != "local" || st.StartTime <= 0 {
			t.Fatalf("source subtask: %+v", st)
		}
		m := st.Metrics
		if m.BusyTime+m.IdleTime+m.BackPressuredTime > st.Duration+1 {
			t.Fatalf("busy+idle+backpressured exceed the run time: %+v (duration %d)", m, st.Duration)
		}
	}
	// On the wire: Flink's names.
	raw := getJSON(t, rj.srv.URL(), "/v1/jobs/"+id+"/vertices/"+countV)
	sub := raw["subtasks"].([]any)[0].(map[string]any)
	if _, ok := sub["metrics"].(map[string]any)["read-records"]; !ok {
		t.Fatalf("no read-records in %v", sub)
	}

	// Checkpoints complete, every subtask acknowledges, and the details
	// carry the barrier timeline of each subtask.
	var cps client.Checkpoints
	eventually(t, "two completed checkpoints", func() (bool, error) {
		cps, err = c.Checkpoints(ctx, id, 10)
		return err == nil && cps.Counts.Completed >= 2, err
	})
	if cps.Latest.Completed == nil || cps.Latest.Completed.Status != "COMPLETED" || len(cps.History) == 0 {
		t.Fatalf("checkpoints: %+v", cps)
	}
	if len(cps.History) > 1 && cps.History[0].ID < cps.History[1].ID {
		t.Fatalf("history not newest first: %+v", cps.History)
	}
	if cps.Counts.Total < cps.Counts.Completed || cps.Summary.EndToEndDuration.Max < cps.Summary.EndToEndDuration.Min ||
		cps.Summary.StateSize.Max <= 0 || cps.Latest.Completed.ExternalPath == "" {
		t.Fatalf("counts or summary: %+v", cps)
	}
	cid := cps.Latest.Completed.ID
	det, err := c.CheckpointDetail(ctx, id, cid)
	if err != nil {
		t.Fatal(err)
	}
	if det.ID != cid || det.NumAcknowledged != 4 || det.NumSubtasks != 4 || len(det.Tasks) != 2 || det.Tasks[countV].NumAcknowledged != 2 {
		t.Fatalf("detail: %+v", det)
	}
	subs, err := c.CheckpointSubtasks(ctx, id, cid, countV)
	if err != nil {
		t.Fatal(err)
	}
	if len(subs.Subtasks) != 2 {
		t.Fatalf("subtasks: %+v", subs)
	}
	var stateSize int64
	for _, s := range subs.Subtasks {
		if s.Status != "completed" || s.AckTimestamp < det.TriggerTimestamp || s.EndToEndDuration < 0 {
			t.Fatalf("subtask of checkpoint %d: %+v", cid, s)
		}
		stateSize += s.StateSize
	}
	if stateSize == 0 || stateSize != subs.StateSize {
		t.Fatalf("the counting subtasks' state sizes (%d) and the vertex's (%d)", stateSize, subs.StateSize)
	}
	rawSub := getJSON(t, rj.srv.URL(), "/v1/jobs/"+id+"/checkpoints/details/"+itoa(cid)+"/subtasks/"+countV)["subtasks"].([]any)[0].(map[string]any)
	for _, k := range []string{"ack_timestamp", "start_delay", "alignment", "checkpoint", "state_size"} {
		if _, ok := rawSub[k]; !ok {
			t.Fatalf("no %s in %v", k, rawSub)
		}
	}

	cfg, err := c.CheckpointConfig(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Mode != "exactly_once" || cfg.Interval != 50 || !cfg.Externalization.Enabled || cfg.CheckpointStorage == "" {
		t.Fatalf("config: %+v", cfg)
	}
	ex, err := c.Exceptions(ctx, id)
	if err != nil || len(ex.History.Entries) != 0 {
		t.Fatalf("exceptions: %+v %v", ex, err)
	}
	tms, err := c.TaskManagers(ctx)
	if err != nil || len(tms.TaskManagers) != 1 || tms.TaskManagers[0].Slots != 2 {
		t.Fatalf("task managers: %+v %v", tms, err)
	}
	ov, err := c.Overview(ctx)
	if err != nil || ov.JobsRunning != 1 || ov.TaskManagers != 1 {
		t.Fatalf("overview: %+v %v", ov, err)
	}

	// Unknown things are 404 with a message.
	var apiErr *client.APIError
	if _, err := c.Job(ctx, "nope"); !errors.As(err, &apiErr) || apiErr.Status != 404 {
		t.Fatalf("unknown job: %v", err)
	}
	if _, err := c.CheckpointDetail(ctx, id, 1<<40); !errors.As(err, &apiErr) || apiErr.Status != 404 {
		t.Fatalf("unknown checkpoint: %v", err)
	}

	// A checkpoint triggered through the API completes.
	rid, err := c.TriggerCheckpoint(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	op, err := client.Await(ctx, 10*time.Millisecond, func(ctx context.Context) (client.OperationStatus, error) { return c.CheckpointStatus(ctx, id, rid) }, nil)
	if err != nil || op.CheckpointID == 0 {
		t.Fatalf("triggered checkpoint: %+v %v", op, err)
	}

	// A savepoint through the API: asynchronous, then in storage as a
	// savepoint.
	rid, err = c.TriggerSavepoint(ctx, id, client.SavepointRequest{})
	if err != nil {
		t.Fatal(err)
	}
	op, err = client.Await(ctx, 10*time.Millisecond, func(ctx context.Context) (client.OperationStatus, error) { return c.SavepointStatus(ctx, id, rid) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	md := readMetadata(t, op.Location)
	if md.Kind != checkpoint.KindSavepoint || int64(md.CheckpointID) != op.CheckpointID || !strings.HasPrefix(op.Location, rj.dir) {
		t.Fatalf("savepoint %+v: metadata %+v", op, md)
	}
	eventually(t, "the savepoint in the checkpoint history", func() (bool, error) {
		cps, err = c.Checkpoints(ctx, id, -1)
		return err == nil && cps.Latest.Savepoint != nil && cps.Latest.Savepoint.ID == op.CheckpointID, err
	})
	// A savepoint elsewhere than the job's storage is refused.
	if _, err := c.TriggerSavepoint(ctx, id, client.SavepointRequest{TargetDirectory: t.TempDir()}); !errors.As(err, &apiErr) || apiErr.Status != 400 {
		t.Fatalf("savepoint to another directory: %v", err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// sumTask sums a task metric over the subtasks of job.
func sumTask(fams map[string]*dto.MetricFamily, name, job string) float64 {
	var sum float64
	for _, m := range fams[name].GetMetric() {
		if labels(m)["job"] == job {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

func readMetadata(t *testing.T, location string) *checkpoint.Metadata {
	t.Helper()
	if _, err := os.Stat(filepath.Join(location, "_metadata")); err != nil {
		t.Fatalf("no savepoint at %s: %v", location, err)
	}
	st, id, err := storage.ResolveRestorePath(context.Background(), location)
	if err != nil {
		t.Fatal(err)
	}
	md, err := st.ReadMetadata(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return md
}

func TestStopWithSavepointThroughAPI(t *testing.T) {
	rj := startJob(t, "api-stop", rest.Config{})
	ctx := context.Background()
	eventually(t, "a completed checkpoint", func() (bool, error) {
		cps, err := rj.cli.Checkpoints(ctx, "api-stop", 1)
		return err == nil && cps.Counts.Completed > 0, err
	})
	rid, err := rj.cli.Stop(ctx, "api-stop", client.SavepointRequest{})
	if err != nil {
		t.Fatal(err)
	}
	op, err := client.Await(ctx, 10*time.Millisecond, func(ctx context.Context) (client.OperationStatus, error) {
		return rj.cli.SavepointStatus(ctx, "api-stop", rid)
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := rj.job.Wait(); err != nil {
		t.Fatalf("the stopped job ended with %v", err)
	}
	if md := readMetadata(t, op.Location); md.Kind != checkpoint.KindSavepoint || int64(md.CheckpointID) != op.CheckpointID {
		t.Fatalf("stop savepoint %+v: %+v", op, md)
	}
}

func TestCancelThroughAPI(t *testing.T) {
	rj := startJob(t, "api-cancel", rest.Config{})
	ctx := context.Background()
	eventually(t, "the job running", func() (bool, error) {
		j, err := rj.cli.Job(ctx, "api-cancel")
		return err == nil && j.State == "RUNNING", err
	})
	if err := rj.cli.Cancel(ctx, "api-cancel"); err != nil {
		t.Fatal(err)
	}
	if err := rj.job.Wait(); !errors.Is(err, context.Canceled) {
		t.Fatalf("the cancelled job ended with %v", err)
	}
}

func TestTokenRequired(t *testing.T) {
	if _, err := rest.New(rest.Config{Listen: "0.0.0.0:0"}); err == nil || !strings.Contains(err.Error(), "token") {
		t.Fatalf("a REST API beyond loopback without a token: %v", err)
	}
	rj := startJob(t, "api-token", rest.Config{Token: "s3cret"})
	ctx := context.Background()
	if _, err := rj.cli.Jobs(ctx); err != nil {
		t.Fatalf("with the token: %v", err)
	}
	for _, tok := range []string{"", "wrong"} {
		c, _ := client.New(rj.srv.URL(), tok, nil)
		var apiErr *client.APIError
		if _, err := c.Jobs(ctx); !errors.As(err, &apiErr) || apiErr.Status != 401 {
			t.Fatalf("token %q: %v", tok, err)
		}
	}
	for path, want := range map[string]int{"/metrics": 401, "/v1/overview": 401, "/": 200, "/app.js": 200} {
		resp, err := http.Get(rj.srv.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s without the token: %d, want %d", path, resp.StatusCode, want)
		}
	}
}

func TestPrometheusMetrics(t *testing.T) {
	rj := startJob(t, "prom-count", rest.Config{})
	ctx := context.Background()
	eventually(t, "two completed checkpoints", func() (bool, error) {
		cps, err := rj.cli.Checkpoints(ctx, "prom-count", 1)
		return err == nil && cps.Counts.Completed >= 2, err
	})
	scrape := func() map[string]*dto.MetricFamily {
		resp, err := http.Get(rj.srv.URL() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return fams
	}
	var fams map[string]*dto.MetricFamily
	eventually(t, "records counted by the counting subtasks", func() (bool, error) {
		fams = scrape()
		return sumTask(fams, "weir_task_records_in_total", "prom-count") > 0, nil
	})
	for _, name := range []string{"weir_task_records_out_total", "weir_task_bytes_in_total", "weir_task_bytes_out_total",
		"weir_task_busy_seconds_total", "weir_task_idle_seconds_total", "weir_task_backpressured_seconds_total"} {
		f := fams[name]
		if f == nil || len(f.Metric) != 4 {
			t.Fatalf("%s: want a series per subtask (4), got %v", name, f)
		}
		for _, m := range f.Metric {
			if labels(m)["job"] != "prom-count" || labels(m)["vertex"] == "" || labels(m)["subtask"] == "" {
				t.Fatalf("%s labels: %v", name, labels(m))
			}
		}
	}
	if sumTask(fams, "weir_task_records_out_total", "prom-count") == 0 || sumTask(fams, "weir_task_busy_seconds_total", "prom-count") == 0 {
		t.Fatal("no records out or no busy time")
	}
	completed := 0.0
	for _, m := range fams["weir_checkpoints_total"].GetMetric() {
		if labels(m)["result"] == "completed" {
			completed = m.GetCounter().GetValue()
		}
	}
	if completed < 2 {
		t.Fatalf("weir_checkpoints_total{result=completed} = %v", completed)
	}
	h := fams["weir_checkpoint_duration_seconds"]
	if h == nil || h.Metric[0].GetHistogram().GetSampleCount() < 2 {
		t.Fatalf("duration histogram: %v", h)
	}
	if s := fams["weir_checkpoint_size_bytes"]; s == nil || s.Metric[0].GetHistogram().GetSampleSum() <= 0 {
		t.Fatalf("size histogram: %v", s)
	}
	if a := fams["weir_checkpoint_last_completed_age_seconds"]; a == nil || a.Metric[0].GetGauge().GetValue() < 0 {
		t.Fatalf("last completed age: %v", a)
	}
	if r := fams["weir_job_restarts_total"]; r == nil || r.Metric[0].GetCounter().GetValue() != 0 {
		t.Fatalf("restarts: %v", r)
	}
	// The Grafana dashboard asks only for metrics that exist.
	dash, err := os.ReadFile("../deploy/grafana/weir.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range regexp.MustCompile(`weir_[a-z_]+`).FindAllString(string(dash), -1) {
		base := name
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suf); ok && fams[b] != nil {
				base = b
			}
		}
		// Watermarks exist only in event-time jobs (this one is not).
		if fams[base] == nil && !strings.Contains(name, "watermark") {
			t.Errorf("deploy/grafana/weir.json uses %s, which /metrics does not export", name)
		}
	}

	// The histogram only grows: a later scrape counts every checkpoint
	// once.
	before := h.Metric[0].GetHistogram().GetSampleCount()
	eventually(t, "more checkpoints in the histogram", func() (bool, error) {
		f := scrape()
		n := f["weir_checkpoint_duration_seconds"].Metric[0].GetHistogram().GetSampleCount()
		var done float64
		for _, m := range f["weir_checkpoints_total"].GetMetric() {
			if labels(m)["result"] == "completed" {
				done = m.GetCounter().GetValue()
			}
		}
		if float64(n) > done {
			return false, errors.New("the histogram counts more checkpoints than completed")
		}
		return n > before, nil
	})
}

func TestWatermarksOfEventTimeJob(t *testing.T) {
	rj := startJobWith(t, "api-eventtime", rest.Config{}, true)
	ctx := context.Background()
	var j client.Job
	eventually(t, "watermarks at the counting vertex", func() (bool, error) {
		var err error
		j, err = rj.cli.Job(ctx, "api-eventtime")
		return err == nil && len(j.Vertices) == 2 && j.Vertices[1].Metrics.InputWatermark != nil && *j.Vertices[1].Metrics.InputWatermark > 0, fmt.Errorf("%+v", j.Vertices)
	})
	if !j.EventTime || j.Vertices[0].Metrics.InputWatermark == nil {
		t.Fatalf("event-time job: %+v", j)
	}
	v, err := rj.cli.Vertex(ctx, "api-eventtime", j.Vertices[1].ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range v.Subtasks {
		if st.Metrics.InputWatermark == nil {
			t.Fatalf("subtask without an input watermark: %+v", st)
		}
	}
	resp, err := http.Get(rj.srv.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if f := fams["weir_task_input_watermark_milliseconds"]; f == nil || len(f.Metric) < 2 {
		t.Fatalf("input watermarks: %v", f)
	}
	if f := fams["weir_task_output_watermark_milliseconds"]; f == nil || len(f.Metric) < 2 {
		t.Fatalf("output watermarks: %v", f)
	}
}

// With the cluster's TLS configuration the API serves HTTPS, and a client
// that trusts the CA reaches it.
func TestHTTPS(t *testing.T) {
	cert, pool := tlstest.SelfSigned(t)
	srv, err := rest.Start(rest.Config{Listen: "127.0.0.1:0", Token: "tok", TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if !strings.HasPrefix(srv.URL(), "https://") {
		t.Fatalf("URL %s", srv.URL())
	}
	c, err := client.New(srv.URL(), "tok", &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	ov, err := c.Overview(context.Background())
	if err != nil || ov.Version == "" {
		t.Fatalf("overview over https: %+v %v", ov, err)
	}
	plain, _ := client.New(strings.Replace(srv.URL(), "https://", "http://", 1), "tok", nil)
	if _, err := plain.Overview(context.Background()); err == nil {
		t.Fatal("plain http reached the https API")
	}
}

// A job that fails once after its first checkpoints: the API shows the
// failover (root cause, restart, the checkpoint restored), and /metrics
// counts the restart.
func TestFailoverInAPI(t *testing.T) {
	dir := t.TempDir()
	started := make(chan *rest.Server, 1)
	env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(30*time.Millisecond, weir.ExactlyOnce),
		weir.CheckpointStorage(dir), weir.RestartStrategy(restart.FixedDelay(5, 10*time.Millisecond)),
		weir.Launch(rest.Serving(rest.Config{Listen: "127.0.0.1:0"}, nil, func(s *rest.Server) { started <- s })))
	var failed, ready atomic.Bool
	src := weir.FromSource(env, weir.Generator(2, -1, func(p int, off int64) int64 { return off % 100 }).WithRate(20000), "numbers")
	checked := weir.Map(src, func(v int64) int64 {
		if ready.Load() && failed.CompareAndSwap(false, true) {
			panic(errInjected)
		}
		return v
	})
	weir.Count(weir.KeyBy(checked, func(k int64) int64 { return k })).SinkTo(weir.DiscardSink[weir.KV[int64, int64]]{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	job, err := env.Start(ctx, "api-failover")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); job.Wait() }()
	srv := <-started
	c, _ := client.New(srv.URL(), "", nil)
	eventually(t, "two completed checkpoints", func() (bool, error) { return job.LatestCheckpoint() >= 2, nil })
	ready.Store(true)
	var ex client.Exceptions
	eventually(t, "the failover in the exception history", func() (bool, error) {
		ex, err = c.Exceptions(ctx, "api-failover")
		return err == nil && len(ex.History.Entries) == 1, err
	})
	e := ex.History.Entries[0]
	if !strings.Contains(e.RootCause, errInjected.Error()) || !e.Restarted || e.RestoredFrom < 2 || e.Timestamp <= 0 {
		t.Fatalf("exception: %+v", e)
	}
	var cps client.Checkpoints
	eventually(t, "the restored checkpoint and the job running again", func() (bool, error) {
		cps, err = c.Checkpoints(ctx, "api-failover", 1)
		if err != nil {
			return false, err
		}
		j, err := c.Job(ctx, "api-failover")
		return err == nil && j.State == "RUNNING" && j.Restarts == 1 && cps.Latest.Restored != nil, err
	})
	if cps.Counts.Restored != 1 || cps.Latest.Restored.ID != e.RestoredFrom || !strings.HasPrefix(cps.Latest.Restored.ExternalPath, dir) {
		t.Fatalf("restored: %+v %+v", cps.Counts, cps.Latest.Restored)
	}
	resp, err := http.Get(srv.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if r := fams["weir_job_restarts_total"]; r == nil || r.Metric[0].GetCounter().GetValue() != 1 {
		t.Fatalf("restarts: %v", r)
	}
}

var errInjected = errors.New("injected failure in the map")

// holdSink's writer of subtask 1 blocks in its snapshot while hold is
// set, until release is closed: a checkpoint stays in progress.
type holdSink struct {
	hold    *atomic.Bool
	held    chan struct{}
	release chan struct{}
}

type holdWriter struct {
	s       *holdSink
	subtask int
}

func (s *holdSink) CreateWriter(ctx weir.SinkContext) (weir.SinkWriter[weir.KV[int64, int64]], error) {
	return &holdWriter{s: s, subtask: ctx.Subtask}, nil
}
func (w *holdWriter) Write(weir.KV[int64, int64]) error { return nil }
func (w *holdWriter) Close() error                      { return nil }
func (w *holdWriter) SnapshotState(checkpoint.ID) ([][]byte, error) {
	if w.subtask == 1 && w.s.hold.CompareAndSwap(true, false) {
		close(w.s.held)
		<-w.s.release
	}
	return nil, nil
}

// A checkpoint in progress is in the history, and its details show which
// subtasks acknowledged so far.
func TestCheckpointInProgress(t *testing.T) {
	dir := t.TempDir()
	started := make(chan *rest.Server, 1)
	env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(30*time.Millisecond, weir.ExactlyOnce), weir.CheckpointStorage(dir),
		weir.Launch(rest.Serving(rest.Config{Listen: "127.0.0.1:0"}, nil, func(s *rest.Server) { started <- s })))
	sink := &holdSink{hold: &atomic.Bool{}, held: make(chan struct{}), release: make(chan struct{})}
	src := weir.FromSource(env, weir.Generator(2, -1, func(p int, off int64) int64 { return off % 100 }).WithRate(20000), "numbers")
	weir.Count(weir.KeyBy(src, func(k int64) int64 { return k })).SinkTo(sink)
	ctx, cancel := context.WithCancel(context.Background())
	job, err := env.Start(ctx, "api-pending")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	released := false
	defer func() {
		if !released {
			close(sink.release)
		}
		cancel()
		job.Wait()
	}()
	srv := <-started
	c, _ := client.New(srv.URL(), "", nil)
	eventually(t, "a completed checkpoint", func() (bool, error) { return job.LatestCheckpoint() >= 1, nil })
	sink.hold.Store(true)
	<-sink.held
	var cps client.Checkpoints
	eventually(t, "the held checkpoint in progress with 3 of 4 acknowledgements", func() (bool, error) {
		cps, err = c.Checkpoints(ctx, "api-pending", 5)
		return err == nil && len(cps.History) > 0 && cps.History[0].Status == "IN_PROGRESS" && cps.History[0].NumAcknowledged == 3, err
	})
	if cps.Counts.InProgress != 1 {
		t.Fatalf("counts: %+v", cps.Counts)
	}
	cid := cps.History[0].ID
	j, _ := c.Job(ctx, "api-pending")
	subs, err := c.CheckpointSubtasks(ctx, "api-pending", cid, j.Vertices[1].ID)
	if err != nil {
		t.Fatal(err)
	}
	if subs.Status != "IN_PROGRESS" || subs.Subtasks[0].Status != "completed" || subs.Subtasks[1].Status != "pending_or_failed" || subs.Subtasks[0].AckTimestamp <= 0 {
		t.Fatalf("subtasks of checkpoint %d in progress: %+v", cid, subs)
	}
	close(sink.release)
	released = true
	eventually(t, "the held checkpoint completed", func() (bool, error) {
		d, err := c.CheckpointDetail(ctx, "api-pending", cid)
		return err == nil && d.Status == "COMPLETED" && d.NumAcknowledged == 4, err
	})
}
