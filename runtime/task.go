package runtime

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/checkpoint/barrier"
	"github.com/weirstream/weir/checkpoint/coordinator"
	"github.com/weirstream/weir/metrics"
	"github.com/weirstream/weir/runtime/watermark"
)

// mailKind is the kind of a control action posted to a task's mailbox.
type mailKind uint8

const (
	mailTrigger        mailKind = iota + 1 // source: take checkpoint Barrier
	mailNotifyComplete                     // checkpoint ID completed
	mailNotifyAborted                      // checkpoint ID aborted
	mailFinishSource                       // source at end of input: emit end of partition and finish
	mailStopSource                         // stop reading (stop-with-savepoint): behave as at end of input
	mailTimer                              // a processing-time callback is due
)

// Mail is one control action for a task. Everything that is not a record or
// an in-band event reaches a task through its mailbox, and runs on the task
// goroutine between two buffers.
type Mail struct {
	Kind    mailKind
	Barrier checkpoint.Barrier
	Reason  string
}

// keyedWriter writes the keyed snapshots of a task into checkpoint storage.
type keyedWriter interface {
	writeKeyed(id checkpoint.ID, name string, s KeyedSnapshot) (checkpoint.KeyedStateHandle, error)
}

// Task runs one subtask: one goroutine, one chain of operators, one mailbox
// and (unless it is a source) one input gate.
type Task struct {
	ID      checkpoint.TaskID
	Name    string
	ctx     context.Context
	host    TaskHost
	keyed   keyedWriter
	chain   *Chain
	opInfo  []OperatorInfo
	outputs []outputWriter
	mailbox *Queue[Mail]

	// input side (non-sources)
	gate    *InputGate
	reader  gateReader
	handler barrier.Handler
	ended   []bool
	nEnded  int
	// dataEnded marks the channels that delivered end of data; when every
	// channel has, the chain's input really ended (dataEnd).
	dataEnded  []bool
	nDataEnded int
	dataEnd    bool

	bufferTimeout time.Duration
	lastFlush     time.Time

	// Event time: ts is the timestamp of the record being processed (the
	// slot the gate reader and the operators set, the writers read);
	// valve is the watermark of the input channels (jobs with event
	// time); timers runs processing-time callbacks.
	ts     int64
	valve  *watermark.Valve
	timers *procTimers

	// metrics are this subtask's counters (package metrics).
	metrics *metrics.Task

	sourceEnded bool
	finished    bool
	failErr     error
	async       sync.WaitGroup
	mails       []Mail
	opCtx       []*OperatorContext
}

// fail records the first error of the task; the loop stops at its next turn.
func (t *Task) fail(err error) {
	if t.failErr == nil && err != nil {
		t.failErr = err
	}
}

// run is the task goroutine. It returns nil when the task finished, the
// context's error when cancelled, or the error that failed the task.
func (t *Task) run() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = newPanicError(t, r)
		}
		// Close every operator, also after a failure.
		for i := len(t.chain.Operators) - 1; i >= 0; i-- {
			if cerr := safeClose(t.chain.Operators[i]); cerr != nil && err == nil {
				err = fmt.Errorf("cannot close operator %s: %w", t.opInfo[i].Name, cerr)
			}
		}
		t.timers.stop()
		t.async.Wait()
		end := metrics.Finished
		if err != nil {
			end = metrics.Failed
			if t.ctx.Err() != nil {
				end = metrics.Canceled
			}
		}
		t.metrics.End(time.Now(), end)
	}()
	if t.metrics == nil {
		t.metrics = metrics.NewTask()
	}
	if t.timers == nil {
		t.timers = newProcTimers(t.mailbox)
	}
	for i := len(t.chain.Operators) - 1; i >= 0; i-- {
		if err := t.chain.Operators[i].Open(t.opCtx[i]); err != nil {
			if t.opCtx[i].Restored {
				return &RestoreError{Task: t.Name, Operator: t.opInfo[i].Name, Err: err}
			}
			return fmt.Errorf("cannot open operator %s: %w", t.opInfo[i].Name, err)
		}
	}
	t.lastFlush = time.Now()
	t.metrics.Start(t.lastFlush)
	for {
		if t.ctx.Err() != nil {
			return t.ctx.Err()
		}
		t.handleMail()
		if t.failErr != nil {
			return t.failErr
		}
		if t.finished {
			return nil
		}
		progressed := t.step()
		if t.failErr != nil {
			return t.failErr
		}
		if progressed {
			if t.bufferTimeout <= 0 {
				t.flush()
			} else if now := time.Now(); now.Sub(t.lastFlush) >= t.bufferTimeout {
				t.flush()
			}
			continue
		}
		// Nothing to read right now: hand over what we hold, then sleep until
		// input, a mail or cancellation arrives.
		t.flush()
		var inputC <-chan struct{}
		switch {
		case t.chain.Source != nil && !t.sourceEnded:
			inputC = t.chain.Source.Available()
		case t.gate != nil:
			inputC = t.gate.Signal()
		}
		t.metrics.IdleStart(time.Now())
		select {
		case <-inputC:
		case <-t.mailbox.C():
		case <-t.ctx.Done():
		}
		t.metrics.IdleEnd(time.Now())
	}
}

func safeClose(op Operator) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in Close: %v", r)
		}
	}()
	return op.Close()
}

func (t *Task) flush() {
	for _, o := range t.outputs {
		o.Flush()
	}
	t.lastFlush = time.Now()
}

// step processes one unit of input and reports whether there was any.
func (t *Task) step() bool {
	if t.chain.Source != nil {
		if t.sourceEnded {
			return false
		}
		st, err := t.chain.Source.Read()
		if err != nil {
			t.fail(fmt.Errorf("source %s: %w", t.Name, err))
			return false
		}
		switch st {
		case MoreAvailable:
			return true
		case EndOfInput:
			t.endOfData()
			if t.failErr != nil {
				return false
			}
			t.flush()
			t.sourceEnded = true
			t.host.SourceEnded(t.ID)
			return true
		}
		return false
	}
	ch, ok := t.gate.next(t.handler.Blocked)
	if !ok {
		return false
	}
	ev, isEvent, ok := t.reader.read(ch)
	if !ok || !isEvent {
		return ok
	}
	now := time.Now()
	switch ev.Kind {
	case EventBarrier:
		t.apply(t.handler.OnBarrier(now, ch, ev.Barrier))
	case EventCancel:
		t.apply(t.handler.OnCancellation(now, ch, ev.Barrier.ID))
	case EventEndOfPartition:
		if !t.ended[ch] {
			t.ended[ch] = true
			t.nEnded++
			t.apply(t.handler.OnEndOfPartition(now, ch))
			if t.valve != nil {
				t.emitWatermark(t.valve.OnEndOfPartition(ch))
			}
			if t.nEnded == len(t.ended) {
				t.endOfInput()
			}
		}
	case EventEndOfData:
		if t.dataEnded == nil {
			t.dataEnded = make([]bool, len(t.ended))
		}
		if !t.dataEnded[ch] {
			t.dataEnded[ch] = true
			t.nDataEnded++
			if t.nDataEnded == len(t.dataEnded) {
				t.endOfData()
			}
		}
	case EventWatermark:
		if t.valve != nil {
			t.emitWatermark(t.valve.OnWatermark(ch, ev.Watermark))
		}
	case EventStatus:
		if t.valve != nil {
			st := watermark.Active
			if ev.Idle {
				st = watermark.Idle
			}
			t.emitWatermark(t.valve.OnStatus(ch, st))
		}
	}
	return true
}

// emitWatermark hands what the valve decided to the chain's head, which
// passes it through every operator (firing their event-time timers) to the
// outputs.
func (t *Task) emitWatermark(out watermark.Output) {
	if out.HasWatermark {
		t.metrics.SetInputWatermark(out.Watermark)
		ForwardWatermark(t.chain.Input, out.Watermark)
	}
	if out.StatusChanged {
		ForwardStatus(t.chain.Input, out.Status == watermark.Idle)
	}
}

func (t *Task) apply(actions []barrier.Action) {
	for _, a := range actions {
		switch a := a.(type) {
		case barrier.Snapshot:
			t.checkpoint(a.Barrier, a.AlignmentDuration, a.StartDelay)
		case barrier.Abort:
			why := coordinator.DeclineSubsumed
			if a.Cancelled {
				why = coordinator.DeclineCancelled
			}
			t.host.Decline(a.ID, t.ID, why, fmt.Errorf("checkpoint %d abandoned in %s: %s", a.ID, t.Name, a.Reason))
			for _, o := range t.outputs {
				o.EmitEvent(Event{Kind: EventCancel, Barrier: checkpoint.Barrier{ID: a.ID}})
			}
		case barrier.Block, barrier.Unblock:
			// The gate asks the handler which channels are blocked.
		}
	}
}

func (t *Task) handleMail() {
	if t.mailbox.Empty() {
		return
	}
	t.mails = t.mailbox.Drain(t.mails[:0])
	for _, m := range t.mails {
		if t.failErr != nil {
			return
		}
		switch m.Kind {
		case mailTrigger:
			t.checkpoint(m.Barrier, 0, time.Since(m.Barrier.Timestamp))
		case mailNotifyComplete:
			for i, op := range t.chain.Operators {
				if err := op.NotifyCheckpointComplete(m.Barrier.ID); err != nil {
					t.fail(fmt.Errorf("operator %s failed on completion of checkpoint %d: %w", t.opInfo[i].Name, m.Barrier.ID, err))
					return
				}
			}
		case mailNotifyAborted:
			if t.handler != nil {
				t.apply(t.handler.OnAbort(time.Now(), m.Barrier.ID))
			}
			for i, op := range t.chain.Operators {
				if err := op.NotifyCheckpointAborted(m.Barrier.ID); err != nil {
					t.fail(fmt.Errorf("operator %s failed on abort of checkpoint %d: %w", t.opInfo[i].Name, m.Barrier.ID, err))
					return
				}
			}
		case mailStopSource:
			if t.chain.Source != nil && !t.sourceEnded {
				t.flush()
				t.sourceEnded = true
				t.host.SourceEnded(t.ID)
			}
		case mailFinishSource:
			if !t.finished {
				t.endOfInput()
			}
		case mailTimer:
			t.timers.fire()
		}
	}
	clear(t.mails)
}

// endOfData tells the chain's operators, head to tail, that the input
// really ended (EndOfDataListener), then sends end of data downstream. It
// runs before the final checkpoint's barrier can reach the task: a source
// task reports SourceEnded after it, and downstream the barrier follows
// end of data on every channel.
func (t *Task) endOfData() {
	if t.dataEnd {
		return
	}
	t.dataEnd = true
	for i, op := range t.chain.Operators {
		if l, ok := op.(EndOfDataListener); ok {
			if err := l.EndOfData(); err != nil {
				t.fail(fmt.Errorf("operator %s failed at the end of its input: %w", t.opInfo[i].Name, err))
				return
			}
		}
	}
	for _, o := range t.outputs {
		o.EmitEvent(Event{Kind: EventEndOfData})
	}
}

// endOfInput finishes the chain head to tail, so what the head emits while
// finishing still reaches the tail, then ends every output partition.
func (t *Task) endOfInput() {
	for i, op := range t.chain.Operators {
		if err := op.Finish(); err != nil {
			t.fail(fmt.Errorf("operator %s failed to finish: %w", t.opInfo[i].Name, err))
			return
		}
	}
	for _, o := range t.outputs {
		o.EmitEvent(Event{Kind: EventEndOfPartition})
	}
	t.finished = true
	t.host.TaskFinished(t.ID)
}

// checkpoint takes this subtask's snapshot of checkpoint b: the synchronous
// part freezes every operator's state and forwards the barrier; the
// asynchronous part writes keyed state to checkpoint storage and acknowledges.
func (t *Task) checkpoint(b checkpoint.Barrier, alignment, startDelay time.Duration) {
	start := time.Now()
	snaps := make([]OperatorSnapshot, len(t.chain.Operators))
	for i, op := range t.chain.Operators {
		var s OperatorSnapshot
		var err error
		if bs, ok := op.(BarrierSnapshotter); ok {
			s, err = bs.SnapshotStateFor(b)
		} else {
			s, err = op.SnapshotState(b.ID)
		}
		if err != nil {
			for _, done := range snaps[:i] {
				if done.Keyed != nil {
					done.Keyed.Release()
				}
			}
			err = fmt.Errorf("cannot snapshot operator %s for checkpoint %d: %w", t.opInfo[i].Name, b.ID, err)
			var d *DeclineError
			if errors.As(err, &d) {
				// The operator's state is intact: decline this checkpoint
				// and tell downstream subtasks to stop aligning it.
				for _, o := range t.outputs {
					o.EmitEvent(Event{Kind: EventCancel, Barrier: b})
				}
				t.host.Decline(b.ID, t.ID, coordinator.DeclineFailure, err)
				return
			}
			t.fail(err)
			return
		}
		snaps[i] = s
	}
	for _, o := range t.outputs {
		o.EmitEvent(Event{Kind: EventBarrier, Barrier: b})
	}
	syncDur := time.Since(start)
	t.async.Add(1)
	go t.asyncSnapshot(b.ID, snaps, checkpoint.TaskSnapshot{
		AlignmentDuration: alignment, StartDelay: startDelay, SyncDuration: syncDur,
	})
}

func (t *Task) asyncSnapshot(id checkpoint.ID, snaps []OperatorSnapshot, ts checkpoint.TaskSnapshot) {
	defer t.async.Done()
	start := time.Now()
	var err error
	ts.Operators = make(map[string]checkpoint.OperatorSubtaskState, len(snaps))
	for i, s := range snaps {
		st := checkpoint.OperatorSubtaskState{Operator: s.List}
		for _, l := range s.List {
			for _, e := range l.Entries {
				ts.StateSize += int64(len(e))
			}
		}
		if s.Keyed != nil {
			if err == nil && t.ctx.Err() == nil {
				var h checkpoint.KeyedStateHandle
				name := fmt.Sprintf("%d-%d-%d.keyed", t.ID.Vertex, t.ID.Subtask, i)
				h, err = t.keyed.writeKeyed(id, name, s.Keyed)
				if err == nil {
					h.Range = s.KeyRange
					st.Keyed = []checkpoint.KeyedStateHandle{h}
					ts.StateSize += h.Stream.Size
					if h.Incremental != nil {
						for _, f := range h.Incremental.Files {
							ts.StateSize += f.Stream.Size
						}
					}
				} else {
					err = fmt.Errorf("cannot write keyed state of operator %s: %w", t.opInfo[i].Name, err)
				}
			}
			s.Keyed.Release()
		}
		if !st.IsEmpty() {
			ts.Operators[t.opInfo[i].UID] = st
		}
	}
	if t.ctx.Err() != nil {
		return
	}
	if err != nil {
		t.host.Decline(id, t.ID, coordinator.DeclineFailure, err)
		return
	}
	ts.AsyncDuration = time.Since(start)
	t.host.Ack(id, t.ID, ts)
}
