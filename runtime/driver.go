package runtime

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	ckKind checkpoint.Kind
	reply  chan triggerReply
}

type triggerReply struct {
	id  checkpoint.ID
	err error
}

// driver is the thin, effectful shell around the pure checkpoint
// coordinator: it owns the goroutine, the timer, the task mailboxes and the
// writes to checkpoint storage, and feeds everything that happens back into
// the coordinator as events.
type driver struct {
	a *attempt
	// sharedRefs caches the shared files each completed checkpoint
	// references; sharedSeen says a subtask acknowledged an incremental
	// snapshot, so the shared area needs collecting (a job without
	// incremental state never lists it after the start).
	sharedRefs map[checkpoint.ID]map[string]bool
	sharedSeen bool
	coord      *coordinator.Coordinator
	events     *Queue[driverEvent]
	nextID     checkpoint.ID

	pending     map[checkpoint.ID]*CheckpointStats
	ended       map[checkpoint.TaskID]bool // sources at end of input
	finished    map[checkpoint.TaskID]bool
	finalAfter  checkpoint.ID // a checkpoint with a larger id is the final one
	finalWanted bool          // all sources ended: need a final checkpoint
	finalDone   bool
	// finalKind is the kind of the final checkpoint: a savepoint when the
	// job was asked to stop with one.
	finalKind     checkpoint.Kind
	stopping      bool
	completedKind checkpoint.Kind // kind of the checkpoint being completed
}

func newDriver(a *attempt, nextID checkpoint.ID, retained []checkpoint.ID) (*driver, error) {
	var tasks, sources []checkpoint.TaskID
	for _, t := range a.all {
		tasks = append(tasks, t.ID)
		if t.source {
			sources = append(sources, t.ID)
		}
	}
	c, err := coordinator.New(a.job.cfg.Coordinator, tasks, sources, nextID, retained)
	if err != nil {
		return nil, fmt.Errorf("cannot create checkpoint coordinator: %w", err)
	}
	return &driver{a: a, coord: c, events: NewQueue[driverEvent](), nextID: nextID,
		pending: map[checkpoint.ID]*CheckpointStats{}, ended: map[checkpoint.TaskID]bool{},
		finished: map[checkpoint.TaskID]bool{}, sharedRefs: map[checkpoint.ID]map[string]bool{}}, nil
}

func (d *driver) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	d.collectShared() // orphans of an earlier run
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
		for _, st := range ev.snap.Operators {
			for _, k := range st.Keyed {
				d.sharedSeen = d.sharedSeen || k.Incremental != nil
			}
		}
		if s := d.pending[ev.id]; s != nil {
			s.Subtasks[ev.task] = ev.snap
		}
		d.apply(d.coord.Ack(now, ev.id, ev.task, ev.snap))
	case evDecline:
		d.a.job.log.Warn("checkpoint declined", "id", ev.id, "task", ev.task, "err", ev.err)
		d.apply(d.coord.Decline(now, ev.id, ev.task, ev.err))
	case evFinished:
		d.finished[ev.task] = true
		d.apply(d.coord.TaskFinished(now, ev.task))
	case evSourceEnded:
		d.ended[ev.task] = true
		if len(d.ended) == d.a.numSources() && !d.finalWanted {
			// Every source is at end of input: take a final checkpoint, so
			// that what the sinks hold is committed, then let the sources
			// emit end of partition.
			d.finalWanted = true
			d.finalAfter = d.nextID - 1
			if len(d.coord.Pending()) == 0 {
				d.triggerFinal(now)
			}
		}
	case evStop:
		if d.stopping || d.finalWanted {
			ev.reply <- triggerReply{err: errors.New("the job is already stopping or finishing")}
			return
		}
		// Stop with a savepoint: sources stop reading (as if their input
		// ended), the final checkpoint is a savepoint, sinks commit it, and
		// the job finishes.
		d.stopping, d.finalKind = true, checkpoint.KindSavepoint
		for _, t := range d.a.all {
			if t.source && !d.ended[t.ID] {
				d.a.mail(t.ID, Mail{Kind: mailStopSource})
			}
		}
		ev.reply <- triggerReply{}
	case evTrigger:
		id, actions, err := d.coord.TriggerNow(now, ev.ckKind)
		if err != nil {
			ev.reply <- triggerReply{err: fmt.Errorf("cannot trigger %s: %w", ev.ckKind, err)}
			return
		}
		ev.reply <- triggerReply{id: id}
		d.apply(actions)
	}
}

func (d *driver) triggerFinal(now time.Time) {
	if d.finalDone {
		return
	}
	_, actions, err := d.coord.TriggerNow(now, d.finalKind)
	if err != nil {
		// Another checkpoint is pending; if it was triggered after the
		// sources ended it will do, otherwise we try again when it ends.
		return
	}
	d.apply(actions)
}

// finishSources ends the job's checkpointing after its final checkpoint:
// the coordinator is shut down (nothing is triggered any more, a trigger
// already decided is dropped) and the sources emit end of partition.
func (d *driver) finishSources() {
	d.finalDone = true
	d.apply(d.coord.Shutdown(time.Now()))
	for _, t := range d.a.all {
		if t.source {
			d.a.mail(t.ID, Mail{Kind: mailFinishSource})
		}
	}
}

// collectShared deletes the files in the storage's shared area that no
// retained checkpoint references and no pending checkpoint may still
// reference (see storage.CollectShared).
func (d *driver) collectShared() {
	pending := d.coord.Pending()
	n, err := storage.CollectSharedWith(d.a.job.cfg.Storage, d.sharedRefsOf, func(id checkpoint.ID) bool {
		return slices.Contains(pending, id) || id >= d.coord.NextID()
	})
	if err != nil {
		d.a.job.log.Warn("cannot delete unused shared state files", "err", err)
	} else if n > 0 {
		d.a.job.log.Debug("deleted unused shared state files", "count", n)
	}
}

// sharedRefsOf returns the shared files checkpoint id references: known
// for the checkpoints this driver wrote, read once for the others.
func (d *driver) sharedRefsOf(id checkpoint.ID) (map[string]bool, error) {
	if r, ok := d.sharedRefs[id]; ok {
		return r, nil
	}
	md, err := d.a.job.cfg.Storage.ReadMetadata(id)
	if err != nil {
		return nil, err
	}
	r := map[string]bool{}
	storage.SharedReferences(md, r)
	d.sharedRefs[id] = r
	return r, nil
}

func (d *driver) apply(actions []coordinator.Action) {
	collect := false
	defer func() {
		if collect && d.sharedSeen {
			d.collectShared()
		}
	}()
	for len(actions) > 0 {
		act := actions[0]
		actions = actions[1:]
		switch x := act.(type) {
		case coordinator.TriggerSources:
			if d.finalDone {
				continue // the final checkpoint completed: no more checkpoints
			}
			d.a.job.log.Debug("trigger", "id", x.Barrier.ID, "tasks", x.Tasks)
			d.nextID = max(d.nextID, x.Barrier.ID+1)
			d.pending[x.Barrier.ID] = &CheckpointStats{ID: x.Barrier.ID, Kind: x.Barrier.Kind, TriggeredAt: x.Barrier.Timestamp,
				Subtasks: map[checkpoint.TaskID]checkpoint.TaskSnapshot{}}
			for _, id := range x.Tasks {
				d.a.mail(id, Mail{Kind: mailTrigger, Barrier: x.Barrier})
			}
		case coordinator.WriteMetadata:
			md := d.metadata(x)
			if err := d.a.job.cfg.Storage.Commit(md); err != nil {
				actions = append(actions, d.coord.MetadataFailed(time.Now(), x.ID, err)...)
			} else {
				refs := map[string]bool{}
				storage.SharedReferences(md, refs)
				d.sharedRefs[x.ID] = refs
				actions = append(actions, d.coord.MetadataWritten(time.Now(), x.ID)...)
			}
		case coordinator.NotifyComplete:
			d.completedKind = checkpoint.KindCheckpoint
			if s := d.pending[x.ID]; s != nil {
				d.completedKind = s.Kind
			}
			for _, t := range d.a.all {
				if !d.finished[t.ID] {
					d.a.mail(t.ID, Mail{Kind: mailNotifyComplete, Barrier: checkpoint.Barrier{ID: x.ID}})
				}
			}
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
				d.a.job.log.Info("checkpoint completed", "id", x.ID, "kind", s.Kind, "duration", s.FinishedAt.Sub(s.TriggeredAt),
					"size", s.StateSize, "maxAlignment", s.MaxAlignment)
				d.a.job.recordStats(*s)
			}
			if ha := d.a.haLeadership(); ha != nil && d.completedKind == checkpoint.KindCheckpoint {
				loc := storage.Location(d.a.job.cfg.Storage, x.ID)
				if err := ha.SetLatest(d.a.ctx, x.ID, loc); err != nil {
					d.a.job.log.Error("cannot record the latest checkpoint in the high-availability services", "id", x.ID, "err", err)
					d.a.job.failHard(fmt.Errorf("cannot record checkpoint %d as the latest: %w", x.ID, err))
				}
			}
			if d.finalWanted && !d.finalDone && x.ID > d.finalAfter && d.completedKind == d.finalKind {
				if d.finalKind == checkpoint.KindSavepoint {
					d.a.job.setStopSavepoint(x.ID)
				}
				d.finishSources()
			}
		case coordinator.NotifyAborted:
			collect = true
			for _, t := range d.a.all {
				if !d.finished[t.ID] {
					d.a.mail(t.ID, Mail{Kind: mailNotifyAborted, Barrier: checkpoint.Barrier{ID: x.ID}, Reason: x.Reason})
				}
			}
			if s := d.pending[x.ID]; s != nil {
				s.Reason = x.Reason
				s.FinishedAt = time.Now()
				delete(d.pending, x.ID)
				d.a.job.log.Warn("checkpoint aborted", "id", x.ID, "reason", x.Reason)
				d.a.job.recordStats(*s)
			}
		case coordinator.Discard:
			collect = true
			delete(d.sharedRefs, x.ID)
			if err := d.a.job.cfg.Storage.Discard(x.ID); err != nil {
				d.a.job.log.Warn("cannot discard checkpoint", "id", x.ID, "err", err)
			}
		case coordinator.FailJob:
			d.a.failWith(errors.New("checkpointing failed: " + x.Reason))
		}
	}
	// A final checkpoint that was aborted (or could not be triggered while
	// another was pending) is tried again.
	if d.finalWanted && !d.finalDone && len(d.coord.Pending()) == 0 {
		d.triggerFinal(time.Now())
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
