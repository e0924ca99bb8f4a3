package weir_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/restart"
)

// rule is an element of the broadcast side.
type rule struct {
	Name   string
	Weight int64
}

func rulesNamed(names ...string) []rule {
	rs := make([]rule, len(names))
	for i, n := range names {
		rs[i] = rule{Name: n, Weight: int64(i + 1)}
	}
	return rs
}

// bcOpen is what one subtask's broadcast state held when it opened.
type bcOpen struct {
	Run, Subtask, Parallelism int
	Restored                  bool
	Rules                     []string
}

// bcLog records what the subtasks of ruleJoin saw (shared by the copies).
type bcLog struct {
	mu      sync.Mutex
	opens   []bcOpen
	applied map[[2]int][]string // (run, subtask) -> rules applied, in order
}

func (l *bcLog) open(o bcOpen) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.opens = append(l.opens, o)
}

func (l *bcLog) apply(run, sub int, name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.applied == nil {
		l.applied = map[[2]int][]string{}
	}
	l.applied[[2]int{run, sub}] = append(l.applied[[2]int{run, sub}], name)
}

func (l *bcLog) restoredOpens(run int) []bcOpen {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []bcOpen
	for _, o := range l.opens {
		if o.Run == run && o.Restored {
			out = append(out, o)
		}
	}
	return out
}

func (l *bcLog) appliedBy(run, sub int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.applied[[2]int{run, sub}])
}

// ruleJoin counts the events per key in keyed state and keeps the rules
// in broadcast state.
type ruleJoin struct {
	log   *bcLog
	run   int
	rules *weir.BroadcastState[string, int64]
	count weir.ValueState[int64]
}

func (f *ruleJoin) Open(ctx *weir.KeyedContext[int64], bc *weir.BroadcastContext) (err error) {
	if f.rules, err = weir.GetBroadcastState[string, int64](bc, "rules"); err != nil {
		return err
	}
	if f.count, err = weir.GetValueState[int64](ctx, "count"); err != nil {
		return err
	}
	f.log.open(bcOpen{Run: f.run, Subtask: bc.Subtask(), Parallelism: bc.Parallelism(), Restored: bc.IsRestored(),
		Rules: slices.Sorted(maps.Keys(maps.Collect(f.rules.All())))})
	return nil
}

func (f *ruleJoin) ProcessBroadcastElement(bc *weir.BroadcastContext, r rule, _ weir.Collector[weir.KV[int64, int64]]) error {
	f.log.apply(f.run, bc.Subtask(), r.Name)
	return f.rules.Put(r.Name, r.Weight)
}

func (f *ruleJoin) ProcessElement(ctx *weir.KeyedContext[int64], _ *weir.BroadcastContext, in int64, out weir.Collector[weir.KV[int64, int64]]) error {
	for name, w := range f.rules.All() {
		if w <= 0 {
			return fmt.Errorf("rule %s has weight %d", name, w)
		}
	}
	n, _ := f.count.Value()
	n++
	f.count.Update(n)
	out.Collect(weir.KV[int64, int64]{Key: ctx.CurrentKey(), Value: n})
	return nil
}

// A rules stream broadcast into a keyed stream: broadcast state survives a
// failure and a rescale 2 -> 3 -> 1, every subtask opens with the full
// rule set, a checkpoint holds exactly one copy of it, and the keyed counts
// come out exactly once.
func TestBroadcastStateKeyedRescale(t *testing.T) {
	dir := t.TempDir()
	const limit = 3000 // events per partition, 2 partitions, 10 keys
	log := &bcLog{}
	initial := rulesNamed("r1", "r2", "r3", "r4", "r5")
	all := append(slices.Clone(initial), rulesNamed("r6", "r7")...)
	all[5].Weight, all[6].Weight = 6, 7
	names := func(rs []rule) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Name)
		}
		return out
	}
	job := func(run, p int, rules []rule, failAt int64, opts ...weir.Option) (*weir.Environment, *weir.CollectSink[weir.KV[int64, int64]]) {
		base := []weir.Option{weir.Parallelism(p), weir.Checkpointing(10*time.Millisecond, weir.ExactlyOnce),
			weir.CheckpointStorage(dir), weir.RestartStrategy(restart.FixedDelay(3, 10*time.Millisecond))}
		env := weir.NewEnvironment(append(base, opts...)...)
		var failed atomic.Bool
		events := weir.FromSource(env, weir.Generator(2, limit, func(_ int, off int64) int64 { return off }).WithRate(3000), "events").UID("events")
		checked := weir.MapErr(events, func(v int64) (int64, error) {
			if v == failAt && failed.CompareAndSwap(false, true) {
				return 0, fmt.Errorf("injected failure at %d", v)
			}
			return v, nil
		}).UID("check")
		rs := weir.FromSlice(env, rules).UID("rules")
		sink := weir.NewCollectSink[weir.KV[int64, int64]]()
		weir.ConnectBroadcast(weir.KeyBy(checked, func(v int64) int64 { return v % 10 }), rs, &ruleJoin{log: log, run: run}).
			UID("join").SinkTo(sink).UID("sink")
		return env, sink
	}
	checkOpens := func(run, p int, want []string) {
		t.Helper()
		opens := log.restoredOpens(run)
		if len(opens) != p {
			t.Fatalf("run %d: %d restored subtasks, want %d: %+v", run, len(opens), p, opens)
		}
		seen := map[int]bool{}
		for _, o := range opens {
			seen[o.Subtask] = true
			if o.Parallelism != p || !slices.Equal(o.Rules, want) {
				t.Fatalf("run %d: subtask %d/%d restored rules %v, want %v", run, o.Subtask, o.Parallelism, o.Rules, want)
			}
		}
		if len(seen) != p {
			t.Fatalf("run %d: restored subtasks %v", run, opens)
		}
	}
	// One copy of the rules in the checkpoint: subtask 0 writes it, the
	// others write the state's name only.
	checkOneCopy := func(p, rules int) {
		t.Helper()
		os := latestOperatorState(t, dir, "join")
		if os.Parallelism != p {
			t.Fatalf("checkpoint taken at parallelism %d, want %d", os.Parallelism, p)
		}
		for s, st := range os.Subtasks {
			var found bool
			for _, l := range st.Operator {
				if l.Name != "weir/broadcast/rules" {
					continue
				}
				found = true
				want := 0
				if s == 0 {
					want = rules
				}
				if len(l.Entries) != want || l.Mode != checkpoint.Union {
					t.Fatalf("subtask %d wrote %d rule entries (mode %d), want %d", s, len(l.Entries), l.Mode, want)
				}
			}
			if !found {
				t.Fatalf("subtask %d wrote no broadcast state: %+v", s, st.Operator)
			}
		}
	}

	// Run 0, parallelism 2: a failure mid-stream; the restart restores the
	// rules in both subtasks.
	env, _ := job(0, 2, initial, 1200)
	ctx, cancel := context.WithCancel(context.Background())
	j, err := env.Start(ctx, "rules")
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); len(log.restoredOpens(0)) < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("no restart after the injected failure (restarts %d)", j.Restarts())
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := waitCheckpoints(j, 3); err != nil {
		t.Fatal(err)
	}
	cancel()
	j.Wait()
	checkOpens(0, 2, names(initial))
	for s := range 2 {
		if got := log.appliedBy(0, s); !slices.Equal(got, names(initial)) {
			t.Fatalf("run 0: subtask %d applied %v, want every rule once: %v", s, got, names(initial))
		}
	}
	checkOneCopy(2, len(initial))

	// Run 1, parallelism 3: every new subtask restores the rules once, then
	// receives the two new ones.
	env, _ = job(1, 3, all, -1, weir.Restore("latest"))
	ctx, cancel = context.WithCancel(context.Background())
	j, err = env.Start(ctx, "rules")
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		done := 0
		for s := range 3 {
			if len(log.appliedBy(1, s)) == 2 {
				done++
			}
		}
		if done == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the new rules did not reach every subtask")
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := waitCheckpoints(j, 3); err != nil {
		t.Fatal(err)
	}
	cancel()
	j.Wait()
	checkOpens(1, 3, names(initial))
	for s := range 3 {
		if got := log.appliedBy(1, s); !slices.Equal(got, []string{"r6", "r7"}) {
			t.Fatalf("run 1: subtask %d applied %v, want only the new rules r6, r7", s, got)
		}
	}
	checkOneCopy(3, len(all))

	// Run 2, parallelism 1: to the end.
	env, sink := job(2, 1, all, -1, weir.Restore("latest"))
	if err := env.Execute(context.Background(), "rules"); err != nil {
		t.Fatal(err)
	}
	checkOpens(2, 1, names(all))
	final := map[int64]int64{}
	for _, kv := range sink.Committed() {
		final[kv.Key] = max(final[kv.Key], kv.Value)
	}
	for k := int64(0); k < 10; k++ {
		if final[k] != 2*limit/10 {
			t.Fatalf("key %d counted %d, want %d (all %v)", k, final[k], 2*limit/10, final)
		}
	}
}

// factor is a broadcast multiplier.
type factor struct {
	Name  string
	Value int64
}

// scaler multiplies the records by the broadcast factor "x"; records that
// arrive before it wait in operator state. Each broadcast element it
// applies emits a marker -(subtask+1).
type scaler struct {
	failAt  int64
	failed  *atomic.Bool
	factors *weir.BroadcastState[string, int64]
	pending []int64
	state   weir.ListState[int64]
}

func (f *scaler) InitializeState(ctx *weir.FunctionStateContext) (err error) {
	f.state, err = weir.GetOperatorListState[int64](ctx, "pending")
	if err == nil {
		f.pending = slices.Clone(f.state.Get())
	}
	return err
}

func (f *scaler) SnapshotState(checkpoint.ID) error {
	f.state.Update(f.pending)
	return nil
}

func (f *scaler) Open(bc *weir.BroadcastContext) (err error) {
	f.factors, err = weir.GetBroadcastState[string, int64](bc, "factors")
	return err
}

func (f *scaler) ProcessElement(_ *weir.BroadcastContext, v int64, out weir.Collector[int64]) error {
	if v == f.failAt && f.failed.CompareAndSwap(false, true) {
		return fmt.Errorf("injected failure at %d", v)
	}
	x, ok := f.factors.Get("x")
	if !ok {
		f.pending = append(f.pending, v)
		return nil
	}
	out.Collect(v * x)
	return nil
}

func (f *scaler) ProcessBroadcastElement(bc *weir.BroadcastContext, fac factor, out weir.Collector[int64]) error {
	if err := f.factors.Put(fac.Name, fac.Value); err != nil {
		return err
	}
	out.Collect(-int64(bc.Subtask() + 1))
	if x, ok := f.factors.Get("x"); ok {
		for _, v := range f.pending {
			out.Collect(v * x)
		}
		f.pending = nil
	}
	return nil
}

// A non-keyed stream connected with a broadcast stream (given with an
// explicit Broadcast(), which must not deliver it twice): the factor
// reaches every subtask once, records that came before it wait in operator
// state across a failure, and every record comes out multiplied exactly
// once.
func TestBroadcastStateNonKeyed(t *testing.T) {
	for _, failAt := range []int64{150, 100700} { // before the factor arrives, and after
		t.Run(fmt.Sprintf("fail-at-%d", failAt), func(t *testing.T) {
			env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(5*time.Millisecond, weir.ExactlyOnce),
				weir.CheckpointStorage(t.TempDir()), weir.RestartStrategy(restart.FixedDelay(2, 0)), weir.BufferSize(16))
			nums := weir.FromSource(env, weir.Generator(2, 1000, func(p int, off int64) int64 { return int64(p)*100000 + off }).WithRate(5000), "nums")
			// One factor, 100 ms in: a good part of the records come first.
			factors := weir.FromSource(env, weir.Generator(1, 1, func(int, int64) factor { return factor{"x", 3} }).WithRate(10), "factors").
				SetParallelism(1).Broadcast()
			sink := weir.NewCollectSink[int64]()
			weir.ConnectBroadcastNonKeyed(nums, factors, &scaler{failAt: failAt, failed: new(atomic.Bool)}).SinkTo(sink)
			job, err := env.Start(context.Background(), "scale")
			if err != nil {
				t.Fatal(err)
			}
			if err := job.Wait(); err != nil {
				t.Fatal(err)
			}
			if job.Restarts() != 1 {
				t.Fatalf("restarts %d, want 1", job.Restarts())
			}
			var want []int64
			for p := range int64(2) {
				for off := range int64(1000) {
					want = append(want, (p*100000+off)*3)
				}
			}
			want = append(want, -1, -2) // one marker per subtask
			got := sorted(sink.Committed(), func(a, b int64) int { return int(a - b) })
			want = sorted(want, func(a, b int64) int { return int(a - b) })
			if !slices.Equal(got, want) {
				t.Fatalf("got %d records (%v..%v), want %d (%v..%v)", len(got), first(got), last(got), len(want), first(want), last(want))
			}
		})
	}
}

// misuse does something wrong with broadcast state, as told.
type misuse struct {
	where string // "open", "element", "element-ignored", "types", "noname"
	rules *weir.BroadcastState[string, int64]
}

func (f *misuse) Open(_ *weir.KeyedContext[int64], bc *weir.BroadcastContext) (err error) {
	if f.rules, err = weir.GetBroadcastState[string, int64](bc, "rules"); err != nil {
		return err
	}
	switch f.where {
	case "open":
		return f.rules.Put("a", 1)
	case "types":
		_, err = weir.GetBroadcastState[string, string](bc, "rules")
	case "noname":
		_, err = weir.GetBroadcastState[string, string](bc, "")
	}
	return err
}

func (f *misuse) ProcessBroadcastElement(_ *weir.BroadcastContext, r rule, _ weir.Collector[int64]) error {
	return f.rules.Put(r.Name, r.Weight)
}

func (f *misuse) ProcessElement(_ *weir.KeyedContext[int64], _ *weir.BroadcastContext, in int64, _ weir.Collector[int64]) error {
	switch f.where {
	case "element":
		return f.rules.Remove("a")
	case "element-ignored":
		f.rules.Put("b", in) // the error is dropped: the task fails anyway
	}
	return nil
}

// nonKeyedMisuse clears broadcast state from the regular side.
type nonKeyedMisuse struct{}

func (nonKeyedMisuse) ProcessElement(bc *weir.BroadcastContext, _ int64, _ weir.Collector[int64]) error {
	s, err := weir.GetBroadcastState[string, int64](bc, "rules")
	if err != nil {
		return err
	}
	return s.Clear()
}

func (nonKeyedMisuse) ProcessBroadcastElement(*weir.BroadcastContext, rule, weir.Collector[int64]) error {
	return nil
}

// Mistakes with broadcast state are clear errors naming the operator and
// the state, never panics.
func TestBroadcastStateMisuse(t *testing.T) {
	for _, tc := range []struct {
		where string
		want  []string
	}{
		{"open", []string{"cannot open operator join", `broadcast state "rules" is read-only`, "Put is allowed only in ProcessBroadcastElement"}},
		{"element", []string{"operator join", `broadcast state "rules" is read-only`, "Remove is allowed only in ProcessBroadcastElement"}},
		{"element-ignored", []string{"operator join", `broadcast state "rules" is read-only`, "Put is allowed only"}},
		{"types", []string{"operator join", `broadcast state "rules" is already registered`}},
		{"noname", []string{"operator join", "broadcast state needs a name"}},
	} {
		t.Run(tc.where, func(t *testing.T) {
			env := weir.NewEnvironment(weir.RestartStrategy(restart.None()))
			events := weir.FromSlice(env, []int64{1, 2, 3})
			rules := weir.FromSlice(env, rulesNamed("a"))
			weir.ConnectBroadcast(weir.KeyBy(events, func(v int64) int64 { return v }), rules, &misuse{where: tc.where}).
				Name("join").SinkTo(weir.DiscardSink[int64]{})
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
	t.Run("non-keyed", func(t *testing.T) {
		env := weir.NewEnvironment(weir.RestartStrategy(restart.None()))
		weir.ConnectBroadcastNonKeyed(weir.FromSlice(env, []int64{1}), weir.FromSlice(env, rulesNamed("a")), nonKeyedMisuse{}).
			Name("scale").SinkTo(weir.DiscardSink[int64]{})
		err := env.Execute(context.Background(), "misuse")
		if err == nil || !strings.Contains(err.Error(), `operator scale: broadcast state "rules" is read-only here: Clear`) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("definition", func(t *testing.T) {
		env := weir.NewEnvironment()
		events := weir.FromSlice(env, []int64{1})
		weir.ConnectBroadcast[int64, int64, rule, int64](weir.KeyBy(events, func(v int64) int64 { return v }), weir.FromSlice(env, rulesNamed("a")), nil).Print()
		if err := env.Execute(context.Background(), "nil"); err == nil || !strings.Contains(err.Error(), "ConnectBroadcast needs a function") {
			t.Fatalf("nil function: %v", err)
		}
		other := weir.NewEnvironment()
		env = weir.NewEnvironment()
		weir.ConnectBroadcastNonKeyed(weir.FromSlice(env, []int64{1}), weir.FromSlice(other, rulesNamed("a")), nonKeyedMisuse{}).Print()
		if err := env.Execute(context.Background(), "envs"); err == nil || !strings.Contains(err.Error(), "different environments") {
			t.Fatalf("two environments: %v", err)
		}
	})
}
