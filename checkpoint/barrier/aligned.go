package barrier

import (
	"fmt"
	"time"

	"github.com/weirstream/weir/checkpoint"
)

type aligned struct {
	ended   []bool
	open    int // channels not ended
	blocked []bool
	nBlock  int
	// The checkpoint being aligned (active), and the newest id seen at all:
	// barriers with an id <= latest that is not the active one are stale.
	active     bool
	current    checkpoint.Barrier
	firstAt    time.Time
	startDelay time.Duration
	latest     checkpoint.ID
}

// NewAligned returns the exactly-once handler for numChannels channels.
func NewAligned(numChannels int) Handler {
	return &aligned{ended: make([]bool, numChannels), open: numChannels, blocked: make([]bool, numChannels)}
}

func (h *aligned) Blocked(ch int) bool { return h.blocked[ch] }

func (h *aligned) Pending() (checkpoint.ID, bool) { return h.current.ID, h.active }

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

func (h *aligned) OnBarrier(now time.Time, ch int, b checkpoint.Barrier) []Action {
	if h.ended[ch] || h.blocked[ch] {
		return nil // a blocked channel is not read; an ended one sends nothing
	}
	var out []Action
	switch {
	case h.active && b.ID == h.current.ID:
		// Another channel of the checkpoint being aligned.
	case b.ID <= h.latest:
		return nil // stale: taken or abandoned already
	default:
		if h.active {
			out = append(out, Abort{ID: h.current.ID, Reason: fmt.Sprintf("barrier of newer checkpoint %d arrived during alignment", b.ID)})
			out = append(out, h.unblockAll()...)
		}
		h.active, h.current, h.latest = true, b, b.ID
		h.firstAt, h.startDelay = now, startDelay(now, b)
	}
	if h.nBlock+1 == h.open {
		return append(out, h.complete(now)...)
	}
	h.blocked[ch] = true
	h.nBlock++
	return append(out, Block{Channel: ch})
}

func (h *aligned) complete(now time.Time) []Action {
	out := []Action{Snapshot{Barrier: h.current, AlignmentDuration: now.Sub(h.firstAt), StartDelay: h.startDelay}}
	return append(out, h.unblockAll()...)
}

func (h *aligned) OnCancellation(now time.Time, ch int, id checkpoint.ID) []Action {
	if h.ended[ch] {
		return nil
	}
	var out []Action
	if h.active && id >= h.current.ID {
		out = append(out, Abort{ID: h.current.ID, Reason: fmt.Sprintf("cancellation marker for checkpoint %d", id)})
		out = append(out, h.unblockAll()...)
		if id == h.current.ID {
			return out
		}
	}
	if id > h.latest {
		h.latest = id
		out = append(out, Abort{ID: id, Reason: "cancellation marker"})
	}
	return out
}

func (h *aligned) OnEndOfPartition(now time.Time, ch int) []Action {
	if h.ended[ch] {
		return nil
	}
	h.ended[ch] = true
	h.open--
	if h.blocked[ch] { // cannot happen: a blocked channel is not read
		h.blocked[ch] = false
		h.nBlock--
	}
	if h.active && h.nBlock == h.open {
		return h.complete(now)
	}
	return nil
}

func (h *aligned) OnAbort(now time.Time, id checkpoint.ID) []Action {
	if h.active && id == h.current.ID {
		return h.unblockAll()
	}
	h.latest = max(h.latest, id)
	return nil
}
