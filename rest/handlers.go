package rest

import (
	"context"
	"encoding/json"

	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/metrics"
	"github.com/weirstream/weir/rest/client"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/storage"
)

// Version is the version the API reports in /v1/overview.
const Version = "weir/v1"

func ms(t time.Time) int64 {
	if t.IsZero() {
		return -1
	}
	return t.UnixMilli()
}

func durMS(d time.Duration) int64 { return d.Milliseconds() }

func (s *Server) entry(r *http.Request) (*jobEntry, error) {
	key := r.PathValue("id")
	e := s.lookup(key)
	if e == nil {
		return nil, errorf(http.StatusNotFound, "no job %q", key)
	}
	return e, nil
}

func (s *Server) overview(*http.Request) (any, error) {
	o := client.Overview{Version: Version}
	for _, e := range s.jobs() {
		switch e.job.State() {
		case runtime.JobRunning, runtime.JobInitializing:
			o.JobsRunning++
		case runtime.JobRestarting:
			o.JobsRestarting++
		case runtime.JobFinished:
			o.JobsFinished++
		case runtime.JobCanceled:
			o.JobsCancelled++
		case runtime.JobFailed:
			o.JobsFailed++
		}
	}
	for _, tm := range s.taskManagerList() {
		o.TaskManagers++
		o.SlotsTotal += tm.Slots
	}
	return o, nil
}

func (s *Server) jobList(*http.Request) (any, error) {
	l := client.JobList{Jobs: []client.JobSummary{}}
	now := time.Now()
	for _, e := range s.jobs() {
		j := e.job
		sum := client.JobSummary{ID: e.id, Name: j.Graph().Name, State: string(j.State()),
			StartTime: ms(j.StartTime()), EndTime: ms(j.EndTime()), Duration: durMS(elapsed(j, now)), Tasks: map[string]int{}}
		for _, st := range subtaskStates(j, j.TaskMetrics(now)) {
			sum.Tasks[st]++
		}
		l.Jobs = append(l.Jobs, sum)
	}
	return l, nil
}

func elapsed(j *runtime.Job, now time.Time) time.Duration {
	if end := j.EndTime(); !end.IsZero() {
		return end.Sub(j.StartTime())
	}
	return now.Sub(j.StartTime())
}

// subtaskStates is the state of every subtask of the job, in graph order;
// subtasks without metrics yet are CREATED.
func subtaskStates(j *runtime.Job, samples []metrics.TaskSample) []string {
	byTask := indexSamples(samples)
	var out []string
	for _, v := range j.Graph().Vertices {
		for i := range v.Parallelism {
			st := "CREATED"
			if smp, ok := byTask[checkpoint.TaskID{Vertex: v.ID, Subtask: i}]; ok {
				st = smp.State.String()
			}
			out = append(out, st)
		}
	}
	return out
}

func indexSamples(samples []metrics.TaskSample) map[checkpoint.TaskID]metrics.TaskSample {
	m := make(map[checkpoint.TaskID]metrics.TaskSample, len(samples))
	for _, s := range samples {
		m[checkpoint.TaskID{Vertex: s.Vertex, Subtask: s.Subtask}] = s
	}
	return m
}

// vertexStatus folds the states of a vertex's subtasks into one.
func vertexStatus(counts map[string]int, parallelism int) string {
	switch {
	case counts["FAILED"] > 0:
		return "FAILED"
	case counts["RUNNING"] > 0:
		return "RUNNING"
	case counts["FINISHED"] == parallelism:
		return "FINISHED"
	case counts["CANCELED"] > 0:
		return "CANCELED"
	case counts["DEPLOYING"] > 0:
		return "DEPLOYING"
	}
	return "CREATED"
}

func (s *Server) jobDetail(r *http.Request) (any, error) {
	e, err := s.entry(r)
	if err != nil {
		return nil, err
	}
	j := e.job
	now := time.Now()
	g := j.Graph()
	out := client.Job{ID: e.id, Name: g.Name, State: string(j.State()), StartTime: ms(j.StartTime()), EndTime: ms(j.EndTime()),
		Duration: durMS(elapsed(j, now)), Now: now.UnixMilli(), Restarts: j.Restarts(), MaxParallelism: g.MaxParallelism,
		EventTime: g.EventTime, StatusCounts: map[string]int{}, Vertices: []client.Vertex{}, Edges: []client.Edge{}}
	if err := j.Err(); err != nil {
		out.Error = err.Error()
	}
	byTask := indexSamples(j.TaskMetrics(now))
	for _, v := range g.Vertices {
		cv := client.Vertex{ID: strconv.Itoa(v.ID), Name: v.Name, Parallelism: v.Parallelism, Tasks: map[string]int{}}
		for _, op := range v.Operators {
			cv.Operators = append(cv.Operators, client.Operator{UID: op.UID, Name: op.Name})
		}
		var lowWM *int64
		for i := range v.Parallelism {
			smp, ok := byTask[checkpoint.TaskID{Vertex: v.ID, Subtask: i}]
			if !ok {
				cv.Tasks["CREATED"]++
				out.StatusCounts["CREATED"]++
				continue
			}
			cv.Tasks[smp.State.String()]++
			out.StatusCounts[smp.State.String()]++
			m := &cv.Metrics
			m.ReadRecords += smp.RecordsIn
			m.WriteRecords += smp.RecordsOut
			m.ReadBytes += smp.BytesIn
			m.WriteBytes += smp.BytesOut
			if total := smp.BusyNanos + smp.IdleNanos + smp.BackPressuredNanos; total > 0 {
				m.BusyRatio = max(m.BusyRatio, float64(smp.BusyNanos)/float64(total))
				m.BackPressureRatio = max(m.BackPressureRatio, float64(smp.BackPressuredNanos)/float64(total))
			}
			if g.EventTime {
				wm := smp.InputWatermark
				if v.IsSource {
					wm = smp.OutputWatermark
				}
				if lowWM == nil || wm < *lowWM {
					lowWM = &wm
				}
			}
		}
		cv.Metrics.InputWatermark = lowWM
		cv.Status = vertexStatus(cv.Tasks, v.Parallelism)
		out.Vertices = append(out.Vertices, cv)
		for _, in := range v.Inputs {
			out.Edges = append(out.Edges, client.Edge{Source: strconv.Itoa(in.Source.ID), Target: strconv.Itoa(v.ID), ShipStrategy: in.Kind.String()})
		}
	}
	return out, nil
}

func (e *jobEntry) vertex(r *http.Request, param string) (*runtime.Vertex, error) {
	vid := r.PathValue(param)
	n, err := strconv.Atoi(vid)
	if err == nil {
		for _, v := range e.job.Graph().Vertices {
			if v.ID == n {
				return v, nil
			}
		}
	}
	return nil, errorf(http.StatusNotFound, "job %s has no vertex %q", e.job.Graph().Name, vid)
}

func wmPtr(wm int64) *int64 {
	if wm == metrics.NoWatermark {
		return nil
	}
	return &wm
}

func (s *Server) vertex(r *http.Request) (any, error) {
	e, err := s.entry(r)
	if err != nil {
		return nil, err
	}
	v, err := e.vertex(r, "vid")
	if err != nil {
		return nil, err
	}
	now := time.Now()
	byTask := indexSamples(e.job.TaskMetrics(now))
	out := client.VertexDetail{ID: strconv.Itoa(v.ID), Name: v.Name, Parallelism: v.Parallelism, Now: now.UnixMilli()}
	for i := range v.Parallelism {
		st := client.Subtask{Index: i, Status: "CREATED", StartTime: -1, EndTime: -1}
		if smp, ok := byTask[checkpoint.TaskID{Vertex: v.ID, Subtask: i}]; ok {
			st.Status = smp.State.String()
			st.Host = smp.Host
			if st.Host == "" {
				st.Host = "local"
			}
			st.StartTime, st.EndTime = ms(smp.StartTime), ms(smp.EndTime)
			if !smp.StartTime.IsZero() {
				end := now
				if !smp.EndTime.IsZero() {
					end = smp.EndTime
				}
				st.Duration = durMS(end.Sub(smp.StartTime))
			}
			st.Metrics = client.SubtaskMetrics{ReadRecords: smp.RecordsIn, WriteRecords: smp.RecordsOut, ReadBytes: smp.BytesIn, WriteBytes: smp.BytesOut,
				BusyTime: smp.BusyNanos / 1e6, IdleTime: smp.IdleNanos / 1e6, BackPressuredTime: smp.BackPressuredNanos / 1e6,
				InputWatermark: wmPtr(smp.InputWatermark), OutputWatermark: wmPtr(smp.OutputWatermark)}
		}
		out.Subtasks = append(out.Subtasks, st)
	}
	return out, nil
}

// numSubtasks is the number of subtasks of the job.
func numSubtasks(g *runtime.JobGraph) int {
	n := 0
	for _, v := range g.Vertices {
		n += v.Parallelism
	}
	return n
}

func (e *jobEntry) location(id checkpoint.ID) string {
	st := e.job.Config().Storage
	if st == nil {
		return ""
	}
	return storage.Location(st, id)
}

// checkpointOf turns a checkpoint's stats into the API's shape; with
// tasks it includes the per-vertex figures.
func (e *jobEntry) checkpointOf(c runtime.CheckpointStats, tasks bool) client.Checkpoint {
	g := e.job.Graph()
	out := client.Checkpoint{ID: int64(c.ID), Status: "FAILED", IsSavepoint: c.Kind == checkpoint.KindSavepoint, CheckpointType: "CHECKPOINT",
		TriggerTimestamp: ms(c.TriggeredAt), LatestAck: -1, StateSize: c.StateSize, EndToEndDuration: durMS(c.FinishedAt.Sub(c.TriggeredAt)),
		AlignmentMax: durMS(c.MaxAlignment), StartDelayMax: durMS(c.MaxStartDelay), SyncMax: durMS(c.MaxSyncDuration),
		NumSubtasks: numSubtasks(g), NumAcknowledged: len(c.Subtasks), FailureMessage: c.Reason}
	if out.IsSavepoint {
		out.CheckpointType = "SAVEPOINT"
	}
	switch {
	case c.Completed:
		out.Status = "COMPLETED"
		out.ExternalPath = e.location(c.ID)
	case c.FinishedAt.IsZero():
		out.Status = "IN_PROGRESS"
		out.EndToEndDuration = durMS(time.Since(c.TriggeredAt))
	}
	var latest time.Time
	for _, t := range c.Acked {
		if t.After(latest) {
			latest = t
		}
	}
	out.LatestAck = ms(latest)
	if tasks {
		out.Tasks = map[string]client.CheckpointVertex{}
		for _, v := range g.Vertices {
			out.Tasks[strconv.Itoa(v.ID)] = checkpointVertex(c, v)
		}
	}
	return out
}

func checkpointVertex(c runtime.CheckpointStats, v *runtime.Vertex) client.CheckpointVertex {
	cv := client.CheckpointVertex{ID: strconv.Itoa(v.ID), Status: "COMPLETED", NumSubtasks: v.Parallelism, LatestAck: -1}
	var latest time.Time
	for i := range v.Parallelism {
		id := checkpoint.TaskID{Vertex: v.ID, Subtask: i}
		snap, ok := c.Subtasks[id]
		if !ok {
			continue
		}
		cv.NumAcknowledged++
		cv.StateSize += snap.StateSize
		if t := c.Acked[id]; t.After(latest) {
			latest = t
		}
	}
	if cv.NumAcknowledged < cv.NumSubtasks {
		switch {
		case c.Completed:
			cv.Status = "COMPLETED" // finished subtasks acknowledge nothing
		case c.FinishedAt.IsZero():
			cv.Status = "IN_PROGRESS"
		default:
			cv.Status = "FAILED"
		}
	}
	cv.LatestAck = ms(latest)
	if !latest.IsZero() {
		cv.EndToEndDuration = durMS(latest.Sub(c.TriggeredAt))
	}
	return cv
}

func statsOf(vals []int64) client.Stats {
	if len(vals) == 0 {
		return client.Stats{}
	}
	slices.Sort(vals)
	var sum int64
	for _, v := range vals {
		sum += v
	}
	q := func(p float64) int64 {
		i := int(p*float64(len(vals))+0.999999) - 1
		return vals[min(max(i, 0), len(vals)-1)]
	}
	return client.Stats{Min: vals[0], Max: vals[len(vals)-1], Avg: sum / int64(len(vals)), P50: q(0.5), P90: q(0.9), P99: q(0.99)}
}

// defaultHistory is the number of checkpoints /checkpoints lists unless
// ?limit= says otherwise.
const defaultHistory = 50

func (s *Server) checkpoints(r *http.Request) (any, error) {
	e, err := s.entry(r)
	if err != nil {
		return nil, err
	}
	limit := defaultHistory
	if l := r.URL.Query().Get("limit"); l != "" {
		if limit, err = strconv.Atoi(l); err != nil || limit < 0 {
			return nil, errorf(http.StatusBadRequest, "invalid limit %q: want a whole number >= 0", l)
		}
	}
	j := e.job
	stats := j.Checkpoints()
	c := j.CheckpointCounts()
	out := client.Checkpoints{Counts: client.CheckpointCounts{Restored: c.Restored, Total: c.Triggered, Completed: c.Completed, Failed: c.Failed,
		InProgress: max(c.Triggered-c.Completed-c.Failed, 0)}, History: []client.Checkpoint{}}
	var sizes, durs, aligns, delays []int64
	pending := j.PendingCheckpoints()
	for i := len(pending) - 1; i >= 0 && len(out.History) < limit; i-- {
		out.History = append(out.History, e.checkpointOf(pending[i], false))
	}
	for i := len(stats) - 1; i >= 0; i-- {
		st := stats[i]
		cp := e.checkpointOf(st, false)
		if len(out.History) < limit {
			out.History = append(out.History, cp)
		}
		switch {
		case st.Completed && st.Kind == checkpoint.KindSavepoint:
			if out.Latest.Savepoint == nil {
				out.Latest.Savepoint = &cp
			}
		case st.Completed:
			if out.Latest.Completed == nil {
				out.Latest.Completed = &cp
			}
		default:
			if out.Latest.Failed == nil {
				out.Latest.Failed = &cp
			}
		}
		if st.Completed {
			sizes = append(sizes, st.StateSize)
			durs = append(durs, durMS(st.FinishedAt.Sub(st.TriggeredAt)))
			aligns = append(aligns, durMS(st.MaxAlignment))
			delays = append(delays, durMS(st.MaxStartDelay))
		}
	}
	out.Summary = client.CheckpointSummary{StateSize: statsOf(sizes), EndToEndDuration: statsOf(durs), Alignment: statsOf(aligns), StartDelay: statsOf(delays)}
	if rs, ok := j.LastRestored(); ok {
		out.Latest.Restored = &client.RestoredCheckpoint{ID: int64(rs.ID), RestoreTime: ms(rs.RestoredAt), IsSavepoint: rs.Kind == checkpoint.KindSavepoint, ExternalPath: rs.Location}
	}
	return out, nil
}

func (e *jobEntry) stats(r *http.Request) (runtime.CheckpointStats, error) {
	raw := r.PathValue("cid")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		return runtime.CheckpointStats{}, errorf(http.StatusBadRequest, "invalid checkpoint id %q", raw)
	}
	for _, st := range append(e.job.Checkpoints(), e.job.PendingCheckpoints()...) {
		if int64(st.ID) == id {
			return st, nil
		}
	}
	return runtime.CheckpointStats{}, errorf(http.StatusNotFound, "job %s has no checkpoint %d in progress or in its history", e.job.Graph().Name, id)
}

func (s *Server) checkpointDetail(r *http.Request) (any, error) {
	e, err := s.entry(r)
	if err != nil {
		return nil, err
	}
	st, err := e.stats(r)
	if err != nil {
		return nil, err
	}
	return e.checkpointOf(st, true), nil
}

func (s *Server) checkpointSubtasks(r *http.Request) (any, error) {
	e, err := s.entry(r)
	if err != nil {
		return nil, err
	}
	st, err := e.stats(r)
	if err != nil {
		return nil, err
	}
	v, err := e.vertex(r, "vid")
	if err != nil {
		return nil, err
	}
	out := client.CheckpointSubtasks{CheckpointVertex: checkpointVertex(st, v)}
	for i := range v.Parallelism {
		id := checkpoint.TaskID{Vertex: v.ID, Subtask: i}
		cs := client.CheckpointSubtask{Index: i, Status: "pending_or_failed", AckTimestamp: -1}
		if snap, ok := st.Subtasks[id]; ok {
			cs.Status = "completed"
			cs.StateSize = snap.StateSize
			cs.StartDelay = durMS(snap.StartDelay)
			cs.Alignment.Duration = durMS(snap.AlignmentDuration)
			cs.Checkpoint.Sync = durMS(snap.SyncDuration)
			cs.Checkpoint.Async = durMS(snap.AsyncDuration)
			if t, ok := st.Acked[id]; ok {
				cs.AckTimestamp = ms(t)
				cs.EndToEndDuration = durMS(t.Sub(st.TriggeredAt))
			}
		}
		out.Subtasks = append(out.Subtasks, cs)
	}
	return out, nil
}

func (s *Server) checkpointConfig(r *http.Request) (any, error) {
	e, err := s.entry(r)
	if err != nil {
		return nil, err
	}
	cfg := e.job.Config()
	out := client.CheckpointConfig{Mode: "disabled"}
	if cfg.Checkpointing {
		out.Mode = strings.ReplaceAll(cfg.Mode.String(), "-", "_")
	}
	c := cfg.Coordinator
	out.Interval, out.Timeout, out.MinPause = durMS(c.Interval), durMS(c.Timeout), durMS(c.MinPause)
	out.MaxConcurrent, out.TolerableFailures, out.Retained = max(c.MaxConcurrent, 1), c.TolerableFailures, max(c.NumRetained, 1)
	out.Externalization.Enabled = cfg.Storage != nil
	out.Externalization.DeleteOnCancellation = !cfg.RetainOnCancel
	if cfg.Storage != nil {
		out.CheckpointStorage = cfg.Storage.String()
	}
	return out, nil
}

func (s *Server) exceptions(r *http.Request) (any, error) {
	e, err := s.entry(r)
	if err != nil {
		return nil, err
	}
	var out client.Exceptions
	out.History.Entries = []client.Exception{}
	fs := e.job.Failures()
	for i := len(fs) - 1; i >= 0; i-- {
		f := fs[i]
		out.History.Entries = append(out.History.Entries, client.Exception{Name: f.Err, Timestamp: ms(f.Time), RootCause: f.RootCause,
			Restarted: f.Restart, RestoredFrom: int64(f.RestoredFrom)})
	}
	return out, nil
}

func (s *Server) taskManagerList() []runtime.TaskManagerInfo {
	for _, e := range s.jobs() {
		if l, ok := e.job.Executor().(runtime.TaskManagerLister); ok {
			return l.TaskManagers()
		}
	}
	// Local jobs: this process runs every subtask.
	slots := 0
	for _, e := range s.jobs() {
		for _, v := range e.job.Graph().Vertices {
			slots = max(slots, v.Parallelism)
		}
	}
	return []runtime.TaskManagerInfo{{ID: "local", Slots: slots, LastHeartbeat: time.Now()}}
}

func (s *Server) taskManagers(*http.Request) (any, error) {
	out := client.TaskManagers{TaskManagers: []client.TaskManager{}}
	now := time.Now()
	for _, tm := range s.taskManagerList() {
		out.TaskManagers = append(out.TaskManagers, client.TaskManager{ID: tm.ID, DataPort: tm.DataAddr, Slots: tm.Slots,
			TimeSinceLastHeartbeat: durMS(now.Sub(tm.LastHeartbeat))})
	}
	sort.Slice(out.TaskManagers, func(i, j int) bool { return out.TaskManagers[i].ID < out.TaskManagers[j].ID })
	return out, nil
}

// startOperation runs f in the background and returns its request id.
func (e *jobEntry) startOperation(stop bool, f func(ctx context.Context) (checkpoint.ID, error)) string {
	e.mu.Lock()
	e.mu.opSeq++
	rid := fmt.Sprintf("%s-%d", e.id[:8], e.mu.opSeq)
	op := &operation{stop: stop}
	e.mu.ops[rid] = op
	if len(e.mu.ops) > maxOperations {
		for k, o := range e.mu.ops {
			if o.done && k != rid {
				delete(e.mu.ops, k)
				break
			}
		}
	}
	e.mu.Unlock()
	go func() {
		id, err := f(context.Background())
		e.mu.Lock()
		defer e.mu.Unlock()
		if !op.done {
			e.finishLocked(op, id, err)
		}
	}()
	return rid
}

// operationStatusHTTP serves the status of an operation; a finished one
// counts as read once the answer is on its way.
func (s *Server) operationStatusHTTP(w http.ResponseWriter, r *http.Request) {
	var op *operation
	var e *jobEntry
	var completed bool
	handle(func(r *http.Request) (any, error) {
		var out client.OperationStatus
		var err error
		e, op, out, err = s.operationStatus(r)
		completed = err == nil && out.Status.ID == "COMPLETED"
		return out, err
	})(w, r)
	if !completed {
		return
	}
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	e.mu.Lock()
	op.reported = true
	e.mu.Unlock()
	select {
	case e.reported <- struct{}{}:
	default:
	}
}

func (s *Server) operationStatus(r *http.Request) (*jobEntry, *operation, client.OperationStatus, error) {
	e, err := s.entry(r)
	if err != nil {
		return nil, nil, client.OperationStatus{}, err
	}
	rid := r.PathValue("rid")
	e.mu.Lock()
	defer e.mu.Unlock()
	op := e.mu.ops[rid]
	if op == nil {
		return nil, nil, client.OperationStatus{}, errorf(http.StatusNotFound, "job %s has no operation %q", e.job.Graph().Name, rid)
	}
	var out client.OperationStatus
	out.Status.ID = "IN_PROGRESS"
	if op.done {
		out.Status.ID = "COMPLETED"
		out.Operation = &client.Operation{Location: op.loc, CheckpointID: op.id}
		if op.errMsg != "" {
			out.Operation = &client.Operation{FailureCause: &struct {
				Message string `json:"message"`
			}{op.errMsg}}
		}
	}
	return e, op, out, nil
}

// readSavepointRequest reads the optional JSON body of a savepoint or
// stop and checks its target directory.
func (e *jobEntry) readSavepointRequest(r *http.Request) (client.SavepointRequest, error) {
	var req client.SavepointRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err != nil {
		return req, errorf(http.StatusBadRequest, "cannot read the request: %v", err)
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			return req, errorf(http.StatusBadRequest, "invalid request body: %v", err)
		}
	}
	st := e.job.Config().Storage
	if st == nil {
		return req, errorf(http.StatusConflict, "job %s runs without checkpoint storage: no savepoint can be taken", e.job.Graph().Name)
	}
	if req.TargetDirectory != "" && cleanLocation(req.TargetDirectory) != cleanLocation(st.String()) {
		return req, errorf(http.StatusBadRequest, "savepoints of job %s go to its checkpoint storage %s, not %s", e.job.Graph().Name, st, req.TargetDirectory)
	}
	return req, nil
}

func cleanLocation(s string) string {
	s = strings.TrimPrefix(s, "file://")
	if !strings.Contains(s, "://") {
		if abs, err := filepath.Abs(s); err == nil {
			s = abs
		}
	}
	return strings.TrimRight(s, "/")
}

func (s *Server) triggerSavepoint(r *http.Request) (any, error) {
	e, err := s.entry(r)
	if err != nil {
		return nil, err
	}
	req, err := e.readSavepointRequest(r)
	if err != nil {
		return nil, err
	}
	j := e.job
	rid := e.startOperation(false, func(ctx context.Context) (checkpoint.ID, error) {
		st, err := j.TriggerCheckpoint(ctx, checkpoint.KindSavepoint)
		if err == nil && req.CancelJob {
			j.Cancel()
		}
		return st.ID, err
	})
	return client.TriggerResponse{RequestID: rid}, nil
}

func (s *Server) stop(r *http.Request) (any, error) {
	e, err := s.entry(r)
	if err != nil {
		return nil, err
	}
	if _, err := e.readSavepointRequest(r); err != nil {
		return nil, err
	}
	rid := e.startOperation(true, e.job.StopWithSavepoint)
	return client.TriggerResponse{RequestID: rid}, nil
}

func (s *Server) triggerCheckpoint(r *http.Request) (any, error) {
	e, err := s.entry(r)
	if err != nil {
		return nil, err
	}
	if !e.job.Config().Checkpointing {
		return nil, errorf(http.StatusConflict, "job %s runs without checkpointing", e.job.Graph().Name)
	}
	j := e.job
	rid := e.startOperation(false, func(ctx context.Context) (checkpoint.ID, error) {
		st, err := j.TriggerCheckpoint(ctx, checkpoint.KindCheckpoint)
		return st.ID, err
	})
	return client.TriggerResponse{RequestID: rid}, nil
}

func (s *Server) cancel(r *http.Request) (any, error) {
	e, err := s.entry(r)
	if err != nil {
		return nil, err
	}
	if mode := r.URL.Query().Get("mode"); mode != "" && mode != "cancel" {
		return nil, errorf(http.StatusBadRequest, "invalid mode %q: only cancel is supported", mode)
	}
	select {
	case <-e.job.Done():
		return nil, errorf(http.StatusConflict, "job %s has ended already (%s)", e.job.Graph().Name, e.job.State())
	default:
	}
	e.job.Cancel()
	return struct{}{}, nil
}
