package pebblestate_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/state"
	"github.com/weirstream/weir/state/pebblestate"
	"github.com/weirstream/weir/storage"
)

// TestIncrementalUploadProportionalToChange fills 1 GiB of keyed state,
// checkpoints it, then updates about 1% of the keys between checkpoints:
// every later checkpoint uploads bytes proportional to the change (new
// SSTs from the flush and the compactions it triggers), not to the state
// size. It asserts on bytes, never on time.
func TestIncrementalUploadProportionalToChange(t *testing.T) {
	const (
		valueSize = 1000
		numKeys   = 1 << 20 // 1 Mi keys × ~1 KB = ~1 GiB
		rounds    = 8
	)
	if testing.Short() {
		t.Skip("writes 1 GiB of state; skipped with -short")
	}
	b := newPebble[string](t, false, nil, full())
	v, err := state.GetValueState[string, []byte](b, "v", state.CodecFor[[]byte]())
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(7, 7))
	val := make([]byte, valueSize)
	fill := func() {
		for i := range val {
			val[i] = byte(rnd.Uint32())
		}
	}
	key := func(i int) string { return fmt.Sprintf("user-%08d", i) }
	for i := range numKeys {
		fill()
		setKey(b, key(i))
		v.Update(val)
	}
	// Let the compactions of the initial load finish, as they long have
	// in a job that has been running.
	db := b.Store().(*pebblestate.Store).DB()
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	// Settled means no flush or compaction running and the compaction
	// debt no longer falling, for 2 s: on a loaded machine (CI) that takes
	// minutes, and a checkpoint taken before would upload the initial
	// load's compactions. The debt need not reach 0: pebble leaves an
	// estimated debt (tens of MB here) that no level's score asks to
	// compact, and a later round's compactions may pay part of it, within
	// the bound below.
	deadline := time.Now().Add(15 * time.Minute)
	var lastDebt uint64
	for idle := 0; idle < 40; time.Sleep(50 * time.Millisecond) {
		m := db.Metrics()
		if m.Compact.NumInProgress == 0 && m.Flush.NumInProgress == 0 && m.Compact.EstimatedDebt <= lastDebt {
			idle++
		} else {
			idle = 0
		}
		lastDebt = m.Compact.EstimatedDebt
		if time.Now().After(deadline) {
			t.Fatalf("the initial load's compactions did not settle in 15 minutes: %d running, debt %d bytes", m.Compact.NumInProgress, m.Compact.EstimatedDebt)
		}
	}
	t.Logf("settled: compaction debt %d MiB", lastDebt>>20)
	st, err := storage.NewFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := snapshot(t, b, st, 1, checkpoint.KindCheckpoint)
	b.NotifyCheckpointComplete(1)
	full := h.Incremental.Uploaded
	t.Logf("checkpoint 1: uploaded %d MiB (full state)", full>>20)
	if full < numKeys*valueSize*9/10 {
		t.Fatalf("first checkpoint uploaded %d bytes, less than the state", full)
	}
	changed := int64(numKeys / 100 * (valueSize + 20))
	var sum int64
	for r := range rounds {
		for range numKeys / 100 {
			fill()
			setKey(b, key(rnd.IntN(numKeys)))
			v.Update(val)
		}
		id := checkpoint.ID(2 + r)
		h := snapshot(t, b, st, id, checkpoint.KindCheckpoint)
		b.NotifyCheckpointComplete(id)
		var total int64
		for _, f := range h.Incremental.Files {
			total += f.Stream.Size
		}
		t.Logf("checkpoint %d: uploaded %d KiB of %d MiB (change %d KiB)", id, h.Incremental.Uploaded>>10, total>>20, changed>>10)
		// New SSTs are the flushed change plus what the compactions it
		// triggers rewrite: the LSM's write amplification, a small
		// multiple of the change (measured 1-10x here).
		if h.Incremental.Uploaded > 16*changed {
			t.Fatalf("checkpoint %d uploaded %d bytes after changing %d bytes: not proportional to the change (full state %d)", id, h.Incremental.Uploaded, changed, full)
		}
		sum += h.Incremental.Uploaded
		if total < full*9/10 {
			t.Fatalf("checkpoint %d references %d bytes, less than the state", id, total)
		}
	}
	if mean := sum / rounds; mean > 10*changed || mean > full/10 {
		t.Fatalf("checkpoints uploaded %d bytes on average after changing %d bytes each (full state %d)", mean, changed, full)
	}
}
