package runtime

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/storage"
)

// disposer deletes what a job no longer needs from its checkpoint storage,
// on a goroutine of its own so that a slow object store never stalls the
// coordinator: aborted checkpoints' files, retained checkpoints falling out
// of the retained count, incomplete checkpoint directories left by late
// writers or crashed runs (sweeps), and shared files no retained
// checkpoint references (collections). Work runs in the order it was
// asked; a failed discard is retried with a growing delay, a few times,
// and whatever is still left is found by the next sweep, at the latest
// when the job starts again.
type disposer struct {
	st   *storage.Storage
	log  *slog.Logger
	work *Queue[disposal]
	stop chan struct{}
	done chan struct{}
	// wg counts retries waiting on their timers.
	wg sync.WaitGroup
	// ctx is the disposer's own: the job's ends on Cancel, when the
	// disposer still deletes the checkpoints of the cancelled job. close
	// ends it once the queued work is done.
	ctx    context.Context
	cancel context.CancelFunc

	// Owned by the disposer goroutine: the shared files each checkpoint
	// references, and whether any checkpoint had shared files at all (a
	// job without incremental state never lists the shared area).
	refs       map[checkpoint.ID]map[string]bool
	sharedSeen bool
}

type disposalKind uint8

const (
	dispDiscard disposalKind = iota + 1
	dispRemember
	dispSweep
	dispCollect
)

type disposal struct {
	kind      disposalKind
	id        checkpoint.ID // discard, remember; sweep: below this id
	completed bool          // discard of a completed checkpoint
	refs      map[string]bool
	keep      []checkpoint.ID // sweep, collect: ids still in flight
	nextID    checkpoint.ID   // collect: ids from here on are in flight
	force     bool            // collect even if no shared file was seen
	attempt   int             // retries so far
}

// disposeRetries is how often a failed discard is tried again.
const disposeRetries = 5

func newDisposer(st *storage.Storage, log *slog.Logger) *disposer {
	d := &disposer{st: st, log: log, work: NewQueue[disposal](), stop: make(chan struct{}), done: make(chan struct{}),
		refs: map[checkpoint.ID]map[string]bool{}}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	go d.run()
	return d
}

func (d *disposer) discard(id checkpoint.ID, completed bool) {
	d.work.Put(disposal{kind: dispDiscard, id: id, completed: completed})
}

// remember records the shared files checkpoint id references.
func (d *disposer) remember(id checkpoint.ID, refs map[string]bool) {
	d.work.Put(disposal{kind: dispRemember, id: id, refs: refs})
}

// sweep deletes incomplete checkpoint directories (no _metadata) below id,
// except keep.
func (d *disposer) sweep(below checkpoint.ID, keep []checkpoint.ID) {
	d.work.Put(disposal{kind: dispSweep, id: below, keep: keep})
}

// collect deletes shared files no completed checkpoint references and no
// checkpoint in flight (keep, or nextID and above) may reference.
func (d *disposer) collect(keep []checkpoint.ID, nextID checkpoint.ID) {
	d.work.Put(disposal{kind: dispCollect, keep: keep, nextID: nextID})
}

// close finishes the queued work (retries waiting on timers are dropped:
// the next sweep finds what they would have deleted) and stops.
func (d *disposer) close() {
	close(d.stop)
	d.wg.Wait()
	<-d.done
	d.cancel()
}

func (d *disposer) run() {
	defer close(d.done)
	var batch []disposal
	for {
		select {
		case <-d.work.C():
		case <-d.stop:
			// Drain what is queued, then end.
			for !d.work.Empty() {
				batch = d.work.Drain(batch[:0])
				for _, w := range batch {
					if w.attempt == 0 {
						d.do(w, false)
					}
				}
			}
			return
		}
		batch = d.work.Drain(batch[:0])
		for _, w := range batch {
			d.do(w, true)
		}
		clear(batch)
	}
}

func (d *disposer) do(w disposal, retry bool) {
	switch w.kind {
	case dispRemember:
		d.refs[w.id] = w.refs
		if len(w.refs) > 0 {
			d.sharedSeen = true
		}
	case dispDiscard:
		delete(d.refs, w.id)
		if err := d.st.Discard(d.ctx, w.id); err != nil {
			if !retry || w.attempt >= disposeRetries {
				d.log.Warn("cannot delete checkpoint; it is deleted when the job next starts", "id", w.id, "err", err)
				return
			}
			w.attempt++
			delay := time.Duration(1<<w.attempt) * 100 * time.Millisecond
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				t := time.NewTimer(delay)
				defer t.Stop()
				select {
				case <-t.C:
					d.work.Put(w)
				case <-d.stop:
				}
			}()
		}
	case dispSweep:
		ids, err := d.st.Incomplete(d.ctx)
		if err != nil {
			d.log.Warn("cannot list incomplete checkpoints", "err", err)
			return
		}
		n := 0
		for _, id := range ids {
			if id >= w.id || slices.Contains(w.keep, id) {
				continue
			}
			if err := d.st.Discard(d.ctx, id); err != nil {
				d.log.Warn("cannot delete an incomplete checkpoint", "id", id, "err", err)
				continue
			}
			n++
		}
		if n > 0 {
			d.log.Debug("deleted incomplete checkpoints", "count", n, "below", w.id)
		}
	case dispCollect:
		if !d.sharedSeen && !w.force {
			return
		}
		n, err := storage.CollectSharedWith(d.ctx, d.st, d.refsOf, func(id checkpoint.ID) bool {
			return slices.Contains(w.keep, id) || id >= w.nextID
		})
		if err != nil {
			d.log.Warn("cannot delete unused shared state files", "err", err)
		} else if n > 0 {
			d.log.Debug("deleted unused shared state files", "count", n)
		}
	}
}

// refsOf returns the shared files checkpoint id references: remembered for
// the checkpoints this job wrote, read once for the others.
func (d *disposer) refsOf(id checkpoint.ID) (map[string]bool, error) {
	if r, ok := d.refs[id]; ok {
		return r, nil
	}
	md, err := d.st.ReadMetadata(d.ctx, id)
	if err != nil {
		return nil, err
	}
	r := map[string]bool{}
	storage.SharedReferences(md, r)
	d.refs[id] = r
	return r, nil
}

// startCollection lists the shared area once even if this run has not
// written shared files yet: orphans of an earlier run.
func (d *disposer) startCollection(nextID checkpoint.ID) {
	d.work.Put(disposal{kind: dispCollect, nextID: nextID, force: true})
}

// repeatLog logs a warning once per distinct reason, and then at most
// once per interval with the number of repeats, so a checkpoint failing
// the same way hundreds of times a second cannot flood the log. Reasons
// that differ only in numbers (checkpoint ids, sizes) count as one.
type repeatLog struct {
	log   *slog.Logger
	every time.Duration
	seen  map[string]*repeat
	order []string
}

type repeat struct {
	msg, reason string
	count       int
	lastLogged  time.Time
}

// maxRepeatKeys bounds the distinct reasons a repeatLog remembers.
const maxRepeatKeys = 64

func newRepeatLog(log *slog.Logger, every time.Duration) *repeatLog {
	return &repeatLog{log: log, every: every, seen: map[string]*repeat{}}
}

func repeatKey(msg, reason string) string {
	return msg + "\x00" + strings.Map(func(r rune) rune {
		if unicode.IsDigit(r) {
			return '#'
		}
		return r
	}, reason)
}

func (l *repeatLog) warn(msg, reason string, attrs ...any) {
	now := time.Now()
	k := repeatKey(msg, reason)
	r := l.seen[k]
	if r == nil {
		if len(l.order) >= maxRepeatKeys {
			old := l.order[0]
			l.order = l.order[1:]
			l.report(l.seen[old])
			delete(l.seen, old)
		}
		l.seen[k] = &repeat{msg: msg, reason: reason, lastLogged: now}
		l.order = append(l.order, k)
		l.log.Warn(msg, append([]any{"reason", reason}, attrs...)...)
		return
	}
	r.count++
	r.reason = reason
	if now.Sub(r.lastLogged) >= l.every {
		l.report(r)
		r.lastLogged = now
	}
}

func (l *repeatLog) report(r *repeat) {
	if r == nil || r.count == 0 {
		return
	}
	l.log.Warn(r.msg+" again", "reason", r.reason, "times", r.count)
	r.count = 0
}

// flush reports the repeats not reported yet.
func (l *repeatLog) flush() {
	for _, k := range l.order {
		l.report(l.seen[k])
	}
}
