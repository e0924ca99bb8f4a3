package weir

import (
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/weirstream/weir/plan"
)

// TestPlanOfPrograms checks that programs written with the DataStream API
// plan to the expected job graphs (testdata/plan_api.txt): the wiring from
// the API into package plan (kinds, names, UIDs, partitioning, the shape
// of ConnectBroadcast). Command: plan program=NAME [job=NAME], with NAME a
// key of planPrograms; it prints plan.Describe of the job graph, or the
// error. Regenerate with: go test . -run TestPlanOfPrograms -rewrite
func TestPlanOfPrograms(t *testing.T) {
	datadriven.RunTest(t, "testdata/plan_api.txt", func(t *testing.T, d *datadriven.TestData) string {
		if d.Cmd != "plan" {
			d.Fatalf(t, "unknown command %q", d.Cmd)
		}
		var name string
		d.ScanArgs(t, "program", &name)
		job := name
		d.MaybeScanArgs(t, "job", &job)
		program, ok := planPrograms[name]
		if !ok {
			d.Fatalf(t, "unknown program %q", name)
		}
		env := program()
		if err := env.Err(); err != nil {
			return "error: " + err.Error() + "\n"
		}
		g, err := env.jobGraph(job)
		if err != nil {
			return "error: " + err.Error() + "\n"
		}
		return plan.Describe(g)
	})
}

var planPrograms = map[string]func() *Environment{
	// Counting words: a non-parallel source, then keyed counting.
	"wordcount": func() *Environment {
		env := NewEnvironment(Parallelism(2))
		lines := FromSlice(env, []string{"a b", "b c"})
		words := FlatMap(lines, func(l string, out Collector[string]) {
			for _, w := range strings.Fields(l) {
				out.Collect(w)
			}
		}).Name("split")
		Count(KeyBy(words, func(w string) string { return w })).UID("counts").Print()
		return env
	},
	// Every partitioning and a union of different parallelisms.
	"partitioning": func() *Environment {
		env := NewEnvironment(Parallelism(2), MaxParallelism(16))
		a := FromSource(env, Generator(2, 10, func(p int, off int64) int64 { return off }), "a")
		b := FromSource(env, Generator(3, 10, func(p int, off int64) int64 { return off }), "b").SetParallelism(3)
		u := Union(a, b)
		m := Map(u, func(n int64) int64 { return n * 2 }).Rebalance()
		f := Filter(m, func(n int64) bool { return n > 0 }).SetParallelism(4).Broadcast()
		r := Reduce(KeyBy(f, func(n int64) int64 { return n % 3 }), func(acc, n int64) int64 { return acc + n })
		MapErr(r, func(n int64) (int64, error) { return n, nil }).SetParallelism(1).SinkTo(NewCollectSink[int64]())
		return env
	},
	// ConnectBroadcast: the explicit Broadcast() of the rules is skipped;
	// each side is tagged in its own vertex.
	"keyed-broadcast": func() *Environment {
		env := NewEnvironment(Parallelism(2))
		rules := FromSlice(env, []string{"x"}).UID("rules").Broadcast()
		events := FromSource(env, Generator(2, 10, func(p int, off int64) int64 { return off }), "events").UID("events")
		keyed := KeyBy(events, func(n int64) int64 { return n % 2 })
		ConnectBroadcast[int64, int64, string, string](keyed, rules, planTestKeyedMatcher{}).UID("matcher").Print()
		return env
	},
	// The non-keyed variant, with a main side of another parallelism.
	"broadcast": func() *Environment {
		env := NewEnvironment(Parallelism(2))
		rules := FromSlice(env, []string{"x"})
		events := FromSource(env, Generator(3, 10, func(p int, off int64) int64 { return off }), "events").SetParallelism(3)
		ConnectBroadcastNonKeyed[int64, string, string](events, rules, planTestMatcher{}).Print()
		return env
	},
	"no-sink": func() *Environment {
		env := NewEnvironment()
		Map(FromSlice(env, []int{1}), func(n int) int { return n })
		return env
	},
	"too-parallel": func() *Environment {
		env := NewEnvironment(MaxParallelism(4))
		s := FromSource(env, Generator(8, 10, func(p int, off int64) int64 { return off }), "numbers").SetParallelism(8)
		s.Print()
		return env
	},
	"empty": func() *Environment { return NewEnvironment() },
}

type planTestMatcher struct{}

func (planTestMatcher) ProcessElement(*BroadcastContext, int64, Collector[string]) error {
	return nil
}

func (planTestMatcher) ProcessBroadcastElement(*BroadcastContext, string, Collector[string]) error {
	return nil
}

type planTestKeyedMatcher struct{ planTestMatcher }

func (planTestKeyedMatcher) ProcessElement(*KeyedContext[int64], *BroadcastContext, int64, Collector[string]) error {
	return nil
}
