package barrier

import (
	"fmt"
	"sort"
	"time"

	"github.com/weirstream/weir/checkpoint"
)

type tracked struct {
	b          checkpoint.Barrier
	got        []bool
	firstAt    time.Time
	startDelay time.Duration
	blocked    []int // channels blocked for this savepoint's alignment
}

type atLeastOnce struct {
	ended   []bool
	blocked []bool          // channels blocked for a savepoint's alignment
	seen    []checkpoint.ID // newest barrier or marker read per channel
	pending []*tracked      // ascending ids
	// done is the newest checkpoint snapshotted here; aborted holds newer
	// ones abandoned (cancellation marker, OnAbort, or a newer one completed
	// first). Barriers of done, older, or aborted checkpoints are ignored.
	done    checkpoint.ID
	aborted map[checkpoint.ID]bool
}

// NewAtLeastOnce returns the at-least-once handler for numChannels channels.
func NewAtLeastOnce(numChannels int) Handler {
	return &atLeastOnce{ended: make([]bool, numChannels), blocked: make([]bool, numChannels), seen: make([]checkpoint.ID, numChannels), aborted: map[checkpoint.ID]bool{}}
}

func (h *atLeastOnce) Blocked(ch int) bool { return h.blocked[ch] }

// release unblocks the channels p's savepoint alignment blocked.
func (h *atLeastOnce) release(p *tracked) []Action {
	if len(p.blocked) == 0 {
		return nil
	}
	chs := append([]int(nil), p.blocked...)
	sort.Ints(chs)
	for _, ch := range chs {
		h.blocked[ch] = false
	}
	p.blocked = nil
	return []Action{Unblock{Channels: chs}}
}

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
	if h.ended[ch] || h.blocked[ch] {
		return nil
	}
	out := h.skippedSavepoints(ch, b.ID)
	h.seen[ch] = max(h.seen[ch], b.ID)
	if b.ID <= h.done || h.aborted[b.ID] {
		return out
	}
	i := h.find(b.ID)
	if i < 0 && b.Kind == checkpoint.KindSavepoint {
		for other, s := range h.seen {
			if s > b.ID {
				// That channel went past this savepoint without its
				// barrier: it can never be aligned.
				h.aborted[b.ID] = true
				return append(out, Abort{ID: b.ID, Reason: fmt.Sprintf("channel %d skipped savepoint %d", other, b.ID)})
			}
		}
	}
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
	p := h.pending[i]
	p.got[ch] = true
	out = append(out, h.completeReady(now)...)
	if b.Kind == checkpoint.KindSavepoint && h.find(b.ID) >= 0 {
		// A savepoint is aligned even in at-least-once mode: block the
		// channel until its barrier arrived on every channel, so that the
		// savepoint holds exactly the records before it.
		h.blocked[ch] = true
		p.blocked = append(p.blocked, ch)
		out = append(out, Block{Channel: ch})
	}
	return out
}

// completeReady snapshots the newest pending checkpoint whose barrier has
// arrived on all open channels (one event may complete several: only the
// newest is snapshotted). Older pending checkpoints end with it: they
// cannot be acknowledged after a newer one, and the coordinator subsumes
// them when the newer completes, so they are dropped without a decline;
// an older savepoint, which no checkpoint subsumes, is aborted.
func (h *atLeastOnce) completeReady(now time.Time) []Action {
	j := -1
	for i, p := range h.pending {
		if h.arrivedEverywhere(p) {
			j = i
		}
	}
	if j < 0 {
		return nil
	}
	p := h.pending[j]
	out := h.dropOlder(p.b.ID, fmt.Sprintf("checkpoint %d completed first", p.b.ID))
	out = append(out, Snapshot{Barrier: p.b, AlignmentDuration: now.Sub(p.firstAt), StartDelay: p.startDelay})
	out = append(out, h.release(p)...)
	h.done = p.b.ID
	h.pending = h.pending[1:]
	for id := range h.aborted {
		if id <= h.done {
			delete(h.aborted, id)
		}
	}
	return out
}

// dropOlder ends every pending checkpoint older than id: checkpoints
// silently, savepoints with an Abort (and the release of their channels).
func (h *atLeastOnce) dropOlder(id checkpoint.ID, reason string) []Action {
	var out []Action
	i := 0
	for i < len(h.pending) && h.pending[i].b.ID < id {
		older := h.pending[i]
		if older.b.Kind == checkpoint.KindSavepoint {
			out = append(out, Abort{ID: older.b.ID, Reason: reason})
			out = append(out, h.release(older)...)
		}
		i++
	}
	h.pending = h.pending[i:]
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

// skippedSavepoints aborts the savepoints older than id still waiting for
// their barrier on ch: the channel delivered a newer barrier or marker
// first, so it will never deliver theirs (the upstream declined them), and
// an aligned savepoint cannot complete without it.
func (h *atLeastOnce) skippedSavepoints(ch int, id checkpoint.ID) []Action {
	var out []Action
	for i := 0; i < len(h.pending); {
		p := h.pending[i]
		if p.b.ID < id && p.b.Kind == checkpoint.KindSavepoint && !p.got[ch] {
			h.aborted[p.b.ID] = true
			out = append(out, Abort{ID: p.b.ID, Reason: fmt.Sprintf("channel %d skipped savepoint %d", ch, p.b.ID)})
			out = append(out, h.release(p)...)
			h.pending = append(h.pending[:i], h.pending[i+1:]...)
			continue
		}
		i++
	}
	return out
}

func (h *atLeastOnce) OnCancellation(now time.Time, ch int, id checkpoint.ID) []Action {
	if h.ended[ch] {
		return nil
	}
	out := h.skippedSavepoints(ch, id)
	h.seen[ch] = max(h.seen[ch], id)
	if id <= h.done || h.aborted[id] {
		return out
	}
	h.aborted[id] = true
	// The upstream abandoned id, and with it every older checkpoint.
	out = append(out, h.dropOlder(id, fmt.Sprintf("cancellation marker for newer checkpoint %d", id))...)
	out = append(out, Abort{ID: id, Reason: "cancellation marker", Cancelled: true})
	if i := h.find(id); i >= 0 {
		out = append(out, h.release(h.pending[i])...)
		h.pending = append(h.pending[:i], h.pending[i+1:]...)
	}
	return out
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
	var out []Action
	if i := h.find(id); i >= 0 {
		out = h.release(h.pending[i])
		h.pending = append(h.pending[:i], h.pending[i+1:]...)
	}
	return out
}
