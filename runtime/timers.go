package runtime

import (
	"container/heap"
	"time"
)

// ProcessingTimeService runs callbacks on a task's goroutine at a
// processing time: the mailbox receives a mail when the earliest is due,
// so a callback never runs concurrently with the task's records. Operators
// use it for processing-time timers, periodic watermarks, flushes on time.
type ProcessingTimeService interface {
	// Now is the current processing time.
	Now() time.Time
	// Schedule runs fn on the task goroutine at or after at; cancel stops
	// it if it has not run.
	Schedule(at time.Time, fn func()) (cancel func())
}

// procTimers is a task's ProcessingTimeService: a heap of callbacks and one
// timer armed at the earliest, which posts mailTimer.
type procTimers struct {
	mailbox *Queue[Mail]
	q       procQueue
	seq     uint64
	timer   *time.Timer
	armedAt time.Time
}

type procTimer struct {
	at        time.Time
	seq       uint64
	fn        func()
	cancelled bool
	index     int
}

type procQueue []*procTimer

func (q procQueue) Len() int { return len(q) }
func (q procQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q procQueue) Swap(i, j int)    { q[i], q[j] = q[j], q[i]; q[i].index = i; q[j].index = j }
func (q *procQueue) Push(x any)      { t := x.(*procTimer); t.index = len(*q); *q = append(*q, t) }
func (q *procQueue) Pop() any        { old := *q; t := old[len(old)-1]; *q = old[:len(old)-1]; return t }
func (q procQueue) peek() *procTimer { return q[0] }

func newProcTimers(mailbox *Queue[Mail]) *procTimers { return &procTimers{mailbox: mailbox} }

func (p *procTimers) Now() time.Time { return time.Now() }

// Schedule implements ProcessingTimeService. Call it on the task goroutine.
func (p *procTimers) Schedule(at time.Time, fn func()) func() {
	p.seq++
	t := &procTimer{at: at, seq: p.seq, fn: fn}
	heap.Push(&p.q, t)
	p.arm()
	return func() { t.cancelled = true }
}

// arm makes the timer fire at the earliest callback.
func (p *procTimers) arm() {
	for p.q.Len() > 0 && p.q.peek().cancelled {
		heap.Pop(&p.q)
	}
	if p.q.Len() == 0 {
		return
	}
	at := p.q.peek().at
	if p.timer != nil && !p.armedAt.After(at) {
		return // already armed no later
	}
	if p.timer != nil {
		p.timer.Stop()
	}
	p.armedAt = at
	p.timer = time.AfterFunc(max(time.Until(at), 0), func() { p.mailbox.Put(Mail{Kind: mailTimer}) })
}

// fire runs every due callback (on the task goroutine, from the mailbox).
func (p *procTimers) fire() {
	p.timer = nil
	now := time.Now()
	for p.q.Len() > 0 {
		t := p.q.peek()
		if t.cancelled {
			heap.Pop(&p.q)
			continue
		}
		if t.at.After(now) {
			break
		}
		heap.Pop(&p.q)
		t.fn()
	}
	p.arm()
}

// stop cancels the timer (the task ends).
func (p *procTimers) stop() {
	if p.timer != nil {
		p.timer.Stop()
	}
}
