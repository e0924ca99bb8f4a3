package weir_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/checkpoint"
)

// goroutineID is the id of the calling goroutine (from its stack header),
// to check that callbacks run on the subtask's own goroutine.
func goroutineID() string {
	b := make([]byte, 64)
	return strings.Fields(string(b[:runtime.Stack(b, false)]))[1]
}

// gatedSource emits its records, then nothing until release is closed,
// then ends: what runs meanwhile runs while no record arrives.
type gatedSource struct {
	records []int
	release chan struct{}
}

func (s *gatedSource) CreateReader(weir.SourceContext) (weir.SourceReader[int], error) {
	return &gatedReader{s: s}, nil
}

type gatedReader struct {
	s    *gatedSource
	sent bool
}

func (r *gatedReader) Read(buf []int) ([]int, weir.ReadStatus, error) {
	if !r.sent {
		r.sent = true
		return append(buf, r.s.records...), weir.MoreAvailable, nil
	}
	select {
	case <-r.s.release:
		return buf, weir.EndOfInput, nil
	default:
		return buf, weir.NothingAvailable, nil
	}
}

func (r *gatedReader) Available() <-chan struct{}               { return r.s.release }
func (r *gatedReader) Snapshot(checkpoint.ID) ([][]byte, error) { return nil, nil }
func (r *gatedReader) Close() error                             { return nil }

// waitFor waits until cond holds (checked whenever poke signals), failing
// if the job ends first or after a generous timeout.
func waitFor(t *testing.T, what string, poke <-chan struct{}, jobErr <-chan error, cond func() bool) {
	t.Helper()
	timeout := time.After(2 * time.Minute)
	for !cond() {
		select {
		case <-poke:
		case err := <-jobErr:
			t.Fatalf("the job ended (%v) before %s", err, what)
		case <-timeout:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// flushingSink buffers records in its writer and flushes them on a
// processing-time callback every 2 ms.
type flushingSink struct {
	poke chan struct{}
	mu   struct {
		sync.Mutex
		flushed    []int
		goroutines map[string]bool
		afterClose int
	}
}

func (s *flushingSink) seen() {
	s.mu.goroutines[goroutineID()] = true
}

func (s *flushingSink) CreateWriter(ctx weir.SinkContext) (weir.SinkWriter[int], error) {
	w := &flushingWriter{s: s, pt: ctx.ProcessingTime}
	w.schedule()
	return w, nil
}

type flushingWriter struct {
	s      *flushingSink
	pt     weir.ProcessingTimeService
	buf    []int
	closed bool
}

func (w *flushingWriter) schedule() { w.pt.Schedule(w.pt.Now().Add(2*time.Millisecond), w.flush) }

func (w *flushingWriter) flush() {
	w.s.mu.Lock()
	w.s.seen()
	if w.closed {
		w.s.mu.afterClose++
	}
	w.s.mu.flushed = append(w.s.mu.flushed, w.buf...)
	w.s.mu.Unlock()
	if len(w.buf) > 0 {
		select {
		case w.s.poke <- struct{}{}:
		default:
		}
	}
	w.buf = w.buf[:0]
	w.schedule()
}

func (w *flushingWriter) Write(r int) error {
	w.s.mu.Lock()
	w.s.seen()
	w.s.mu.Unlock()
	w.buf = append(w.buf, r)
	return nil
}

func (w *flushingWriter) Close() error {
	w.closed = true
	return nil
}

// TestSinkWriterFlushesOnProcessingTime: a buffering writer's callback
// flushes the records while none arrives, on the goroutine that runs
// Write (the subtask's mailbox), and never after Close.
func TestSinkWriterFlushesOnProcessingTime(t *testing.T) {
	src := &gatedSource{records: []int{1, 2, 3}, release: make(chan struct{})}
	sink := &flushingSink{poke: make(chan struct{}, 1)}
	sink.mu.goroutines = map[string]bool{}
	env := weir.NewEnvironment()
	weir.FromSource[int](env, src, "gated").SinkTo(sink).UID("flushing")
	jobErr := make(chan error, 1)
	go func() { jobErr <- env.Execute(context.Background(), "flush-on-time") }()
	waitFor(t, "the records to be flushed", sink.poke, jobErr, func() bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		return len(sink.mu.flushed) == 3
	})
	close(src.release)
	if err := <-jobErr; err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if !slices.Equal(sink.mu.flushed, []int{1, 2, 3}) {
		t.Errorf("flushed %v, want [1 2 3]", sink.mu.flushed)
	}
	if len(sink.mu.goroutines) != 1 {
		t.Errorf("Write and the flush callbacks ran on %d goroutines, want 1 (the subtask's)", len(sink.mu.goroutines))
	}
	if sink.mu.afterClose > 0 {
		t.Errorf("%d flush callbacks ran after Close", sink.mu.afterClose)
	}
}

// procTimerProbe is what a timerFunction saw, shared by its subtask copies.
type procTimerProbe struct {
	poke chan struct{}
	mu   struct {
		sync.Mutex
		goroutines      map[string]bool
		ticks           int
		dupFires        int
		stampedInTimer  int
		timersAfterDone int
		finished        bool
		finishWM        int64
	}
}

// timerFunction emits its records; Open starts a timer that re-registers
// itself every millisecond (ticks; the first five emit), the first record
// registers one timer twice.
type timerFunction struct {
	p      *procTimerProbe
	dupTS  int64
	dupSet bool
}

func (f *timerFunction) Open(ctx *weir.ProcessContext) error {
	ctx.RegisterProcessingTimeTimer(ctx.CurrentProcessingTime() + 1)
	return nil
}

func (f *timerFunction) ProcessElement(ctx *weir.ProcessContext, in int, out weir.Collector[string]) error {
	f.p.mu.Lock()
	f.p.mu.goroutines[goroutineID()] = true
	f.p.mu.Unlock()
	if !f.dupSet {
		f.dupSet = true
		f.dupTS = ctx.CurrentProcessingTime() + 5
		ctx.RegisterProcessingTimeTimer(f.dupTS)
		ctx.RegisterProcessingTimeTimer(f.dupTS)
	}
	ts, _ := ctx.Timestamp()
	out.Collect(fmt.Sprintf("record %d at %d", in, ts))
	return nil
}

func (f *timerFunction) OnTimer(ctx *weir.ProcessContext, ts int64, out weir.Collector[string]) error {
	f.p.mu.Lock()
	defer f.p.mu.Unlock()
	f.p.mu.goroutines[goroutineID()] = true
	if f.p.mu.finished {
		f.p.mu.timersAfterDone++
	}
	if _, ok := ctx.Timestamp(); ok {
		f.p.mu.stampedInTimer++
	}
	if f.dupSet && ts == f.dupTS {
		f.p.mu.dupFires++ // (a tick at the same millisecond is the same timer)
	}
	f.p.mu.ticks++
	if f.p.mu.ticks <= 5 {
		out.Collect(fmt.Sprintf("tick %d", f.p.mu.ticks))
	}
	// Tick on every millisecond until the end: none may fire after Finish.
	ctx.RegisterProcessingTimeTimer(ctx.CurrentProcessingTime() + 1)
	select {
	case f.p.poke <- struct{}{}:
	default:
	}
	return nil
}

func (f *timerFunction) Finish(ctx *weir.ProcessContext, out weir.Collector[string]) error {
	f.p.mu.Lock()
	f.p.mu.finished = true
	f.p.mu.finishWM = ctx.CurrentWatermark()
	f.p.mu.Unlock()
	out.Collect("finish")
	return nil
}

// TestProcessStreamTimers: a non-keyed process function's timers fire on
// the subtask's goroutine, also while no record arrives, deduplicated by
// timestamp, without a record timestamp; Finish runs after the maximum
// watermark and before the final checkpoint (its record is committed by a
// sink that commits only on checkpoints), and no timer fires after it.
func TestProcessStreamTimers(t *testing.T) {
	src := &gatedSource{records: []int{1, 2, 3}, release: make(chan struct{})}
	probe := &procTimerProbe{poke: make(chan struct{}, 1)}
	probe.mu.goroutines = map[string]bool{}
	sink := weir.NewCollectSink[string]()
	env := weir.NewEnvironment(weir.Checkpointing(10*time.Millisecond, weir.ExactlyOnce), weir.CheckpointStorage(t.TempDir()))
	ws := weir.ForMonotonousTimestamps[int]().WithTimestampAssigner(func(i int, _ int64) int64 { return int64(i) * 1000 })
	in := weir.FromSourceWithWatermarks[int](env, src, ws, "gated").UID("gated")
	weir.ProcessStream(in, weir.ProcessFunction[int, string](&timerFunction{p: probe})).UID("timers").SinkTo(sink).UID("collect")
	jobErr := make(chan error, 1)
	go func() { jobErr <- env.Execute(context.Background(), "process-timers") }()
	waitFor(t, "five ticks while no record arrives", probe.poke, jobErr, func() bool {
		probe.mu.Lock()
		defer probe.mu.Unlock()
		return probe.mu.ticks >= 5 && probe.mu.dupFires > 0
	})
	close(src.release)
	if err := <-jobErr; err != nil {
		t.Fatal(err)
	}
	probe.mu.Lock()
	defer probe.mu.Unlock()
	got := sink.Committed()
	slices.Sort(got)
	want := []string{"finish", "record 1 at 1000", "record 2 at 2000", "record 3 at 3000", "tick 1", "tick 2", "tick 3", "tick 4", "tick 5"}
	if !slices.Equal(got, want) {
		t.Errorf("committed %q, want %q", got, want)
	}
	if len(probe.mu.goroutines) != 1 {
		t.Errorf("records and timers ran on %d goroutines, want 1 (the subtask's)", len(probe.mu.goroutines))
	}
	if probe.mu.dupFires != 1 {
		t.Errorf("the timer registered twice fired %d times, want 1", probe.mu.dupFires)
	}
	if probe.mu.stampedInTimer > 0 {
		t.Errorf("OnTimer saw a record timestamp %d times", probe.mu.stampedInTimer)
	}
	if !probe.mu.finished || probe.mu.finishWM != weir.MaxWatermark {
		t.Errorf("Finish ran: %v, with watermark %d, want MaxWatermark", probe.mu.finished, probe.mu.finishWM)
	}
	if probe.mu.timersAfterDone > 0 {
		t.Errorf("%d timers fired after Finish", probe.mu.timersAfterDone)
	}
}

// noTimerFunction registers a timer without implementing OnTimer.
type noTimerFunction struct{}

func (noTimerFunction) ProcessElement(ctx *weir.ProcessContext, in int, out weir.Collector[int]) error {
	ctx.RegisterProcessingTimeTimer(ctx.CurrentProcessingTime())
	out.Collect(in)
	return nil
}

// TestProcessStreamTimerWithoutOnTimer: the job fails with an error that
// names the operator and what is missing.
func TestProcessStreamTimerWithoutOnTimer(t *testing.T) {
	env := weir.NewEnvironment()
	weir.ProcessStream(weir.FromSlice(env, []int{1}), weir.ProcessFunction[int, int](noTimerFunction{})).UID("no-timer").SinkTo(weir.DiscardSink[int]{})
	err := env.Execute(context.Background(), "no-on-timer")
	if err == nil || !strings.Contains(err.Error(), "does not implement OnTimer") || !strings.Contains(err.Error(), "no-timer") {
		t.Fatalf("got %v, want an error naming the operator and the missing OnTimer", err)
	}
}
