package coordinator

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/weirstream/weir/checkpoint"
)

// TestRandomEvents drives the coordinator with random events and checks its
// invariants after every step.
func TestRandomEvents(t *testing.T) {
	for seed := uint64(0); seed < 500; seed++ {
		rng := rand.New(rand.NewPCG(seed, 11))
		cfg := Config{
			Interval: time.Duration(1+rng.IntN(5)) * 100 * time.Millisecond, Timeout: time.Duration(rng.IntN(4)) * time.Second,
			MinPause: time.Duration(rng.IntN(3)) * 100 * time.Millisecond, MaxConcurrent: 1 + rng.IntN(3),
			TolerableFailures: rng.IntN(4) - 1, NumRetained: 1 + rng.IntN(3),
		}
		tasks := []checkpoint.TaskID{{0, 0}, {0, 1}, {1, 0}, {1, 1}}
		c, err := New(cfg, tasks, tasks[:2], 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Unix(0, 0)
		lastTriggered := checkpoint.ID(0)
		ended := map[checkpoint.ID]string{}
		triggered := map[checkpoint.ID]bool{}
		completing := map[checkpoint.ID]bool{}
		var check func(acts []Action)
		check = func(acts []Action) {
			t.Helper()
			for _, a := range acts {
				switch a := a.(type) {
				case TriggerSources:
					if a.Barrier.ID <= lastTriggered {
						t.Fatalf("seed %d: trigger id %d not above %d", seed, a.Barrier.ID, lastTriggered)
					}
					lastTriggered = a.Barrier.ID
					triggered[a.Barrier.ID] = true
				case WriteMetadata:
					completing[a.ID] = true
				case NotifyComplete:
					if ended[a.ID] != "" {
						t.Fatalf("seed %d: checkpoint %d completed after it %s", seed, a.ID, ended[a.ID])
					}
					ended[a.ID] = "completed"
				case NotifyAborted:
					if ended[a.ID] != "" {
						t.Fatalf("seed %d: checkpoint %d aborted after it %s", seed, a.ID, ended[a.ID])
					}
					ended[a.ID] = "aborted"
				}
			}
			if n := c.pendingCheckpoints(); n > cfg.MaxConcurrent {
				t.Fatalf("seed %d: %d pending checkpoints, max %d", seed, n, cfg.MaxConcurrent)
			}
			if n := len(c.Completed()); n > max(cfg.NumRetained, 1) {
				t.Fatalf("seed %d: %d retained, max %d", seed, n, cfg.NumRetained)
			}
			if dl, ok := c.NextDeadline(); ok && dl.Before(now) && !c.failed {
				// A deadline in the past must be acted on by the next Tick.
				before := len(c.Pending())
				acts := c.Tick(now)
				if len(acts) == 0 && len(c.Pending()) == before {
					t.Fatalf("seed %d: deadline %v in the past but Tick does nothing", seed, dl)
				}
				check(acts)
			}
		}
		check(c.Start(now))
		for range 300 {
			now = now.Add(time.Duration(rng.IntN(200)) * time.Millisecond)
			pend := c.Pending()
			pick := func() checkpoint.ID {
				if len(pend) == 0 || rng.IntN(10) == 0 {
					return checkpoint.ID(rng.IntN(int(lastTriggered) + 2))
				}
				return pend[rng.IntN(len(pend))]
			}
			task := tasks[rng.IntN(len(tasks))]
			switch rng.IntN(10) {
			case 0, 1:
				check(c.Tick(now))
			case 2, 3, 4:
				check(c.Ack(now, pick(), task, checkpoint.TaskSnapshot{}))
			case 5:
				check(c.Decline(now, pick(), task, errors.New("x")))
			case 6:
				if rng.IntN(8) == 0 {
					check(c.TaskFinished(now, task))
				}
			case 7, 8:
				id := pick()
				if rng.IntN(5) == 0 {
					check(c.MetadataFailed(now, id, errors.New("x")))
				} else {
					check(c.MetadataWritten(now, id))
				}
			case 9:
				kind := checkpoint.KindCheckpoint
				if rng.IntN(3) == 0 {
					kind = checkpoint.KindSavepoint
				}
				_, acts, _ := c.TriggerNow(now, kind)
				check(acts)
			}
		}
		check(c.Shutdown(now))
		for id, how := range ended {
			if !triggered[id] {
				t.Fatalf("seed %d: checkpoint %d %s but never triggered", seed, id, how)
			}
		}
		if c.Tick(now) != nil || c.Ack(now, lastTriggered, tasks[0], checkpoint.TaskSnapshot{}) != nil {
			t.Fatalf("seed %d: events after shutdown produced actions", seed)
		}
	}
}
