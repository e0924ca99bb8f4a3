// Package client is a Go client of weir's REST API (package rest), and
// the JSON shapes the API returns. It imports nothing of weir, so a tool
// can talk to a job without linking the runtime.
package client

// The shapes follow Flink's REST API where Flink has the same thing:
// the same paths and field names; times are Unix milliseconds and
// durations milliseconds.

// Overview is GET /v1/overview.
type Overview struct {
	Version        string `json:"weir-version"`
	TaskManagers   int    `json:"taskmanagers"`
	SlotsTotal     int    `json:"slots-total"`
	JobsRunning    int    `json:"jobs-running"`
	JobsFinished   int    `json:"jobs-finished"`
	JobsCancelled  int    `json:"jobs-cancelled"`
	JobsFailed     int    `json:"jobs-failed"`
	JobsRestarting int    `json:"jobs-restarting"`
}

// JobList is GET /v1/jobs.
type JobList struct {
	Jobs []JobSummary `json:"jobs"`
}

// JobSummary is a job in JobList.
type JobSummary struct {
	ID        string `json:"jid"`
	Name      string `json:"name"`
	State     string `json:"state"`
	StartTime int64  `json:"start-time"`
	EndTime   int64  `json:"end-time"`
	Duration  int64  `json:"duration"`
	// Tasks counts the subtasks by state.
	Tasks map[string]int `json:"tasks"`
}

// Job is GET /v1/jobs/{id}.
type Job struct {
	ID        string `json:"jid"`
	Name      string `json:"name"`
	State     string `json:"state"`
	StartTime int64  `json:"start-time"`
	EndTime   int64  `json:"end-time"`
	Duration  int64  `json:"duration"`
	Now       int64  `json:"now"`
	Restarts  int    `json:"restarts"`
	// MaxParallelism is the number of key groups.
	MaxParallelism int      `json:"maxParallelism"`
	EventTime      bool     `json:"eventTime"`
	Vertices       []Vertex `json:"vertices"`
	// Edges join the vertices (Flink's plan.nodes[].inputs).
	Edges []Edge `json:"edges"`
	// StatusCounts counts the subtasks by state.
	StatusCounts map[string]int `json:"status-counts"`
	// Error is why the job failed, when it did.
	Error string `json:"error,omitempty"`
}

// Edge is a partitioned connection between two vertices.
type Edge struct {
	Source string `json:"source"`
	Target string `json:"target"`
	// ShipStrategy is FORWARD, HASH, REBALANCE or BROADCAST.
	ShipStrategy string `json:"ship_strategy"`
}

// Vertex is a chain of operators in Job.
type Vertex struct {
	ID          string         `json:"id"`
	Name        string         `json:"name"`
	Parallelism int            `json:"parallelism"`
	Operators   []Operator     `json:"operators"`
	Status      string         `json:"status"`
	Tasks       map[string]int `json:"tasks"`
	Metrics     VertexMetrics  `json:"metrics"`
}

// Operator is one operator of a chain.
type Operator struct {
	UID  string `json:"uid"`
	Name string `json:"name"`
}

// VertexMetrics sums the metrics of a vertex's subtasks; the ratios are
// the largest over its subtasks over their lifetime (0..1).
type VertexMetrics struct {
	ReadRecords       int64   `json:"read-records"`
	WriteRecords      int64   `json:"write-records"`
	ReadBytes         int64   `json:"read-bytes"`
	WriteBytes        int64   `json:"write-bytes"`
	BusyRatio         float64 `json:"busy-ratio"`
	BackPressureRatio float64 `json:"backpressure-ratio"`
	// InputWatermark is the lowest input watermark of the subtasks
	// (absent without event time).
	InputWatermark *int64 `json:"input-watermark,omitempty"`
}

// VertexDetail is GET /v1/jobs/{id}/vertices/{vid}.
type VertexDetail struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Parallelism int       `json:"parallelism"`
	Now         int64     `json:"now"`
	Subtasks    []Subtask `json:"subtasks"`
}

// Subtask is one subtask of a vertex with its metrics.
type Subtask struct {
	Index     int            `json:"subtask"`
	Status    string         `json:"status"`
	Host      string         `json:"host"`
	StartTime int64          `json:"start-time"`
	EndTime   int64          `json:"end-time"`
	Duration  int64          `json:"duration"`
	Metrics   SubtaskMetrics `json:"metrics"`
}

// SubtaskMetrics are a subtask's counters since its attempt started.
type SubtaskMetrics struct {
	ReadRecords  int64 `json:"read-records"`
	WriteRecords int64 `json:"write-records"`
	ReadBytes    int64 `json:"read-bytes"`
	WriteBytes   int64 `json:"write-bytes"`
	// BusyTime, IdleTime and BackPressuredTime split the run time, in
	// milliseconds.
	BusyTime          int64  `json:"accumulated-busy-time"`
	IdleTime          int64  `json:"accumulated-idle-time"`
	BackPressuredTime int64  `json:"accumulated-backpressured-time"`
	InputWatermark    *int64 `json:"input-watermark,omitempty"`
	OutputWatermark   *int64 `json:"output-watermark,omitempty"`
}

// Checkpoints is GET /v1/jobs/{id}/checkpoints.
type Checkpoints struct {
	Counts  CheckpointCounts  `json:"counts"`
	Summary CheckpointSummary `json:"summary"`
	Latest  LatestCheckpoints `json:"latest"`
	// History holds the newest finished checkpoints, newest first.
	History []Checkpoint `json:"history"`
}

// CheckpointCounts counts the checkpoints of the job since it started.
type CheckpointCounts struct {
	Restored   int `json:"restored"`
	Total      int `json:"total"`
	InProgress int `json:"in_progress"`
	Completed  int `json:"completed"`
	Failed     int `json:"failed"`
}

// CheckpointSummary summarises the completed checkpoints kept in memory
// (the last 1000).
type CheckpointSummary struct {
	StateSize        Stats `json:"state_size"`
	EndToEndDuration Stats `json:"end_to_end_duration"`
	Alignment        Stats `json:"alignment_duration"`
	StartDelay       Stats `json:"start_delay"`
}

// Stats are the statistics of a figure over checkpoints.
type Stats struct {
	Min int64 `json:"min"`
	Max int64 `json:"max"`
	Avg int64 `json:"avg"`
	P50 int64 `json:"p50"`
	P90 int64 `json:"p90"`
	P99 int64 `json:"p99"`
}

// LatestCheckpoints are the newest checkpoints of each kind.
type LatestCheckpoints struct {
	Completed *Checkpoint         `json:"completed"`
	Savepoint *Checkpoint         `json:"savepoint"`
	Failed    *Checkpoint         `json:"failed"`
	Restored  *RestoredCheckpoint `json:"restored"`
}

// RestoredCheckpoint is the checkpoint the job's current attempt restored.
type RestoredCheckpoint struct {
	ID           int64  `json:"id"`
	RestoreTime  int64  `json:"restore_timestamp"`
	IsSavepoint  bool   `json:"is_savepoint"`
	ExternalPath string `json:"external_path"`
}

// Checkpoint is a finished checkpoint (history, latest, details).
type Checkpoint struct {
	ID               int64  `json:"id"`
	Status           string `json:"status"` // COMPLETED or FAILED
	IsSavepoint      bool   `json:"is_savepoint"`
	CheckpointType   string `json:"checkpoint_type"` // CHECKPOINT or SAVEPOINT
	TriggerTimestamp int64  `json:"trigger_timestamp"`
	LatestAck        int64  `json:"latest_ack_timestamp"`
	StateSize        int64  `json:"state_size"`
	EndToEndDuration int64  `json:"end_to_end_duration"`
	AlignmentMax     int64  `json:"alignment_duration"`
	StartDelayMax    int64  `json:"start_delay"`
	SyncMax          int64  `json:"sync_duration"`
	NumSubtasks      int    `json:"num_subtasks"`
	NumAcknowledged  int    `json:"num_acknowledged_subtasks"`
	ExternalPath     string `json:"external_path,omitempty"`
	FailureMessage   string `json:"failure_message,omitempty"`
	// Tasks are per vertex, by vertex id (details only).
	Tasks map[string]CheckpointVertex `json:"tasks,omitempty"`
}

// CheckpointVertex is a vertex's part of a checkpoint.
type CheckpointVertex struct {
	ID               string `json:"id"`
	Status           string `json:"status"`
	LatestAck        int64  `json:"latest_ack_timestamp"`
	StateSize        int64  `json:"state_size"`
	EndToEndDuration int64  `json:"end_to_end_duration"`
	NumSubtasks      int    `json:"num_subtasks"`
	NumAcknowledged  int    `json:"num_acknowledged_subtasks"`
}

// CheckpointSubtasks is GET
// /v1/jobs/{id}/checkpoints/details/{cid}/subtasks/{vid}.
type CheckpointSubtasks struct {
	CheckpointVertex
	Subtasks []CheckpointSubtask `json:"subtasks"`
}

// CheckpointSubtask is one subtask's part of a checkpoint: the barrier
// timeline. StartDelay runs from the trigger to the first barrier at the
// subtask, Alignment from the first to the last barrier, Sync is the
// synchronous snapshot, Async the upload; the ack reached the coordinator
// at AckTimestamp.
type CheckpointSubtask struct {
	Index            int    `json:"index"`
	Status           string `json:"status"` // completed or pending_or_failed
	AckTimestamp     int64  `json:"ack_timestamp"`
	EndToEndDuration int64  `json:"end_to_end_duration"`
	StateSize        int64  `json:"state_size"`
	StartDelay       int64  `json:"start_delay"`
	Alignment        struct {
		Duration int64 `json:"duration"`
	} `json:"alignment"`
	Checkpoint struct {
		Sync  int64 `json:"sync"`
		Async int64 `json:"async"`
	} `json:"checkpoint"`
}

// CheckpointConfig is GET /v1/jobs/{id}/checkpoints/config.
type CheckpointConfig struct {
	Mode              string `json:"mode"` // exactly_once, at_least_once or disabled
	Interval          int64  `json:"interval"`
	Timeout           int64  `json:"timeout"`
	MinPause          int64  `json:"min_pause"`
	MaxConcurrent     int    `json:"max_concurrent"`
	TolerableFailures int    `json:"tolerable_failed_checkpoints"`
	Retained          int    `json:"retained"`
	Externalization   struct {
		Enabled              bool `json:"enabled"`
		DeleteOnCancellation bool `json:"delete_on_cancellation"`
	} `json:"externalization"`
	CheckpointStorage string `json:"checkpoint_storage"`
}

// Exceptions is GET /v1/jobs/{id}/exceptions.
type Exceptions struct {
	History struct {
		Entries   []Exception `json:"entries"`
		Truncated bool        `json:"truncated"`
	} `json:"exceptionHistory"`
}

// Exception is one failover (or the failure that ended the job), newest
// first in Exceptions.
type Exception struct {
	Name      string `json:"exceptionName"`
	Timestamp int64  `json:"timestamp"`
	// RootCause is the innermost error of the chain.
	RootCause string `json:"rootCause"`
	Restarted bool   `json:"restarted"`
	// RestoredFrom is the checkpoint the next attempt restored (0: none).
	RestoredFrom int64 `json:"restoredFrom"`
}

// TaskManagers is GET /v1/taskmanagers.
type TaskManagers struct {
	TaskManagers []TaskManager `json:"taskmanagers"`
}

// TaskManager is a process running subtasks.
type TaskManager struct {
	ID                     string `json:"id"`
	DataPort               string `json:"path"`
	Slots                  int    `json:"slotsNumber"`
	TimeSinceLastHeartbeat int64  `json:"timeSinceLastHeartbeat"`
}

// TriggerResponse answers an asynchronous action (savepoint, stop,
// checkpoint): its status is at the path Flink uses, with RequestID.
type TriggerResponse struct {
	RequestID string `json:"request-id"`
}

// OperationStatus is the status of an asynchronous action: GET
// /v1/jobs/{id}/savepoints/{rid} (savepoints and stops) and
// /v1/jobs/{id}/checkpoints/{rid}.
type OperationStatus struct {
	Status struct {
		ID string `json:"id"` // IN_PROGRESS or COMPLETED
	} `json:"status"`
	Operation *Operation `json:"operation,omitempty"`
}

// Operation is the result of a completed action: a location and a
// checkpoint id, or why it failed.
type Operation struct {
	Location     string `json:"location,omitempty"`
	CheckpointID int64  `json:"checkpointId,omitempty"`
	FailureCause *struct {
		Message string `json:"message"`
	} `json:"failure-cause,omitempty"`
}

// SavepointRequest is the body of POST /v1/jobs/{id}/savepoints and
// /v1/jobs/{id}/stop.
type SavepointRequest struct {
	// TargetDirectory must be empty or the job's checkpoint storage:
	// savepoints are written there.
	TargetDirectory string `json:"target-directory,omitempty"`
	// CancelJob (savepoints only) cancels the job once the savepoint
	// completed.
	CancelJob bool `json:"cancel-job,omitempty"`
}

// Error is the body of every error response.
type Error struct {
	Errors []string `json:"errors"`
}
