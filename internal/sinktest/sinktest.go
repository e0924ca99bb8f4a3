// Package sinktest is the conformance run every exactly-once sink passes:
// sequence-numbered records per key, shuffled into a keyed counter, written
// through the sink's TwoPhaseCommitter while failures are injected at
// random in the job and around the sink's pre-commit and commit.
package sinktest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/restart"
)

// Rec is record Seq (1..PerKey) of key Key.
type Rec struct{ Key, Seq int64 }

// Row is what the sink receives: exactly once means every (Key, Seq) once,
// with Cnt = Seq.
type Row struct{ Key, Seq, Cnt int64 }

// Shape of the conformance run.
const (
	Keys   = 4
	PerKey = 1500
)

type counter struct{ cnt weir.ValueState[int64] }

func (c *counter) Open(ctx *weir.KeyedContext[int64]) (err error) {
	c.cnt, err = weir.GetValueState[int64](ctx, "cnt")
	return err
}

func (c *counter) ProcessElement(_ *weir.KeyedContext[int64], in Rec, out weir.Collector[Row]) error {
	n, _ := c.cnt.Value()
	n++
	c.cnt.Update(n)
	out.Collect(Row{in.Key, in.Seq, n})
	return nil
}

// Injector fails calls at random, at most a fixed number of times.
type Injector struct {
	mu   sync.Mutex
	rng  *rand.Rand
	left int
	hits map[string]int
}

// NewInjector returns an injector that fails at most max times.
func NewInjector(seed uint64, max int) *Injector {
	return &Injector{rng: rand.New(rand.NewPCG(seed, 3)), left: max, hits: map[string]int{}}
}

// Maybe fails with probability p while failures are left.
func (in *Injector) Maybe(where string, p float64) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.left == 0 || in.rng.Float64() >= p {
		return nil
	}
	in.left--
	in.hits[where]++
	return fmt.Errorf("injected failure in %s", where)
}

// Hits counts the injected failures by place.
func (in *Injector) Hits() map[string]int {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := map[string]int{}
	for k, v := range in.hits {
		out[k] = v
	}
	return out
}

type flaky[TXN any] struct {
	weir.TwoPhaseCommitter[Row, TXN]
	inj *Injector
}

func (f flaky[TXN]) PreCommit(txn TXN) error {
	if err := f.inj.Maybe("pre-commit", 0.03); err != nil {
		return err
	}
	return f.TwoPhaseCommitter.PreCommit(txn)
}

// Commit fails before the commit (the crash window after pre-commit) and
// after it (a crash before weir heard of the commit).
func (f flaky[TXN]) Commit(txn TXN) error {
	if err := f.inj.Maybe("before-commit", 0.05); err != nil {
		return err
	}
	if err := f.TwoPhaseCommitter.Commit(txn); err != nil {
		return err
	}
	return f.inj.Maybe("after-commit", 0.05)
}

// Run runs the conformance job into c in mode and returns the failures it
// injected; the caller then checks what the external system holds.
func Run[TXN any](t *testing.T, c weir.TwoPhaseCommitter[Row, TXN], mode weir.Mode, seed uint64) map[string]int {
	t.Helper()
	inj := NewInjector(seed, 8)
	env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(20*time.Millisecond, mode), weir.CheckpointStorage(t.TempDir()),
		weir.RestartStrategy(restart.FixedDelay(100, 10*time.Millisecond)), weir.BufferSize(64))
	gen := weir.Generator(Keys, PerKey, func(p int, off int64) Rec { return Rec{int64(p), off + 1} }).WithRate(6000)
	src := weir.FromSource[Rec](env, gen, "seq").UID("src")
	mapped := weir.MapErr(src, func(r Rec) (Rec, error) { return r, inj.Maybe("map", 0.0005) }).UID("map")
	rows := weir.Process(weir.KeyBy(mapped, func(r Rec) int64 { return r.Key }), &counter{}).UID("count")
	rows.SinkTo(weir.TwoPhaseCommitSink[Row, TXN](flaky[TXN]{c, inj})).UID("sink")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := env.Execute(ctx, "conformance"); err != nil {
		t.Fatalf("job: %v (injected %v)", err, inj.Hits())
	}
	hits := inj.Hits()
	t.Logf("injected %v", hits)
	if len(hits) == 0 {
		t.Fatal("no failure was injected: the run proves nothing")
	}
	return hits
}

// Check verifies rows read back from the external system: nothing lost and,
// in exactly-once mode, nothing twice and cnt = seq.
func Check(t *testing.T, mode weir.Mode, rows []Row) {
	t.Helper()
	seen := map[[2]int64][]int64{}
	for _, r := range rows {
		seen[[2]int64{r.Key, r.Seq}] = append(seen[[2]int64{r.Key, r.Seq}], r.Cnt)
	}
	var lost, dups, bad int
	for k := int64(0); k < Keys; k++ {
		for s := int64(1); s <= PerKey; s++ {
			cs := seen[[2]int64{k, s}]
			switch {
			case len(cs) == 0:
				lost++
			case len(cs) > 1:
				dups++
			case cs[0] != s:
				bad++
			}
		}
	}
	if lost > 0 {
		t.Errorf("%s: %d rows lost", mode, lost)
	}
	if mode == weir.ExactlyOnce && (dups > 0 || bad > 0) {
		t.Errorf("exactly once: %d (key, seq) written more than once, %d with cnt <> seq", dups, bad)
	}
}

// SavepointThenFailure runs the conformance job into c, takes a savepoint
// that does not stop the job once a checkpoint has completed, and makes a
// task fail right after the savepoint completed, before the next
// checkpoint: the job restores the checkpoint before the savepoint, so the
// savepoint's transactions must not have been committed (Flink's
// semantics: only the next completed checkpoint commits them).
//
// committed reads what a reader of the external system sees as committed,
// one string per row or file (with its content); it is polled during the
// run, and nothing committed may ever disappear or change (a committed
// file renamed over, a row rewritten); nil skips that watch (Kafka, whose
// committed records cannot change). rows reads the rows for Check.
func SavepointThenFailure[TXN any](t *testing.T, c weir.TwoPhaseCommitter[Row, TXN], committed func() ([]string, error), rows func() []Row) {
	t.Helper()
	var failNow, failed atomic.Bool
	env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(100*time.Millisecond, weir.ExactlyOnce),
		weir.MinPauseBetweenCheckpoints(400*time.Millisecond), weir.CheckpointStorage(t.TempDir()),
		weir.RestartStrategy(restart.FixedDelay(3, 10*time.Millisecond)), weir.BufferSize(64))
	gen := weir.Generator(Keys, PerKey, func(p int, off int64) Rec { return Rec{int64(p), off + 1} }).WithRate(2000)
	src := weir.FromSource[Rec](env, gen, "seq").UID("src")
	mapped := weir.MapErr(src, func(r Rec) (Rec, error) {
		if failNow.Load() && failed.CompareAndSwap(false, true) {
			return r, errors.New("injected failure after the savepoint")
		}
		return r, nil
	}).UID("map")
	out := weir.Process(weir.KeyBy(mapped, func(r Rec) int64 { return r.Key }), &counter{}).UID("count")
	out.SinkTo(weir.TwoPhaseCommitSink[Row, TXN](c)).UID("sink")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	job, err := env.Start(ctx, "savepoint-failure")
	if err != nil {
		t.Fatal(err)
	}
	// Watch what is committed: an entry once seen must stay.
	var watchErr atomic.Value
	watchDone := make(chan struct{})
	stopWatch := make(chan struct{})
	seen := map[string]int{}
	check := func() {
		if committed == nil {
			return
		}
		got, err := committed()
		if err != nil {
			return // a transient read failure proves nothing
		}
		now := map[string]int{}
		for _, e := range got {
			now[e]++
		}
		for e, n := range seen {
			if now[e] < n {
				watchErr.CompareAndSwap(nil, fmt.Sprintf("committed %q (x%d) changed or disappeared (now x%d)", e, n, now[e]))
			}
		}
		seen = now
	}
	go func() {
		defer close(watchDone)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopWatch:
				return
			case <-tick.C:
				check()
			}
		}
	}()
	for job.LatestCheckpoint() == 0 {
		select {
		case <-job.Done():
			t.Fatalf("the job ended before its first checkpoint: %v", job.Wait())
		case <-time.After(5 * time.Millisecond):
		}
	}
	sp, err := job.TriggerSavepoint(ctx)
	if err != nil {
		t.Fatalf("savepoint: %v", err)
	}
	failNow.Store(true)
	latestBefore := job.LatestCheckpoint()
	if err := job.Wait(); err != nil {
		t.Fatalf("job: %v", err)
	}
	close(stopWatch)
	<-watchDone
	check()
	if e := watchErr.Load(); e != nil {
		t.Error(e)
	}
	if !failed.Load() || job.Restarts() != 1 {
		t.Fatalf("failure injected %v, restarts %d: the run proves nothing", failed.Load(), job.Restarts())
	}
	t.Logf("savepoint %s; latest checkpoint at the failure %d", sp, latestBefore)
	Check(t, weir.ExactlyOnce, rows())
}
