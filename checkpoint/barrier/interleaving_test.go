package barrier

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/weirstream/weir/checkpoint"
)

type itemKind uint8

const (
	kindRecord itemKind = iota
	kindBarrier
	kindCancel
	kindEOP
)

type item struct {
	kind   itemKind
	record int           // kindRecord: unique, > 0
	id     checkpoint.ID // kindBarrier, kindCancel
}

// TestRandomInterleavings feeds random records, barriers, cancellation
// markers and ends of partition on K channels in a random delivery order (a
// blocked channel is never read, as in a task) and checks every snapshot
// against the records processed before it: aligned, it is exactly the
// records ahead of barrier n on every channel; at least once, it holds all
// of them, and any other record is one from behind the barrier.
//
// Half the scenarios are clean (every channel carries barriers 1..m in order,
// perhaps ending early): then every checkpoint must be snapshotted and none
// aborted. The others are faulty: a channel may skip a barrier or carry a
// cancellation marker instead, and the coordinator may abort checkpoints at
// random. When no channel can be read any more but a checkpoint is still
// pending, the test plays the coordinator's timeout (OnAbort). In all
// scenarios every channel is read to its end and ends unblocked, and every
// checkpoint the handler started ends in exactly one Snapshot or Abort,
// unless the coordinator aborted it or (at least once) a newer checkpoint
// was snapshotted or cancelled first.
func TestRandomInterleavings(t *testing.T) {
	seeds := uint64(4000)
	if testing.Short() {
		seeds = 500
	}
	for _, mode := range []checkpoint.Mode{checkpoint.ExactlyOnce, checkpoint.AtLeastOnce} {
		for seed := range seeds {
			if err := runInterleaving(mode, seed, false); err != nil {
				t.Fatalf("%s seed %d: %v", mode, seed, err)
			}
		}
	}
	// At least once with savepoints (even ids): the savepoints must be
	// aligned snapshots, exactly the records ahead of their barriers.
	for seed := range seeds {
		if err := runInterleaving(checkpoint.AtLeastOnce, seed, true); err != nil {
			t.Fatalf("at-least-once with savepoints, seed %d: %v", seed, err)
		}
	}
}

func genChannels(rng *rand.Rand, k, m int, faulty bool) [][]item {
	chans := make([][]item, k)
	next := 1
	records := func(ch, n int) {
		for range n {
			chans[ch] = append(chans[ch], item{kind: kindRecord, record: next})
			next++
		}
	}
	for ch := range chans {
		records(ch, rng.IntN(6))
		for id := 1; id <= m; id++ {
			kind, skip := kindBarrier, false
			if faulty {
				switch rng.IntN(8) {
				case 0:
					skip = true // the upstream never forwarded it
				case 1:
					kind = kindCancel
				}
			}
			if !skip {
				chans[ch] = append(chans[ch], item{kind: kind, id: checkpoint.ID(id)})
			}
			records(ch, rng.IntN(6))
		}
		switch rng.IntN(4) {
		case 0: // ends early
			chans[ch] = append(chans[ch][:rng.IntN(len(chans[ch])+1)], item{kind: kindEOP})
		case 1:
			chans[ch] = append(chans[ch], item{kind: kindEOP})
		}
	}
	return chans
}

// prefix returns the records of c ahead of checkpoint id: those before the
// first barrier or marker of id or a newer checkpoint, or before the end of
// partition. ok tells whether that first event is barrier id or the end of
// partition (the channel took part in checkpoint id).
func prefix(c []item, id checkpoint.ID) (recs []int, ok bool) {
	for _, it := range c {
		switch {
		case it.kind == kindRecord:
			recs = append(recs, it.record)
		case it.kind == kindEOP:
			return recs, true
		case it.id >= id:
			return recs, it.kind == kindBarrier && it.id == id
		}
	}
	return recs, false
}

func runInterleaving(mode checkpoint.Mode, seed uint64, savepoints bool) error {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	k := 1 + rng.IntN(5)
	m := 1 + rng.IntN(3)
	faulty := rng.IntN(2) == 0
	chans := genChannels(rng, k, m, faulty)
	aligned := mode == checkpoint.ExactlyOnce
	isSP := func(id checkpoint.ID) bool { return savepoints && id%2 == 0 }
	exact := func(id checkpoint.ID) bool { return aligned || isSP(id) }
	readSP := false // the item just read is a savepoint barrier

	h := New(mode, k)
	now := time.Unix(0, 0)
	pos := make([]int, k)
	processed := map[int]bool{}
	blocked := make([]bool, k) // shadow of Blocked, from Block/Unblock actions

	snapshots := map[checkpoint.ID]map[int]bool{}
	aborted := map[checkpoint.ID]bool{}
	coordAborted := map[checkpoint.ID]bool{}
	mustEnd := map[checkpoint.ID]bool{} // the handler had to start or abort these
	// Newest id read in a barrier or marker (aligned: older ones are stale),
	// and newest id snapshotted (at least once: older ones are ignored).
	var maxRead, maxSnap checkpoint.ID
	timeouts := 0

	apply := func(readCh int, acts []Action) error {
		for i, a := range acts {
			switch a := a.(type) {
			case Block:
				if !(aligned || readSP) || a.Channel != readCh || blocked[a.Channel] || i != len(acts)-1 {
					return fmt.Errorf("unexpected %v in %v after reading channel %d", a, acts, readCh)
				}
				blocked[a.Channel] = true
			case Unblock:
				if !(aligned || savepoints) || len(a.Channels) == 0 || !slices.IsSorted(a.Channels) {
					return fmt.Errorf("unexpected %v in %v", a, acts)
				}
				for _, ch := range a.Channels {
					if !blocked[ch] {
						return fmt.Errorf("%v of channel %d that is not blocked", a, ch)
					}
					blocked[ch] = false
				}
			case Snapshot:
				id := a.Barrier.ID
				if snapshots[id] != nil || aborted[id] || coordAborted[id] {
					return fmt.Errorf("snapshot of checkpoint %d that ended already (snapshot %v, abort %v, coordinator abort %v)", id, snapshots[id] != nil, aborted[id], coordAborted[id])
				}
				snap := map[int]bool{}
				for r := range processed {
					snap[r] = true
				}
				snapshots[id] = snap
				maxSnap = max(maxSnap, id)
				if exact(id) {
					// The task snapshots before it reads any released channel.
					if i+1 < len(acts) {
						if _, ok := acts[i+1].(Unblock); !ok || i+2 != len(acts) {
							return fmt.Errorf("aligned %v must be last or followed only by Unblock", acts)
						}
					}
				}
			case Abort:
				if snapshots[a.ID] != nil || aborted[a.ID] || coordAborted[a.ID] {
					return fmt.Errorf("abort of checkpoint %d that ended already (snapshot %v, abort %v, coordinator abort %v)", a.ID, snapshots[a.ID] != nil, aborted[a.ID], coordAborted[a.ID])
				}
				aborted[a.ID] = true
			}
		}
		for ch := range k {
			if h.Blocked(ch) != blocked[ch] {
				return fmt.Errorf("Blocked(%d) = %v, actions said %v", ch, h.Blocked(ch), blocked[ch])
			}
		}
		if id, ok := h.Pending(); ok {
			mustEnd[id] = true
		}
		return nil
	}

	for {
		now = now.Add(time.Millisecond)
		if faulty && rng.IntN(25) == 0 {
			id := checkpoint.ID(1 + rng.IntN(m))
			if snapshots[id] == nil && !aborted[id] {
				coordAborted[id] = true
			}
			if err := apply(-1, h.OnAbort(now, id)); err != nil {
				return err
			}
			continue
		}
		var ready []int
		for ch := range chans {
			if pos[ch] < len(chans[ch]) && !h.Blocked(ch) {
				ready = append(ready, ch)
			}
		}
		if len(ready) == 0 {
			// Nothing to read. A checkpoint still pending cannot complete:
			// the coordinator expires it.
			id, ok := h.Pending()
			if !ok {
				break
			}
			timeouts++
			if snapshots[id] == nil && !aborted[id] {
				coordAborted[id] = true
			}
			if err := apply(-1, h.OnAbort(now, id)); err != nil {
				return err
			}
			if p, ok := h.Pending(); ok && p == id {
				return fmt.Errorf("checkpoint %d still pending after OnAbort", id)
			}
			continue
		}
		ch := ready[rng.IntN(len(ready))]
		it := chans[ch][pos[ch]]
		pos[ch]++
		var acts []Action
		readSP = false
		switch it.kind {
		case kindRecord:
			processed[it.record] = true
		case kindEOP:
			acts = h.OnEndOfPartition(now, ch)
		case kindBarrier, kindCancel:
			stale := it.id <= maxRead
			if !aligned {
				stale = it.id <= maxSnap
			}
			if !stale {
				mustEnd[it.id] = true
			}
			maxRead = max(maxRead, it.id)
			if it.kind == kindBarrier {
				b := checkpoint.Barrier{ID: it.id, Timestamp: time.Unix(0, 0)}
				if isSP(it.id) {
					b.Kind = checkpoint.KindSavepoint
					readSP = true
				}
				acts = h.OnBarrier(now, ch, b)
			} else {
				acts = h.OnCancellation(now, ch, it.id)
			}
		}
		if err := apply(ch, acts); err != nil {
			return err
		}
	}

	for ch := range chans {
		if pos[ch] != len(chans[ch]) {
			return fmt.Errorf("channel %d left with %d items unread", ch, len(chans[ch])-pos[ch])
		}
		if h.Blocked(ch) {
			return fmt.Errorf("channel %d left blocked", ch)
		}
	}
	if id, ok := h.Pending(); ok {
		return fmt.Errorf("checkpoint %d left pending", id)
	}
	// At least once, a checkpoint (not a savepoint) also ends silently when
	// a newer one is snapshotted or cancelled here: the coordinator
	// subsumes it.
	endedByNewer := func(id checkpoint.ID) bool {
		if aligned || isSP(id) {
			return false
		}
		for newer := range snapshots {
			if newer > id {
				return true
			}
		}
		for newer := range aborted {
			if newer > id {
				return true
			}
		}
		return false
	}
	for id := range mustEnd {
		if snapshots[id] == nil && !aborted[id] && !coordAborted[id] && !endedByNewer(id) {
			return fmt.Errorf("checkpoint %d neither snapshotted nor aborted", id)
		}
	}

	// Every snapshot against the channels' prefixes.
	where := map[int]int{} // record -> channel
	for ch, c := range chans {
		for _, it := range c {
			if it.kind == kindRecord {
				where[it.record] = ch
			}
		}
	}
	for id, snap := range snapshots {
		want := map[int]bool{}
		for ch, c := range chans {
			recs, ok := prefix(c, id)
			if exact(id) && !ok {
				return fmt.Errorf("aligned snapshot of checkpoint %d though channel %d carried no barrier %d", id, ch, id)
			}
			for _, r := range recs {
				want[r] = true
			}
		}
		for r := range want {
			if !snap[r] {
				return fmt.Errorf("snapshot %d lost record %d (channel %d) from ahead of the barrier", id, r, where[r])
			}
		}
		// Records outside want are from behind the barrier on their channel:
		// allowed at least once, not aligned.
		for r := range snap {
			if exact(id) && !want[r] {
				return fmt.Errorf("aligned snapshot %d holds record %d (channel %d) from behind the barrier", id, r, where[r])
			}
		}
	}

	if !faulty {
		if len(aborted) > 0 || timeouts > 0 {
			return fmt.Errorf("clean scenario: aborted %v, %d timeouts", aborted, timeouts)
		}
		for id := checkpoint.ID(1); id <= checkpoint.ID(m); id++ {
			carried := false
			for _, c := range chans {
				carried = carried || slices.Contains(c, item{kind: kindBarrier, id: id})
			}
			if carried && snapshots[id] == nil && !endedByNewer(id) {
				return fmt.Errorf("clean scenario: checkpoint %d not snapshotted", id)
			}
		}
	}
	return nil
}
