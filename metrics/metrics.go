// Package metrics holds the counters a subtask keeps about its own work
// (records and bytes in and out, idle and backpressured time, watermarks,
// its state) and the samples read from them.
//
// A Task is written by its subtask's goroutine, once per buffer of records
// or per wait, never per record, and read by any goroutine through Sample.
// The counters are typed atomics: a reader never sees a torn value, and a
// writer pays one uncontended atomic add per buffer.
package metrics

import (
	"math"
	"sync/atomic"
	"time"
)

// NoWatermark is the watermark of a subtask that has not seen one.
const NoWatermark = math.MinInt64

// State is the state of a subtask, in Flink's names.
type State int32

const (
	Deploying State = iota
	Running
	Finished
	Failed
	Canceled
)

func (s State) String() string {
	switch s {
	case Deploying:
		return "DEPLOYING"
	case Running:
		return "RUNNING"
	case Finished:
		return "FINISHED"
	case Failed:
		return "FAILED"
	case Canceled:
		return "CANCELED"
	}
	return "UNKNOWN"
}

// MarshalText implements encoding.TextMarshaler.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *State) UnmarshalText(b []byte) error {
	for c := Deploying; c <= Canceled; c++ {
		if c.String() == string(b) {
			*s = c
			return nil
		}
	}
	*s = Deploying
	return nil
}

// Task is the counters of one subtask. The zero value is not ready: use
// NewTask.
type Task struct {
	RecordsIn  atomic.Int64
	RecordsOut atomic.Int64
	// idle and backPressured hold finished periods, in nanoseconds;
	// idleSince and blockedSince the start (unix nanoseconds) of the one
	// in progress, 0 when there is none.
	idle          atomic.Int64
	backPressured atomic.Int64
	idleSince     atomic.Int64
	blockedSince  atomic.Int64
	inWM          atomic.Int64
	outWM         atomic.Int64
	state         atomic.Int32
	started       atomic.Int64 // unix nanoseconds; 0 before Start
	ended         atomic.Int64 // unix nanoseconds; 0 while running
}

// NewTask returns the counters of a subtask being deployed.
func NewTask() *Task {
	t := &Task{}
	t.inWM.Store(NoWatermark)
	t.outWM.Store(NoWatermark)
	return t
}

// Start marks the subtask running from now.
func (t *Task) Start(now time.Time) {
	t.started.Store(now.UnixNano())
	t.state.Store(int32(Running))
}

// End marks the subtask ended in state s.
func (t *Task) End(now time.Time, s State) {
	if t.ended.Load() == 0 {
		t.ended.Store(now.UnixNano())
	}
	t.state.Store(int32(s))
}

// IdleStart and IdleEnd bracket a wait for input (or mail).
func (t *Task) IdleStart(now time.Time) { t.idleSince.Store(now.UnixNano()) }

// IdleEnd ends the wait IdleStart began.
func (t *Task) IdleEnd(now time.Time) {
	if s := t.idleSince.Swap(0); s != 0 {
		t.idle.Add(now.UnixNano() - s)
	}
}

// BlockStart and BlockEnd bracket a send that may wait for credit; only
// the time it waited counts as backpressured.
func (t *Task) BlockStart(now time.Time) { t.blockedSince.Store(now.UnixNano()) }

// BlockEnd ends the send BlockStart began.
func (t *Task) BlockEnd(now time.Time) {
	if s := t.blockedSince.Swap(0); s != 0 {
		t.backPressured.Add(now.UnixNano() - s)
	}
}

// SetInputWatermark records the watermark of the subtask's inputs.
func (t *Task) SetInputWatermark(wm int64) { t.inWM.Store(wm) }

// SetOutputWatermark records the watermark the subtask sent downstream.
func (t *Task) SetOutputWatermark(wm int64) { t.outWM.Store(wm) }

// Sample reads the counters at now. Bytes are the caller's to fill (they
// live in the channels).
func (t *Task) Sample(now time.Time) TaskSample {
	s := TaskSample{
		State:           State(t.state.Load()),
		RecordsIn:       t.RecordsIn.Load(),
		RecordsOut:      t.RecordsOut.Load(),
		InputWatermark:  t.inWM.Load(),
		OutputWatermark: t.outWM.Load(),
	}
	start := t.started.Load()
	if start == 0 {
		return s
	}
	end := t.ended.Load()
	if end == 0 {
		end = now.UnixNano()
	}
	s.StartTime = time.Unix(0, start)
	if e := t.ended.Load(); e != 0 {
		s.EndTime = time.Unix(0, e)
	}
	idle, bp := t.idle.Load(), t.backPressured.Load()
	if since := t.idleSince.Load(); since != 0 && since < end {
		idle += end - since
	}
	if since := t.blockedSince.Load(); since != 0 && since < end {
		bp += end - since
	}
	total := max(end-start, 0)
	s.IdleNanos = min(idle, total)
	s.BackPressuredNanos = min(bp, total-s.IdleNanos)
	s.BusyNanos = total - s.IdleNanos - s.BackPressuredNanos
	return s
}

// TaskSample is what a subtask's counters read at one moment. It travels
// from task managers to the job manager as JSON.
type TaskSample struct {
	Vertex  int   `json:"vertex"`
	Subtask int   `json:"subtask"`
	State   State `json:"state"`
	// Host names the process running the subtask (a task manager).
	Host       string    `json:"host,omitempty"`
	StartTime  time.Time `json:"startTime,omitzero"`
	EndTime    time.Time `json:"endTime,omitzero"`
	RecordsIn  int64     `json:"recordsIn"`
	RecordsOut int64     `json:"recordsOut"`
	// BytesIn and BytesOut count the bytes of remote channels (between
	// processes); local channels move no bytes.
	BytesIn  int64 `json:"bytesIn"`
	BytesOut int64 `json:"bytesOut"`
	// BusyNanos, IdleNanos and BackPressuredNanos split the time since
	// the start: waiting for input, waiting for credit to send, and the
	// rest.
	BusyNanos          int64 `json:"busyNanos"`
	IdleNanos          int64 `json:"idleNanos"`
	BackPressuredNanos int64 `json:"backPressuredNanos"`
	// InputWatermark and OutputWatermark are NoWatermark until the
	// subtask saw or sent one (jobs with event time only).
	InputWatermark  int64 `json:"inputWatermark"`
	OutputWatermark int64 `json:"outputWatermark"`
}
