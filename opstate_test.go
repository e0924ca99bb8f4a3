package weir_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/restart"
	"github.com/weirstream/weir/storage"
)

// opInit is what one subtask of countingMap restored.
type opInit struct {
	Run, Subtask, Parallelism int
	Restored                  bool
	SplitEntries              int   // entries of the split-evenly state it got
	SplitSum                  int64 // their sum: its share of the count
	UnionEntries              int   // entries of the union state it got
	UnionSum                  int64 // their sum: the whole count
}

type initLog struct {
	mu    sync.Mutex
	inits []opInit
}

func (l *initLog) add(i opInit) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inits = append(l.inits, i)
}

func (l *initLog) of(run int) []opInit {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []opInit
	for _, i := range l.inits {
		if i.Run == run {
			out = append(out, i)
		}
	}
	return out
}

// countingMap counts the records its subtask saw, in operator state: the
// split-evenly state holds each subtask's share (their sum is the count of
// the whole operator), the union state the same shares, so that every
// subtask can see the whole count after a restore. It emits the running
// count of its subtask.
type countingMap struct {
	log   *initLog
	run   int
	count int64
	split weir.ListState[int64]
	union weir.ListState[int64]
}

func (f *countingMap) InitializeState(ctx *weir.FunctionStateContext) (err error) {
	if f.split, err = weir.GetOperatorListState[int64](ctx, "count"); err != nil {
		return err
	}
	if f.union, err = weir.GetUnionListState[int64](ctx, "count-by-subtask"); err != nil {
		return err
	}
	in := opInit{Run: f.run, Subtask: ctx.Subtask(), Parallelism: ctx.Parallelism(), Restored: ctx.IsRestored(),
		SplitEntries: len(f.split.Get()), UnionEntries: len(f.union.Get())}
	for _, n := range f.split.Get() {
		in.SplitSum += n
	}
	for _, n := range f.union.Get() {
		in.UnionSum += n
	}
	f.count = in.SplitSum
	f.log.add(in)
	f.union.Clear() // every subtask got all entries: keep only its own
	return nil
}

func (f *countingMap) SnapshotState(checkpoint.ID) error {
	f.split.Update([]int64{f.count})
	f.union.Update([]int64{f.count})
	return nil
}

func (f *countingMap) Map(int64) (int64, error) {
	f.count++
	return f.count, nil
}

// Operator list state, split evenly and union, survives a rescale
// 2 -> 4 -> 1: every entry of the split state lands in exactly one new
// subtask, every new subtask gets all entries of the union state once, and
// the final count is exactly the number of records.
func TestOperatorListStateRescale(t *testing.T) {
	dir := t.TempDir()
	const limit = 3000 // per partition, 4 partitions
	log := &initLog{}
	job := func(run, p int, opts ...weir.Option) (*weir.Environment, *weir.CollectSink[int64]) {
		base := []weir.Option{weir.Parallelism(p), weir.Checkpointing(10*time.Millisecond, weir.ExactlyOnce),
			weir.CheckpointStorage(dir), weir.RestartStrategy(restart.None())}
		env := weir.NewEnvironment(append(base, opts...)...)
		sink := weir.NewCollectSink[int64]()
		src := weir.FromSource(env, weir.Generator(4, limit, func(p int, off int64) int64 { return off }).WithRate(4000), "gen").UID("gen")
		weir.MapWith(src, &countingMap{log: log, run: run}).UID("count").SinkTo(sink).UID("sink")
		return env, sink
	}
	var sink *weir.CollectSink[int64]
	for run, p := range []int{2, 4, 1} {
		var opts []weir.Option
		if run > 0 {
			opts = append(opts, weir.Restore("latest"))
		}
		var env *weir.Environment
		env, sink = job(run, p, opts...)
		if run < 2 {
			if err := runForCheckpoints(env, 3); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := env.Execute(context.Background(), "opstate"); err != nil {
			t.Fatal(err)
		}
	}

	for run, p := range []int{2, 4, 1} {
		inits := log.of(run)
		if len(inits) != p {
			t.Fatalf("run %d: %d subtasks initialized, want %d: %+v", run, len(inits), p, inits)
		}
		if run == 0 {
			for _, in := range inits {
				if in.Restored || in.SplitEntries != 0 || in.UnionEntries != 0 {
					t.Fatalf("fresh start restored state: %+v", in)
				}
			}
			continue
		}
		oldP := []int{2, 4, 1}[run-1]
		var splitEntries int
		var splitSum int64
		for _, in := range inits {
			if !in.Restored {
				t.Fatalf("run %d: not restored: %+v", run, in)
			}
			splitEntries += in.SplitEntries
			splitSum += in.SplitSum
			if in.UnionEntries != oldP {
				t.Fatalf("run %d: subtask %d got %d union entries, want one per old subtask (%d)", run, in.Subtask, in.UnionEntries, oldP)
			}
		}
		if splitEntries != oldP {
			t.Fatalf("run %d: the split state's %d entries were dealt out as %d", run, oldP, splitEntries)
		}
		for _, in := range inits {
			if in.UnionSum != splitSum || splitSum == 0 {
				t.Fatalf("run %d: subtask %d sees a whole count of %d in union state, the split shares add up to %d", run, in.Subtask, in.UnionSum, splitSum)
			}
		}
	}
	// At parallelism 1 the single subtask holds the whole count: it ends at
	// the number of records, and counts up from the restored value without
	// a gap or a repeat.
	restored := log.of(2)[0].SplitSum
	got := sorted(sink.Committed(), func(a, b int64) int { return int(a - b) })
	want := make([]int64, 0, 4*limit)
	for n := restored + 1; n <= 4*limit; n++ {
		want = append(want, n)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("final run emitted %d counts from %v to %v, want %d from %d to %d", len(got), first(got), last(got), len(want), restored+1, 4*limit)
	}
}

func first[T any](xs []T) any {
	if len(xs) == 0 {
		return "none"
	}
	return xs[0]
}

func last[T any](xs []T) any {
	if len(xs) == 0 {
		return "none"
	}
	return xs[len(xs)-1]
}

// everyOther keeps every second record its subtask sees, counting them in
// operator state.
type everyOther struct {
	seen  int64
	state weir.ListState[int64]
}

func (f *everyOther) InitializeState(ctx *weir.FunctionStateContext) (err error) {
	f.state, err = weir.GetOperatorListState[int64](ctx, "seen")
	for _, n := range f.state.Get() {
		f.seen += n
	}
	return err
}

func (f *everyOther) SnapshotState(checkpoint.ID) error {
	f.state.Update([]int64{f.seen})
	return nil
}

func (f *everyOther) Filter(int64) (bool, error) {
	f.seen++
	return f.seen%2 == 0, nil
}

// numbering emits each record with its number in the subtask's output,
// kept in operator state.
type numbering struct {
	sub   int
	next  int64
	state weir.ListState[int64]
}

func (f *numbering) InitializeState(ctx *weir.FunctionStateContext) (err error) {
	f.sub = ctx.Subtask()
	f.next = 1
	f.state, err = weir.GetOperatorListState[int64](ctx, "next")
	for _, n := range f.state.Get() {
		f.next = n
	}
	return err
}

func (f *numbering) SnapshotState(checkpoint.ID) error {
	f.state.Update([]int64{f.next})
	return nil
}

func (f *numbering) FlatMap(v int64, out weir.Collector[string]) error {
	out.Collect(fmt.Sprintf("%d %d", f.sub, f.next))
	f.next++
	return nil
}

// Operator state of FilterWith and FlatMapWith functions survives a
// failure exactly once: each subtask keeps every other record of its
// partition and numbers them 1..500 without a gap or a repeat.
func TestCheckpointedFunctionsAcrossFailure(t *testing.T) {
	env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(5*time.Millisecond, weir.ExactlyOnce),
		weir.CheckpointStorage(t.TempDir()), weir.RestartStrategy(restart.FixedDelay(2, 0)), weir.BufferSize(8))
	var failed atomic.Bool
	src := weir.FromSource(env, weir.Generator(2, 1000, func(_ int, off int64) int64 { return off }).WithRate(20000), "gen")
	checked := weir.MapErr(src, func(v int64) (int64, error) {
		if v == 600 && failed.CompareAndSwap(false, true) {
			return 0, fmt.Errorf("injected")
		}
		return v, nil
	})
	kept := weir.FilterWith(checked, &everyOther{})
	sink := weir.NewCollectSink[string]()
	weir.FlatMapWith(kept, &numbering{}).SinkTo(sink)
	job, err := env.Start(context.Background(), "functions")
	if err != nil {
		t.Fatal(err)
	}
	if err := job.Wait(); err != nil {
		t.Fatal(err)
	}
	if job.Restarts() != 1 {
		t.Fatalf("restarts %d, want 1", job.Restarts())
	}
	got := sorted(sink.Committed(), strings.Compare)
	var want []string
	for sub := range 2 {
		for n := 1; n <= 500; n++ {
			want = append(want, fmt.Sprintf("%d %d", sub, n))
		}
	}
	want = sorted(want, strings.Compare)
	if !slices.Equal(got, want) {
		t.Fatalf("got %d numbered records, want %d (1..500 per subtask)", len(got), len(want))
	}
}

// badState registers operator state wrongly, as told.
type badState struct {
	do func(ctx *weir.FunctionStateContext) error
}

func (f *badState) InitializeState(ctx *weir.FunctionStateContext) error { return f.do(ctx) }
func (f *badState) SnapshotState(checkpoint.ID) error                    { return nil }
func (f *badState) Map(v int) (int, error)                               { return v, nil }

// Mistakes with operator state are clear errors naming the operator and
// the state, never panics.
func TestOperatorStateMisuse(t *testing.T) {
	for _, tc := range []struct {
		name string
		do   func(ctx *weir.FunctionStateContext) error
		want []string
	}{
		{"split then union", func(ctx *weir.FunctionStateContext) error {
			if _, err := weir.GetOperatorListState[int](ctx, "s"); err != nil {
				return err
			}
			_, err := weir.GetUnionListState[int](ctx, "s")
			return err
		}, []string{"operator stage", `"s"`, "already registered as split-evenly list state"}},
		{"two types", func(ctx *weir.FunctionStateContext) error {
			if _, err := weir.GetOperatorListState[int](ctx, "s"); err != nil {
				return err
			}
			_, err := weir.GetOperatorListState[string](ctx, "s")
			return err
		}, []string{"operator stage", `"s"`, "another type"}},
		{"reserved name", func(ctx *weir.FunctionStateContext) error {
			_, err := weir.GetOperatorListState[int](ctx, "weir/broadcast/x")
			return err
		}, []string{"operator stage", "reserved"}},
		{"no name", func(ctx *weir.FunctionStateContext) error {
			_, err := weir.GetUnionListState[int](ctx, "")
			return err
		}, []string{"operator stage", "needs a name"}},
		{"no context", func(*weir.FunctionStateContext) error {
			_, err := weir.GetOperatorListState[int](nil, "s")
			return err
		}, []string{`"s"`, "no function state context"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := weir.NewEnvironment(weir.RestartStrategy(restart.None()))
			weir.MapWith(weir.FromSlice(env, []int{1, 2}), &badState{do: tc.do}).Name("stage").Print()
			err := env.Execute(context.Background(), "misuse")
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	// A nil function is refused when the job is defined.
	env := weir.NewEnvironment()
	weir.MapWith[int, int](weir.FromSlice(env, []int{1}), nil).Print()
	if err := env.Execute(context.Background(), "nil"); err == nil || !strings.Contains(err.Error(), "MapWith needs a function") {
		t.Fatalf("nil function: %v", err)
	}
}

// runForCheckpoints runs a job until it completed n checkpoints, then
// cancels it (checkpoints are retained on cancel).
func runForCheckpoints(env *weir.Environment, n int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	job, err := env.Start(ctx, "job")
	if err != nil {
		return err
	}
	defer job.Wait()
	defer cancel()
	return waitCheckpoints(job, n)
}

// waitCheckpoints waits until job completed n more checkpoints than it had.
func waitCheckpoints(job *weir.JobClient, n int) error {
	completed := func() int {
		done := 0
		for _, c := range job.Checkpoints() {
			if c.Completed {
				done++
			}
		}
		return done
	}
	target := completed() + n
	deadline := time.After(30 * time.Second)
	for completed() < target {
		select {
		case <-job.Done():
			return fmt.Errorf("job ended before %d checkpoints: %v", n, job.Wait())
		case <-deadline:
			return fmt.Errorf("no %d checkpoints in 30s", n)
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

// latestOperatorState returns the operator state of uid in the newest
// checkpoint in dir.
func latestOperatorState(t *testing.T, dir, uid string) *checkpoint.OperatorState {
	t.Helper()
	st, err := storage.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	id, ok, err := st.Latest(t.Context())
	if err != nil || !ok {
		t.Fatalf("no checkpoint in %s: %v", dir, err)
	}
	md, err := st.ReadMetadata(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	os := md.Operator(uid)
	if os == nil {
		t.Fatalf("checkpoint %d has no state for %q", id, uid)
	}
	return os
}

// unionKeeper writes its subtask index into union state when register is
// set, and leaves the state alone (unregistered) otherwise.
type unionKeeper struct {
	register bool
	log      *initLog
	run      int
	union    weir.ListState[int64]
	sub      int64
}

func (f *unionKeeper) InitializeState(ctx *weir.FunctionStateContext) (err error) {
	f.sub = int64(ctx.Subtask())
	if !f.register {
		return nil
	}
	if f.union, err = weir.GetUnionListState[int64](ctx, "subtasks"); err != nil {
		return err
	}
	f.log.add(opInit{Run: f.run, Subtask: ctx.Subtask(), Restored: ctx.IsRestored(), UnionEntries: len(f.union.Get())})
	return nil
}

func (f *unionKeeper) SnapshotState(checkpoint.ID) error {
	if f.register {
		f.union.Update([]int64{f.sub})
	}
	return nil
}

func (f *unionKeeper) Map(v int64) (int64, error) { return v, nil }

// A restored union state that the function no longer registers is kept as
// it was (once, not once per subtask), so a later version that registers it
// again finds the original entries.
func TestUnregisteredUnionStateKept(t *testing.T) {
	dir := t.TempDir()
	log := &initLog{}
	for run, register := range []bool{true, false, true} {
		var opts []weir.Option
		if run > 0 {
			opts = append(opts, weir.Restore("latest"))
		}
		env := weir.NewEnvironment(append([]weir.Option{weir.Parallelism(2), weir.Checkpointing(5*time.Millisecond, weir.ExactlyOnce),
			weir.CheckpointStorage(dir), weir.RestartStrategy(restart.None())}, opts...)...)
		src := weir.FromSource(env, weir.Generator(2, -1, func(_ int, off int64) int64 { return off }).WithRate(1000), "gen").UID("gen")
		weir.MapWith(src, &unionKeeper{register: register, log: log, run: run}).UID("keeper").SinkTo(weir.DiscardSink[int64]{})
		if err := runForCheckpoints(env, 2); err != nil {
			t.Fatal(err)
		}
	}
	inits := log.of(2)
	if len(inits) != 2 {
		t.Fatalf("run 2: %+v", inits)
	}
	for _, in := range inits {
		if in.UnionEntries != 2 {
			t.Fatalf("subtask %d restored %d union entries, want the 2 written in run 0", in.Subtask, in.UnionEntries)
		}
	}
}
