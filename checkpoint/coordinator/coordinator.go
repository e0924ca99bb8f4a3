// Package coordinator is weir's checkpoint coordinator as a pure state
// machine: events in (a tick of the clock, an acknowledgement, a decline, a
// source at end of input, a finished task, a request to stop, the result of
// writing metadata), actions out (trigger the sources, write metadata,
// notify tasks, stop or finish the sources, discard files, fail the job).
// It starts no goroutine, does no I/O and never reads the clock: the driver
// in package runtime does all that and feeds the outcome back as events.
//
// A checkpoint is triggered (TriggerSources), pending until every task has
// acknowledged it, then completing (WriteMetadata) until the driver reports
// MetadataWritten (completed) or MetadataFailed (aborted). Every triggered
// id ends exactly once: completed, or aborted by a decline, an expiry, a
// failed metadata write, subsumption, the end of the job or Shutdown.
//
// Semantics, following Flink's CheckpointCoordinator (1.15 and later):
//
//   - Ids strictly increase and are never reused, also for aborted
//     checkpoints. New takes the first id, so a driver continues above every
//     id in storage and ids stay monotonic across process restarts.
//   - Periodic checkpoints are due at Start+Interval, then Interval after the
//     previous periodic trigger actually fired (no catch-up bursts), but never
//     while MaxConcurrent checkpoints are pending or completing (savepoints do
//     not count), never earlier than MinPause after the last completion, and
//     never earlier than the retry backoff after a failure (RetryBackoff,
//     doubled per consecutive failure up to MaxRetryBackoff, at least
//     MinPause). A due trigger that is blocked fires as soon as it is
//     allowed: in the actions of the event that frees a slot, or at the
//     deadline NextDeadline reports.
//   - Trigger (a user's request, answered by Triggered or TriggerRefused
//     with the request's number): a savepoint starts at once (it ignores
//     MaxConcurrent and MinPause); a checkpoint starts at once when a slot is
//     free and otherwise waits in a queue of at most MaxQueued requests,
//     served before periodic triggers as slots free up. Requests are refused
//     with ErrShutdown, ErrJobFailing, ErrSourcesFinished, ErrFinishing (the
//     job is taking its final checkpoint) or ErrTooManyPending (queue full);
//     queued requests are refused when the coordinator shuts down, fails the
//     job or finishes.
//   - A checkpoint completes when every task acknowledged it; a finished task
//     counts as having acknowledged, with an empty TaskSnapshot, every pending
//     and every later checkpoint. Finished sources receive no trigger. The
//     last ack yields WriteMetadata, whose Snapshots hold one entry per task;
//     the checkpoint is then completing, and acks, declines and expiry no
//     longer touch it until the driver reports MetadataWritten or
//     MetadataFailed.
//   - Acks for unknown, aborted, completing or completed checkpoints, from
//     unknown or finished tasks, or repeated, are ignored; so are declines of
//     unknown or completing checkpoints and declines from unknown tasks.
//   - A decline (except DeclineCancelled, which only echoes another task's
//     decline and is ignored), an expiry (age >= Timeout; only Tick expires),
//     a failed trigger or a failed metadata write aborts the checkpoint:
//     NotifyAborted, then Discard{Completed: false}.
//   - Completion of a checkpoint n: Completed{n, Notified: true}, then
//     NotifyComplete{n} (sinks commit here); every pending checkpoint older
//     than n is subsumed (NotifyAborted + Discard, not a failure); retained
//     checkpoints beyond NumRetained are discarded oldest first
//     (Discard{Completed: true}); the failure count resets.
//   - Completion of a savepoint (one that does not stop the job):
//     Completed{n, Notified: false} and nothing else. Tasks are not told,
//     so sinks commit nothing on it (its pre-committed transactions are
//     committed by the next completed checkpoint); it subsumes nothing, is
//     never retained or discarded, and does not count toward NumRetained or
//     MaxConcurrent. RestorePoint does not move: a failover restores the
//     newest checkpoint whose completion the tasks were told, so it never
//     goes back behind what a sink committed.
//   - An older checkpoint that is completing when a newer notified one
//     completes is left alone while its metadata write is in flight; when
//     the write's result arrives it is subsumed then, whatever the result.
//   - End of input: once every source reported SourceEnded (or finished),
//     the coordinator takes a final checkpoint, triggered after that moment
//     so that it covers every record: periodic triggers stop, user requests
//     are refused with ErrFinishing, and when nothing is pending the final
//     checkpoint is triggered (again after the retry backoff if it fails).
//     Its completion is notified (so sinks commit the tail) and followed by
//     FinishSources: the sources emit end of partition and the job ends.
//     Every other pending checkpoint is then aborted (not a failure) and
//     nothing is triggered any more. If the final checkpoint has not
//     completed FinalTimeout after the sources ended, FailJob{Permanent:
//     true}: retrying cannot help a job whose checkpoints cannot complete.
//   - StopWithSavepoint: StopSources to the sources still reading; they then
//     report SourceEnded like at end of input, and the final checkpoint is a
//     savepoint whose completion is notified (stop-with-savepoint commits).
//   - Failures: each counted decline (DeclineFailure), expiry, failed
//     trigger or failed metadata write of a checkpoint or of the final
//     savepoint adds one (a user's savepoint does not: the user who asked
//     hears of it); when the consecutive count exceeds TolerableFailures
//     (-1: unlimited), FailJob is emitted once, after the abort's own
//     actions, and nothing is triggered any more. Subsumption, the end of
//     the job, non-counting declines and Shutdown are not failures.
//   - Shutdown discards every pending and completing checkpoint (Discard
//     only: the tasks are gone) and refuses queued requests. After Shutdown
//     every event returns nil.
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
	// FinalTimeout bounds the time from the end of input (or a stop) to
	// the completion of the final checkpoint, retries included; 0: no bound.
	FinalTimeout time.Duration
	// MaxQueued bounds the user checkpoint requests waiting for a free
	// slot (0 means DefaultMaxQueued).
	MaxQueued int
}

// DefaultMaxQueued is the default bound of queued checkpoint requests.
const DefaultMaxQueued = 16

// Retry backoff after a failed checkpoint: RetryBackoff after the first
// consecutive failure, doubled per further failure, at most MaxRetryBackoff.
const (
	RetryBackoff    = 100 * time.Millisecond
	MaxRetryBackoff = 10 * time.Second
)

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
	case c.FinalTimeout < 0:
		return fmt.Errorf("final checkpoint timeout must not be negative, got %s", c.FinalTimeout)
	case c.MaxQueued < 0:
		return fmt.Errorf("queued checkpoint requests must not be negative, got %d", c.MaxQueued)
	}
	return nil
}

// Errors of Trigger and StopWithSavepoint (wrapped).
var (
	ErrShutdown        = errors.New("the coordinator is shut down")
	ErrJobFailing      = errors.New("the job is failing: too many checkpoint failures")
	ErrSourcesFinished = errors.New("every source has finished")
	ErrFinishing       = errors.New("the job is taking its final checkpoint")
	ErrTooManyPending  = errors.New("too many concurrent checkpoints")
)

// DeclineReason says why a task declined a checkpoint, which decides
// whether the decline counts as a checkpoint failure.
type DeclineReason uint8

const (
	// DeclineFailure: the task could not take its snapshot (a local disk,
	// the storage, a sink's pre-commit). Counts as a failure.
	DeclineFailure DeclineReason = iota
	// DeclineSubsumed: a newer barrier overtook the checkpoint at the task.
	DeclineSubsumed
	// DeclineCancelled: an upstream task's cancellation marker. The task
	// that sent it declined on its own, so this decline is ignored.
	DeclineCancelled
	// DeclineEndOfInput: the task's input ended before the checkpoint's
	// barrier came.
	DeclineEndOfInput
	// DeclineNotRunning: the task is not running yet, or is closing.
	DeclineNotRunning
)

// Counts reports whether a decline for this reason counts as a failure.
func (r DeclineReason) Counts() bool { return r == DeclineFailure }

func (r DeclineReason) String() string {
	switch r {
	case DeclineFailure:
		return "failure"
	case DeclineSubsumed:
		return "subsumed"
	case DeclineCancelled:
		return "cancelled"
	case DeclineEndOfInput:
		return "end-of-input"
	case DeclineNotRunning:
		return "not-running"
	}
	return fmt.Sprintf("DeclineReason(%d)", uint8(r))
}

// Action is something the driver must carry out.
type Action interface{ isAction() }

// TriggerSources: send the barrier to these (unfinished) source subtasks.
// Final is set for the final checkpoint at the end of the job.
type TriggerSources struct {
	Barrier checkpoint.Barrier
	Tasks   []checkpoint.TaskID
	Final   bool
}

// Triggered answers request Request: it started as checkpoint ID.
type Triggered struct {
	Request uint64
	ID      checkpoint.ID
}

// TriggerRefused answers request Request: it was not started.
type TriggerRefused struct {
	Request uint64
	Err     error
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

// Completed: checkpoint ID is complete (its metadata is durable). Notified
// tells whether a NotifyComplete follows (checkpoints and the final
// checkpoint or savepoint) or not (a savepoint that does not stop the job).
type Completed struct {
	ID       checkpoint.ID
	Kind     checkpoint.Kind
	Notified bool
}

// NotifyComplete: tell every unfinished task that checkpoint ID completed
// (sinks commit here). From now on a failover restores ID or newer: a
// driver with high availability records ID as the latest before it tells
// the tasks.
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

// StopSources: these sources stop reading (stop-with-savepoint) and report
// SourceEnded as at the end of their input.
type StopSources struct{ Tasks []checkpoint.TaskID }

// FinishSources: the final checkpoint ID (of Kind) completed; these sources
// emit end of partition, and the job ends.
type FinishSources struct {
	Tasks []checkpoint.TaskID
	ID    checkpoint.ID
	Kind  checkpoint.Kind
}

// FailJob: the job must fail. Permanent says a restart cannot help (the
// final checkpoint could not complete in time).
type FailJob struct {
	Reason    string
	Permanent bool
}

func (TriggerSources) isAction() {}
func (Triggered) isAction()      {}
func (TriggerRefused) isAction() {}
func (WriteMetadata) isAction()  {}
func (Completed) isAction()      {}
func (NotifyComplete) isAction() {}
func (NotifyAborted) isAction()  {}
func (Discard) isAction()        {}
func (StopSources) isAction()    {}
func (FinishSources) isAction()  {}
func (FailJob) isAction()        {}

// pending is a triggered checkpoint that is neither completed nor aborted.
type pending struct {
	id          checkpoint.ID
	kind        checkpoint.Kind
	final       bool
	triggeredAt time.Time
	waiting     map[checkpoint.TaskID]bool // tasks yet to acknowledge
	acks        map[checkpoint.TaskID]checkpoint.TaskSnapshot
	completing  bool // WriteMetadata emitted; acks belongs to the driver
}

// counts reports whether a failure of p counts toward TolerableFailures.
func (p *pending) counts() bool { return p.kind == checkpoint.KindCheckpoint || p.final }

type request struct {
	id   uint64
	kind checkpoint.Kind
}

// Coordinator is the checkpoint coordinator of one job execution. It is not
// safe for concurrent use: the driver goroutine owns it.
type Coordinator struct {
	cfg      Config // MaxConcurrent, NumRetained and MaxQueued at least 1
	tasks    []checkpoint.TaskID
	isTask   map[checkpoint.TaskID]bool
	sources  []checkpoint.TaskID
	isSource map[checkpoint.TaskID]bool
	finished map[checkpoint.TaskID]bool
	ended    map[checkpoint.TaskID]bool // sources at the end of their input

	nextID    checkpoint.ID
	pending   []*pending      // ascending ids
	queued    []request       // user checkpoint requests waiting for a slot
	completed []checkpoint.ID // retained checkpoints, ascending
	notified  checkpoint.ID   // newest completion told to the tasks (or newest retained); 0: none
	restore   checkpoint.ID   // newest completion told to the tasks by this coordinator

	started        bool
	nextTrigger    time.Time // next periodic trigger, before MinPause
	completedOnce  bool
	lastCompletion time.Time
	failures       int       // consecutive checkpoint failures
	retryAt        time.Time // no trigger before this (backoff after a failure)
	failed         bool
	shutdown       bool

	stopping bool // StopWithSavepoint was asked
	final    struct {
		wanted bool
		after  checkpoint.ID // the final checkpoint's id is above this
		since  time.Time
		done   bool
		last   string // why the last attempt failed
	}
}

// New returns a coordinator for a job whose subtasks are tasks (sources, the
// subtasks that receive triggers, among them). nextID is the id of the first
// checkpoint it triggers; retained are completed checkpoints already in
// storage that this job owns and that count toward NumRetained (oldest
// first), all below nextID. More than NumRetained of them are trimmed at the
// next completion.
func New(cfg Config, tasks, sources []checkpoint.TaskID, nextID checkpoint.ID, retained []checkpoint.ID) (*Coordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.MaxConcurrent = max(cfg.MaxConcurrent, 1)
	cfg.NumRetained = max(cfg.NumRetained, 1)
	if cfg.MaxQueued == 0 {
		cfg.MaxQueued = DefaultMaxQueued
	}
	switch {
	case len(tasks) == 0:
		return nil, errors.New("no tasks to checkpoint")
	case len(sources) == 0:
		return nil, errors.New("no source tasks to trigger checkpoints at")
	case nextID < 1:
		return nil, fmt.Errorf("first checkpoint id must be at least 1, got %d", nextID)
	}
	c := &Coordinator{cfg: cfg, tasks: slices.Clone(tasks), isTask: map[checkpoint.TaskID]bool{},
		isSource: map[checkpoint.TaskID]bool{}, finished: map[checkpoint.TaskID]bool{},
		ended: map[checkpoint.TaskID]bool{}, nextID: nextID}
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
		if c.isSource[s] {
			return nil, fmt.Errorf("source %s is listed twice", s)
		}
		c.isSource[s] = true
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
		c.notified = max(c.notified, id)
	}
	slices.Sort(c.completed)
	return c, nil
}

// active reports whether the coordinator may still trigger anything.
func (c *Coordinator) active() bool { return !c.shutdown && !c.failed && !c.final.done }

// Start arms periodic checkpoints: the first is due at now+Interval.
func (c *Coordinator) Start(now time.Time) []Action {
	if c.shutdown || c.started {
		return nil
	}
	c.started = true
	c.nextTrigger = now.Add(c.cfg.Interval)
	return c.next(now)
}

// Tick expires timed-out checkpoints, ends a final checkpoint that took too
// long, and triggers what is due.
func (c *Coordinator) Tick(now time.Time) []Action {
	if c.shutdown {
		return nil
	}
	var out []Action
	if c.cfg.Timeout > 0 {
		for _, p := range slices.Clone(c.pending) {
			if !p.completing && !now.Before(p.triggeredAt.Add(c.cfg.Timeout)) {
				out = append(out, c.abort(now, p, fmt.Sprintf("%s %d expired after %s", p.kind, p.id, c.cfg.Timeout), true)...)
			}
		}
	}
	if c.final.wanted && !c.final.done && !c.failed && c.cfg.FinalTimeout > 0 && !now.Before(c.final.since.Add(c.cfg.FinalTimeout)) {
		c.failed = true
		reason := fmt.Sprintf("the final %s did not complete within %s of the end of the input", c.finalKind(), c.cfg.FinalTimeout)
		if c.final.last != "" {
			reason += "; last failure: " + c.final.last
		}
		out = append(out, FailJob{Reason: reason, Permanent: true})
		out = append(out, c.refuseQueued(ErrJobFailing)...)
	}
	return append(out, c.next(now)...)
}

func (c *Coordinator) finalKind() checkpoint.Kind {
	if c.stopping {
		return checkpoint.KindSavepoint
	}
	return checkpoint.KindCheckpoint
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

func (c *Coordinator) slotFree() bool { return c.pendingCheckpoints() < c.cfg.MaxConcurrent }

// earliest is when the next automatic trigger may fire, before the
// interval: not before the retry backoff nor MinPause after the last
// completion.
func (c *Coordinator) earliest(withMinPause bool) time.Time {
	t := c.retryAt
	if withMinPause && c.completedOnce {
		if p := c.lastCompletion.Add(c.cfg.MinPause); p.After(t) {
			t = p
		}
	}
	return t
}

// periodicDue is when the next periodic checkpoint may fire, MinPause and
// backoff included, MaxConcurrent not (ok=false: never).
func (c *Coordinator) periodicDue() (time.Time, bool) {
	if !c.started || c.cfg.Interval <= 0 || !c.active() || c.final.wanted || len(c.liveSources()) == 0 {
		return time.Time{}, false
	}
	due := c.nextTrigger
	if e := c.earliest(true); e.After(due) {
		due = e
	}
	return due, true
}

// finalDue is when the final checkpoint may be triggered (ok=false: not
// now, or not wanted).
func (c *Coordinator) finalDue() (time.Time, bool) {
	if !c.final.wanted || !c.active() || len(c.pending) > 0 || len(c.liveSources()) == 0 {
		return time.Time{}, false
	}
	return c.earliest(false), true
}

// next triggers what is due at now: the final checkpoint, queued requests,
// a periodic checkpoint.
func (c *Coordinator) next(now time.Time) []Action {
	if c.shutdown || !c.started {
		return nil
	}
	var out []Action
	if due, ok := c.finalDue(); ok && !now.Before(due) {
		_, acts := c.trigger(now, c.finalKind(), true)
		out = append(out, acts...)
	}
	for len(c.queued) > 0 && c.active() && !c.final.wanted && len(c.liveSources()) > 0 && c.slotFree() {
		r := c.queued[0]
		c.queued = c.queued[1:]
		id, acts := c.trigger(now, r.kind, false)
		out = append(out, Triggered{Request: r.id, ID: id})
		out = append(out, acts...)
	}
	if due, ok := c.periodicDue(); ok && !now.Before(due) && c.slotFree() {
		c.nextTrigger = now.Add(c.cfg.Interval)
		_, acts := c.trigger(now, checkpoint.KindCheckpoint, false)
		out = append(out, acts...)
	}
	return out
}

// trigger starts checkpoint nextID; the caller made sure a source is live.
func (c *Coordinator) trigger(now time.Time, kind checkpoint.Kind, final bool) (checkpoint.ID, []Action) {
	p := &pending{id: c.nextID, kind: kind, final: final, triggeredAt: now, waiting: map[checkpoint.TaskID]bool{},
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
	out := []Action{TriggerSources{Barrier: checkpoint.Barrier{ID: p.id, Timestamp: now, Kind: kind}, Tasks: c.liveSources(), Final: final}}
	return p.id, append(out, c.checkAcked(p)...)
}

// refusal is the reason a request cannot start now (nil: it can, or it
// can wait in the queue).
func (c *Coordinator) refusal() error {
	switch {
	case c.shutdown:
		return ErrShutdown
	case c.failed:
		return ErrJobFailing
	case len(c.liveSources()) == 0:
		return ErrSourcesFinished
	case c.final.wanted || c.final.done:
		return ErrFinishing
	}
	return nil
}

// Trigger is a user's request req for a checkpoint or savepoint now. Its
// answer is a Triggered (followed by the TriggerSources) or a
// TriggerRefused action, now or, for a queued checkpoint, when a slot frees.
func (c *Coordinator) Trigger(now time.Time, kind checkpoint.Kind, req uint64) []Action {
	if err := c.refusal(); err != nil {
		return []Action{TriggerRefused{Request: req, Err: fmt.Errorf("cannot trigger a %s: %w", kind, err)}}
	}
	if kind == checkpoint.KindCheckpoint && (!c.slotFree() || len(c.queued) > 0) {
		if len(c.queued) >= c.cfg.MaxQueued {
			return []Action{TriggerRefused{Request: req, Err: fmt.Errorf("cannot trigger a checkpoint: %w: %d pending, max concurrent %d, %d requests queued",
				ErrTooManyPending, c.pendingCheckpoints(), c.cfg.MaxConcurrent, len(c.queued))}}
		}
		c.queued = append(c.queued, request{id: req, kind: kind})
		return nil
	}
	id, acts := c.trigger(now, kind, false)
	return append([]Action{Triggered{Request: req, ID: id}}, acts...)
}

func (c *Coordinator) refuseQueued(err error) []Action {
	var out []Action
	for _, r := range c.queued {
		out = append(out, TriggerRefused{Request: r.id, Err: fmt.Errorf("cannot trigger a %s: %w", r.kind, err)})
	}
	c.queued = nil
	return out
}

// StopWithSavepoint asks the sources to stop; the final checkpoint of the
// job is then a savepoint whose completion the tasks are told.
func (c *Coordinator) StopWithSavepoint(now time.Time) ([]Action, error) {
	switch err := c.refusal(); {
	case err != nil:
		return nil, fmt.Errorf("cannot stop with a savepoint: %w", err)
	case c.stopping:
		return nil, fmt.Errorf("cannot stop with a savepoint: %w", ErrFinishing)
	}
	c.stopping = true
	var stop []checkpoint.TaskID
	for _, s := range c.liveSources() {
		if !c.ended[s] {
			stop = append(stop, s)
		}
	}
	return []Action{StopSources{Tasks: stop}}, nil
}

// SourceEnded records that source task reached the end of its input (or
// stopped). When every source has, the final checkpoint is due.
func (c *Coordinator) SourceEnded(now time.Time, task checkpoint.TaskID) []Action {
	if c.shutdown || !c.isSource[task] || c.ended[task] {
		return nil
	}
	c.ended[task] = true
	return c.checkEnded(now)
}

func (c *Coordinator) checkEnded(now time.Time) []Action {
	if c.final.wanted {
		return nil
	}
	for _, s := range c.sources {
		if !c.ended[s] && !c.finished[s] {
			return nil
		}
	}
	c.final.wanted, c.final.after, c.final.since = true, c.nextID-1, now
	out := c.refuseQueued(ErrFinishing)
	return append(out, c.next(now)...)
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

// Decline aborts checkpoint id because task could not take it; whether it
// counts as a failure depends on reason (DeclineCancelled is ignored).
func (c *Coordinator) Decline(now time.Time, id checkpoint.ID, task checkpoint.TaskID, reason DeclineReason, cause error) []Action {
	if c.shutdown || !c.isTask[task] || reason == DeclineCancelled {
		return nil
	}
	p := c.find(id)
	if p == nil || p.completing {
		return nil
	}
	msg := fmt.Sprintf("%s %d declined by task %s", p.kind, id, task)
	if cause != nil {
		msg += ": " + cause.Error()
	}
	out := c.abort(now, p, msg, reason.Counts())
	return append(out, c.next(now)...)
}

// TriggerFailed aborts checkpoint id: the driver could not deliver its
// trigger (a counted failure).
func (c *Coordinator) TriggerFailed(now time.Time, id checkpoint.ID, cause error) []Action {
	if c.shutdown {
		return nil
	}
	p := c.find(id)
	if p == nil || p.completing {
		return nil
	}
	out := c.abort(now, p, fmt.Sprintf("cannot trigger %s %d: %v", p.kind, id, cause), true)
	return append(out, c.next(now)...)
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
	if c.isSource[task] {
		out = append(out, c.checkEnded(now)...)
	}
	return out
}

// overtaken reports whether completing p can no longer complete because a
// newer notified checkpoint completed while its metadata was written.
func (c *Coordinator) overtaken(p *pending) bool {
	return p.kind == checkpoint.KindCheckpoint && !p.final && p.id < c.notified
}

// subsume aborts p, which the completion of a newer checkpoint made
// obsolete.
func (c *Coordinator) subsume(now time.Time, p *pending) []Action {
	return c.abort(now, p, fmt.Sprintf("%s %d subsumed by checkpoint %d", p.kind, p.id, c.notified), false)
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
		return append(c.subsume(now, p), c.next(now)...)
	}
	c.remove(p)
	c.completedOnce, c.lastCompletion = true, now
	notify := p.kind == checkpoint.KindCheckpoint || p.final
	out := []Action{Completed{ID: id, Kind: p.kind, Notified: notify}}
	if !notify {
		return append(out, c.next(now)...)
	}
	out = append(out, NotifyComplete{ID: id})
	c.failures, c.retryAt = 0, time.Time{}
	c.notified = max(c.notified, id)
	c.restore = max(c.restore, id)
	for _, old := range slices.Clone(c.pending) {
		if old.id < id && old.kind == checkpoint.KindCheckpoint && !old.completing {
			out = append(out, c.subsume(now, old)...)
		}
	}
	if p.kind == checkpoint.KindCheckpoint {
		c.completed = append(c.completed, id) // above every retained id
		for len(c.completed) > c.cfg.NumRetained {
			out = append(out, Discard{ID: c.completed[0], Completed: true})
			c.completed = c.completed[1:]
		}
	}
	if p.final {
		c.final.done = true
		for _, q := range slices.Clone(c.pending) {
			out = append(out, c.abort(now, q, fmt.Sprintf("%s %d aborted: the job finished with %s %d", q.kind, q.id, p.kind, id), false)...)
		}
		out = append(out, c.refuseQueued(ErrFinishing)...)
		out = append(out, FinishSources{Tasks: c.liveSources(), ID: id, Kind: p.kind})
		return out
	}
	return append(out, c.next(now)...)
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
		out = c.subsume(now, p)
	} else {
		out = c.abort(now, p, fmt.Sprintf("cannot write metadata of %s %d: %v", p.kind, id, err), true)
	}
	return append(out, c.next(now)...)
}

func (c *Coordinator) remove(p *pending) {
	c.pending = slices.DeleteFunc(c.pending, func(q *pending) bool { return q == p })
}

// abort removes p and tells the tasks and the driver. A failure of a
// checkpoint or of the final savepoint counts toward TolerableFailures and
// sets the retry backoff.
func (c *Coordinator) abort(now time.Time, p *pending, reason string, failure bool) []Action {
	c.remove(p)
	out := []Action{NotifyAborted{ID: p.id, Reason: reason}, Discard{ID: p.id}}
	if p.final {
		c.final.last = reason
	}
	if failure && p.counts() {
		c.failures++
		c.retryAt = now.Add(Backoff(c.failures, c.cfg.MinPause))
		if c.cfg.TolerableFailures >= 0 && c.failures > c.cfg.TolerableFailures && !c.failed {
			c.failed = true
			out = append(out, FailJob{Reason: fmt.Sprintf("%d consecutive checkpoint failures exceed the %d tolerated; last: %s",
				c.failures, c.cfg.TolerableFailures, reason)})
			out = append(out, c.refuseQueued(ErrJobFailing)...)
		}
	}
	return out
}

// Backoff is the pause before retrying after the failures-th consecutive
// failure: RetryBackoff doubled per further failure, at most
// MaxRetryBackoff, and at least minPause.
func Backoff(failures int, minPause time.Duration) time.Duration {
	d := RetryBackoff
	for i := 1; i < failures && d < MaxRetryBackoff; i++ {
		d *= 2
	}
	return max(min(d, MaxRetryBackoff), minPause)
}

// Shutdown aborts every pending checkpoint (discarding its files; the tasks
// are gone, so none is notified) and refuses queued requests. Every later
// event returns nil.
func (c *Coordinator) Shutdown(now time.Time) []Action {
	if c.shutdown {
		return nil
	}
	c.shutdown = true
	out := c.refuseQueued(ErrShutdown)
	for _, p := range c.pending {
		out = append(out, Discard{ID: p.id})
	}
	c.pending = nil
	return out
}

// NextDeadline is the earliest time Tick must be called: the next periodic
// trigger (when a slot is free), the final checkpoint's retry or bound, or
// the next expiry. It may be at or before the time of the last event other
// than Tick; then tick at once.
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
	if due, yes := c.periodicDue(); yes && c.slotFree() {
		consider(due)
	}
	if c.started {
		if due, yes := c.finalDue(); yes {
			consider(due)
		}
	}
	if c.final.wanted && !c.final.done && !c.failed && c.cfg.FinalTimeout > 0 {
		consider(c.final.since.Add(c.cfg.FinalTimeout))
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

// Queued is the number of user checkpoint requests waiting for a slot.
func (c *Coordinator) Queued() int { return len(c.queued) }

// Completed lists the retained completed checkpoints (not savepoints),
// ascending.
func (c *Coordinator) Completed() []checkpoint.ID { return slices.Clone(c.completed) }

// RestorePoint is the newest checkpoint (or final savepoint) whose
// completion this coordinator told the tasks: sinks may have committed up
// to it, so a failover must restore it or something newer. ok is false
// when this coordinator completed none.
func (c *Coordinator) RestorePoint() (checkpoint.ID, bool) { return c.restore, c.restore != 0 }

// Finished reports whether the final checkpoint completed.
func (c *Coordinator) Finished() bool { return c.final.done }
