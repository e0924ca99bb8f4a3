package weir_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/restart"
	"github.com/weirstream/weir/state/pebblestate"
)

// This file checks event-time windows against a reference model: random
// out-of-order records (random keys, random lateness, pauses that end
// sessions) go through tumbling, sliding and session windows with an
// allowed lateness and a late-data side output, and everything weir emits
// — on-time firings, the re-firings for records within the lateness, and
// the records too late for any window — must equal what windowModel
// predicts, record for record, on the heap and in pebble, for Reduce,
// WindowAggregateProcess and WindowProcess.
//
// The model is plain Go over the slice of records. It simulates the
// watermark the way the job produces it: one source subtask whose
// punctuated generator (punctuatedStrategy) emits, after every record, the
// largest timestamp seen minus the bound (the record goes out before the
// watermark derived from it, as in Flink). The sliding shape has a bound
// of 0, where that order decides whether a record at the end of a window
// counts.

// modelShape is one kind of window under test.
type modelShape struct {
	name                 string
	size, slide, gap     int64 // gap > 0: session windows
	bound, lateness      int64
	assigner             weir.WindowAssigner
	gen                  func(r *rand.Rand, n int) []ev
	minFirings, minLate  int // per seed, so that a run proves something
	minRefires, minMerge int // summed over the seeds of the shape
}

var modelShapes = []modelShape{
	{name: "tumbling", size: 100, slide: 100, bound: 20, lateness: 60,
		assigner: weir.TumblingEventTimeWindows(100 * time.Millisecond), gen: genDisordered(20, 60, 100),
		minFirings: 30, minLate: 5, minRefires: 10},
	{name: "sliding", size: 90, slide: 30, bound: 0, lateness: 45,
		assigner: weir.SlidingEventTimeWindows(90*time.Millisecond, 30*time.Millisecond), gen: genDisordered(0, 45, 90),
		minFirings: 60, minLate: 5, minRefires: 10},
	{name: "session", gap: 40, bound: 10, lateness: 80,
		assigner: weir.EventTimeSessionWindows(40 * time.Millisecond), gen: genSessions(10),
		minFirings: 20, minLate: 3, minRefires: 10, minMerge: 3},
}

// genDisordered makes n records of 3 keys whose timestamps advance by a
// few milliseconds per record with pauses; most records are at most bound
// behind, a fifth up to lateness+size behind (late, often within the
// lateness), and a few far behind (too late for every window).
func genDisordered(bound, lateness, size int64) func(r *rand.Rand, n int) []ev {
	return func(r *rand.Rand, n int) []ev {
		events := make([]ev, n)
		base := int64(10_000)
		for i := range events {
			base += r.Int64N(8)
			if r.IntN(60) == 0 {
				base += 100 + r.Int64N(300)
			}
			ts := base
			switch x := r.IntN(100); {
			case x < 75:
				ts -= r.Int64N(bound + 1)
			case x < 95:
				ts -= bound + r.Int64N(lateness+size)
			default:
				ts -= r.Int64N(3 * (lateness + size))
			}
			events[i] = ev{Key: r.IntN(3), Off: int64(i), TS: ts}
		}
		return events
	}
}

// genSessions makes n records of 3 keys in bursts (a few ms apart, so a
// key's records in a burst form one session of the 40 ms gap) separated
// by pauses longer than the gap; a fifth of the records come late, landing
// in the pauses between sessions: they open sessions of their own, extend
// sessions, or bridge two sessions into one.
func genSessions(bound int64) func(r *rand.Rand, n int) []ev {
	return func(r *rand.Rand, n int) []ev {
		events := make([]ev, n)
		base := int64(10_000)
		for i := range events {
			base += r.Int64N(12)
			if r.IntN(20) == 0 {
				base += 50 + r.Int64N(120)
			}
			ts := base
			if r.IntN(5) == 0 {
				ts -= bound + r.Int64N(200)
			} else {
				ts -= r.Int64N(bound + 1)
			}
			events[i] = ev{Key: r.IntN(3), Off: int64(i), TS: ts}
		}
		return events
	}
}

// modelFiring is one emission of a window: its contents at that moment.
type modelFiring struct {
	key  int
	w    weir.TimeWindow
	recs []ev // in arrival order
}

type modelKW struct {
	key int
	w   weir.TimeWindow
}

// windowModel is Flink's event-time window operator with EventTimeTrigger,
// written out directly: a window fires when the watermark passes its
// MaxTimestamp, fires again with its new contents for every record that
// arrives within the allowed lateness, and is dropped when the watermark
// passes MaxTimestamp+lateness; a record none of whose windows is still
// kept goes to the late output. Session windows merge when they overlap or
// touch, within the lateness too.
type windowModel struct {
	s        modelShape
	wm       int64
	maxTS    int64
	contents map[modelKW][]ev // the windows kept
	fired    []modelFiring
	late     []ev
	// What the run exercised.
	onTime, refires, bridges, lateBridges int
}

func newWindowModel(s modelShape) *windowModel {
	return &windowModel{s: s, wm: math.MinInt64, maxTS: math.MinInt64 / 2, contents: map[modelKW][]ev{}}
}

func (m *windowModel) cleanup(w weir.TimeWindow) int64 { return w.End - 1 + m.s.lateness }

func (m *windowModel) fire(kw modelKW) {
	m.fired = append(m.fired, modelFiring{key: kw.key, w: kw.w, recs: slices.Clone(m.contents[kw])})
}

// advance moves the watermark to wm: windows whose MaxTimestamp it passes
// fire, windows whose cleanup time it passes are dropped.
func (m *windowModel) advance(wm int64) {
	if wm <= m.wm {
		return
	}
	old := m.wm
	m.wm = wm
	for kw := range m.contents {
		if end := kw.w.End - 1; old < end && end <= wm {
			m.fire(kw)
			m.onTime++
		}
		if m.cleanup(kw.w) <= wm {
			delete(m.contents, kw)
		}
	}
}

// windowsOf are the windows of a record for non-merging shapes.
func (m *windowModel) windowsOf(ts int64) []weir.TimeWindow {
	var ws []weir.TimeWindow
	last := ts - ((ts%m.s.slide)+m.s.slide)%m.s.slide
	for start := last; start > ts-m.s.size; start -= m.s.slide {
		ws = append(ws, weir.TimeWindow{Start: start, End: start + m.s.size})
	}
	return ws
}

// sessionOf merges the new session window of a record at ts with the
// key's kept windows it overlaps or touches, and returns the window the
// record belongs to.
func (m *windowModel) sessionOf(key int, ts int64) weir.TimeWindow {
	res := weir.TimeWindow{Start: ts, End: ts + m.s.gap}
	var merged []weir.TimeWindow
	for changed := true; changed; {
		changed = false
		for kw := range m.contents {
			if kw.key == key && !slices.Contains(merged, kw.w) && kw.w.Start <= res.End && kw.w.End >= res.Start {
				res = weir.TimeWindow{Start: min(res.Start, kw.w.Start), End: max(res.End, kw.w.End)}
				merged = append(merged, kw.w)
				changed = true
			}
		}
	}
	if len(merged) == 1 && merged[0] == res {
		return res
	}
	if m.cleanup(res) <= m.wm {
		return res // late: nothing merged (kept windows are never late)
	}
	var recs []ev
	for _, w := range merged {
		recs = append(recs, m.contents[modelKW{key, w}]...)
		delete(m.contents, modelKW{key, w})
	}
	m.contents[modelKW{key, res}] = recs // the record is added next
	if len(merged) >= 2 {
		m.bridges++
		if res.End-1 <= m.wm {
			m.lateBridges++
		}
	}
	return res
}

// record is one record arriving, followed by the watermark its generator
// emits for it.
func (m *windowModel) record(e ev) {
	defer func() {
		m.maxTS = max(m.maxTS, e.TS)
		m.advance(m.maxTS - m.s.bound)
	}()
	var ws []weir.TimeWindow
	if m.s.gap > 0 {
		ws = []weir.TimeWindow{m.sessionOf(e.Key, e.TS)}
	} else {
		ws = m.windowsOf(e.TS)
	}
	skipped := true
	for _, w := range ws {
		if m.cleanup(w) <= m.wm {
			continue
		}
		skipped = false
		kw := modelKW{e.Key, w}
		m.contents[kw] = append(m.contents[kw], e)
		if w.End-1 <= m.wm {
			m.fire(kw)
			m.refires++
		}
	}
	if skipped && e.TS+m.s.lateness <= m.wm {
		m.late = append(m.late, e)
	}
}

// run is the model's output for events, the input ending with the maximum
// watermark.
func (m *windowModel) run(events []ev) {
	for _, e := range events {
		m.record(e)
	}
	m.advance(math.MaxInt64)
}

// What the three window functions emit, as comparable text.

// modelAgg is the aggregate of a window's records.
type modelAgg struct {
	Key        int
	N, Sum, Sq int64 // count, sum and sum of squares of the offsets
}

func (a modelAgg) add(e ev) modelAgg {
	return modelAgg{Key: e.Key, N: a.N + 1, Sum: a.Sum + e.Off, Sq: a.Sq + e.Off*e.Off}
}

type modelAggregator struct{}

func (modelAggregator) CreateAccumulator() modelAgg   { return modelAgg{} }
func (modelAggregator) Add(e ev, a modelAgg) modelAgg { return a.add(e) }
func (modelAggregator) Result(a modelAgg) modelAgg    { return a }
func (modelAggregator) Merge(a, b modelAgg) modelAgg {
	return modelAgg{a.Key, a.N + b.N, a.Sum + b.Sum, a.Sq + b.Sq}
}
func reduceAgg(a, b modelAgg) modelAgg { return modelAggregator{}.Merge(a, b) }
func aggLine(key int, w weir.TimeWindow, a modelAgg) string {
	return fmt.Sprintf("k%d %v n=%d sum=%d sq=%d", key, w, a.N, a.Sum, a.Sq)
}
func reduceLine(key int, maxTS int64, a modelAgg) string {
	return fmt.Sprintf("k%d end=%d n=%d sum=%d sq=%d", key, maxTS+1, a.N, a.Sum, a.Sq)
}
func processLine(key int, w weir.TimeWindow, offs string) string {
	return fmt.Sprintf("k%d %v offs=%s", key, w, offs)
}

// offsList writes the offsets of recs, sorted if sorted (merged sessions
// keep each merged window's records together, not in arrival order).
func offsList(recs []ev, sorted bool) string {
	offs := make([]int64, len(recs))
	for i, e := range recs {
		offs[i] = e.Off
	}
	if sorted {
		slices.Sort(offs)
	}
	var b strings.Builder
	for i, o := range offs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(o, 10))
	}
	return b.String()
}

// modelLines are the lines the model predicts for the three functions.
func (m *windowModel) lines() (agg, reduce, process, late []string) {
	for _, f := range m.fired {
		var a modelAgg
		for _, e := range f.recs {
			a = a.add(e)
		}
		agg = append(agg, aggLine(f.key, f.w, a))
		reduce = append(reduce, reduceLine(f.key, f.w.MaxTimestamp(), a))
		process = append(process, processLine(f.key, f.w, offsList(f.recs, m.s.gap > 0)))
	}
	for _, e := range m.late {
		late = append(late, strconv.FormatInt(e.Off, 10))
	}
	return
}

// runWindowModelJob runs events through the shape's windows with the
// three window functions and returns what each committed and its late
// side output.
func runWindowModelJob(t *testing.T, s modelShape, events []ev, backend string) (agg, reduce, process []string, late [3][]string) {
	t.Helper()
	opts := []weir.Option{weir.Parallelism(2), weir.RestartStrategy(restart.None())}
	if backend == "pebble" {
		opts = append(opts, weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: t.TempDir()})))
	}
	env := weir.NewEnvironment(opts...)
	src := weir.FromSourceWithWatermarks(env, weir.Generator(1, int64(len(events)), func(_ int, off int64) ev { return events[off] }),
		punctuatedStrategy(s.bound), "events").SetParallelism(1)
	keyed := weir.KeyBy(src, func(e ev) int { return e.Key })
	lateness := time.Duration(s.lateness) * time.Millisecond
	sorted := s.gap > 0

	// Aggregate with the window's metadata.
	aggTag := weir.NewOutputTag[ev]("late-aggregate")
	aggs := weir.WindowAggregateProcess(weir.Window(keyed, s.assigner).AllowedLateness(lateness).SideOutputLateData(aggTag),
		weir.MergingAggregator[ev, modelAgg, modelAgg](modelAggregator{}),
		weir.ProcessWindowFunc[int, modelAgg, string](func(ctx *weir.WindowContext[int], a []modelAgg, out weir.Collector[string]) error {
			out.Collect(aggLine(ctx.Key(), ctx.Window(), a[0]))
			return nil
		}))
	aggSink, aggLate := weir.NewCollectSink[string](), weir.NewCollectSink[ev]()
	aggs.SinkTo(aggSink)
	weir.GetSideOutput(aggs, aggTag).SinkTo(aggLate)

	// Reduce: its results carry the window's MaxTimestamp, which a keyed
	// process function reads back.
	redTag := weir.NewOutputTag[modelAgg]("late-reduce")
	// At the source's parallelism, so that the window operator sees the
	// records and watermarks in the source's order.
	single := weir.Map(src, func(e ev) modelAgg { return modelAgg{}.add(e) }).SetParallelism(1)
	reduced := weir.Window(weir.KeyBy(single, func(a modelAgg) int { return a.Key }), s.assigner).
		AllowedLateness(lateness).SideOutputLateData(redTag).Reduce(reduceAgg)
	redLines := weir.Process(weir.KeyBy(reduced, func(a modelAgg) int { return a.Key }),
		weir.ProcessFunc[int, modelAgg, string](func(ctx *weir.KeyedContext[int], a modelAgg, out weir.Collector[string]) error {
			ts, ok := ctx.Timestamp()
			if !ok {
				return fmt.Errorf("a reduced window result has no timestamp")
			}
			out.Collect(reduceLine(a.Key, ts, a))
			return nil
		}))
	redSink, redLate := weir.NewCollectSink[string](), weir.NewCollectSink[modelAgg]()
	redLines.SinkTo(redSink)
	weir.GetSideOutput(reduced, redTag).SinkTo(redLate)

	// Process: the full contents.
	procTag := weir.NewOutputTag[ev]("late-process")
	procs := weir.WindowProcess(weir.Window(keyed, s.assigner).AllowedLateness(lateness).SideOutputLateData(procTag),
		weir.ProcessWindowFunc[int, ev, string](func(ctx *weir.WindowContext[int], elems []ev, out weir.Collector[string]) error {
			out.Collect(processLine(ctx.Key(), ctx.Window(), offsList(elems, sorted)))
			return nil
		}))
	procSink, procLate := weir.NewCollectSink[string](), weir.NewCollectSink[ev]()
	procs.SinkTo(procSink)
	weir.GetSideOutput(procs, procTag).SinkTo(procLate)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := env.Execute(ctx, "window-model"); err != nil {
		t.Fatal(err)
	}
	offs := func(es []ev) []string {
		var out []string
		for _, e := range es {
			out = append(out, strconv.FormatInt(e.Off, 10))
		}
		return out
	}
	var redLateOffs []string
	for _, a := range redLate.Committed() {
		redLateOffs = append(redLateOffs, strconv.FormatInt(a.Sum, 10))
	}
	return aggSink.Committed(), redSink.Committed(), procSink.Committed(), [3][]string{offs(aggLate.Committed()), redLateOffs, offs(procLate.Committed())}
}

// sameLines reports the difference of two multisets of lines.
func sameLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	g, w := slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))
	if slices.Equal(g, w) {
		return
	}
	count := map[string]int{}
	for _, l := range w {
		count[l]++
	}
	for _, l := range g {
		count[l]--
	}
	var missing, extra []string
	for l, c := range count {
		for ; c > 0; c-- {
			missing = append(missing, l)
		}
		for ; c < 0; c++ {
			extra = append(extra, l)
		}
	}
	slices.Sort(missing)
	slices.Sort(extra)
	t.Errorf("%s: got %d lines, the model %d\nmissing (%d): %v\nextra (%d): %v", what, len(g), len(w),
		len(missing), head(missing), len(extra), head(extra))
}

// modelSeeds are the seeds of every shape, plus one from the clock (or
// WEIR_WINDOW_SEED, to replay a failure).
func modelSeeds(t *testing.T) []uint64 {
	seeds := []uint64{1, 2, 3}
	extra := uint64(time.Now().UnixNano())
	if s := os.Getenv("WEIR_WINDOW_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("WEIR_WINDOW_SEED=%q: %v", s, err)
		}
		extra = v
	}
	return append(seeds, extra)
}

// Event-time windows against the reference model: tumbling, sliding and
// session windows, with allowed lateness and a late side output, through
// Reduce, WindowAggregateProcess and WindowProcess, on the heap and in
// pebble, emit exactly what the model predicts: every on-time firing,
// every re-firing for a record within the lateness (with the window's
// contents at that moment; merged sessions included), and every record
// too late for its windows on the side output.
func TestWindowsAgainstModel(t *testing.T) {
	const n = 600
	for _, s := range modelShapes {
		t.Run(s.name, func(t *testing.T) {
			var refires, bridges, lateBridges int
			for _, seed := range modelSeeds(t) {
				events := s.gen(rand.New(rand.NewPCG(seed, 11)), n)
				m := newWindowModel(s)
				m.run(events)
				refires += m.refires
				bridges += m.bridges
				lateBridges += m.lateBridges
				if len(m.fired) < s.minFirings || len(m.late) < s.minLate {
					t.Fatalf("seed %d: the model predicts %d firings and %d late records: too few to prove anything", seed, len(m.fired), len(m.late))
				}
				wantAgg, wantReduce, wantProcess, wantLate := m.lines()
				for _, backend := range []string{"heap", "pebble"} {
					t.Run(fmt.Sprintf("seed=%d/%s", seed, backend), func(t *testing.T) {
						t.Logf("seed %d (replay with WEIR_WINDOW_SEED=%d): %d firings (%d on time, %d for late records), %d late records, %d sessions bridged (%d after firing)",
							seed, seed, len(m.fired), m.onTime, m.refires, len(m.late), m.bridges, m.lateBridges)
						agg, reduce, process, late := runWindowModelJob(t, s, events, backend)
						sameLines(t, "aggregate", agg, wantAgg)
						sameLines(t, "reduce", reduce, wantReduce)
						sameLines(t, "process", process, wantProcess)
						for i, f := range []string{"aggregate", "reduce", "process"} {
							sameLines(t, f+": late side output", late[i], wantLate)
						}
					})
				}
			}
			if refires < s.minRefires || bridges < s.minMerge || (s.minMerge > 0 && lateBridges == 0) {
				t.Errorf("over the seeds the model re-fired %d times, bridged %d sessions (%d after they fired): the inputs do not exercise lateness and merging", refires, bridges, lateBridges)
			}
		})
	}
}

// A watermark a punctuated generator derives from a record follows that
// record downstream, as in Flink (the record is emitted before the
// generator sees it): with a watermark equal to each record's timestamp
// and no allowed lateness, a record at the last millisecond of a window is
// counted in that window, not sent to the late output — at a source and
// at AssignTimestampsAndWatermarks.
func TestPunctuatedWatermarkFollowsItsRecord(t *testing.T) {
	events := []ev{{Key: 1, Off: 0, TS: 500}, {Key: 1, Off: 1, TS: 999}, {Key: 1, Off: 2, TS: 1500}}
	for name, stamped := range map[string]func(env *weir.Environment) weir.Stream[ev]{
		"source": func(env *weir.Environment) weir.Stream[ev] {
			return weir.FromSourceWithWatermarks(env, weir.Generator(1, int64(len(events)), func(_ int, off int64) ev { return events[off] }),
				punctuatedStrategy(0), "events")
		},
		"assigner": func(env *weir.Environment) weir.Stream[ev] {
			return weir.AssignTimestampsAndWatermarks(weir.FromSlice(env, events), punctuatedStrategy(0))
		},
	} {
		t.Run(name, func(t *testing.T) {
			env := weir.NewEnvironment(weir.Parallelism(1), weir.RestartStrategy(restart.None()))
			lateTag := weir.NewOutputTag[ev]("late")
			counts := weir.WindowAggregateProcess(weir.Window(weir.KeyBy(stamped(env), func(e ev) int { return e.Key }),
				weir.TumblingEventTimeWindows(time.Second)).SideOutputLateData(lateTag),
				weir.Aggregator[ev, int64, int64](countAgg{}), weir.ProcessWindowFunc[int, int64, winCount](withWindow))
			sink, late := weir.NewCollectSink[winCount](), weir.NewCollectSink[ev]()
			counts.SinkTo(sink)
			weir.GetSideOutput(counts, lateTag).SinkTo(late)
			if err := env.Execute(context.Background(), "punctuated"); err != nil {
				t.Fatal(err)
			}
			want := []winCount{{Key: 1, Start: 0, End: 1000, Count: 2}, {Key: 1, Start: 1000, End: 2000, Count: 1}}
			if got := slices.SortedFunc(slices.Values(sink.Committed()), cmpWinCount); !slices.Equal(got, want) || len(late.Committed()) > 0 {
				t.Errorf("windows %v, late %v; want %v and nothing late", got, late.Committed(), want)
			}
		})
	}
}
