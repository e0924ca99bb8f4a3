// Package coordinator is weir's checkpoint coordinator as a pure state
// machine: events in (a tick of the clock, an acknowledgement, a decline, a
// finished task, the result of writing metadata), actions out (trigger the
// sources, write metadata, notify tasks, discard files, fail the job). It
// starts no goroutine, does no I/O and never reads the clock: the driver in
// package runtime does all that and feeds the outcome back as events.
//
// A checkpoint is triggered (TriggerSources), pending until every task has
// acknowledged it, then completing (WriteMetadata) until the driver reports
// MetadataWritten (completed) or MetadataFailed (aborted). Every triggered
// id ends exactly once: completed, or aborted by a decline, an expiry, a
// failed metadata write, subsumption or Shutdown.
//
// Semantics, following Flink's CheckpointCoordinator:
//
//   - Ids strictly increase and are never reused, also for aborted
//     checkpoints. New takes the first id, so a driver continues above every
//     id in storage and ids stay monotonic across process restarts.
//   - Periodic checkpoints are due at Start+Interval, then Interval after the
//     previous periodic trigger actually fired (no catch-up bursts), but never
//     while MaxConcurrent checkpoints are pending or completing (savepoints do
//     not count) and never earlier than MinPause after the last completion
//     (of either kind). A due trigger that is blocked fires as soon as it is
//     allowed: in the actions of the event that frees a slot (a completion or
//     an abort), or at the deadline MinPause sets. Manual triggers do not
//     move the periodic schedule.
//   - TriggerNow: a savepoint ignores MaxConcurrent and MinPause; a manual
//     checkpoint obeys MaxConcurrent (ErrTooManyPending) but ignores MinPause
//     (an explicit request, e.g. the final checkpoint at end of input). Both
//     fail with ErrShutdown, ErrJobFailing or ErrSourcesFinished.
//   - A checkpoint completes when every task acknowledged it; a finished task
//     counts as having acknowledged, with an empty TaskSnapshot, every pending
//     and every later checkpoint. Finished sources receive no trigger; once
//     every source has finished nothing is triggered any more. The last ack
//     yields WriteMetadata, whose Snapshots hold one entry per task; the
//     checkpoint is then completing, and acks, declines and expiry no longer
//     touch it until the driver reports MetadataWritten or MetadataFailed.
//   - Acks for unknown, aborted, completing or completed checkpoints, from
//     unknown or finished tasks, or repeated, are ignored; so are declines of
//     unknown or completing checkpoints and declines from unknown tasks.
//   - A decline, an expiry (age >= Timeout; only Tick expires) or a failed
//     metadata write aborts the checkpoint: NotifyAborted, then
//     Discard{Completed: false}.
//   - On completion of n (checkpoint or savepoint), in this order:
//     NotifyComplete{n}; every pending checkpoint older than n is subsumed
//     (NotifyAborted + Discard, not a failure); if n is a checkpoint, retained
//     checkpoints beyond NumRetained are discarded oldest first
//     (Discard{Completed: true}); then a trigger that the completion allows.
//     A completion resets the failure count. An older checkpoint that is
//     completing when n completes is left alone while its metadata write is
//     in flight; when the write's result arrives it is subsumed then, whatever
//     the result.
//   - Savepoints are never subsumed, never retained or discarded once
//     completed, and do not count toward NumRetained or MaxConcurrent. A
//     savepoint older than the latest completion still completes, so
//     NotifyComplete ids are not always ascending; tasks ignore stale ones.
//   - Failures: each decline, expiry or failed metadata write of a checkpoint
//     (not of a savepoint: the user who asked for it hears of it) adds one;
//     when the consecutive count exceeds TolerableFailures (-1: unlimited),
//     FailJob is emitted once, after the abort's own actions, and nothing is
//     triggered any more. Subsumption and Shutdown are not failures.
//   - Shutdown discards every pending and completing checkpoint (Discard
//     only: the tasks are gone). After Shutdown every event returns nil.
//
// The driver carries out the actions of one event in order, delivers the
// events of one task in the order the task produced them, and calls Tick no
// later than NextDeadline (a deadline at or before now means: tick at once).
// A Discard for a checkpoint whose metadata write is in flight (only after
// Shutdown) must be carried out after that write has ended.
package coordinator

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/weirstream/weir/checkpoint"
)

// Config is the checkpointing configuration.
type Config struct {
	Interval          time.Duration // period of automatic checkpoints; 0: manual only
	Timeout           time.Duration // a pending checkpoint older than this expires; 0: never
	MinPause          time.Duration // least time from a completion to the next periodic trigger
	MaxConcurrent     int           // pending checkpoints at once (0 means 1)
	TolerableFailures int           // consecutive failures tolerated; -1: unlimited
	NumRetained       int           // completed checkpoints kept (0 means 1)
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.Interval < 0:
		return fmt.Errorf("checkpoint interval must not be negative, got %s", c.Interval)
	case c.Timeout < 0:
		return fmt.Errorf("checkpoint timeout must not be negative, got %s", c.Timeout)
	case c.MinPause < 0:
		return fmt.Errorf("min pause between checkpoints must not be negative, got %s", c.MinPause)
	case c.MaxConcurrent < 0:
		return fmt.Errorf("max concurrent checkpoints must not be negative, got %d", c.MaxConcurrent)
	case c.TolerableFailures < -1:
		return fmt.Errorf("tolerable checkpoint failures must be -1 (unlimited) or more, got %d", c.TolerableFailures)
	case c.NumRetained < 0:
		return fmt.Errorf("retained checkpoints must not be negative, got %d", c.NumRetained)
	}
	return nil
}

// Errors of TriggerNow (wrapped).
var (
	ErrShutdown        = errors.New("the coordinator is shut down")
	ErrJobFailing      = errors.New("the job is failing: too many checkpoint failures")
	ErrSourcesFinished = errors.New("every source has finished")
	ErrTooManyPending  = errors.New("too many concurrent checkpoints")
)

// Action is something the driver must carry out.
type Action interface{ isAction() }

// TriggerSources: send the barrier to these (unfinished) source subtasks.
type TriggerSources struct {
	Barrier checkpoint.Barrier
	Tasks   []checkpoint.TaskID
}

// WriteMetadata: every task acknowledged; write _metadata, then report
// MetadataWritten or MetadataFailed. Snapshots has one entry per task
// (finished tasks: empty) and belongs to the driver from now on.
type WriteMetadata struct {
	ID          checkpoint.ID
	Kind        checkpoint.Kind
	TriggeredAt time.Time
	Snapshots   map[checkpoint.TaskID]checkpoint.TaskSnapshot
}

// NotifyComplete: tell every unfinished task that checkpoint ID completed.
type NotifyComplete struct{ ID checkpoint.ID }

// NotifyAborted: tell every unfinished task that checkpoint ID will not
// complete.
type NotifyAborted struct {
	ID     checkpoint.ID
	Reason string
}

// Discard: delete checkpoint ID's files. Completed is true for a retained
// checkpoint falling out of NumRetained, false for an aborted one's partial
// files.
type Discard struct {
	ID        checkpoint.ID
	Completed bool
}

// FailJob: too many consecutive checkpoint failures.
type FailJob struct{ Reason string }

func (TriggerSources) isAction() {}
func (WriteMetadata) isAction()  {}
func (NotifyComplete) isAction() {}
func (NotifyAborted) isAction()  {}
func (Discard) isAction()        {}
func (FailJob) isAction()        {}

// pending is a triggered checkpoint that is neither completed nor aborted.
type pending struct {
	id          checkpoint.ID
	kind        checkpoint.Kind
	triggeredAt time.Time
	waiting     map[checkpoint.TaskID]bool // tasks yet to acknowledge
	acks        map[checkpoint.TaskID]checkpoint.TaskSnapshot
	completing  bool // WriteMetadata emitted; acks belongs to the driver
}

// Coordinator is the checkpoint coordinator of one job execution. It is not
// safe for concurrent use: the driver goroutine owns it.
type Coordinator struct {
	cfg      Config // MaxConcurrent and NumRetained at least 1
	tasks    []checkpoint.TaskID
	isTask   map[checkpoint.TaskID]bool
	sources  []checkpoint.TaskID
	finished map[checkpoint.TaskID]bool

	nextID     checkpoint.ID
	pending    []*pending      // ascending ids
	completed  []checkpoint.ID // retained checkpoints, ascending
	latest     checkpoint.ID   // newest completed checkpoint or savepoint; 0: none
	latestKind checkpoint.Kind

	started        bool
	nextTrigger    time.Time // next periodic trigger, before MinPause
	completedOnce  bool
	lastCompletion time.Time
	failures       int // consecutive checkpoint failures
	failed         bool
	shutdown       bool
}

// New returns a coordinator for a job whose subtasks are tasks (sources, the
// subtasks that receive triggers, among them). nextID is the id of the first
// checkpoint it triggers; retained are completed checkpoints already in
// storage that count toward NumRetained (oldest first), all below nextID.
// More than NumRetained of them are trimmed at the next completion.
func New(cfg Config, tasks, sources []checkpoint.TaskID, nextID checkpoint.ID, retained []checkpoint.ID) (*Coordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.MaxConcurrent = max(cfg.MaxConcurrent, 1)
	cfg.NumRetained = max(cfg.NumRetained, 1)
	switch {
	case len(tasks) == 0:
		return nil, errors.New("no tasks to checkpoint")
	case len(sources) == 0:
		return nil, errors.New("no source tasks to trigger checkpoints at")
	case nextID < 1:
		return nil, fmt.Errorf("first checkpoint id must be at least 1, got %d", nextID)
	}
	c := &Coordinator{cfg: cfg, tasks: slices.Clone(tasks), isTask: map[checkpoint.TaskID]bool{},
		finished: map[checkpoint.TaskID]bool{}, nextID: nextID}
	for _, t := range tasks {
		if c.isTask[t] {
			return nil, fmt.Errorf("task %s is listed twice", t)
		}
		c.isTask[t] = true
	}
	for _, s := range sources {
		if !c.isTask[s] {
			return nil, fmt.Errorf("source %s is not one of the tasks", s)
		}
		if slices.Contains(c.sources, s) {
			return nil, fmt.Errorf("source %s is listed twice", s)
		}
		c.sources = append(c.sources, s)
	}
	for _, id := range retained {
		if id < 1 {
			return nil, fmt.Errorf("retained checkpoint id must be at least 1, got %d", id)
		}
		if id >= nextID {
			return nil, fmt.Errorf("retained checkpoint %d is not below the first id %d", id, nextID)
		}
		if slices.Contains(c.completed, id) {
			return nil, fmt.Errorf("retained checkpoint %d is listed twice", id)
		}
		c.completed = append(c.completed, id)
		c.latest = max(c.latest, id)
	}
	slices.Sort(c.completed)
	return c, nil
}

// Start arms periodic checkpoints: the first is due at now+Interval.
func (c *Coordinator) Start(now time.Time) []Action {
	if c.shutdown || c.started {
		return nil
	}
	c.started = true
	c.nextTrigger = now.Add(c.cfg.Interval)
	return nil
}

// Tick expires timed-out checkpoints and triggers a due one.
func (c *Coordinator) Tick(now time.Time) []Action {
	if c.shutdown {
		return nil
	}
	var out []Action
	if c.cfg.Timeout > 0 {
		for _, p := range slices.Clone(c.pending) {
			if !p.completing && !now.Before(p.triggeredAt.Add(c.cfg.Timeout)) {
				out = append(out, c.abort(p, fmt.Sprintf("%s %d expired after %s", p.kind, p.id, c.cfg.Timeout), true)...)
			}
		}
	}
	return append(out, c.maybeTrigger(now)...)
}

func (c *Coordinator) liveSources() []checkpoint.TaskID {
	var out []checkpoint.TaskID
	for _, s := range c.sources {
		if !c.finished[s] {
			out = append(out, s)
		}
	}
	return out
}

// pendingCheckpoints counts the pending and completing checkpoints that
// count toward MaxConcurrent (not savepoints).
func (c *Coordinator) pendingCheckpoints() int {
	n := 0
	for _, p := range c.pending {
		if p.kind == checkpoint.KindCheckpoint {
			n++
		}
	}
	return n
}

// periodicDue is when the next periodic checkpoint may fire, MinPause
// included, MaxConcurrent not (ok=false: never).
func (c *Coordinator) periodicDue() (time.Time, bool) {
	if !c.started || c.cfg.Interval <= 0 || c.failed || len(c.liveSources()) == 0 {
		return time.Time{}, false
	}
	due := c.nextTrigger
	if c.completedOnce {
		if pause := c.lastCompletion.Add(c.cfg.MinPause); pause.After(due) {
			due = pause
		}
	}
	return due, true
}

func (c *Coordinator) maybeTrigger(now time.Time) []Action {
	due, ok := c.periodicDue()
	if !ok || now.Before(due) || c.pendingCheckpoints() >= c.cfg.MaxConcurrent {
		return nil
	}
	c.nextTrigger = now.Add(c.cfg.Interval)
	_, out := c.trigger(now, checkpoint.KindCheckpoint)
	return out
}

// trigger starts checkpoint nextID; the caller made sure a source is live.
func (c *Coordinator) trigger(now time.Time, kind checkpoint.Kind) (checkpoint.ID, []Action) {
	p := &pending{id: c.nextID, kind: kind, triggeredAt: now, waiting: map[checkpoint.TaskID]bool{},
		acks: map[checkpoint.TaskID]checkpoint.TaskSnapshot{}}
	c.nextID++
	for _, t := range c.tasks {
		if c.finished[t] {
			p.acks[t] = checkpoint.TaskSnapshot{}
		} else {
			p.waiting[t] = true
		}
	}
	c.pending = append(c.pending, p)
	out := []Action{TriggerSources{Barrier: checkpoint.Barrier{ID: p.id, Timestamp: now, Kind: kind}, Tasks: c.liveSources()}}
	return p.id, append(out, c.checkAcked(p)...)
}

// TriggerNow starts a checkpoint or savepoint at once. A checkpoint obeys
// MaxConcurrent but not MinPause; a savepoint obeys neither.
func (c *Coordinator) TriggerNow(now time.Time, kind checkpoint.Kind) (checkpoint.ID, []Action, error) {
	var err error
	switch {
	case c.shutdown:
		err = ErrShutdown
	case c.failed:
		err = ErrJobFailing
	case len(c.liveSources()) == 0:
		err = ErrSourcesFinished
	case kind == checkpoint.KindCheckpoint && c.pendingCheckpoints() >= c.cfg.MaxConcurrent:
		err = fmt.Errorf("%w: %d pending, max concurrent %d", ErrTooManyPending, c.pendingCheckpoints(), c.cfg.MaxConcurrent)
	}
	if err != nil {
		return 0, nil, err
	}
	id, out := c.trigger(now, kind)
	return id, out, nil
}

func (c *Coordinator) find(id checkpoint.ID) *pending {
	for _, p := range c.pending {
		if p.id == id {
			return p
		}
	}
	return nil
}

func (c *Coordinator) checkAcked(p *pending) []Action {
	if p.completing || len(p.waiting) > 0 {
		return nil
	}
	p.completing = true
	return []Action{WriteMetadata{ID: p.id, Kind: p.kind, TriggeredAt: p.triggeredAt, Snapshots: p.acks}}
}

// Ack records task's acknowledgement of checkpoint id.
func (c *Coordinator) Ack(now time.Time, id checkpoint.ID, task checkpoint.TaskID, snap checkpoint.TaskSnapshot) []Action {
	if c.shutdown {
		return nil
	}
	p := c.find(id)
	if p == nil || p.completing || !p.waiting[task] {
		return nil
	}
	delete(p.waiting, task)
	p.acks[task] = snap
	return c.checkAcked(p)
}

// Decline aborts checkpoint id because task could not take it.
func (c *Coordinator) Decline(now time.Time, id checkpoint.ID, task checkpoint.TaskID, reason error) []Action {
	if c.shutdown || !c.isTask[task] {
		return nil
	}
	p := c.find(id)
	if p == nil || p.completing {
		return nil
	}
	msg := fmt.Sprintf("%s %d declined by task %s", p.kind, id, task)
	if reason != nil {
		msg += ": " + reason.Error()
	}
	out := c.abort(p, msg, true)
	return append(out, c.maybeTrigger(now)...)
}

// TaskFinished records that task ended; it counts as acknowledged from now on.
func (c *Coordinator) TaskFinished(now time.Time, task checkpoint.TaskID) []Action {
	if c.shutdown || !c.isTask[task] || c.finished[task] {
		return nil
	}
	c.finished[task] = true
	var out []Action
	for _, p := range c.pending {
		if p.waiting[task] {
			delete(p.waiting, task)
			p.acks[task] = checkpoint.TaskSnapshot{}
			out = append(out, c.checkAcked(p)...)
		}
	}
	return out
}

// overtaken reports whether completing p can no longer complete because a
// newer checkpoint or savepoint completed while its metadata was written.
func (c *Coordinator) overtaken(p *pending) bool {
	return p.kind == checkpoint.KindCheckpoint && p.id < c.latest
}

// subsume aborts p, which a completion of latest made obsolete.
func (c *Coordinator) subsume(p *pending) []Action {
	return c.abort(p, fmt.Sprintf("%s %d subsumed by %s %d", p.kind, p.id, c.latestKind, c.latest), false)
}

// MetadataWritten completes checkpoint id: its _metadata is durable.
func (c *Coordinator) MetadataWritten(now time.Time, id checkpoint.ID) []Action {
	if c.shutdown {
		return nil
	}
	p := c.find(id)
	if p == nil || !p.completing {
		return nil
	}
	if c.overtaken(p) {
		return append(c.subsume(p), c.maybeTrigger(now)...)
	}
	c.remove(p)
	c.completedOnce, c.lastCompletion = true, now
	c.failures = 0
	if id > c.latest {
		c.latest, c.latestKind = id, p.kind
	}
	out := []Action{NotifyComplete{ID: id}}
	for _, old := range slices.Clone(c.pending) {
		if old.id < id && old.kind == checkpoint.KindCheckpoint && !old.completing {
			out = append(out, c.subsume(old)...)
		}
	}
	if p.kind == checkpoint.KindCheckpoint {
		c.completed = append(c.completed, id) // above every retained id
		for len(c.completed) > c.cfg.NumRetained {
			out = append(out, Discard{ID: c.completed[0], Completed: true})
			c.completed = c.completed[1:]
		}
	}
	return append(out, c.maybeTrigger(now)...)
}

// MetadataFailed aborts checkpoint id: its _metadata could not be written.
func (c *Coordinator) MetadataFailed(now time.Time, id checkpoint.ID, err error) []Action {
	if c.shutdown {
		return nil
	}
	p := c.find(id)
	if p == nil || !p.completing {
		return nil
	}
	var out []Action
	if c.overtaken(p) {
		out = c.subsume(p)
	} else {
		out = c.abort(p, fmt.Sprintf("cannot write metadata of %s %d: %v", p.kind, id, err), true)
	}
	return append(out, c.maybeTrigger(now)...)
}

func (c *Coordinator) remove(p *pending) {
	c.pending = slices.DeleteFunc(c.pending, func(q *pending) bool { return q == p })
}

// abort removes p and tells the tasks and the driver. A failure of a
// checkpoint (not a savepoint) counts toward TolerableFailures.
func (c *Coordinator) abort(p *pending, reason string, failure bool) []Action {
	c.remove(p)
	out := []Action{NotifyAborted{ID: p.id, Reason: reason}, Discard{ID: p.id}}
	if failure && p.kind == checkpoint.KindCheckpoint {
		c.failures++
		if c.cfg.TolerableFailures >= 0 && c.failures > c.cfg.TolerableFailures && !c.failed {
			c.failed = true
			out = append(out, FailJob{Reason: fmt.Sprintf("%d consecutive checkpoint failures exceed the %d tolerated; last: %s",
				c.failures, c.cfg.TolerableFailures, reason)})
		}
	}
	return out
}

// Shutdown aborts every pending checkpoint (discarding its files; the tasks
// are gone, so none is notified). Every later event returns nil.
func (c *Coordinator) Shutdown(now time.Time) []Action {
	if c.shutdown {
		return nil
	}
	c.shutdown = true
	var out []Action
	for _, p := range c.pending {
		out = append(out, Discard{ID: p.id})
	}
	c.pending = nil
	return out
}

// NextDeadline is the earliest time Tick must be called: the next periodic
// trigger (when a slot is free) or the next expiry. It may be at or before
// the time of the last event other than Tick; then tick at once.
func (c *Coordinator) NextDeadline() (time.Time, bool) {
	if c.shutdown {
		return time.Time{}, false
	}
	var best time.Time
	ok := false
	consider := func(t time.Time) {
		if !ok || t.Before(best) {
			best, ok = t, true
		}
	}
	if due, yes := c.periodicDue(); yes && c.pendingCheckpoints() < c.cfg.MaxConcurrent {
		consider(due)
	}
	if c.cfg.Timeout > 0 {
		for _, p := range c.pending {
			if !p.completing {
				consider(p.triggeredAt.Add(c.cfg.Timeout))
			}
		}
	}
	return best, ok
}

// NextID is the id the next checkpoint will get.
func (c *Coordinator) NextID() checkpoint.ID { return c.nextID }

// Pending lists the pending and completing checkpoints and savepoints,
// ascending.
func (c *Coordinator) Pending() []checkpoint.ID {
	out := make([]checkpoint.ID, len(c.pending))
	for i, p := range c.pending {
		out[i] = p.id
	}
	return out
}

// Completed lists the retained completed checkpoints (not savepoints),
// ascending.
func (c *Coordinator) Completed() []checkpoint.ID { return slices.Clone(c.completed) }

// LatestCompleted is the newest completed checkpoint or savepoint (initially
// the newest retained id given to New). Tasks were told it completed, so a
// failover with exactly-once sinks must not restore from anything older.
func (c *Coordinator) LatestCompleted() (checkpoint.ID, bool) { return c.latest, c.latest != 0 }
