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
// random event sequences (ticks, exact deadlines, acks, declines, finished
// tasks, metadata results in any order, manual triggers, bogus ids and
// tasks) and checks every action and the state after every step against an
// independent model of the rules in the package doc.
func TestRandomEvents(t *testing.T) {
	seeds := 2000
	if testing.Short() {
		seeds = 200
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
	triggeredAt time.Time
	state       ckState
	discarded   bool // Discard{Completed: false} seen
	retained    bool // completed checkpoint still retained
	acked       map[checkpoint.TaskID]int64
}

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
	cks      map[checkpoint.ID]*modelCk
	lastID   checkpoint.ID
	retained []checkpoint.ID
	latest   checkpoint.ID

	nextPeriodic   time.Time // meaningful once started
	lastCompletion time.Time
	completedOnce  bool
	failures       int
	failJob        bool
	step           int
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

// periodicDue: when the next periodic trigger may fire (MinPause included),
// and whether it is armed at all.
func (m *model) periodicDue() (time.Time, bool) {
	if !m.started || m.shutdown || m.failJob || m.cfg.Interval == 0 || len(m.liveSources()) == 0 {
		return time.Time{}, false
	}
	due := m.nextPeriodic
	if m.completedOnce && m.lastCompletion.Add(m.cfg.MinPause).After(due) {
		due = m.lastCompletion.Add(m.cfg.MinPause)
	}
	return due, true
}

func (m *model) slotFree() bool {
	return len(m.open(checkpoint.KindCheckpoint)) < m.cfg.MaxConcurrent
}

type eventKind int

const (
	evStart eventKind = iota
	evTick
	evTrigger
	evAck
	evDecline
	evFinished
	evWritten
	evWriteFailed
	evShutdown
)

// apply checks the actions of one event and advances the model.
func (m *model) apply(ev eventKind, evID checkpoint.ID, manualKind checkpoint.Kind, acts []Action) {
	m.t.Helper()
	for i, a := range acts {
		switch a := a.(type) {
		case TriggerSources:
			id := a.Barrier.ID
			if id != m.lastID+1 {
				m.fatalf("triggered %d, want %d (ids strictly increase by one)", id, m.lastID+1)
			}
			m.lastID = id
			if m.shutdown || m.failJob {
				m.fatalf("trigger %d after shutdown or FailJob", id)
			}
			if !a.Barrier.Timestamp.Equal(m.now) {
				m.fatalf("trigger %d timestamp %v, now %v", id, a.Barrier.Timestamp, m.now)
			}
			if live := m.liveSources(); len(live) == 0 || !slices.Equal(a.Tasks, live) {
				m.fatalf("trigger %d to %v, live sources %v", id, a.Tasks, live)
			}
			switch ev {
			case evTrigger:
				if a.Barrier.Kind != manualKind {
					m.fatalf("manual trigger of %s yielded %s", manualKind, a.Barrier.Kind)
				}
				if manualKind == checkpoint.KindCheckpoint && !m.slotFree() {
					m.fatalf("manual checkpoint %d beyond max concurrent", id)
				}
			case evTick, evWritten, evWriteFailed, evDecline:
				due, armed := m.periodicDue()
				if !armed || m.now.Before(due) || !m.slotFree() || a.Barrier.Kind != checkpoint.KindCheckpoint {
					m.fatalf("periodic trigger %d not allowed (armed=%v due=%v now=%v slot=%v)", id, armed, due, m.now, m.slotFree())
				}
				m.nextPeriodic = m.now.Add(m.cfg.Interval)
			default:
				m.fatalf("trigger %d on event %d", id, ev)
			}
			ck := &modelCk{kind: a.Barrier.Kind, triggeredAt: m.now, state: stPending, acked: map[checkpoint.TaskID]int64{}}
			m.cks[id] = ck
		case WriteMetadata:
			ck := m.cks[a.ID]
			if ck == nil || ck.state != stPending {
				m.fatalf("WriteMetadata %d not pending", a.ID)
			}
			if ev != evAck && ev != evFinished {
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
		case NotifyComplete:
			ck := m.cks[a.ID]
			if ev != evWritten || a.ID != evID || ck == nil || ck.state != stCompleting {
				m.fatalf("NotifyComplete %d on event %d for %d (state %v)", a.ID, ev, evID, ck)
			}
			if i != 0 {
				m.fatalf("NotifyComplete %d is not the first action", a.ID)
			}
			if ck.kind == checkpoint.KindCheckpoint && a.ID < m.latest {
				m.fatalf("checkpoint %d completed after the newer %d", a.ID, m.latest)
			}
			ck.state = stCompleted
			m.failures = 0
			m.completedOnce, m.lastCompletion = true, m.now
			m.latest = max(m.latest, a.ID)
			if ck.kind == checkpoint.KindCheckpoint {
				ck.retained = true
				m.retained = append(m.retained, a.ID)
			}
		case NotifyAborted:
			ck := m.cks[a.ID]
			if ck == nil || (ck.state != stPending && ck.state != stCompleting) {
				m.fatalf("NotifyAborted %d of a checkpoint that is not open: %+v", a.ID, ck)
			}
			if i+1 >= len(acts) || acts[i+1] != (Discard{ID: a.ID}) {
				m.fatalf("NotifyAborted %d not followed by its Discard", a.ID)
			}
			subsumed := strings.Contains(a.Reason, "subsumed")
			switch {
			case subsumed:
				if ck.kind != checkpoint.KindCheckpoint || a.ID >= m.latest {
					m.fatalf("%d subsumed, latest %d: %s", a.ID, m.latest, a.Reason)
				}
				if ck.state == stCompleting && (a.ID != evID || (ev != evWritten && ev != evWriteFailed)) {
					m.fatalf("completing %d subsumed before its write ended", a.ID)
				}
			case strings.Contains(a.Reason, "expired"):
				if ev != evTick || ck.state != stPending || m.cfg.Timeout == 0 || m.now.Before(ck.triggeredAt.Add(m.cfg.Timeout)) {
					m.fatalf("%d expired wrongly: %s", a.ID, a.Reason)
				}
			case strings.Contains(a.Reason, "declined"):
				if ev != evDecline || a.ID != evID || ck.state != stPending {
					m.fatalf("%d declined wrongly: %s", a.ID, a.Reason)
				}
			case strings.Contains(a.Reason, "metadata"):
				if ev != evWriteFailed || a.ID != evID || ck.state != stCompleting {
					m.fatalf("%d metadata failure wrongly: %s", a.ID, a.Reason)
				}
			default:
				m.fatalf("%d aborted for an unknown reason: %s", a.ID, a.Reason)
			}
			ck.state = stAborted
			if !subsumed && ck.kind == checkpoint.KindCheckpoint {
				m.failures++
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
		case FailJob:
			tol := m.cfg.TolerableFailures
			if m.failJob || tol < 0 || m.failures <= tol {
				m.fatalf("FailJob with %d failures, %d tolerated, already=%v", m.failures, tol, m.failJob)
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
	// A completion subsumes every older pending checkpoint.
	for _, id := range m.open(checkpoint.KindCheckpoint) {
		if id < m.latest && m.cks[id].state == stPending {
			m.fatalf("pending %d older than completed %d", id, m.latest)
		}
	}
	if ev == evTick && m.cfg.Timeout > 0 {
		for _, id := range m.open(255) {
			if ck := m.cks[id]; ck.state == stPending && !m.now.Before(ck.triggeredAt.Add(m.cfg.Timeout)) {
				m.fatalf("%d should have expired at %v", id, m.now)
			}
		}
	}
	// A due periodic trigger with a free slot fires in the tick, or in the
	// completion or abort that frees the slot.
	if ev == evTick || (len(acts) > 0 && (ev == evWritten || ev == evWriteFailed || ev == evDecline)) {
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
	if n := len(m.open(checkpoint.KindCheckpoint)); n > m.cfg.MaxConcurrent {
		m.fatalf("%d checkpoints pending, max %d", n, m.cfg.MaxConcurrent)
	}
	if got := c.Completed(); !slices.Equal(got, m.retained) && !(len(got) == 0 && len(m.retained) == 0) {
		m.fatalf("Completed() = %v, model %v", got, m.retained)
	}
	for i := 1; i < len(m.retained); i++ {
		if m.retained[i] <= m.retained[i-1] {
			m.fatalf("retained %v not strictly ascending", m.retained)
		}
	}
	if m.completedOnce && len(m.retained) > m.cfg.NumRetained {
		m.fatalf("%d retained, max %d", len(m.retained), m.cfg.NumRetained)
	}
	if id, ok := c.LatestCompleted(); id != m.latest || ok != (m.latest != 0) {
		m.fatalf("LatestCompleted() = %d %v, model %d", id, ok, m.latest)
	}
	// NextDeadline is the earlier of the periodic trigger (with a free
	// slot) and the first expiry.
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
	m := &model{t: t, seed: seed, cfg: norm, tasks: tasks, sources: sources, now: time.Unix(1000, 0),
		finished: map[checkpoint.TaskID]bool{}, cks: map[checkpoint.ID]*modelCk{}, lastID: nextID - 1,
		retained: slices.Clone(retained)}
	if len(retained) > 0 {
		m.latest = retained[len(retained)-1]
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
		case r < 50:
			id, task := pickID(stPending), pickTask()
			size := int64(id)*1000 + int64(task.Vertex)*10 + int64(task.Subtask) + 1
			if ck := m.cks[id]; ck != nil && ck.state == stPending && !m.finished[task] && task != bogusTask {
				if _, dup := ck.acked[task]; !dup {
					ck.acked[task] = size
				}
			}
			acts := c.Ack(m.now, id, task, checkpoint.TaskSnapshot{StateSize: size})
			if task == bogusTask && acts != nil {
				m.fatalf("ack from unknown task %s yielded %v", task, acts)
			}
			m.apply(evAck, id, 0, acts)
		case r < 56:
			id, task := pickID(stPending, stCompleting), pickTask()
			acts := c.Decline(m.now, id, task, errors.New("cannot snapshot"))
			if task == bogusTask && acts != nil {
				m.fatalf("decline from unknown task %s yielded %v", task, acts)
			}
			m.apply(evDecline, id, 0, acts)
		case r < 60:
			task := pickTask()
			acts := c.TaskFinished(m.now, task)
			if task != bogusTask {
				m.finished[task] = true
			}
			m.apply(evFinished, 0, 0, acts)
		case r < 80:
			id := pickID(stCompleting)
			if rng.IntN(6) == 0 {
				m.apply(evWriteFailed, id, 0, c.MetadataFailed(m.now, id, errors.New("disk full")))
			} else {
				m.apply(evWritten, id, 0, c.MetadataWritten(m.now, id))
			}
		case r < 90:
			kind := checkpoint.KindCheckpoint
			if rng.IntN(3) == 0 {
				kind = checkpoint.KindSavepoint
			}
			before := m.lastID
			id, acts, err := c.TriggerNow(m.now, kind)
			if err != nil {
				wantErr := m.shutdown || m.failJob || len(m.liveSources()) == 0 ||
					(kind == checkpoint.KindCheckpoint && !m.slotFree())
				if !wantErr || acts != nil {
					m.fatalf("TriggerNow(%s): unexpected %v", kind, err)
				}
			} else if id != before+1 {
				m.fatalf("TriggerNow returned %d, want %d", id, before+1)
			}
			m.apply(evTrigger, id, kind, acts)
		default:
			m.now = m.now.Add(ms(rng.IntN(50)))
			continue
		}
		m.compare(c, false)
	}

	m.apply(evShutdown, 0, 0, c.Shutdown(m.now))
	m.shutdown = true
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
	// Every event after Shutdown is a no-op.
	task := tasks[0]
	for _, acts := range [][]Action{
		c.Shutdown(m.now), c.Start(m.now), c.Tick(m.now.Add(time.Hour)),
		c.Ack(m.now, m.lastID, task, checkpoint.TaskSnapshot{}), c.Decline(m.now, m.lastID, task, nil),
		c.TaskFinished(m.now, task), c.MetadataWritten(m.now, m.lastID), c.MetadataFailed(m.now, m.lastID, nil),
	} {
		if acts != nil {
			m.fatalf("event after shutdown yielded %v", acts)
		}
	}
	if _, _, err := c.TriggerNow(m.now, checkpoint.KindSavepoint); !errors.Is(err, ErrShutdown) {
		m.fatalf("TriggerNow after shutdown: %v", err)
	}
}
