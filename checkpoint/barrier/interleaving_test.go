package barrier

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/weirstream/weir/checkpoint"
)

type item struct {
	record  int // >0: a record
	barrier checkpoint.ID
	eop     bool
}

// TestRandomInterleavings feeds random records and barriers on K channels
// in a random delivery order (a blocked channel is never read, as in a
// task) and checks each snapshot against the records processed before it:
// aligned, it is exactly the pre-barrier prefix of every channel; at least
// once, it contains every pre-barrier record and otherwise only records
// from behind the barrier.
func TestRandomInterleavings(t *testing.T) {
	for _, mode := range []checkpoint.Mode{checkpoint.ExactlyOnce, checkpoint.AtLeastOnce} {
		for seed := uint64(0); seed < 3000; seed++ {
			if err := runInterleaving(mode, seed); err != nil {
				t.Fatalf("%s seed %d: %v", mode, seed, err)
			}
		}
	}
}

func runInterleaving(mode checkpoint.Mode, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 7))
	k := 1 + rng.IntN(5)
	twoCheckpoints := rng.IntN(3) == 0
	chans := make([][]item, k)
	// before[n] is the set of records ahead of barrier n on every channel.
	before := map[checkpoint.ID]map[int]bool{1: {}, 2: {}}
	next := 1
	for ch := range chans {
		n := rng.IntN(8)
		for range n {
			chans[ch] = append(chans[ch], item{record: next})
			before[1][next], before[2][next] = true, true
			next++
		}
		endsEarly := rng.IntN(6) == 0
		if endsEarly {
			chans[ch] = append(chans[ch], item{eop: true})
			continue
		}
		chans[ch] = append(chans[ch], item{barrier: 1})
		for range rng.IntN(8) {
			chans[ch] = append(chans[ch], item{record: next})
			before[2][next] = true
			next++
		}
		if twoCheckpoints {
			chans[ch] = append(chans[ch], item{barrier: 2})
		}
		for range rng.IntN(4) {
			chans[ch] = append(chans[ch], item{record: next})
			next++
		}
		if rng.IntN(2) == 0 {
			chans[ch] = append(chans[ch], item{eop: true})
		}
	}
	h := New(mode, k)
	processed := map[int]bool{}
	snapshots := map[checkpoint.ID]map[int]bool{}
	aborted := map[checkpoint.ID]bool{}
	now := time.Unix(0, 0)
	pos := make([]int, k)
	for step := 0; ; step++ {
		var ready []int
		for ch := range chans {
			if pos[ch] < len(chans[ch]) && !h.Blocked(ch) {
				ready = append(ready, ch)
			}
		}
		if len(ready) == 0 {
			break
		}
		ch := ready[rng.IntN(len(ready))]
		it := chans[ch][pos[ch]]
		pos[ch]++
		now = now.Add(time.Millisecond)
		var acts []Action
		switch {
		case it.record > 0:
			processed[it.record] = true
		case it.eop:
			acts = h.OnEndOfPartition(now, ch)
		default:
			acts = h.OnBarrier(now, ch, checkpoint.Barrier{ID: it.barrier})
		}
		for _, a := range acts {
			switch a := a.(type) {
			case Snapshot:
				if snapshots[a.Barrier.ID] != nil || aborted[a.Barrier.ID] {
					return fmt.Errorf("checkpoint %d ended twice", a.Barrier.ID)
				}
				snap := map[int]bool{}
				for r := range processed {
					snap[r] = true
				}
				snapshots[a.Barrier.ID] = snap
			case Abort:
				if snapshots[a.ID] != nil || aborted[a.ID] {
					return fmt.Errorf("checkpoint %d ended twice", a.ID)
				}
				aborted[a.ID] = true
			}
		}
	}
	for ch := range chans {
		if pos[ch] != len(chans[ch]) {
			return fmt.Errorf("channel %d left blocked with %d items unread", ch, len(chans[ch])-pos[ch])
		}
	}
	ids := []checkpoint.ID{1}
	if twoCheckpoints {
		ids = append(ids, 2)
	}
	anyBarrier := false
	for _, c := range chans {
		for _, it := range c {
			anyBarrier = anyBarrier || it.barrier != 0
		}
	}
	for _, id := range ids {
		snap := snapshots[id]
		if snap == nil {
			if aborted[id] || !anyBarrier {
				continue
			}
			return fmt.Errorf("checkpoint %d neither snapshotted nor aborted", id)
		}
		for r := range before[id] {
			if !snap[r] {
				return fmt.Errorf("checkpoint %d lost pre-barrier record %d", id, r)
			}
		}
		if mode == checkpoint.ExactlyOnce && len(snap) != len(before[id]) {
			return fmt.Errorf("checkpoint %d holds %d records, want exactly the %d before the barrier", id, len(snap), len(before[id]))
		}
	}
	if mode == checkpoint.ExactlyOnce && len(aborted) > 0 {
		return fmt.Errorf("aligned handler aborted %v though barriers came in order", aborted)
	}
	return nil
}
