package coordinator

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/checkpoint"
)

// TestRandomEvents drives coordinators with random configurations through
// random event sequences (ticks, exact deadlines, acks, declines with every
// reason, failed triggers, finished tasks, sources at end of input, stops,
// metadata results in any order, user requests, bogus ids and tasks) and
// checks every action and the state after every step against an
// independent model of the rules in the package doc. Its central
// invariant: the restore point is always the newest checkpoint whose
// completion the tasks were told, so a failover never goes back behind a
// sink's commit.
func TestRandomEvents(t *testing.T) {
	seeds := 3000
	if testing.Short() {
		seeds = 300
	}
	for seed := range uint64(seeds) {
		runRandom(t, seed)
	}
}

type ckState uint8

const (
	stPending ckState = iota + 1
	stCompleting
	stCompleted
	stAborted
)

type modelCk struct {
	kind        checkpoint.Kind
	final       bool
	triggeredAt time.Time
	state       ckState
	discarded   bool // Discard{Completed: false} seen
	retained    bool // completed checkpoint still retained
	notified    bool
	acked       map[checkpoint.TaskID]int64
}

func (ck *modelCk) counts() bool { return ck.kind == checkpoint.KindCheckpoint || ck.final }

// model is what the coordinator should be, rebuilt from its actions and
// checked against them.
type model struct {
	t       *testing.T
	seed    uint64
	cfg     Config // normalized
	tasks   []checkpoint.TaskID
	sources []checkpoint.TaskID

	now      time.Time
	started  bool
	shutdown bool
	finished map[checkpoint.TaskID]bool
	ended    map[checkpoint.TaskID]bool
	cks      map[checkpoint.ID]*modelCk
	lastID   checkpoint.ID
	retained []checkpoint.ID
	notified checkpoint.ID // newest notified (or retained at start)
	restore  checkpoint.ID // newest notified by this coordinator

	nextPeriodic   time.Time
	lastCompletion time.Time
	completedOnce  bool
	failures       int
	retryAt        time.Time
	failJob        bool

	stopping    bool
	finalWanted bool
	finalAfter  checkpoint.ID
	finalSince  time.Time
	finalDone   bool

	queued   []uint64                   // waiting requests, in order
	reqKind  map[uint64]checkpoint.Kind // every request made
	answered map[uint64]bool
	nextReq  uint64

	step int
}

func (m *model) fatalf(format string, args ...any) {
	m.t.Helper()
	m.t.Fatalf("seed %d step %d: %s", m.seed, m.step, fmt.Sprintf(format, args...))
}

func (m *model) liveSources() []checkpoint.TaskID {
	var out []checkpoint.TaskID
	for _, s := range m.sources {
		if !m.finished[s] {
			out = append(out, s)
		}
	}
	return out
}

func (m *model) open(kind checkpoint.Kind) (ids []checkpoint.ID) {
	for id, ck := range m.cks {
		if (ck.state == stPending || ck.state == stCompleting) && (kind == 255 || ck.kind == kind) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

func (m *model) active() bool { return !m.shutdown && !m.failJob && !m.finalDone }

func (m *model) earliest(minPause bool) time.Time {
	t := m.retryAt
	if minPause && m.completedOnce && m.lastCompletion.Add(m.cfg.MinPause).After(t) {
		t = m.lastCompletion.Add(m.cfg.MinPause)
	}
	return t
}

// periodicDue: when the next periodic trigger may fire (MinPause and the
// backoff included), and whether it is armed at all.
func (m *model) periodicDue() (time.Time, bool) {
	if !m.started || !m.active() || m.finalWanted || m.cfg.Interval == 0 || len(m.liveSources()) == 0 {
		return time.Time{}, false
	}
	due := m.nextPeriodic
	if e := m.earliest(true); e.After(due) {
		due = e
	}
	return due, true
}

func (m *model) finalDue() (time.Time, bool) {
	if !m.started || !m.finalWanted || !m.active() || len(m.open(255)) > 0 || len(m.liveSources()) == 0 {
		return time.Time{}, false
	}
	return m.earliest(false), true
}

func (m *model) slotFree() bool {
	return len(m.open(checkpoint.KindCheckpoint)) < m.cfg.MaxConcurrent
}

func (m *model) finalKind() checkpoint.Kind {
	if m.stopping {
		return checkpoint.KindSavepoint
	}
	return checkpoint.KindCheckpoint
}

// refusal: whether a request or stop must be refused now.
func (m *model) refusal() bool {
	return m.shutdown || m.failJob || len(m.liveSources()) == 0 || m.finalWanted || m.finalDone
}

type eventKind int

const (
	evStart eventKind = iota
	evTick
	evTrigger
	evAck
	evDecline
	evTriggerFailed
	evFinished
	evSourceEnded
	evStop
	evWritten
	evWriteFailed
	evShutdown
)

// checkEnded: the model's view of "every source ended".
func (m *model) checkEnded() {
	if m.finalWanted {
		return
	}
	for _, s := range m.sources {
		if !m.ended[s] && !m.finished[s] {
			return
		}
	}
	m.finalWanted, m.finalAfter, m.finalSince = true, m.lastID, m.now
	// Queued requests are refused with ErrFinishing (checked in apply).
}

// apply checks the actions of one event and advances the model.
func (m *model) apply(ev eventKind, evID checkpoint.ID, req uint64, acts []Action) {
	m.t.Helper()
	servedQueue := 0
	for i, a := range acts {
		switch a := a.(type) {
		case TriggerSources:
			id := a.Barrier.ID
			if id != m.lastID+1 {
				m.fatalf("triggered %d, want %d (ids strictly increase by one)", id, m.lastID+1)
			}
			if !m.active() || !m.started && ev != evTrigger {
				m.fatalf("trigger %d while inactive", id)
			}
			if !a.Barrier.Timestamp.Equal(m.now) {
				m.fatalf("trigger %d timestamp %v, now %v", id, a.Barrier.Timestamp, m.now)
			}
			if live := m.liveSources(); len(live) == 0 || !slices.Equal(a.Tasks, live) {
				m.fatalf("trigger %d to %v, live sources %v", id, a.Tasks, live)
			}
			prev, _ := actionAt(acts, i-1).(Triggered)
			switch {
			case a.Final:
				due, ok := m.finalDue()
				if !ok || m.now.Before(due) || a.Barrier.Kind != m.finalKind() {
					m.fatalf("final trigger %d not allowed (due %v %v, now %v, kind %s)", id, due, ok, m.now, a.Barrier.Kind)
				}
			case prev.ID == id:
				kind, ok := m.reqKind[prev.Request]
				if !ok || kind != a.Barrier.Kind || m.finalWanted {
					m.fatalf("trigger %d for request %d of kind %s", id, prev.Request, kind)
				}
				if kind == checkpoint.KindCheckpoint && !m.slotFree() {
					m.fatalf("requested checkpoint %d beyond max concurrent", id)
				}
			default:
				due, armed := m.periodicDue()
				if !armed || m.now.Before(due) || !m.slotFree() || a.Barrier.Kind != checkpoint.KindCheckpoint {
					m.fatalf("periodic trigger %d not allowed (armed=%v due=%v now=%v slot=%v)", id, armed, due, m.now, m.slotFree())
				}
				if len(m.queued) > 0 {
					m.fatalf("periodic trigger %d while requests %v wait", id, m.queued)
				}
				m.nextPeriodic = m.now.Add(m.cfg.Interval)
			}
			m.lastID = id
			m.cks[id] = &modelCk{kind: a.Barrier.Kind, final: a.Final, triggeredAt: m.now, state: stPending, acked: map[checkpoint.TaskID]int64{}}
		case Triggered:
			if m.answered[a.Request] {
				m.fatalf("request %d answered twice", a.Request)
			}
			m.answered[a.Request] = true
			if next, ok := actionAt(acts, i+1).(TriggerSources); !ok || next.Barrier.ID != a.ID || a.ID != m.lastID+1 {
				m.fatalf("Triggered %+v not followed by its trigger", a)
			}
			if j := slices.Index(m.queued, a.Request); j >= 0 {
				if j != 0 {
					m.fatalf("request %d served before %v", a.Request, m.queued[:j])
				}
				m.queued = m.queued[1:]
				servedQueue++
			} else if ev != evTrigger || a.Request != req {
				m.fatalf("Triggered %d on event %d", a.Request, ev)
			}
		case TriggerRefused:
			if m.answered[a.Request] {
				m.fatalf("request %d answered twice", a.Request)
			}
			m.answered[a.Request] = true
			if j := slices.Index(m.queued, a.Request); j >= 0 {
				m.queued = slices.Delete(m.queued, j, j+1)
				if !m.shutdown && !m.failJob && !m.finalWanted {
					m.fatalf("queued request %d refused while the coordinator goes on: %v", a.Request, a.Err)
				}
				continue
			}
			if ev != evTrigger || a.Request != req {
				m.fatalf("refusal of %d on event %d", a.Request, ev)
			}
			full := m.reqKind[req] == checkpoint.KindCheckpoint && len(m.queued) >= m.cfg.MaxQueued
			if !m.refusal() && !full {
				m.fatalf("request %d refused: %v", req, a.Err)
			}
		case WriteMetadata:
			ck := m.cks[a.ID]
			if ck == nil || ck.state != stPending {
				m.fatalf("WriteMetadata %d not pending", a.ID)
			}
			if ev != evAck && ev != evFinished && ev != evTrigger && ev != evTick && ev != evSourceEnded &&
				ev != evWritten && ev != evWriteFailed && ev != evDecline && ev != evTriggerFailed {
				m.fatalf("WriteMetadata %d on event %d", a.ID, ev)
			}
			if a.Kind != ck.kind || !a.TriggeredAt.Equal(ck.triggeredAt) || len(a.Snapshots) != len(m.tasks) {
				m.fatalf("WriteMetadata %+v does not match %+v / %d tasks", a, ck, len(m.tasks))
			}
			for _, task := range m.tasks {
				snap, ok := a.Snapshots[task]
				want, acked := ck.acked[task]
				switch {
				case !ok:
					m.fatalf("WriteMetadata %d misses task %s", a.ID, task)
				case acked && snap.StateSize != want:
					m.fatalf("WriteMetadata %d task %s: size %d, acked %d", a.ID, task, snap.StateSize, want)
				case !acked && (!m.finished[task] || snap.StateSize != 0):
					m.fatalf("WriteMetadata %d task %s neither acked nor finished", a.ID, task)
				}
			}
			ck.state = stCompleting
		case Completed:
			ck := m.cks[a.ID]
			if ev != evWritten || a.ID != evID || ck == nil || ck.state != stCompleting || i != 0 {
				m.fatalf("Completed %d on event %d for %d (state %v)", a.ID, ev, evID, ck)
			}
			if a.Kind != ck.kind || a.Notified != (ck.kind == checkpoint.KindCheckpoint || ck.final) {
				m.fatalf("Completed %+v for %+v", a, ck)
			}
			if ck.kind == checkpoint.KindCheckpoint && !ck.final && a.ID < m.notified {
				m.fatalf("checkpoint %d completed after the newer notified %d", a.ID, m.notified)
			}
			if next, ok := actionAt(acts, i+1).(NotifyComplete); a.Notified != (ok && next.ID == a.ID) {
				m.fatalf("Completed %+v and the next action %v", a, actionAt(acts, i+1))
			}
			ck.state = stCompleted
			m.completedOnce, m.lastCompletion = true, m.now
		case NotifyComplete:
			ck := m.cks[a.ID]
			if prev, ok := actionAt(acts, i-1).(Completed); !ok || prev.ID != a.ID || !prev.Notified {
				m.fatalf("NotifyComplete %d without its Completed", a.ID)
			}
			ck.notified = true
			m.notified = max(m.notified, a.ID)
			m.restore = max(m.restore, a.ID)
			m.failures, m.retryAt = 0, time.Time{}
			if ck.kind == checkpoint.KindCheckpoint {
				ck.retained = true
				m.retained = append(m.retained, a.ID)
			}
			if ck.final {
				m.finalDone = true
			}
		case NotifyAborted:
			ck := m.cks[a.ID]
			if ck == nil || (ck.state != stPending && ck.state != stCompleting) {
				m.fatalf("NotifyAborted %d of a checkpoint that is not open: %+v", a.ID, ck)
			}
			if i+1 >= len(acts) || acts[i+1] != (Discard{ID: a.ID}) {
				m.fatalf("NotifyAborted %d not followed by its Discard", a.ID)
			}
			counted := false
			switch {
			case strings.Contains(a.Reason, "subsumed"):
				if ck.kind != checkpoint.KindCheckpoint || ck.final || a.ID >= m.notified {
					m.fatalf("%d subsumed, notified %d: %s", a.ID, m.notified, a.Reason)
				}
				if ck.state == stCompleting && (a.ID != evID || (ev != evWritten && ev != evWriteFailed)) {
					m.fatalf("completing %d subsumed before its write ended", a.ID)
				}
			case strings.Contains(a.Reason, "the job finished"):
				if !m.finalDone {
					m.fatalf("%d aborted for the end before the final checkpoint: %s", a.ID, a.Reason)
				}
			case strings.Contains(a.Reason, "expired"):
				if ev != evTick || ck.state != stPending || m.cfg.Timeout == 0 || m.now.Before(ck.triggeredAt.Add(m.cfg.Timeout)) {
					m.fatalf("%d expired wrongly: %s", a.ID, a.Reason)
				}
				counted = true
			case strings.Contains(a.Reason, "declined"):
				if ev != evDecline || a.ID != evID || ck.state != stPending {
					m.fatalf("%d declined wrongly: %s", a.ID, a.Reason)
				}
				counted = strings.Contains(a.Reason, "cannot snapshot")
			case strings.Contains(a.Reason, "cannot trigger"):
				if ev != evTriggerFailed || a.ID != evID || ck.state != stPending {
					m.fatalf("%d trigger failure wrongly: %s", a.ID, a.Reason)
				}
				counted = true
			case strings.Contains(a.Reason, "metadata"):
				if ev != evWriteFailed || a.ID != evID || ck.state != stCompleting {
					m.fatalf("%d metadata failure wrongly: %s", a.ID, a.Reason)
				}
				counted = true
			default:
				m.fatalf("%d aborted for an unknown reason: %s", a.ID, a.Reason)
			}
			ck.state = stAborted
			if counted && ck.counts() {
				m.failures++
				m.retryAt = m.now.Add(Backoff(m.failures, m.cfg.MinPause))
			}
		case Discard:
			if a.Completed {
				ck := m.cks[a.ID]
				if j := slices.Index(m.retained, a.ID); j != 0 {
					m.fatalf("Discard completed %d: not the oldest retained %v", a.ID, m.retained)
				}
				if ck != nil && (ck.kind != checkpoint.KindCheckpoint || !ck.retained) {
					m.fatalf("Discard completed %d: %+v", a.ID, ck)
				}
				if ck != nil {
					ck.retained = false
				}
				m.retained = m.retained[1:]
				continue
			}
			ck := m.cks[a.ID]
			if ev == evShutdown {
				if ck == nil || (ck.state != stPending && ck.state != stCompleting) {
					m.fatalf("shutdown discards %d, not open", a.ID)
				}
				ck.state = stAborted
			} else if prev, ok := actionAt(acts, i-1).(NotifyAborted); ck == nil || ck.state != stAborted || !ok || prev.ID != a.ID {
				m.fatalf("Discard %d without NotifyAborted", a.ID)
			}
			if ck.discarded {
				m.fatalf("Discard %d twice", a.ID)
			}
			ck.discarded = true
		case StopSources:
			if ev != evStop {
				m.fatalf("StopSources on event %d", ev)
			}
			var want []checkpoint.TaskID
			for _, s := range m.liveSources() {
				if !m.ended[s] {
					want = append(want, s)
				}
			}
			if !slices.Equal(a.Tasks, want) {
				m.fatalf("StopSources %v, want %v", a.Tasks, want)
			}
		case FinishSources:
			if !m.finalDone || !slices.Equal(a.Tasks, m.liveSources()) {
				m.fatalf("FinishSources %v (final done %v, live %v)", a.Tasks, m.finalDone, m.liveSources())
			}
			if i != len(acts)-1 {
				m.fatalf("FinishSources is not the last action: %v", acts[i+1:])
			}
		case FailJob:
			if m.failJob {
				m.fatalf("FailJob twice")
			}
			if a.Permanent {
				if ev != evTick || !m.finalWanted || m.finalDone || m.cfg.FinalTimeout == 0 || m.now.Before(m.finalSince.Add(m.cfg.FinalTimeout)) {
					m.fatalf("permanent FailJob not due: %s", a.Reason)
				}
			} else if tol := m.cfg.TolerableFailures; tol < 0 || m.failures <= tol {
				m.fatalf("FailJob with %d failures, %d tolerated", m.failures, tol)
			}
			m.failJob = true
		default:
			m.fatalf("unknown action %T", a)
		}
	}
	// A FailJob is due exactly when the count first exceeds the tolerance.
	if tol := m.cfg.TolerableFailures; tol >= 0 && m.failures > tol && !m.failJob {
		m.fatalf("%d failures exceed %d but no FailJob", m.failures, tol)
	}
	if m.cfg.FinalTimeout > 0 && m.finalWanted && !m.finalDone && !m.failJob && ev == evTick && !m.now.Before(m.finalSince.Add(m.cfg.FinalTimeout)) {
		m.fatalf("final checkpoint past its bound at %v, no FailJob", m.now)
	}
	if (m.shutdown || m.failJob || m.finalWanted) && len(m.queued) > 0 {
		m.fatalf("requests %v still queued after the end", m.queued)
	}
	// A notified completion subsumes every older pending checkpoint.
	for _, id := range m.open(checkpoint.KindCheckpoint) {
		if ck := m.cks[id]; id < m.notified && ck.state == stPending && !ck.final {
			m.fatalf("pending %d older than notified %d", id, m.notified)
		}
	}
	if ev == evTick && m.cfg.Timeout > 0 {
		for _, id := range m.open(255) {
			if ck := m.cks[id]; ck.state == stPending && !m.now.Before(ck.triggeredAt.Add(m.cfg.Timeout)) {
				m.fatalf("%d should have expired at %v", id, m.now)
			}
		}
	}
	// What is due fires in the tick, or in the event that frees the slot.
	reacts := ev == evTick || ev == evStart || (len(acts) > 0 && (ev == evWritten || ev == evWriteFailed ||
		ev == evDecline || ev == evTriggerFailed || ev == evSourceEnded || ev == evFinished))
	if m.started && reacts {
		if due, ok := m.finalDue(); ok && !m.now.Before(due) {
			m.fatalf("final checkpoint due at %v, not fired at %v (event %d)", due, m.now, ev)
		}
		if len(m.queued) > 0 && m.slotFree() && m.active() && !m.finalWanted && len(m.liveSources()) > 0 {
			m.fatalf("requests %v wait with a free slot", m.queued)
		}
		if due, armed := m.periodicDue(); armed && m.slotFree() && !m.now.Before(due) {
			m.fatalf("periodic trigger due at %v, free slot, not fired at %v", due, m.now)
		}
	}
}

// compare checks the coordinator's queries against the model.
func (m *model) compare(c *Coordinator, afterTick bool) {
	m.t.Helper()
	if got, want := c.Pending(), m.open(255); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
		m.fatalf("Pending() = %v, model %v", got, want)
	}
	if n := len(m.open(checkpoint.KindCheckpoint)); n > m.cfg.MaxConcurrent && !m.finalWanted {
		m.fatalf("%d checkpoints pending, max %d", n, m.cfg.MaxConcurrent)
	}
	if got := c.Completed(); !slices.Equal(got, m.retained) && !(len(got) == 0 && len(m.retained) == 0) {
		m.fatalf("Completed() = %v, model %v", got, m.retained)
	}
	if m.completedOnce && len(m.retained) > m.cfg.NumRetained {
		m.fatalf("%d retained, max %d", len(m.retained), m.cfg.NumRetained)
	}
	if c.Queued() != len(m.queued) {
		m.fatalf("Queued() = %d, model %v", c.Queued(), m.queued)
	}
	if c.Finished() != m.finalDone {
		m.fatalf("Finished() = %v, model %v", c.Finished(), m.finalDone)
	}
	// The restore point is the newest checkpoint whose completion the
	// tasks were told: never older than anything a sink may have committed.
	var newestNotified checkpoint.ID
	for id, ck := range m.cks {
		if ck.notified {
			newestNotified = max(newestNotified, id)
		}
	}
	if id, ok := c.RestorePoint(); id != newestNotified || ok != (newestNotified != 0) || id != m.restore {
		m.fatalf("RestorePoint() = %d %v, newest notified %d", id, ok, newestNotified)
	}
	var want time.Time
	wantOK := false
	consider := func(t time.Time) {
		if !wantOK || t.Before(want) {
			want, wantOK = t, true
		}
	}
	if due, armed := m.periodicDue(); armed && m.slotFree() {
		consider(due)
	}
	if due, ok := m.finalDue(); ok {
		consider(due)
	}
	if m.finalWanted && !m.finalDone && !m.failJob && !m.shutdown && m.cfg.FinalTimeout > 0 {
		consider(m.finalSince.Add(m.cfg.FinalTimeout))
	}
	if m.cfg.Timeout > 0 && !m.shutdown {
		for _, id := range m.open(255) {
			if ck := m.cks[id]; ck.state == stPending {
				consider(ck.triggeredAt.Add(m.cfg.Timeout))
			}
		}
	}
	dl, ok := c.NextDeadline()
	if ok != wantOK || (ok && !dl.Equal(want)) {
		m.fatalf("NextDeadline() = %v %v, model %v %v", dl, ok, want, wantOK)
	}
	if afterTick && ok && !dl.After(m.now) {
		m.fatalf("NextDeadline() %v not after the tick at %v", dl, m.now)
	}
}

func actionAt(acts []Action, i int) Action {
	if i < 0 || i >= len(acts) {
		return nil
	}
	return acts[i]
}

func runRandom(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	cfg := Config{
		Interval:          ms(100 * rng.IntN(4)),
		Timeout:           ms(250 * rng.IntN(4)),
		MinPause:          ms(100 * rng.IntN(3)),
		MaxConcurrent:     rng.IntN(4),
		TolerableFailures: rng.IntN(5) - 1,
		NumRetained:       rng.IntN(4),
		FinalTimeout:      ms(500 * rng.IntN(4)),
		MaxQueued:         rng.IntN(3),
	}
	var tasks []checkpoint.TaskID
	for v := range 1 + rng.IntN(3) {
		for s := range 1 + rng.IntN(3) {
			tasks = append(tasks, checkpoint.TaskID{Vertex: v, Subtask: s})
		}
	}
	var sources []checkpoint.TaskID
	for _, task := range tasks {
		if task.Vertex == 0 {
			sources = append(sources, task)
		}
	}
	nextID := checkpoint.ID(1 + rng.IntN(20))
	var retained []checkpoint.ID
	for id := checkpoint.ID(1); id < nextID; id++ {
		if rng.IntN(4) == 0 && len(retained) < max(cfg.NumRetained, 1) {
			retained = append(retained, id)
		}
	}
	c, err := New(cfg, tasks, sources, nextID, retained)
	if err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	norm := cfg
	norm.MaxConcurrent = max(norm.MaxConcurrent, 1)
	norm.NumRetained = max(norm.NumRetained, 1)
	if norm.MaxQueued == 0 {
		norm.MaxQueued = DefaultMaxQueued
	}
	m := &model{t: t, seed: seed, cfg: norm, tasks: tasks, sources: sources, now: time.Unix(1000, 0),
		finished: map[checkpoint.TaskID]bool{}, ended: map[checkpoint.TaskID]bool{}, cks: map[checkpoint.ID]*modelCk{},
		lastID: nextID - 1, retained: slices.Clone(retained), reqKind: map[uint64]checkpoint.Kind{}, answered: map[uint64]bool{}}
	if len(retained) > 0 {
		m.notified = retained[len(retained)-1]
	}
	m.compare(c, false)

	bogusTask := checkpoint.TaskID{Vertex: 9, Subtask: 9}
	pickID := func(states ...ckState) checkpoint.ID {
		var ids []checkpoint.ID
		for _, id := range m.open(255) {
			if slices.Contains(states, m.cks[id].state) {
				ids = append(ids, id)
			}
		}
		if len(ids) == 0 || rng.IntN(8) == 0 {
			return checkpoint.ID(rng.IntN(int(m.lastID) + 3)) // unknown, old or ended
		}
		return ids[rng.IntN(len(ids))]
	}
	pickTask := func() checkpoint.TaskID {
		if rng.IntN(20) == 0 {
			return bogusTask
		}
		return tasks[rng.IntN(len(tasks))]
	}
	steps := 50 + rng.IntN(250)
	startAt := rng.IntN(10)
	for m.step = 0; m.step < steps; m.step++ {
		if m.step == startAt {
			m.started = true
			m.nextPeriodic = m.now.Add(cfg.Interval)
			m.apply(evStart, 0, 0, c.Start(m.now))
			m.compare(c, false)
			continue
		}
		r := rng.IntN(100)
		switch {
		case r < 20: // tick, often exactly at the deadline
			if dl, ok := c.NextDeadline(); ok && rng.IntN(2) == 0 && dl.After(m.now) {
				m.now = dl
			} else {
				m.now = m.now.Add(ms(rng.IntN(300)))
			}
			m.apply(evTick, 0, 0, c.Tick(m.now))
			m.compare(c, true)
			continue
		case r < 48:
			id, task := pickID(stPending), pickTask()
			size := int64(id)*1000 + int64(task.Vertex)*10 + int64(task.Subtask) + 1
			if ck := m.cks[id]; ck != nil && ck.state == stPending && !m.finished[task] && task != bogusTask && !m.shutdown {
				if _, dup := ck.acked[task]; !dup {
					ck.acked[task] = size
				}
			}
			acts := c.Ack(m.now, id, task, checkpoint.TaskSnapshot{StateSize: size})
			if task == bogusTask && acts != nil {
				m.fatalf("ack from unknown task %s yielded %v", task, acts)
			}
			m.apply(evAck, id, 0, acts)
		case r < 55:
			id, task := pickID(stPending, stCompleting), pickTask()
			reason := DeclineReason(rng.IntN(int(DeclineNotRunning) + 1))
			cause := errors.New("cannot snapshot")
			if !reason.Counts() {
				cause = fmt.Errorf("benign decline %d", reason)
			}
			acts := c.Decline(m.now, id, task, reason, cause)
			if (task == bogusTask || reason == DeclineCancelled) && acts != nil {
				m.fatalf("decline from %s (%s) yielded %v", task, reason, acts)
			}
			m.apply(evDecline, id, 0, acts)
		case r < 57:
			id := pickID(stPending)
			m.apply(evTriggerFailed, id, 0, c.TriggerFailed(m.now, id, errors.New("counter unreachable")))
		case r < 60:
			task := pickTask()
			if task != bogusTask && !m.shutdown {
				m.finished[task] = true
				if slices.Contains(sources, task) {
					m.checkEnded()
				}
			}
			m.apply(evFinished, 0, 0, c.TaskFinished(m.now, task))
		case r < 64:
			task := sources[rng.IntN(len(sources))]
			if !m.shutdown {
				m.ended[task] = true
				m.checkEnded()
			}
			m.apply(evSourceEnded, 0, 0, c.SourceEnded(m.now, task))
		case r < 66:
			refuse := m.refusal() || m.stopping
			acts, err := c.StopWithSavepoint(m.now)
			if (err != nil) != refuse {
				m.fatalf("StopWithSavepoint: %v, model refuses %v", err, refuse)
			}
			if err == nil {
				m.stopping = true
			}
			m.apply(evStop, 0, 0, acts)
		case r < 84:
			id := pickID(stCompleting)
			if rng.IntN(6) == 0 {
				m.apply(evWriteFailed, id, 0, c.MetadataFailed(m.now, id, errors.New("disk full")))
			} else {
				m.apply(evWritten, id, 0, c.MetadataWritten(m.now, id))
			}
		case r < 92:
			kind := checkpoint.KindCheckpoint
			if rng.IntN(3) == 0 {
				kind = checkpoint.KindSavepoint
			}
			m.nextReq++
			req := m.nextReq
			m.reqKind[req] = kind
			queueLen := len(m.queued)
			acts := c.Trigger(m.now, kind, req)
			if len(acts) == 0 {
				if m.refusal() || kind != checkpoint.KindCheckpoint || (m.slotFree() && queueLen == 0) || queueLen >= m.cfg.MaxQueued {
					m.fatalf("request %d (%s) queued wrongly", req, kind)
				}
				m.queued = append(m.queued, req)
			}
			m.apply(evTrigger, 0, req, acts)
		default:
			m.now = m.now.Add(ms(rng.IntN(50)))
			continue
		}
		m.compare(c, false)
	}

	acts := c.Shutdown(m.now)
	m.shutdown = true
	m.apply(evShutdown, 0, 0, acts)
	m.compare(c, false)
	for id := nextID; id <= m.lastID; id++ {
		ck := m.cks[id]
		switch {
		case ck == nil:
			m.fatalf("id %d skipped", id)
		case ck.state == stAborted && !ck.discarded:
			m.fatalf("aborted %d never discarded", id)
		case ck.state != stAborted && ck.state != stCompleted:
			m.fatalf("%d neither completed nor aborted after shutdown", id)
		}
	}
	for req := range m.reqKind {
		if !m.answered[req] {
			m.fatalf("request %d never answered", req)
		}
	}
	// Every event after Shutdown is a no-op.
	task := tasks[0]
	for _, acts := range [][]Action{
		c.Shutdown(m.now), c.Start(m.now), c.Tick(m.now.Add(time.Hour)),
		c.Ack(m.now, m.lastID, task, checkpoint.TaskSnapshot{}), c.Decline(m.now, m.lastID, task, DeclineFailure, nil),
		c.TaskFinished(m.now, task), c.MetadataWritten(m.now, m.lastID), c.MetadataFailed(m.now, m.lastID, nil),
		c.SourceEnded(m.now, sources[0]), c.TriggerFailed(m.now, m.lastID, nil),
	} {
		if acts != nil {
			m.fatalf("event after shutdown yielded %v", acts)
		}
	}
	acts = c.Trigger(m.now, checkpoint.KindSavepoint, 999999)
	if r, ok := actionAt(acts, 0).(TriggerRefused); len(acts) != 1 || !ok || !errors.Is(r.Err, ErrShutdown) {
		m.fatalf("Trigger after shutdown: %v", acts)
	}
	if _, err := c.StopWithSavepoint(m.now); !errors.Is(err, ErrShutdown) {
		m.fatalf("StopWithSavepoint after shutdown: %v", err)
	}
}
