package runtime

import "sync"

// InputGate is the set of input channels of one subtask. Channels announce
// that they became non-empty; the gate keeps those announcements in FIFO
// order so the task reads its channels fairly, and lets the task skip
// channels its barrier handler has blocked.
//
// notify may be called from any goroutine; next and wait only from the task
// goroutine that owns the gate.
type InputGate struct {
	mu struct {
		sync.Mutex
		avail   []int  // channels announced non-empty, oldest first
		inAvail []bool // channel is in avail
	}
	signal chan struct{}
}

// NewInputGate returns a gate for numChannels channels.
func NewInputGate(numChannels int) *InputGate {
	g := &InputGate{signal: make(chan struct{}, 1)}
	g.mu.inAvail = make([]bool, numChannels)
	return g
}

// NumChannels is the number of channels of the gate.
func (g *InputGate) NumChannels() int { return len(g.mu.inAvail) }

func (g *InputGate) notify(ch int) {
	g.mu.Lock()
	if !g.mu.inAvail[ch] {
		g.mu.inAvail[ch] = true
		g.mu.avail = append(g.mu.avail, ch)
	}
	g.mu.Unlock()
	select {
	case g.signal <- struct{}{}:
	default:
	}
}

// next removes and returns the oldest announced channel that blocked does
// not report as blocked; ok is false when there is none.
func (g *InputGate) next(blocked func(int) bool) (ch int, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, c := range g.mu.avail {
		if blocked != nil && blocked(c) {
			continue
		}
		copy(g.mu.avail[i:], g.mu.avail[i+1:])
		g.mu.avail = g.mu.avail[:len(g.mu.avail)-1]
		g.mu.inAvail[c] = false
		return c, true
	}
	return 0, false
}

// Signal is signalled when a channel becomes non-empty.
func (g *InputGate) Signal() <-chan struct{} { return g.signal }
