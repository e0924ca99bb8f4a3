package runtime

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/metrics"
	"github.com/weirstream/weir/storage"
)

// This file is what a job shows of itself to operators (package rest):
// its state, its subtasks' metrics, its failovers, its restore point.

// ChannelBytes is implemented by channels that move bytes (remote
// channels between processes): the bytes sent or received so far. It is
// read from any goroutine.
type ChannelBytes interface {
	Bytes() int64
}

// JobState is the state of a job, in Flink's names.
type JobState string

const (
	JobInitializing JobState = "INITIALIZING"
	JobRunning      JobState = "RUNNING"
	JobRestarting   JobState = "RESTARTING"
	JobFinished     JobState = "FINISHED"
	JobFailed       JobState = "FAILED"
	JobCanceled     JobState = "CANCELED"
)

// Failure is one failover of a job, or the error that ended it.
type Failure struct {
	Time time.Time
	// Err is the error as text, RootCause the innermost error it wraps.
	Err       string
	RootCause string
	// Restart is true when the job restarted after it; RestoredFrom is
	// the checkpoint the next attempt restored (0: the beginning).
	Restart      bool
	RestoredFrom checkpoint.ID
}

// Restored describes the checkpoint an attempt of the job restored.
type Restored struct {
	ID         checkpoint.ID
	Kind       checkpoint.Kind
	Location   string
	RestoredAt time.Time
}

// TaskManagerInfo describes a process that runs subtasks of a job.
type TaskManagerInfo struct {
	ID            string
	DataAddr      string
	Slots         int
	LastHeartbeat time.Time
}

// TaskManagerLister is implemented by executors that run subtasks on task
// managers (a job manager).
type TaskManagerLister interface {
	TaskManagers() []TaskManagerInfo
}

// maxFailureHistory bounds the failures a job remembers.
const maxFailureHistory = 100

// Graph is the job graph the job runs.
func (j *Job) Graph() *JobGraph { return j.graph }

// Config is the job's configuration, with defaults filled in.
func (j *Job) Config() Config { return j.cfg }

// Executor is what runs the job's attempts (LocalExecutor, or a job
// manager); nil for a job started with StartFunc.
func (j *Job) Executor() Executor { return j.exec }

// StartTime is when the job started.
func (j *Job) StartTime() time.Time { return j.started }

// Err is the job's outcome once Done is closed (nil: finished).
func (j *Job) Err() error {
	select {
	case <-j.done:
		return j.err
	default:
		return nil
	}
}

// State is the job's state now.
func (j *Job) State() JobState {
	select {
	case <-j.done:
		switch {
		case j.err == nil:
			return JobFinished
		case errors.Is(j.err, context.Canceled):
			return JobCanceled
		default:
			return JobFailed
		}
	default:
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	switch {
	case j.mu.attempt != nil:
		return JobRunning
	case j.mu.restarts > 0:
		return JobRestarting
	}
	return JobInitializing
}

// EndTime is when the job ended (zero while it runs).
func (j *Job) EndTime() time.Time {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.mu.ended
}

// Failures lists the job's failovers (the last 100), oldest first.
func (j *Job) Failures() []Failure {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]Failure(nil), j.mu.failures...)
}

// LastRestored is the checkpoint the current or last attempt restored
// (ok false: none, a fresh start).
func (j *Job) LastRestored() (r Restored, ok bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.mu.restored == nil {
		return Restored{}, false
	}
	return *j.mu.restored, true
}

// TaskMetrics samples the metrics of every subtask: live ones while an
// attempt runs, the last attempt's final figures between attempts and
// after the end. Counters start from zero with every attempt.
func (j *Job) TaskMetrics(now time.Time) []metrics.TaskSample {
	j.mu.Lock()
	src, last := j.mu.metricsSrc, j.mu.lastSamples
	j.mu.Unlock()
	if src != nil {
		return src(now)
	}
	return append([]metrics.TaskSample(nil), last...)
}

// CheckpointCounts counts the checkpoints (and savepoints) of the job
// since it started: triggered, completed, and failed (aborted); the
// difference is in progress. Restored counts the attempts that restored
// one.
type CheckpointCounts struct {
	Triggered, Completed, Failed, Restored int
}

// CheckpointCounts returns the job's checkpoint counts.
func (j *Job) CheckpointCounts() CheckpointCounts {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.mu.counts
}

func (j *Job) checkpointTriggered(s CheckpointStats) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.mu.counts.Triggered++
	if j.mu.pending == nil {
		j.mu.pending = map[checkpoint.ID]*CheckpointStats{}
	}
	s.Subtasks = map[checkpoint.TaskID]checkpoint.TaskSnapshot{}
	s.Acked = map[checkpoint.TaskID]time.Time{}
	j.mu.pending[s.ID] = &s
}

// checkpointAcked records an acknowledgement of a checkpoint in progress
// (without its state handles: only the figures).
func (j *Job) checkpointAcked(id checkpoint.ID, task checkpoint.TaskID, snap checkpoint.TaskSnapshot, at time.Time) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if p := j.mu.pending[id]; p != nil {
		snap.Operators = nil
		p.Subtasks[task] = snap
		p.Acked[task] = at
	}
}

// PendingCheckpoints returns the checkpoints in progress, oldest first,
// with the acknowledgements so far (their Subtasks hold the figures of
// each acknowledgement, not its state handles).
func (j *Job) PendingCheckpoints() []CheckpointStats {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]CheckpointStats, 0, len(j.mu.pending))
	for _, p := range j.mu.pending {
		c := *p
		c.Subtasks = maps.Clone(p.Subtasks)
		c.Acked = maps.Clone(p.Acked)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b CheckpointStats) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func newFailure(err error) Failure {
	root := err
	for {
		next := errors.Unwrap(root)
		if next == nil {
			break
		}
		root = next
	}
	return Failure{Time: time.Now(), Err: err.Error(), RootCause: root.Error()}
}

func (j *Job) recordFailure(f Failure) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.mu.failures = append(j.mu.failures, f)
	if len(j.mu.failures) > maxFailureHistory {
		j.mu.failures = append(j.mu.failures[:0:0], j.mu.failures[len(j.mu.failures)-maxFailureHistory:]...)
	}
}

func (j *Job) recordRestored(rp *RestorePoint) {
	if rp == nil {
		return
	}
	r := &Restored{ID: rp.Metadata.CheckpointID, Kind: rp.Metadata.Kind, RestoredAt: time.Now()}
	if rp.Storage != nil {
		r.Location = storage.Location(rp.Storage, rp.Metadata.CheckpointID)
	}
	j.mu.Lock()
	j.mu.restored = r
	j.mu.counts.Restored++
	j.mu.Unlock()
}

// SetMetricsSource makes sample the source of the job's task metrics
// while the attempt runs: the local executor reads its deployment, a job
// manager what its task managers reported. When the attempt ends, its last
// sample is kept.
func (a *Attempt) SetMetricsSource(sample func(now time.Time) []metrics.TaskSample) {
	a.job.mu.Lock()
	a.job.mu.metricsSrc = sample
	a.job.mu.Unlock()
}

// freezeMetrics keeps the final sample of an attempt that ended.
func (a *Attempt) freezeMetrics() {
	j := a.job
	j.mu.Lock()
	src := j.mu.metricsSrc
	j.mu.metricsSrc = nil
	j.mu.Unlock()
	if src == nil {
		return
	}
	last := src(time.Now())
	j.mu.Lock()
	j.mu.lastSamples = last
	j.mu.Unlock()
}

// Sample reads the metrics of the subtasks deployed here.
func (d *Deployment) Sample(now time.Time) []metrics.TaskSample {
	out := make([]metrics.TaskSample, 0, len(d.tasks))
	for _, t := range d.tasks {
		s := t.metrics.Sample(now)
		s.Vertex, s.Subtask = t.ID.Vertex, t.ID.Subtask
		for _, c := range d.bytesIn[t.ID] {
			s.BytesIn += c.Bytes()
		}
		for _, c := range d.bytesOut[t.ID] {
			s.BytesOut += c.Bytes()
		}
		out = append(out, s)
	}
	return out
}

func (d *Deployment) countBytes(m map[checkpoint.TaskID][]ChannelBytes, id checkpoint.TaskID, c any) {
	if b, ok := c.(ChannelBytes); ok {
		m[id] = append(m[id], b)
	}
}

// BeforeEnd registers f to run once the job's outcome is known, before
// Done is closed and Wait returns (a REST server lets a client read the
// result of a stop first). f must return soon.
func (j *Job) BeforeEnd(f func()) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.mu.endHooks = append(j.mu.endHooks, f)
}

func (j *Job) runEndHooks() {
	j.mu.Lock()
	hooks := j.mu.endHooks
	j.mu.Unlock()
	for _, f := range hooks {
		f()
	}
}

// Outcome is the job's error once it ended, available to BeforeEnd
// hooks (Err waits for Done).
func (j *Job) Outcome() error { return j.err }

// StopSavepoint is the savepoint a stop-with-savepoint ended the job with
// (0: none so far).
func (j *Job) StopSavepoint() checkpoint.ID {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.mu.stopSP
}
