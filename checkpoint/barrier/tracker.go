package barrier

import (
	"fmt"
	"time"

	"github.com/weirstream/weir/checkpoint"
)

type tracked struct {
	b          checkpoint.Barrier
	got        []bool
	firstAt    time.Time
	startDelay time.Duration
}

type atLeastOnce struct {
	ended   []bool
	pending []*tracked // ascending ids
	// done is the newest checkpoint snapshotted here; aborted holds newer
	// ones abandoned (cancellation marker, OnAbort, or a newer one completed
	// first). Barriers of done, older, or aborted checkpoints are ignored.
	done    checkpoint.ID
	aborted map[checkpoint.ID]bool
}

// NewAtLeastOnce returns the at-least-once handler for numChannels channels.
func NewAtLeastOnce(numChannels int) Handler {
	return &atLeastOnce{ended: make([]bool, numChannels), aborted: map[checkpoint.ID]bool{}}
}

func (h *atLeastOnce) Blocked(int) bool { return false }

func (h *atLeastOnce) Pending() (checkpoint.ID, bool) {
	if len(h.pending) == 0 {
		return 0, false
	}
	return h.pending[len(h.pending)-1].b.ID, true
}

func (h *atLeastOnce) find(id checkpoint.ID) int {
	for i, p := range h.pending {
		if p.b.ID == id {
			return i
		}
	}
	return -1
}

func (h *atLeastOnce) OnBarrier(now time.Time, ch int, b checkpoint.Barrier) []Action {
	if h.ended[ch] || b.ID <= h.done || h.aborted[b.ID] {
		return nil
	}
	i := h.find(b.ID)
	if i < 0 {
		p := &tracked{b: b, got: make([]bool, len(h.ended)), firstAt: now, startDelay: startDelay(now, b)}
		i = len(h.pending)
		for i > 0 && h.pending[i-1].b.ID > b.ID {
			i--
		}
		h.pending = append(h.pending, nil)
		copy(h.pending[i+1:], h.pending[i:])
		h.pending[i] = p
	}
	h.pending[i].got[ch] = true
	return h.completeReady(now)
}

// completeReady snapshots, oldest first, every pending checkpoint whose
// barrier has arrived on all open channels; before each Snapshot it aborts
// the older pending checkpoints that are still incomplete (they cannot be
// acknowledged after a newer one).
func (h *atLeastOnce) completeReady(now time.Time) []Action {
	var out []Action
	for i := 0; i < len(h.pending); {
		p := h.pending[i]
		if !h.arrivedEverywhere(p) {
			i++
			continue
		}
		for _, older := range h.pending[:i] {
			out = append(out, Abort{ID: older.b.ID, Reason: fmt.Sprintf("checkpoint %d completed first", p.b.ID)})
		}
		out = append(out, Snapshot{Barrier: p.b, AlignmentDuration: now.Sub(p.firstAt), StartDelay: p.startDelay})
		h.done = p.b.ID
		h.pending = h.pending[i+1:]
		i = 0
		for id := range h.aborted {
			if id <= h.done {
				delete(h.aborted, id)
			}
		}
	}
	return out
}

func (h *atLeastOnce) arrivedEverywhere(p *tracked) bool {
	for ch, ended := range h.ended {
		if !ended && !p.got[ch] {
			return false
		}
	}
	return true
}

func (h *atLeastOnce) OnCancellation(now time.Time, ch int, id checkpoint.ID) []Action {
	if h.ended[ch] || id <= h.done || h.aborted[id] {
		return nil
	}
	h.aborted[id] = true
	if i := h.find(id); i >= 0 {
		h.pending = append(h.pending[:i], h.pending[i+1:]...)
	}
	return []Action{Abort{ID: id, Reason: "cancellation marker"}}
}

func (h *atLeastOnce) OnEndOfPartition(now time.Time, ch int) []Action {
	if h.ended[ch] {
		return nil
	}
	h.ended[ch] = true
	return h.completeReady(now)
}

func (h *atLeastOnce) OnAbort(now time.Time, id checkpoint.ID) []Action {
	if id <= h.done || h.aborted[id] {
		return nil
	}
	h.aborted[id] = true
	if i := h.find(id); i >= 0 {
		h.pending = append(h.pending[:i], h.pending[i+1:]...)
	}
	return nil
}
