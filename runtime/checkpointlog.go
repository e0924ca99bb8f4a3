package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// SubtaskCheckpointLog is one subtask's part of a completed checkpoint, as
// logged in the "subtasks" attribute of the "checkpoint completed" record.
// Durations are in milliseconds.
type SubtaskCheckpointLog struct {
	// Task names the subtask as tasks are named: "count (2/4)"; Vertex
	// and Subtask (from 0) are its id.
	Task    string `json:"task"`
	Vertex  int    `json:"vertex"`
	Subtask int    `json:"subtask"`
	// AckMs is when its acknowledgement reached the coordinator, from
	// the trigger.
	AckMs        float64 `json:"ackMs"`
	StartDelayMs float64 `json:"startDelayMs"`
	AlignmentMs  float64 `json:"alignmentMs"`
	SyncMs       float64 `json:"syncMs"`
	AsyncMs      float64 `json:"asyncMs"`
	StateSize    int64   `json:"stateSize"`
}

// checkpointSubtasks is the per-subtask breakdown of a checkpoint: a JSON
// array in a JSON log, a compact list (at most textSubtasks entries, the
// slowest acknowledgements first) in a text log.
type checkpointSubtasks []SubtaskCheckpointLog

// textSubtasks bounds the subtasks of a text log line.
const textSubtasks = 8

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// newCheckpointSubtasks is the breakdown of s, ordered by task.
func newCheckpointSubtasks(g *JobGraph, s *CheckpointStats) checkpointSubtasks {
	vertices := map[int]*Vertex{}
	for _, v := range g.Vertices {
		vertices[v.ID] = v
	}
	out := make(checkpointSubtasks, 0, len(s.Subtasks))
	for id, st := range s.Subtasks {
		task := fmt.Sprint(id)
		if v := vertices[id.Vertex]; v != nil {
			task = fmt.Sprintf("%s (%d/%d)", v.Name, id.Subtask+1, v.Parallelism)
		}
		l := SubtaskCheckpointLog{Task: task, Vertex: id.Vertex, Subtask: id.Subtask,
			StartDelayMs: ms(st.StartDelay), AlignmentMs: ms(st.AlignmentDuration), SyncMs: ms(st.SyncDuration),
			AsyncMs: ms(st.AsyncDuration), StateSize: st.StateSize}
		if at, ok := s.Acked[id]; ok {
			l.AckMs = ms(at.Sub(s.TriggeredAt))
		}
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b SubtaskCheckpointLog) int {
		if a.Vertex != b.Vertex {
			return a.Vertex - b.Vertex
		}
		return a.Subtask - b.Subtask
	})
	return out
}

// MarshalJSON writes the whole breakdown as an array.
func (c checkpointSubtasks) MarshalJSON() ([]byte, error) {
	return json.Marshal([]SubtaskCheckpointLog(c))
}

// MarshalText is the text log's form: the slowest acknowledgements.
func (c checkpointSubtasks) MarshalText() ([]byte, error) {
	byAck := slices.Clone(c)
	slices.SortStableFunc(byAck, func(a, b SubtaskCheckpointLog) int {
		switch {
		case a.AckMs > b.AckMs:
			return -1
		case a.AckMs < b.AckMs:
			return 1
		}
		return 0
	})
	var b strings.Builder
	for i, l := range byAck {
		if i == textSubtasks {
			fmt.Fprintf(&b, " ... %d more (--log-format json has all)", len(byAck)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s ack=%gms align=%gms sync=%gms async=%gms size=%d", l.Task, l.AckMs, l.AlignmentMs, l.SyncMs, l.AsyncMs, l.StateSize)
	}
	return []byte(b.String()), nil
}

// logCompleted writes the one record of a completed checkpoint: its
// figures and the per-subtask breakdown.
func logCompleted(log *slog.Logger, g *JobGraph, s *CheckpointStats, committed bool) {
	if !log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	log.Info("checkpoint completed", "id", s.ID, "kind", s.Kind.String(), "duration", s.FinishedAt.Sub(s.TriggeredAt),
		"size", s.StateSize, "maxAlignment", s.MaxAlignment, "committed", committed,
		"subtasks", newCheckpointSubtasks(g, s))
}
