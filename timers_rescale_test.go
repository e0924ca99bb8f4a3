package weir_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/restart"
	"github.com/weirstream/weir/state/pebblestate"
)

// Timer proofs: every timer a keyed function registered fires exactly
// once, for its key, not before its time, across stop-with-savepoint,
// restore from a retained checkpoint, rescale 2 -> 4 -> 1 and failover,
// on heap and pebble state (full and incremental checkpoints).

const (
	timerKeys  = 20  // keys: record id % timerKeys
	timerAhead = 400 // a record's timer is this far after its timestamp
	timerBase  = 10_000
)

// timerRec is record ID (partition p, offset off: ID = off*4 + p) at
// event time timerBase + ID: unique timestamps, in order per partition.
type timerRec struct{ ID, TS int64 }

func mkTimerRec(p int, off int64) timerRec {
	id := off*4 + int64(p)
	return timerRec{ID: id, TS: timerBase + id}
}

// timerEvent is what timerProbe emits: a registration (Fired false) when a
// record registered its timer, a firing when the timer fired, with the
// watermark or processing time at the firing in Now.
type timerEvent struct {
	Fired   bool
	Key, At int64
	Now     int64
}

// timerProbe registers, per record, an event-time timer timerAhead after
// the record's timestamp, and registers the timer of the record 2*timerKeys
// ids before it again (same key, still pending: a duplicate that must not
// fire twice). OnTimer checks its key and time and emits the firing; it
// fails once, when failAt fires the first time, if failAt is set.
type timerProbe struct {
	failAt int64
	failed *atomic.Bool
}

func (f *timerProbe) ProcessElement(ctx *weir.KeyedContext[int64], r timerRec, out weir.Collector[timerEvent]) error {
	if ctx.CurrentKey() != r.ID%timerKeys {
		return fmt.Errorf("record %d processed under key %d", r.ID, ctx.CurrentKey())
	}
	at := r.TS + timerAhead
	ctx.RegisterEventTimeTimer(at)
	if r.ID >= 2*timerKeys {
		ctx.RegisterEventTimeTimer(at - 2*timerKeys)
	}
	out.Collect(timerEvent{Key: ctx.CurrentKey(), At: at})
	return nil
}

func (f *timerProbe) OnTimer(ctx *weir.KeyedContext[int64], ts int64, out weir.Collector[timerEvent]) error {
	if ctx.TimeDomain() != weir.EventTime {
		return fmt.Errorf("timer %d: domain %v", ts, ctx.TimeDomain())
	}
	if f.failed != nil && ts == f.failAt && f.failed.CompareAndSwap(false, true) {
		return fmt.Errorf("injected failure at timer %d", ts)
	}
	out.Collect(timerEvent{Fired: true, Key: ctx.CurrentKey(), At: ts, Now: ctx.CurrentWatermark()})
	return nil
}

// timerJob builds the probe job: 4 generator partitions of limit records
// at rate records per second per partition (0: unbounded), timestamps and
// monotonous watermarks per partition, the probe keyed by id % timerKeys,
// into sink.
func timerJob(sink *weir.CollectSink[timerEvent], probe *timerProbe, p int, limit int64, rate float64, opts ...weir.Option) *weir.Environment {
	base := []weir.Option{weir.Parallelism(p), weir.Checkpointing(10*time.Millisecond, weir.ExactlyOnce),
		weir.RestartStrategy(restart.None()), weir.AutoWatermarkInterval(2 * time.Millisecond)}
	env := weir.NewEnvironment(append(base, opts...)...)
	src := weir.FromSourceWithWatermarks(env, weir.Generator(4, limit, mkTimerRec).WithRate(rate),
		weir.ForMonotonousTimestamps[timerRec]().WithTimestampAssigner(func(r timerRec, _ int64) int64 { return r.TS }), "gen").UID("gen")
	keyed := weir.KeyBy(src, func(r timerRec) int64 { return r.ID % timerKeys })
	weir.Process(keyed, weir.KeyedProcessFunction[int64, timerRec, timerEvent](probe)).UID("probe").SinkTo(sink).UID("sink")
	return env
}

// checkTimerEvents checks the committed output of the probe: every
// firing is of a registered timer, for the right key, at or after its
// time, and at most once; with complete, every timer of the limit*4
// records fired. It returns the registered and fired counts.
func checkTimerEvents(t *testing.T, events []timerEvent, limit int64, complete bool) (registered, fired int) {
	t.Helper()
	regs := map[int64]int{}
	fires := map[int64]int{}
	for _, e := range events {
		id := e.At - timerAhead - timerBase
		if id < 0 || id >= 4*limit {
			t.Fatalf("%+v: a timer no record registered", e)
		}
		if e.Key != id%timerKeys {
			t.Fatalf("%+v: the timer of record %d belongs to key %d", e, id, id%timerKeys)
		}
		if !e.Fired {
			regs[e.At]++
			continue
		}
		if e.Now < e.At {
			t.Fatalf("%+v: fired at watermark %d, before its time", e, e.Now)
		}
		fires[e.At]++
	}
	for at, n := range regs {
		if n != 1 {
			t.Fatalf("timer %d: %d registrations committed, want 1 (a record processed twice?)", at, n)
		}
	}
	for at, n := range fires {
		if n != 1 {
			t.Fatalf("timer %d fired %d times", at, n)
		}
		if regs[at] == 0 {
			t.Fatalf("timer %d fired but its registration is not committed", at)
		}
	}
	if complete {
		if int64(len(regs)) != 4*limit {
			t.Fatalf("%d registrations committed, want %d", len(regs), 4*limit)
		}
		for at := range regs {
			if fires[at] == 0 {
				t.Fatalf("timer %d (record %d) never fired: lost (%d of %d fired)", at, at-timerAhead-timerBase, len(fires), len(regs))
			}
		}
	}
	return len(regs), len(fires)
}

// timerBackends are the state backends the proofs run on.
func timerBackends() []struct {
	name string
	opt  func(t *testing.T) []weir.Option
} {
	return []struct {
		name string
		opt  func(t *testing.T) []weir.Option
	}{
		{"heap", func(*testing.T) []weir.Option { return nil }},
		{"pebble-incremental", func(t *testing.T) []weir.Option {
			return []weir.Option{weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: t.TempDir()}))}
		}},
		{"pebble-full", func(t *testing.T) []weir.Option {
			return []weir.Option{weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: t.TempDir(), Full: true}))}
		}},
	}
}

// Event-time timers survive stop-with-savepoint and restore at another
// parallelism, 2 -> 4 -> 1, with many timers pending at each stop: each
// fires exactly once, for its key, not before its time, and none is lost.
func TestTimersRescaleSavepoint(t *testing.T) {
	for _, b := range timerBackends() {
		t.Run(b.name, func(t *testing.T) { testTimersRescale(t, true, b.opt(t)) })
	}
}

// The same through retained checkpoints: each stage is cancelled after
// checkpoints and the next restores the latest one.
func TestTimersRescaleCheckpoint(t *testing.T) {
	for _, b := range timerBackends() {
		t.Run(b.name, func(t *testing.T) { testTimersRescale(t, false, b.opt(t)) })
	}
}

// testTimersRescale runs the probe at parallelism 2 and 4, slowly (so that
// the input cannot end before the stop), each stage stopped once at least
// minRegs registrations are committed, with a savepoint (savepoint) or by
// cancelling after a checkpoint; then at 1 at full speed to the end, where
// the maximum watermark fires every pending timer.
func testTimersRescale(t *testing.T, savepoint bool, backend []weir.Option) {
	// 5000 records per partition at 200/s: 25 s per slow stage, ample for
	// a loaded machine whose pebble checkpoints (and so commits) lag.
	const limit = 5000
	dir := t.TempDir()
	sink := weir.NewCollectSink[timerEvent]()
	probe := &timerProbe{}
	restoreFrom := ""
	minRegs := 0
	for i, p := range []int{2, 4, 1} {
		opts := append([]weir.Option{weir.CheckpointStorage(dir)}, backend...)
		if restoreFrom != "" {
			opts = append(opts, weir.Restore(restoreFrom))
		}
		if i == 2 {
			env := timerJob(sink, probe, p, limit, 0, opts...)
			if err := env.Execute(context.Background(), "timers"); err != nil {
				t.Fatalf("stage %d (parallelism %d): %v", i, p, err)
			}
			break
		}
		env := timerJob(sink, probe, p, limit, slowRate, opts...)
		job, err := env.Start(context.Background(), "timers")
		if err != nil {
			t.Fatal(err)
		}
		// Run until the stage added 600 committed registrations (150 records
		// per partition: more than the 100 a timer is ahead).
		minRegs += 600
		waitUntil(t, job, func() bool { r, _ := checkTimerEvents(t, sink.Committed(), limit, false); return r >= minRegs })
		if savepoint {
			if restoreFrom, err = job.StopWithSavepoint(context.Background()); err != nil {
				t.Fatalf("stage %d: stop with savepoint: %v", i, err)
			}
			if err := job.Wait(); err != nil {
				t.Fatalf("stage %d: a job stopped with a savepoint must end cleanly: %v", i, err)
			}
		} else {
			job.Cancel()
			job.Wait()
			restoreFrom = "latest"
		}
		regs, fired := checkTimerEvents(t, sink.Committed(), limit, false)
		if regs >= 4*limit {
			t.Fatalf("stage %d read the whole input: the stop did not happen mid-stream", i)
		}
		if regs-fired < 100 {
			t.Fatalf("stage %d stopped with %d timers pending (%d registered, %d fired), want many", i, regs-fired, regs, fired)
		}
		t.Logf("stage %d (parallelism %d) stopped: %d timers registered, %d fired", i, p, regs, fired)
		minRegs = regs
	}
	regs, fired := checkTimerEvents(t, sink.Committed(), limit, true)
	t.Logf("end: %d timers registered, %d fired", regs, fired)
}

// waitUntil polls until cond holds; the test fails if the job ends
// first or after a generous deadline.
func waitUntil(t *testing.T, job *weir.JobClient, cond func() bool) {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for !cond() {
		select {
		case <-job.Done():
			t.Fatalf("the job ended before the condition held: %v", job.Wait())
		case <-deadline:
			job.Cancel()
			t.Fatal("the condition did not hold within 2 minutes")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Event-time timers survive a failure within one job: the probe fails
// once while firing a timer mid-stream, the job restores its latest
// checkpoint, and every timer still fires exactly once into the
// exactly-once sink.
func TestTimersFailover(t *testing.T) {
	for _, b := range timerBackends() {
		t.Run(b.name, func(t *testing.T) {
			const limit = 1500
			sink := weir.NewCollectSink[timerEvent]()
			// Record 2000's timer fires when about 2400 records were read:
			// mid-stream, after checkpoints with many timers in them.
			probe := &timerProbe{failAt: timerBase + 2000 + timerAhead, failed: new(atomic.Bool)}
			opts := append([]weir.Option{weir.CheckpointStorage(t.TempDir()), weir.RestartStrategy(restart.FixedDelay(3, 0))}, b.opt(t)...)
			env := timerJob(sink, probe, 2, limit, 4000, opts...)
			job, err := env.Start(context.Background(), "timers")
			if err != nil {
				t.Fatal(err)
			}
			if err := job.Wait(); err != nil {
				t.Fatal(err)
			}
			if !probe.failed.Load() || job.Restarts() != 1 {
				t.Fatalf("failure injected %v, restarts %d: want one", probe.failed.Load(), job.Restarts())
			}
			regs, fired := checkTimerEvents(t, sink.Committed(), limit, true)
			t.Logf("%d timers registered, %d fired, %d records written (%d committed)", regs, fired, len(sink.Written()), len(sink.Committed()))
		})
	}
}

// procEvent is what procProbe emits: record ID registered the
// processing-time timer At (Fired false), or timer At fired at processing
// time Now.
type procEvent struct {
	Fired       bool
	ID, Key, At int64
	Now         int64
}

// procProbe registers, for each record with an id below cutoff, a
// processing-time timer about 300 ms ahead, rounded so that At %
// timerKeys is the key (records of a key in the same period share one
// timer: timers are unique per key and time).
type procProbe struct{ cutoff int64 }

func (f procProbe) ProcessElement(ctx *weir.KeyedContext[int64], r timerRec, out weir.Collector[procEvent]) error {
	if r.ID >= f.cutoff {
		return nil
	}
	at := ((ctx.CurrentProcessingTime()+300)/timerKeys+1)*timerKeys + ctx.CurrentKey()
	ctx.RegisterProcessingTimeTimer(at)
	out.Collect(procEvent{ID: r.ID, Key: ctx.CurrentKey(), At: at})
	return nil
}

func (f procProbe) OnTimer(ctx *weir.KeyedContext[int64], ts int64, out weir.Collector[procEvent]) error {
	if ctx.TimeDomain() != weir.ProcessingTime {
		return fmt.Errorf("timer %d: domain %v", ts, ctx.TimeDomain())
	}
	out.Collect(procEvent{Fired: true, Key: ctx.CurrentKey(), At: ts, Now: ctx.CurrentProcessingTime()})
	return nil
}

// checkProcEvents checks the committed output of procProbe: each record
// registered once, each timer fired at most once (exactly once with
// complete), for its key, not before its time. It returns how many
// records registered, how many distinct timers they registered, and how
// many fired.
func checkProcEvents(t *testing.T, events []procEvent, complete bool) (records, timers, fired int) {
	t.Helper()
	regs := map[int64]int{}
	timerKey := map[int64]int64{}
	fires := map[int64]int{}
	for _, e := range events {
		if e.At%timerKeys != e.Key {
			t.Fatalf("%+v: timer %d is not of key %d", e, e.At, e.Key)
		}
		if !e.Fired {
			if e.Key != e.ID%timerKeys {
				t.Fatalf("%+v: record %d under key %d", e, e.ID, e.Key)
			}
			regs[e.ID]++
			timerKey[e.At] = e.Key
			continue
		}
		if e.Now < e.At {
			t.Fatalf("%+v: fired at processing time %d, before its time", e, e.Now)
		}
		fires[e.At]++
	}
	for id, n := range regs {
		if n != 1 {
			t.Fatalf("record %d registered %d times in the committed output", id, n)
		}
	}
	for at, n := range fires {
		if n != 1 {
			t.Fatalf("processing-time timer %d fired %d times", at, n)
		}
		if _, ok := timerKey[at]; !ok {
			t.Fatalf("processing-time timer %d fired but no committed record registered it", at)
		}
	}
	if complete {
		for at := range timerKey {
			if fires[at] == 0 {
				t.Fatalf("processing-time timer %d of key %d never fired: lost", at, timerKey[at])
			}
		}
	}
	return len(regs), len(timerKey), len(fires)
}

// Processing-time timers survive stop-with-savepoint and rescale 2 -> 4
// -> 1: restored timers whose time has passed fire at once, the others
// when their time comes; each fires exactly once, for its key, not before
// its time. The input never ends (processing-time timers do not fire at
// the end of the input): the last stage runs until every registered
// timer fired, then stops with a savepoint.
func TestProcessingTimersRescaleSavepoint(t *testing.T) {
	for _, b := range timerBackends() {
		t.Run(b.name, func(t *testing.T) {
			const cutoff = 4000 // records 0..3999 register timers (1000 per partition)
			dir := t.TempDir()
			sink := weir.NewCollectSink[procEvent]()
			backend := b.opt(t)
			restoreFrom := ""
			minRecs := 0
			for i, p := range []int{2, 4, 1} {
				opts := append([]weir.Option{weir.Parallelism(p), weir.Checkpointing(10*time.Millisecond, weir.ExactlyOnce),
					weir.RestartStrategy(restart.None()), weir.CheckpointStorage(dir)}, backend...)
				if restoreFrom != "" {
					opts = append(opts, weir.Restore(restoreFrom))
				}
				env := weir.NewEnvironment(opts...)
				src := weir.FromSource(env, weir.Generator(4, 1<<40, mkTimerRec).WithRate(slowRate), "gen").UID("gen")
				keyed := weir.KeyBy(src, func(r timerRec) int64 { return r.ID % timerKeys })
				weir.Process(keyed, weir.KeyedProcessFunction[int64, timerRec, procEvent](procProbe{cutoff: cutoff})).UID("probe").SinkTo(sink).UID("sink")
				job, err := env.Start(context.Background(), "proc-timers")
				if err != nil {
					t.Fatal(err)
				}
				if i < 2 {
					// Stop once the stage added 400 registrations, with
					// timers pending.
					minRecs += 400
					waitUntil(t, job, func() bool {
						recs, timers, fired := checkProcEvents(t, sink.Committed(), false)
						return recs >= minRecs && timers > fired
					})
				} else {
					waitUntil(t, job, func() bool {
						recs, timers, fired := checkProcEvents(t, sink.Committed(), false)
						return recs == cutoff && fired == timers
					})
				}
				if restoreFrom, err = job.StopWithSavepoint(context.Background()); err != nil {
					t.Fatalf("stage %d: stop with savepoint: %v", i, err)
				}
				if err := job.Wait(); err != nil {
					t.Fatalf("stage %d: a job stopped with a savepoint must end cleanly: %v", i, err)
				}
				recs, timers, fired := checkProcEvents(t, sink.Committed(), i == 2)
				t.Logf("stage %d (parallelism %d): %d records registered %d timers, %d fired", i, p, recs, timers, fired)
				if i < 2 && recs >= cutoff {
					t.Fatalf("stage %d registered every timer: the stop did not happen mid-stream", i)
				}
				minRecs = recs
			}
		})
	}
}
