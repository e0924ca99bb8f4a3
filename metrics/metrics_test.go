package metrics

import (
	"encoding/json"
	"testing"
	"time"
)

func TestSampleSplitsTime(t *testing.T) {
	m := NewTask()
	t0 := time.Unix(1000, 0)
	if s := m.Sample(t0); s.State != Deploying || s.BusyNanos != 0 || s.InputWatermark != NoWatermark {
		t.Fatalf("before start: %+v", s)
	}
	m.Start(t0)
	m.IdleStart(t0.Add(1 * time.Second))
	m.IdleEnd(t0.Add(3 * time.Second))
	m.BlockStart(t0.Add(4 * time.Second))
	m.BlockEnd(t0.Add(5 * time.Second))
	m.RecordsIn.Add(10)
	m.RecordsOut.Add(7)
	s := m.Sample(t0.Add(10 * time.Second))
	if s.State != Running || s.IdleNanos != int64(2*time.Second) || s.BackPressuredNanos != int64(time.Second) || s.BusyNanos != int64(7*time.Second) {
		t.Fatalf("got %+v", s)
	}
	if s.RecordsIn != 10 || s.RecordsOut != 7 {
		t.Fatalf("records: %+v", s)
	}
	// A wait in progress counts up to now.
	m.IdleStart(t0.Add(10 * time.Second))
	s = m.Sample(t0.Add(14 * time.Second))
	if s.IdleNanos != int64(6*time.Second) || s.BusyNanos != int64(7*time.Second) {
		t.Fatalf("idle in progress: %+v", s)
	}
	m.BlockStart(t0.Add(14 * time.Second))
	m.End(t0.Add(20*time.Second), Finished)
	s = m.Sample(t0.Add(100 * time.Second))
	if s.State != Finished || !s.EndTime.Equal(t0.Add(20*time.Second)) {
		t.Fatalf("ended: %+v", s)
	}
	if s.IdleNanos+s.BackPressuredNanos+s.BusyNanos != int64(20*time.Second) {
		t.Fatalf("the split does not add up to the run time: %+v", s)
	}
}

func TestSampleJSON(t *testing.T) {
	m := NewTask()
	m.Start(time.Now())
	m.SetInputWatermark(42)
	m.End(time.Now(), Canceled)
	s := m.Sample(time.Now())
	s.Vertex, s.Subtask = 2, 1
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back TaskSample
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.State != Canceled || back.InputWatermark != 42 || back.Vertex != 2 || back.Subtask != 1 || !back.StartTime.Equal(s.StartTime) {
		t.Fatalf("round trip: %s -> %+v", b, back)
	}
}
