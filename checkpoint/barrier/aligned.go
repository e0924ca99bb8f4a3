package barrier

import (
	"fmt"
	"time"

	"github.com/weirstream/weir/checkpoint"
)

// aligned is the exactly-once handler. At most one checkpoint is aligned at a
// time: the newest one seen on any channel.
type aligned struct {
	ended   []bool
	open    int // channels not ended
	blocked []bool
	nBlock  int

	// seen is the newest checkpoint a barrier or cancellation marker was read
	// for. Barriers and markers of ids <= seen are stale, except barriers of
	// the checkpoint being aligned (active, current).
	seen       checkpoint.ID
	active     bool
	current    checkpoint.Barrier
	firstAt    time.Time
	startDelay time.Duration

	// abortedAhead holds checkpoints newer than seen that the coordinator
	// aborted (OnAbort) before any of their barriers arrived. They are not
	// folded into seen: that would make the barriers of the live checkpoints
	// between seen and them stale.
	abortedAhead map[checkpoint.ID]struct{}
}

// NewAligned returns the exactly-once handler for numChannels channels.
func NewAligned(numChannels int) Handler {
	return &aligned{
		ended:        make([]bool, numChannels),
		open:         numChannels,
		blocked:      make([]bool, numChannels),
		abortedAhead: map[checkpoint.ID]struct{}{},
	}
}

func (h *aligned) Blocked(ch int) bool { return h.blocked[ch] }

func (h *aligned) Pending() (checkpoint.ID, bool) {
	if !h.active {
		return 0, false
	}
	return h.current.ID, true
}

// advance makes id the newest checkpoint seen and forgets coordinator aborts
// it makes stale anyway. It reports whether the coordinator aborted id.
func (h *aligned) advance(id checkpoint.ID) (abortedByCoordinator bool) {
	_, abortedByCoordinator = h.abortedAhead[id]
	h.seen = id
	for a := range h.abortedAhead {
		if a <= id {
			delete(h.abortedAhead, a)
		}
	}
	return abortedByCoordinator
}

// unblockAll ends the alignment and returns the Unblock action, if any.
func (h *aligned) unblockAll() []Action {
	h.active = false
	if h.nBlock == 0 {
		return nil
	}
	chs := make([]int, 0, h.nBlock)
	for ch, b := range h.blocked {
		if b {
			chs = append(chs, ch)
			h.blocked[ch] = false
		}
	}
	h.nBlock = 0
	return []Action{Unblock{Channels: chs}}
}

// abortCurrent abandons the alignment in progress, if any: Abort, Unblock.
func (h *aligned) abortCurrent(reason string, cancelled bool) []Action {
	if !h.active {
		return nil
	}
	out := []Action{Abort{ID: h.current.ID, Reason: reason, Cancelled: cancelled}}
	return append(out, h.unblockAll()...)
}

func (h *aligned) complete(now time.Time) []Action {
	out := []Action{Snapshot{Barrier: h.current, AlignmentDuration: now.Sub(h.firstAt), StartDelay: h.startDelay}}
	return append(out, h.unblockAll()...)
}

func (h *aligned) OnBarrier(now time.Time, ch int, b checkpoint.Barrier) []Action {
	if h.ended[ch] || h.blocked[ch] {
		// An ended channel sends nothing more; a blocked one is not read, or
		// repeats the barrier it is blocked on: nothing to do either way.
		return nil
	}
	var out []Action
	switch {
	case h.active && b.ID == h.current.ID:
		// One more channel of the checkpoint being aligned.
	case b.ID <= h.seen:
		return nil // stale: taken or abandoned already
	default:
		out = h.abortCurrent(fmt.Sprintf("barrier of newer checkpoint %d arrived during alignment", b.ID), false)
		if h.advance(b.ID) {
			return out // the coordinator aborted it: do not align it
		}
		h.active, h.current = true, b
		h.firstAt, h.startDelay = now, startDelay(now, b)
	}
	if h.nBlock+1 == h.open {
		return append(out, h.complete(now)...)
	}
	h.blocked[ch] = true
	h.nBlock++
	return append(out, Block{Channel: ch})
}

func (h *aligned) OnCancellation(now time.Time, ch int, id checkpoint.ID) []Action {
	if h.ended[ch] {
		return nil
	}
	switch {
	case h.active && id == h.current.ID:
		return h.abortCurrent(fmt.Sprintf("cancellation marker for checkpoint %d", id), true)
	case id <= h.seen:
		return nil // handled already
	}
	// A marker for a newer checkpoint: the channel will not deliver the
	// barrier of the one being aligned any more either.
	out := h.abortCurrent(fmt.Sprintf("cancellation marker for newer checkpoint %d", id), false)
	if !h.advance(id) {
		out = append(out, Abort{ID: id, Reason: "cancellation marker", Cancelled: true})
	}
	return out
}

func (h *aligned) OnEndOfPartition(now time.Time, ch int) []Action {
	if h.ended[ch] {
		return nil
	}
	h.ended[ch] = true
	h.open--
	if h.blocked[ch] { // defensive: a blocked channel is not read
		h.blocked[ch] = false
		h.nBlock--
	}
	if h.active && h.nBlock == h.open {
		return h.complete(now)
	}
	return nil
}

func (h *aligned) OnAbort(now time.Time, id checkpoint.ID) []Action {
	switch {
	case h.active && id == h.current.ID:
		return h.unblockAll() // seen == id already: its barriers are stale
	case id > h.seen:
		h.abortedAhead[id] = struct{}{}
	}
	return nil
}
