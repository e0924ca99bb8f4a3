package runtime

import (
	"context"
	"fmt"
	"time"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/checkpoint/coordinator"
	"github.com/weirstream/weir/storage"
)

type driverEventKind uint8

const (
	evAck driverEventKind = iota + 1
	evDecline
	evSourceEnded
	evFinished
	evTrigger
	evStop
)

type driverEvent struct {
	kind   driverEventKind
	id     checkpoint.ID
	task   checkpoint.TaskID
	snap   checkpoint.TaskSnapshot
	err    error
	why    coordinator.DeclineReason
	ckKind checkpoint.Kind
	reply  chan triggerReply
}

type triggerReply struct {
	id  checkpoint.ID
	err error
}

// driver is the thin, effectful shell around the pure checkpoint
// coordinator: it owns the goroutine, the timer, the task mailboxes and the
// metadata writes, and feeds everything that happens back into the
// coordinator as events. Deleting files is the job's disposer's business.
type driver struct {
	a      *Attempt
	coord  *coordinator.Coordinator
	events *Queue[driverEvent]
	nextID checkpoint.ID

	pending  map[checkpoint.ID]*CheckpointStats
	finished map[checkpoint.TaskID]bool
	// requests are the user triggers waiting for their answer.
	requests map[uint64]chan triggerReply
	nextReq  uint64
	// aborted is set when a checkpoint was aborted since the last sweep
	// of incomplete checkpoint directories.
	aborted bool
	// abortLog folds repeated abort reasons into one line with a count.
	abortLog *repeatLog
}

func newDriver(a *Attempt, nextID checkpoint.ID, retained []checkpoint.ID) (*driver, error) {
	var tasks, sources []checkpoint.TaskID
	for _, t := range a.all {
		tasks = append(tasks, t.ID)
		if t.Source {
			sources = append(sources, t.ID)
		}
	}
	c, err := coordinator.New(a.job.cfg.Coordinator, tasks, sources, nextID, retained)
	if err != nil {
		return nil, fmt.Errorf("cannot create checkpoint coordinator: %w", err)
	}
	return &driver{a: a, coord: c, events: NewQueue[driverEvent](), nextID: nextID,
		pending: map[checkpoint.ID]*CheckpointStats{}, finished: map[checkpoint.TaskID]bool{},
		requests: map[uint64]chan triggerReply{}, abortLog: newRepeatLog(a.job.log, time.Minute)}, nil
}

func (d *driver) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	d.apply(d.coord.Start(time.Now()))
	var evs []driverEvent
	for {
		if dl, ok := d.coord.NextDeadline(); ok {
			timer.Reset(max(time.Until(dl), 0))
		} else {
			timer.Stop()
		}
		select {
		case <-ctx.Done():
			d.apply(d.coord.Shutdown(time.Now()))
			for _, s := range d.pending {
				s.Reason = "the job is restarting or ending"
				s.FinishedAt = time.Now()
				d.a.job.recordStats(*s)
			}
			d.abortLog.flush()
			return
		case <-timer.C:
			d.apply(d.coord.Tick(time.Now()))
		case <-d.events.C():
		}
		for !d.events.Empty() {
			evs = d.events.Drain(evs[:0])
			for _, ev := range evs {
				d.handle(ev)
			}
			clear(evs)
		}
	}
}

func (d *driver) handle(ev driverEvent) {
	now := time.Now()
	switch ev.kind {
	case evAck:
		d.a.job.log.Debug("ack", "id", ev.id, "task", ev.task)
		if s := d.pending[ev.id]; s != nil {
			s.Subtasks[ev.task] = ev.snap
			s.Acked[ev.task] = now
			d.a.job.checkpointAcked(ev.id, ev.task, ev.snap, now)
		}
		d.apply(d.coord.Ack(now, ev.id, ev.task, ev.snap))
	case evDecline:
		d.a.job.log.Debug("checkpoint declined", "id", ev.id, "task", ev.task, "reason", ev.why, "err", ev.err)
		d.apply(d.coord.Decline(now, ev.id, ev.task, ev.why, ev.err))
	case evFinished:
		d.finished[ev.task] = true
		d.apply(d.coord.TaskFinished(now, ev.task))
	case evSourceEnded:
		d.apply(d.coord.SourceEnded(now, ev.task))
	case evStop:
		actions, err := d.coord.StopWithSavepoint(now)
		ev.reply <- triggerReply{err: err}
		d.apply(actions)
	case evTrigger:
		d.nextReq++
		d.requests[d.nextReq] = ev.reply
		d.apply(d.coord.Trigger(now, ev.ckKind, d.nextReq))
	}
}

func (d *driver) apply(actions []coordinator.Action) {
	for len(actions) > 0 {
		act := actions[0]
		actions = actions[1:]
		switch x := act.(type) {
		case coordinator.TriggerSources:
			d.a.job.log.Debug("trigger", "id", x.Barrier.ID, "kind", x.Barrier.Kind, "final", x.Final, "tasks", x.Tasks)
			d.nextID = max(d.nextID, x.Barrier.ID+1)
			d.pending[x.Barrier.ID] = &CheckpointStats{ID: x.Barrier.ID, Kind: x.Barrier.Kind, TriggeredAt: x.Barrier.Timestamp,
				Subtasks: map[checkpoint.TaskID]checkpoint.TaskSnapshot{}, Acked: map[checkpoint.TaskID]time.Time{}}
			d.a.job.checkpointTriggered(*d.pending[x.Barrier.ID])
			for _, id := range x.Tasks {
				d.a.mail(id, Mail{Kind: mailTrigger, Barrier: x.Barrier})
			}
		case coordinator.Triggered:
			if r := d.requests[x.Request]; r != nil {
				r <- triggerReply{id: x.ID}
				delete(d.requests, x.Request)
			}
		case coordinator.TriggerRefused:
			if r := d.requests[x.Request]; r != nil {
				r <- triggerReply{err: x.Err}
				delete(d.requests, x.Request)
			}
		case coordinator.WriteMetadata:
			md := d.metadata(x)
			if err := d.a.job.cfg.Storage.Commit(d.a.ctx, md); err != nil {
				actions = append(actions, d.coord.MetadataFailed(time.Now(), x.ID, err)...)
			} else {
				refs := map[string]bool{}
				storage.SharedReferences(md, refs)
				d.a.job.disposer.remember(x.ID, refs)
				actions = append(actions, d.coord.MetadataWritten(time.Now(), x.ID)...)
			}
		case coordinator.Completed:
			if s := d.pending[x.ID]; s != nil {
				s.Completed = true
				s.FinishedAt = time.Now()
				for _, st := range s.Subtasks {
					s.StateSize += st.StateSize
					s.MaxAlignment = max(s.MaxAlignment, st.AlignmentDuration)
					s.MaxStartDelay = max(s.MaxStartDelay, st.StartDelay)
					s.MaxSyncDuration = max(s.MaxSyncDuration, st.SyncDuration)
				}
				delete(d.pending, x.ID)
				logCompleted(d.a.job.log, d.a.job.graph, s, x.Notified)
				d.a.job.recordStats(*s)
			}
			if x.Notified && d.aborted {
				// Late writers of aborted checkpoints may have left files
				// behind; everything below a completed id that is not
				// pending is debris.
				d.aborted = false
				d.a.job.disposer.sweep(x.ID, d.coord.Pending())
			}
		case coordinator.NotifyComplete:
			// A failover restores this checkpoint from now on; with high
			// availability the new leader must learn it before any sink
			// commits, or it could restore an older one.
			if ha := d.a.job.cfg.HA; ha != nil {
				loc := storage.Location(d.a.job.cfg.Storage, x.ID)
				if err := ha.SetLatest(d.a.ctx, x.ID, loc); err != nil {
					d.a.job.log.Error("cannot record the latest checkpoint in the high-availability services", "id", x.ID, "err", err)
					d.a.job.Abort(fmt.Errorf("cannot record checkpoint %d as the latest: %w", x.ID, err))
					return
				}
			}
			d.a.job.setRestorePoint(x.ID)
			for _, t := range d.a.all {
				if !d.finished[t.ID] {
					d.a.mail(t.ID, Mail{Kind: mailNotifyComplete, Barrier: checkpoint.Barrier{ID: x.ID}})
				}
			}
		case coordinator.NotifyAborted:
			d.aborted = true
			for _, t := range d.a.all {
				if !d.finished[t.ID] {
					d.a.mail(t.ID, Mail{Kind: mailNotifyAborted, Barrier: checkpoint.Barrier{ID: x.ID}, Reason: x.Reason})
				}
			}
			if s := d.pending[x.ID]; s != nil {
				s.Reason = x.Reason
				s.FinishedAt = time.Now()
				delete(d.pending, x.ID)
				d.abortLog.warn("checkpoint aborted", x.Reason, "id", x.ID, "kind", s.Kind)
				d.a.job.recordStats(*s)
			}
		case coordinator.Discard:
			d.a.job.disposer.discard(x.ID, x.Completed)
			d.a.job.disposer.collect(d.coord.Pending(), d.coord.NextID())
		case coordinator.StopSources:
			for _, t := range x.Tasks {
				d.a.mail(t, Mail{Kind: mailStopSource})
			}
		case coordinator.FinishSources:
			if x.Kind == checkpoint.KindSavepoint {
				d.a.job.setStopSavepoint(x.ID)
			}
			for _, t := range x.Tasks {
				d.a.mail(t, Mail{Kind: mailFinishSource})
			}
		case coordinator.FailJob:
			err := fmt.Errorf("checkpointing failed: %s", x.Reason)
			if x.Permanent {
				err = Permanent(err)
			}
			d.a.Fail(err)
		}
	}
}

// metadata assembles the _metadata of a checkpoint from the subtasks'
// acknowledgements, operator by operator.
func (d *driver) metadata(w coordinator.WriteMetadata) *checkpoint.Metadata {
	g := d.a.job.graph
	md := &checkpoint.Metadata{
		Version: checkpoint.MetadataVersion, JobName: g.Name, CheckpointID: w.ID, Kind: w.Kind,
		TriggeredAt: w.TriggeredAt, CompletedAt: time.Now(), MaxParallelism: g.MaxParallelism,
	}
	for _, v := range g.Vertices {
		for _, op := range v.Operators {
			os := checkpoint.OperatorState{UID: op.UID, Name: op.Name, Parallelism: v.Parallelism,
				Subtasks: make([]checkpoint.OperatorSubtaskState, v.Parallelism)}
			for s := range v.Parallelism {
				os.Subtasks[s] = w.Snapshots[checkpoint.TaskID{Vertex: v.ID, Subtask: s}].Operators[op.UID]
			}
			md.Operators = append(md.Operators, os)
		}
	}
	return md
}
