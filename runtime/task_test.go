package runtime

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/checkpoint/barrier"
	"github.com/weirstream/weir/checkpoint/coordinator"
)

// The task harness drives one Task through records, barriers,
// cancellation markers, aborts, end of input and mail, with a fake host
// and fake operators, inside a synctest bubble: time is fake (the buffer
// timeout passes when the test says so) and synctest.Wait returns when
// the task has nothing left to do, so every assertion is about a quiet
// task, never a sleep.

// fakeHost records what a task reports.
type fakeHost struct {
	mu       sync.Mutex
	acks     []checkpoint.ID
	declines []string // "id:reason"
	ended    int
	finished int
}

func (h *fakeHost) Ack(id checkpoint.ID, _ checkpoint.TaskID, _ checkpoint.TaskSnapshot) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.acks = append(h.acks, id)
}

func (h *fakeHost) Decline(id checkpoint.ID, _ checkpoint.TaskID, why coordinator.DeclineReason, _ error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.declines = append(h.declines, fmt.Sprintf("%d:%s", id, why))
}

func (h *fakeHost) SourceEnded(checkpoint.TaskID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ended++
}

func (h *fakeHost) TaskFinished(checkpoint.TaskID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.finished++
}

func (h *fakeHost) snapshot() (acks []checkpoint.ID, declines []string, ended, finished int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.acks), slices.Clone(h.declines), h.ended, h.finished
}

// noKeyed writes no keyed state (the fake operators have none).
type noKeyed struct{}

func (noKeyed) writeKeyed(checkpoint.ID, string, KeyedSnapshot) (checkpoint.KeyedStateHandle, error) {
	return checkpoint.KeyedStateHandle{}, errors.New("no keyed state here")
}

// recordingOp is an operator that records every call and every record; it
// sums the records it saw, and its snapshot is that sum.
type recordingOp struct {
	mu        sync.Mutex
	log       []string
	sum       int
	snapshots map[checkpoint.ID]int
	out       Collector[int]
	failSnap  error
}

func (o *recordingOp) add(s string) {
	o.mu.Lock()
	o.log = append(o.log, s)
	o.mu.Unlock()
}

func (o *recordingOp) Collect(r int) {
	o.mu.Lock()
	o.sum += r
	o.mu.Unlock()
	if o.out != nil {
		o.out.Collect(r)
	}
}
func (o *recordingOp) Open(*OperatorContext) error { o.add("open"); return nil }
func (o *recordingOp) SnapshotState(id checkpoint.ID) (OperatorSnapshot, error) {
	if o.failSnap != nil {
		return OperatorSnapshot{}, o.failSnap
	}
	o.mu.Lock()
	o.snapshots[id] = o.sum
	o.mu.Unlock()
	o.add(fmt.Sprintf("snapshot %d", id))
	return OperatorSnapshot{}, nil
}
func (o *recordingOp) NotifyCheckpointComplete(id checkpoint.ID) error {
	o.add(fmt.Sprintf("complete %d", id))
	return nil
}
func (o *recordingOp) NotifyCheckpointAborted(id checkpoint.ID) error {
	o.add(fmt.Sprintf("aborted %d", id))
	return nil
}
func (o *recordingOp) Finish() error    { o.add("finish"); return nil }
func (o *recordingOp) EndOfData() error { o.add("end-of-data"); return nil }
func (o *recordingOp) Close() error     { o.add("close"); return nil }

func (o *recordingOp) calls() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.log)
}

func (o *recordingOp) snapshotOf(id checkpoint.ID) (int, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	v, ok := o.snapshots[id]
	return v, ok
}

// sinkOutput collects what a task writes downstream: records and events.
type sinkOutput struct {
	mu      sync.Mutex
	records []int
	events  []string
	flushes int
}

func (s *sinkOutput) Collect(r int) {
	s.mu.Lock()
	s.records = append(s.records, r)
	s.mu.Unlock()
}
func (s *sinkOutput) Flush() {
	s.mu.Lock()
	s.flushes++
	s.mu.Unlock()
}
func (s *sinkOutput) EmitEvent(e Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, fmt.Sprintf("%s %d", e.Kind, e.Barrier.ID))
}
func (s *sinkOutput) Err() error { return nil }

func (s *sinkOutput) got() ([]int, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.records), slices.Clone(s.events)
}

// harness is one non-source task with k local input channels.
type harness struct {
	t      *testing.T
	task   *Task
	host   *fakeHost
	op     *recordingOp
	out    *sinkOutput
	chans  []*LocalChannel[int]
	ctx    context.Context
	cancel context.CancelFunc
	done   chan error
}

func newHarness(t *testing.T, mode checkpoint.Mode, k int) *harness {
	h := &harness{t: t, host: &fakeHost{}, out: &sinkOutput{}, done: make(chan error, 1)}
	h.op = &recordingOp{snapshots: map[checkpoint.ID]int{}, out: h.out}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	gate := NewInputGate(k)
	reader := &typedGateReader[int]{head: h.op, gate: gate}
	for i := range k {
		c := NewLocalChannel[int](gate, i, 4, 16)
		h.chans = append(h.chans, c)
		reader.channels = append(reader.channels, c)
	}
	h.task = &Task{ID: checkpoint.TaskID{Vertex: 1}, Name: "harness (1/1)", ctx: h.ctx, host: h.host, keyed: noKeyed{},
		chain: &Chain{Operators: []Operator{h.op}, Input: Collector[int](h.op)}, opInfo: []OperatorInfo{{UID: "op", Name: "op"}},
		outputs: []outputWriter{h.out}, mailbox: NewQueue[Mail](), gate: gate, reader: reader,
		handler: barrier.New(mode, k), ended: make([]bool, k), bufferTimeout: 5 * time.Millisecond,
		opCtx: []*OperatorContext{{OperatorName: "op"}}}
	go func() { h.done <- h.task.run() }()
	return h
}

func (h *harness) send(ch int, b Buffer[int]) {
	if err := h.chans[ch].Send(h.ctx, b); err != nil {
		h.t.Fatal(err)
	}
}
func (h *harness) records(ch int, rs ...int) { h.send(ch, Buffer[int]{Records: rs}) }
func (h *harness) barrier(ch int, id checkpoint.ID) {
	h.send(ch, Buffer[int]{Event: Event{Kind: EventBarrier, Barrier: checkpoint.Barrier{ID: id}}})
}
func (h *harness) cancelMarker(ch int, id checkpoint.ID) {
	h.send(ch, Buffer[int]{Event: Event{Kind: EventCancel, Barrier: checkpoint.Barrier{ID: id}}})
}
func (h *harness) eop(ch int) { h.send(ch, Buffer[int]{Event: Event{Kind: EventEndOfPartition}}) }
func (h *harness) eod(ch int) { h.send(ch, Buffer[int]{Event: Event{Kind: EventEndOfData}}) }

func (h *harness) sum() int {
	h.op.mu.Lock()
	defer h.op.mu.Unlock()
	return h.op.sum
}

// Aligned: a barrier blocks its channel; the snapshot holds exactly the
// records ahead of the barriers; the barrier goes downstream before any
// record behind it; the host gets the ack.
func TestTaskAlignedCheckpoint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, checkpoint.ExactlyOnce, 2)
		h.records(0, 1, 2)
		h.barrier(0, 1)
		h.records(0, 100) // behind the barrier: must wait
		h.records(1, 10)
		synctest.Wait()
		if got := h.sum(); got != 13 {
			t.Fatalf("before the second barrier the task processed %d, want 13 (the channel behind the barrier is blocked)", got)
		}
		h.barrier(1, 1)
		synctest.Wait()
		if snap, ok := h.op.snapshotOf(1); !ok || snap != 13 {
			t.Fatalf("snapshot of 1: %d %v, want 13", snap, ok)
		}
		if got := h.sum(); got != 113 {
			t.Fatalf("after the alignment the task processed %d, want 113", got)
		}
		records, events := h.out.got()
		if i := slices.Index(events, "barrier 1"); i < 0 {
			t.Fatalf("barrier not forwarded: %v", events)
		}
		if len(records) != 4 {
			t.Fatalf("records downstream %v", records)
		}
		if acks, _, _, _ := h.host.snapshot(); !slices.Equal(acks, []checkpoint.ID{1}) {
			t.Fatalf("acks %v", acks)
		}
		h.cancel()
		<-h.done
	})
}

// The coordinator's abort during an alignment unblocks the channel and
// tells the operators; nothing is declined (the coordinator knows).
func TestTaskAbortDuringAlignment(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, checkpoint.ExactlyOnce, 2)
		h.barrier(0, 1)
		h.records(0, 5)
		synctest.Wait()
		if h.sum() != 0 {
			t.Fatal("record behind the barrier processed during the alignment")
		}
		h.task.mailbox.Put(Mail{Kind: mailNotifyAborted, Barrier: checkpoint.Barrier{ID: 1}})
		synctest.Wait()
		if h.sum() != 5 {
			t.Fatalf("after the abort the channel stays blocked: sum %d", h.sum())
		}
		if !slices.Contains(h.op.calls(), "aborted 1") {
			t.Fatalf("operator not told: %v", h.op.calls())
		}
		if _, declines, _, _ := h.host.snapshot(); len(declines) != 0 {
			t.Fatalf("declined %v", declines)
		}
		h.cancel()
		<-h.done
	})
}

// A newer barrier during an alignment declines the older checkpoint as
// overtaken (not a failure) and forwards its cancellation marker; an
// upstream cancellation marker is declined as such.
func TestTaskDeclineReasons(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, checkpoint.ExactlyOnce, 2)
		h.barrier(0, 1)
		h.barrier(1, 2)
		synctest.Wait()
		h.cancelMarker(0, 3)
		synctest.Wait()
		_, declines, _, _ := h.host.snapshot()
		if !slices.Equal(declines, []string{"1:subsumed", "2:subsumed", "3:cancelled"}) {
			t.Fatalf("declines %v", declines)
		}
		_, events := h.out.got()
		for _, want := range []string{"cancellation-marker 1", "cancellation-marker 2", "cancellation-marker 3"} {
			if !slices.Contains(events, want) {
				t.Fatalf("%s not forwarded: %v", want, events)
			}
		}
		h.cancel()
		<-h.done
	})
}

// A snapshot that fails with a DeclineError declines the checkpoint as a
// failure, forwards a cancellation marker and keeps the task running;
// another error fails the task.
func TestTaskSnapshotFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, checkpoint.ExactlyOnce, 1)
		h.op.failSnap = &DeclineError{Err: errors.New("disk full")}
		h.barrier(0, 1)
		h.records(0, 7)
		synctest.Wait()
		if _, declines, _, _ := h.host.snapshot(); !slices.Equal(declines, []string{"1:failure"}) {
			t.Fatalf("declines %v", declines)
		}
		if h.sum() != 7 {
			t.Fatal("the task stopped after a declined snapshot")
		}
		h.op.failSnap = errors.New("bug")
		h.barrier(0, 2)
		synctest.Wait()
		if err := <-h.done; err == nil || !strings.Contains(err.Error(), "bug") {
			t.Fatalf("task ended with %v", err)
		}
	})
}

// End of partition on every channel finishes the operators head to tail,
// forwards end of partition and reports the task finished.
func TestTaskEndOfInput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, checkpoint.ExactlyOnce, 2)
		h.records(0, 1)
		h.eop(0)
		synctest.Wait()
		if _, _, _, fin := h.host.snapshot(); fin != 0 {
			t.Fatal("finished with a channel open")
		}
		h.records(1, 2)
		h.eop(1)
		if err := <-h.done; err != nil {
			t.Fatal(err)
		}
		if calls := h.op.calls(); !slices.Equal(calls, []string{"open", "finish", "close"}) {
			t.Fatalf("calls %v", calls)
		}
		_, events := h.out.got()
		if !slices.Equal(events, []string{"end-of-partition 0"}) {
			t.Fatalf("events %v", events)
		}
		if _, _, _, fin := h.host.snapshot(); fin != 1 || h.sum() != 3 {
			t.Fatalf("finished %d, sum %d", fin, h.sum())
		}
	})
}

// End of data on every channel tells the operators once, before the
// final checkpoint's barrier arrives, and goes downstream ahead of it;
// end of partition then finishes the task. A channel that ends without
// end of data (a stop with savepoint) never tells the operators.
func TestTaskEndOfData(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, checkpoint.ExactlyOnce, 2)
		h.records(0, 1)
		h.eod(0)
		h.records(1, 2)
		synctest.Wait()
		if slices.Contains(h.op.calls(), "end-of-data") {
			t.Fatal("end of data with a channel still sending")
		}
		h.eod(1)
		h.eod(1) // repeated: ignored
		h.barrier(0, 7)
		h.barrier(1, 7)
		synctest.Wait()
		if calls := h.op.calls(); !slices.Equal(calls, []string{"open", "end-of-data", "snapshot 7"}) {
			t.Fatalf("calls %v", calls)
		}
		h.eop(0)
		h.eop(1)
		if err := <-h.done; err != nil {
			t.Fatal(err)
		}
		_, events := h.out.got()
		if !slices.Equal(events, []string{"end-of-data 0", "barrier 7", "end-of-partition 0"}) {
			t.Fatalf("events %v", events)
		}
		if calls := h.op.calls(); !slices.Equal(calls, []string{"open", "end-of-data", "snapshot 7", "finish", "close"}) {
			t.Fatalf("calls %v", calls)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, checkpoint.ExactlyOnce, 1)
		h.records(0, 1)
		h.eop(0) // stopped: no end of data
		if err := <-h.done; err != nil {
			t.Fatal(err)
		}
		if calls := h.op.calls(); slices.Contains(calls, "end-of-data") {
			t.Fatalf("calls %v", calls)
		}
	})
}

// A record emitted downstream is flushed at the latest after the buffer
// timeout, also while input keeps the task busy.
func TestTaskBufferTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, checkpoint.ExactlyOnce, 1)
		h.records(0, 1)
		synctest.Wait()
		h.out.mu.Lock()
		idle := h.out.flushes
		h.out.mu.Unlock()
		if idle == 0 {
			t.Fatal("an idle task did not flush what it holds")
		}
		// Busy: records keep coming; flushes come with the timeout.
		for range 10 {
			h.records(0, 1)
			time.Sleep(time.Millisecond)
		}
		synctest.Wait()
		h.out.mu.Lock()
		n := h.out.flushes
		h.out.mu.Unlock()
		if n <= idle {
			t.Fatalf("no flush within 10 ms of input with a 5 ms buffer timeout (%d flushes)", n)
		}
		h.cancel()
		<-h.done
	})
}

// fakeSource emits one record per Read until it has emitted limit.
type fakeSource struct {
	out   Collector[int]
	n     int
	limit int
	avail chan struct{}
}

func (s *fakeSource) Read() (ReadStatus, error) {
	if s.n >= s.limit {
		return EndOfInput, nil
	}
	s.n++
	s.out.Collect(s.n)
	return MoreAvailable, nil
}
func (s *fakeSource) Available() <-chan struct{} { return s.avail }

// A source snapshots between two reads when the trigger mail comes, emits
// the barrier behind the records it produced, reports the end of its
// input, and emits end of partition only when told to finish.
func TestSourceTaskLifecycle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		host, out := &fakeHost{}, &sinkOutput{}
		op := &recordingOp{snapshots: map[checkpoint.ID]int{}, out: out}
		src := &fakeSource{out: op, limit: 1000, avail: make(chan struct{})}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		task := &Task{ID: checkpoint.TaskID{}, Name: "source (1/1)", ctx: ctx, host: host, keyed: noKeyed{},
			chain: &Chain{Operators: []Operator{op}, Source: src}, opInfo: []OperatorInfo{{UID: "src", Name: "src"}},
			outputs: []outputWriter{out}, mailbox: NewQueue[Mail](), opCtx: []*OperatorContext{{OperatorName: "src"}}}
		task.mailbox.Put(Mail{Kind: mailTrigger, Barrier: checkpoint.Barrier{ID: 1, Timestamp: time.Now()}})
		done := make(chan error, 1)
		go func() { done <- task.run() }()
		synctest.Wait()
		_, _, ended, fin := host.snapshot()
		if ended != 1 || fin != 0 {
			t.Fatalf("ended %d finished %d: the source must wait for the final checkpoint", ended, fin)
		}
		records, events := out.got()
		snap, ok := op.snapshotOf(1)
		if !ok || len(records) != 1000 || !slices.Contains(events, "barrier 1") {
			t.Fatalf("snapshot %d %v, %d records, events %v", snap, ok, len(records), events)
		}
		task.mailbox.Put(Mail{Kind: mailFinishSource})
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		_, events = out.got()
		if events[len(events)-1] != "end-of-partition 0" {
			t.Fatalf("events %v", events)
		}
	})
}
