package weir_test

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/internal/sinktest"
	"github.com/weirstream/weir/restart"
	"github.com/weirstream/weir/state/pebblestate"
)

// jrow is a row of either side of the join tests: Off is unique per side.
type jrow struct {
	Key int
	Off int64
	TS  int64
}

// pair is a joined pair, by the offsets of its rows.
type pair struct {
	Key         int
	Left, Right int64
	TS          int64 // the output's timestamp (interval join)
}

func cmpPair(a, b pair) int {
	return cmp.Or(cmp.Compare(a.Key, b.Key), cmp.Compare(a.Left, b.Left), cmp.Compare(a.Right, b.Right), cmp.Compare(a.TS, b.TS))
}

// jittery rows: partition part, offset off; keys over 5, timestamps step
// apart with up to disorder ms of disorder within the partition.
func jittery(side uint64, parts int, step, disorder int64) func(int, int64) jrow {
	return func(part int, off int64) jrow {
		r := rand.New(rand.NewPCG(side, uint64(off)*8+uint64(part)))
		o := off*int64(parts) + int64(part)
		return jrow{Key: int(o % 5), Off: o, TS: 100_000 + off*step - r.Int64N(disorder+1)}
	}
}

func rows(parts int, n int64, mk func(int, int64) jrow) []jrow {
	var out []jrow
	for p := range parts {
		for off := range n {
			out = append(out, mk(p, off))
		}
	}
	return out
}

// intervalPairs is the reference interval join: every pair of equal keys
// with b.TS - a.TS in [lower, upper].
func intervalPairs(as, bs []jrow, lower, upper int64) []pair {
	var out []pair
	for _, a := range as {
		for _, b := range bs {
			if a.Key == b.Key && b.TS-a.TS >= lower && b.TS-a.TS <= upper {
				out = append(out, pair{a.Key, a.Off, b.Off, max(a.TS, b.TS)})
			}
		}
	}
	return slices.SortedFunc(slices.Values(out), cmpPair)
}

func rowStrategy(bound time.Duration) weir.WatermarkStrategy[jrow] {
	return weir.ForBoundedOutOfOrderness[jrow](bound).WithTimestampAssigner(func(r jrow, _ int64) int64 { return r.TS })
}

func emitPair(a, b jrow, ctx *weir.IntervalJoinContext[int], out weir.Collector[pair]) error {
	if ctx.Key() != a.Key || ctx.LeftTimestamp() != a.TS || ctx.RightTimestamp() != b.TS {
		return fmt.Errorf("pair %+v %+v: context says key %d, timestamps %d, %d", a, b, ctx.Key(), ctx.LeftTimestamp(), ctx.RightTimestamp())
	}
	out.Collect(pair{a.Key, a.Off, b.Off, ctx.Timestamp()})
	return nil
}

// intervalSources are nA rows per partition of side A (2 partitions) and
// nB of side B (3 partitions, slower), both out of order within 30 ms
// under a watermark bound of 50 ms, so that no row is late.
func intervalSources(env *weir.Environment, nA, nB int64, flaky func(jrow) (jrow, error)) (weir.KeyedStream[int, jrow], weir.KeyedStream[int, jrow]) {
	a := weir.FromSourceWithWatermarks(env, weir.Generator(2, nA, jittery(1, 2, 6, 30)).WithRate(8000), rowStrategy(50*time.Millisecond), "a").UID("a")
	b := weir.FromSourceWithWatermarks(env, weir.Generator(3, nB, jittery(2, 3, 9, 30)).WithRate(6000), rowStrategy(50*time.Millisecond), "b").UID("b")
	if flaky != nil {
		a = weir.MapErr(a, flaky).UID("flaky")
	}
	key := func(r jrow) int { return r.Key }
	return weir.KeyBy(a, key), weir.KeyBy(b, key)
}

func intervalJoin(ka, kb weir.KeyedStream[int, jrow], cfg func(weir.IntervalJoined[int, jrow, jrow]) weir.IntervalJoined[int, jrow, jrow]) weir.Stream[pair] {
	return weir.IntervalJoinProcess(cfg(weir.IntervalJoin(ka, kb)), weir.IntervalJoinFunc[int, jrow, jrow, pair](emitPair))
}

// The interval join emits exactly the pairs with b.ts in [a.ts+lower,
// a.ts+upper] for rows out of order within the watermark bound, with
// inclusive and exclusive bounds, lower negative or positive, on the heap
// and in pebble, at parallelism 1 and 3.
func TestIntervalJoin(t *testing.T) {
	const nA, nB = 300, 200
	as, bs := rows(2, nA, jittery(1, 2, 6, 30)), rows(3, nB, jittery(2, 3, 9, 30))
	cases := []struct {
		name         string
		lower, upper int64
		cfg          func(weir.IntervalJoined[int, jrow, jrow]) weir.IntervalJoined[int, jrow, jrow]
	}{
		{"around", -20, 20, func(j weir.IntervalJoined[int, jrow, jrow]) weir.IntervalJoined[int, jrow, jrow] {
			return j.Between(-20*time.Millisecond, 20*time.Millisecond)
		}},
		{"exclusive", -19, 39, func(j weir.IntervalJoined[int, jrow, jrow]) weir.IntervalJoined[int, jrow, jrow] {
			return j.Between(-20*time.Millisecond, 40*time.Millisecond).LowerBoundExclusive().UpperBoundExclusive()
		}},
		{"after", 10, 60, func(j weir.IntervalJoined[int, jrow, jrow]) weir.IntervalJoined[int, jrow, jrow] {
			return j.Between(10*time.Millisecond, 60*time.Millisecond)
		}},
		{"before", -60, -5, func(j weir.IntervalJoined[int, jrow, jrow]) weir.IntervalJoined[int, jrow, jrow] {
			return j.Between(-60*time.Millisecond, -5*time.Millisecond)
		}},
	}
	for _, backend := range []string{"heap", "pebble"} {
		for _, p := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/p%d", backend, p), func(t *testing.T) {
				opts := []weir.Option{weir.Parallelism(p), weir.RestartStrategy(restart.None()), weir.AutoWatermarkInterval(2 * time.Millisecond)}
				if backend == "pebble" {
					opts = append(opts, weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: t.TempDir()})))
				}
				env := weir.NewEnvironment(opts...)
				sinks := make([]*weir.CollectSink[pair], len(cases))
				ka, kb := intervalSources(env, nA, nB, nil)
				for i, c := range cases {
					sinks[i] = weir.NewCollectSink[pair]()
					intervalJoin(ka, kb, c.cfg).Name(c.name).UID("join-" + c.name).SinkTo(sinks[i])
				}
				if err := env.Execute(context.Background(), "interval-join"); err != nil {
					t.Fatal(err)
				}
				for i, c := range cases {
					want := intervalPairs(as, bs, c.lower, c.upper)
					if len(want) < 100 {
						t.Fatalf("%s: only %d pairs expected: the test proves little", c.name, len(want))
					}
					if got := slices.SortedFunc(slices.Values(sinks[i].Committed()), cmpPair); !slices.Equal(got, want) {
						t.Errorf("%s: got %d pairs, want %d\n got %v\nwant %v", c.name, len(got), len(want), head(got), head(want))
					}
				}
			})
		}
	}
}

// Rows behind the watermark when they arrive are dropped: side A's
// partition sends, after 600 rows, rows 10 s in the past, and so does side
// B; without the drop they would join each other.
func TestIntervalJoinDropsLateRows(t *testing.T) {
	const n = 900
	mk := func(side int64) func(int, int64) jrow {
		return func(_ int, off int64) jrow {
			r := jrow{Key: int(off % 3), Off: off, TS: 100_000 + off*10}
			if off >= 600 && off%10 == 0 {
				r.TS -= 10_000
				r.Off = -off // late
			}
			return r
		}
	}
	env := weir.NewEnvironment(weir.Parallelism(2), weir.RestartStrategy(restart.None()), weir.AutoWatermarkInterval(time.Millisecond))
	a := weir.FromSourceWithWatermarks(env, weir.Generator(1, n, mk(1)).WithRate(9000), rowStrategy(0), "a").SetParallelism(1)
	b := weir.FromSourceWithWatermarks(env, weir.Generator(1, n, mk(2)).WithRate(9000), rowStrategy(0), "b").SetParallelism(1)
	key := func(r jrow) int { return r.Key }
	sink := weir.NewCollectSink[pair]()
	weir.IntervalJoinProcess(weir.IntervalJoin(weir.KeyBy(a, key), weir.KeyBy(b, key)).Between(-5*time.Millisecond, 5*time.Millisecond),
		weir.IntervalJoinFunc[int, jrow, jrow, pair](emitPair)).SinkTo(sink)
	if err := env.Execute(context.Background(), "late"); err != nil {
		t.Fatal(err)
	}
	var onTime int
	for _, p := range sink.Committed() {
		if p.Left < 0 || p.Right < 0 {
			t.Fatalf("pair %+v holds a late row", p)
		}
		if p.Left != p.Right {
			t.Fatalf("pair %+v: rows 10 ms apart joined within 5 ms", p)
		}
		onTime++
	}
	if onTime != n-30 {
		t.Errorf("%d pairs, want %d (every on-time row with its twin)", onTime, n-30)
	}
}

// The interval join under injected failures (exactly once) commits the
// same pairs as the reference, on the heap and in pebble.
func TestIntervalJoinFailureInjection(t *testing.T) {
	for _, backend := range []string{"heap", "pebble"} {
		t.Run(backend, func(t *testing.T) {
			const nA, nB = 600, 400
			inj := sinktest.NewInjector(5, 4)
			opts := []weir.Option{weir.Parallelism(2), weir.Checkpointing(15*time.Millisecond, weir.ExactlyOnce),
				weir.CheckpointStorage(t.TempDir()), weir.RestartStrategy(restart.FixedDelay(100, time.Millisecond)),
				weir.AutoWatermarkInterval(2 * time.Millisecond)}
			if backend == "pebble" {
				opts = append(opts, weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: t.TempDir()})))
			}
			env := weir.NewEnvironment(opts...)
			sink := weir.NewCollectSink[pair]()
			ka, kb := intervalSources(env, nA, nB, func(r jrow) (jrow, error) { return r, inj.Maybe("a", 0.003) })
			intervalJoin(ka, kb, func(j weir.IntervalJoined[int, jrow, jrow]) weir.IntervalJoined[int, jrow, jrow] {
				return j.Between(-20*time.Millisecond, 30*time.Millisecond)
			}).UID("join").SinkTo(sink).UID("sink")
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			job, err := env.Start(ctx, "interval-failures")
			if err != nil {
				t.Fatal(err)
			}
			if err := job.Wait(); err != nil {
				t.Fatal(err)
			}
			if job.Restarts() == 0 {
				t.Fatal("no failure was injected: the test proves nothing")
			}
			want := intervalPairs(rows(2, nA, jittery(1, 2, 6, 30)), rows(3, nB, jittery(2, 3, 9, 30)), -20, 30)
			if got := slices.SortedFunc(slices.Values(sink.Committed()), cmpPair); !slices.Equal(got, want) {
				t.Errorf("after %d restarts: got %d pairs, want %d", job.Restarts(), len(got), len(want))
			}
			t.Logf("%d restarts, %d pairs", job.Restarts(), len(want))
		})
	}
}

// The regular join emits every pair of equal keys once, whatever the
// arrival order, with and without a (long) state TTL; side A ends long
// before side B.
func TestRegularJoin(t *testing.T) {
	for _, p := range []int{1, 3} {
		t.Run(fmt.Sprint("p", p), func(t *testing.T) {
			const nA, nB = 60, 150
			mkA := func(part int, off int64) jrow { o := off*2 + int64(part); return jrow{Key: int(o % 7), Off: o} }
			mkB := func(part int, off int64) jrow { o := off*3 + int64(part); return jrow{Key: int(o % 7), Off: o} }
			env := weir.NewEnvironment(weir.Parallelism(p), weir.RestartStrategy(restart.None()))
			a := weir.FromSource(env, weir.Generator(2, nA, mkA), "a")
			b := weir.FromSource(env, weir.Generator(3, nB, mkB).WithRate(3000), "b")
			key := func(r jrow) int { return r.Key }
			mk := func(x, y jrow) pair { return pair{Key: x.Key, Left: x.Off, Right: y.Off} }
			plain := weir.NewCollectSink[pair]()
			weir.Join(weir.KeyBy(a, key), weir.KeyBy(b, key), mk).UID("join").SinkTo(plain)
			ttl := weir.NewCollectSink[pair]()
			weir.Join(weir.KeyBy(a, key), weir.KeyBy(b, key), mk, weir.WithTTL(time.Hour)).UID("join-ttl").SinkTo(ttl)
			if err := env.Execute(context.Background(), "join"); err != nil {
				t.Fatal(err)
			}
			var want []pair
			for _, x := range rows(2, nA, mkA) {
				for _, y := range rows(3, nB, mkB) {
					if x.Key == y.Key {
						want = append(want, pair{Key: x.Key, Left: x.Off, Right: y.Off})
					}
				}
			}
			want = slices.SortedFunc(slices.Values(want), cmpPair)
			for name, s := range map[string]*weir.CollectSink[pair]{"plain": plain, "ttl": ttl} {
				if got := slices.SortedFunc(slices.Values(s.Committed()), cmpPair); !slices.Equal(got, want) {
					t.Errorf("%s: got %d pairs, want %d", name, len(got), len(want))
				}
			}
		})
	}
}

// With a short TTL the regular join forgets: side B's rows arrive after
// side A's have expired, and nothing joins.
func TestRegularJoinTTLExpires(t *testing.T) {
	env := weir.NewEnvironment(weir.Parallelism(1), weir.RestartStrategy(restart.None()))
	a := weir.FromSlice(env, []jrow{{Key: 1, Off: 1}, {Key: 2, Off: 2}})
	// 20 rows at 50/s: the first comes at once, the rest over 400 ms.
	b := weir.FromSource(env, weir.Generator(1, 20, func(_ int, off int64) jrow { return jrow{Key: 1 + int(off%2), Off: off} }).WithRate(50), "b")
	key := func(r jrow) int { return r.Key }
	sink := weir.NewCollectSink[pair]()
	weir.Join(weir.KeyBy(a, key), weir.KeyBy(b, key), func(x, y jrow) pair { return pair{Key: x.Key, Left: x.Off, Right: y.Off} },
		weir.WithTTL(50*time.Millisecond)).SinkTo(sink)
	if err := env.Execute(context.Background(), "join-ttl"); err != nil {
		t.Fatal(err)
	}
	got := sink.Committed()
	if len(got) >= 20 {
		t.Fatalf("%d pairs: nothing expired", len(got))
	}
	t.Logf("%d of 20 pairs before the TTL expired side A's rows", len(got))
}

// cgOut is a co-group result: a key's window with its row counts.
type cgOut struct {
	Key        int
	Start, End int64
	As, Bs     int
}

func cmpCG(a, b cgOut) int {
	return cmp.Or(cmp.Compare(a.Key, b.Key), cmp.Compare(a.Start, b.Start), cmp.Compare(a.End, b.End), cmp.Compare(a.As, b.As), cmp.Compare(a.Bs, b.Bs))
}

// Window joins and co-groups over tumbling, sliding and session windows
// give the reference computed from the rows, at parallelism 1 and 3.
// Timestamps are multiples of 7 (so no gap between rows equals the 1 s
// session gap), in order per partition, with a pause every 150 slots.
func TestWindowJoinAndCoGroup(t *testing.T) {
	slot := func(i int64) int64 { return 7 * (10_000 + i*3 + (i/150)*400) }
	mkA := func(part int, off int64) jrow {
		i := off*2 + int64(part)
		return jrow{Key: int(i % 4), Off: i, TS: slot(i)}
	}
	mkB := func(part int, off int64) jrow {
		i := off*3 + int64(part)
		return jrow{Key: int((i / 2) % 4), Off: i, TS: slot(i) + 7}
	}
	// Small: the window operator copies a key's buffered records on every
	// add (its map state), so a window's cost grows with its size squared.
	const nA, nB = 150, 100
	as, bs := rows(2, nA, mkA), rows(3, nB, mkB)
	assigners := []struct {
		name string
		a    weir.WindowAssigner
		// windows of a timestamp (not for sessions)
		of func(ts int64) []weir.TimeWindow
	}{
		{"tumbling", weir.TumblingEventTimeWindows(500 * time.Millisecond), func(ts int64) []weir.TimeWindow {
			s := ts - ts%500
			return []weir.TimeWindow{{Start: s, End: s + 500}}
		}},
		{"sliding", weir.SlidingEventTimeWindows(time.Second, 250*time.Millisecond), func(ts int64) []weir.TimeWindow {
			var ws []weir.TimeWindow
			for s := ts - ts%250; s > ts-1000; s -= 250 {
				ws = append(ws, weir.TimeWindow{Start: s, End: s + 1000})
			}
			return ws
		}},
		{"session", weir.EventTimeSessionWindows(time.Second), nil},
	}
	// sessionsOf assigns each row its key's session over both sides.
	sessionOf := func() map[[2]int64]weir.TimeWindow { // (side, off) -> session
		type tagged struct {
			side int64
			r    jrow
		}
		var all []tagged
		for _, r := range as {
			all = append(all, tagged{0, r})
		}
		for _, r := range bs {
			all = append(all, tagged{1, r})
		}
		slices.SortFunc(all, func(x, y tagged) int { return cmp.Compare(x.r.TS, y.r.TS) })
		out := map[[2]int64]weir.TimeWindow{}
		for k := range 4 {
			var members []tagged
			var cur weir.TimeWindow
			flush := func() {
				for _, m := range members {
					out[[2]int64{m.side, m.r.Off}] = cur
				}
				members = members[:0]
			}
			for _, x := range all {
				if x.r.Key != k {
					continue
				}
				if len(members) > 0 && x.r.TS < cur.End {
					cur.End = max(cur.End, x.r.TS+1000)
				} else {
					flush()
					cur = weir.TimeWindow{Start: x.r.TS, End: x.r.TS + 1000}
				}
				members = append(members, x)
			}
			flush()
		}
		return out
	}()
	for _, p := range []int{1, 3} {
		t.Run(fmt.Sprint("p", p), func(t *testing.T) {
			env := weir.NewEnvironment(weir.Parallelism(p), weir.RestartStrategy(restart.None()), weir.AutoWatermarkInterval(2*time.Millisecond))
			a := weir.FromSourceWithWatermarks(env, weir.Generator(2, nA, mkA).WithRate(10000), rowStrategy(0), "a")
			b := weir.FromSourceWithWatermarks(env, weir.Generator(3, nB, mkB).WithRate(6000), rowStrategy(0), "b")
			key := func(r jrow) int { return r.Key }
			ka, kb := weir.KeyBy(a, key), weir.KeyBy(b, key)
			joins := make([]*weir.CollectSink[pair], len(assigners))
			groups := make([]*weir.CollectSink[cgOut], len(assigners))
			for i, as := range assigners {
				joins[i] = weir.NewCollectSink[pair]()
				weir.WindowJoin(ka, kb, as.a, func(x, y jrow) pair { return pair{Key: x.Key, Left: x.Off, Right: y.Off} }).UID("join-" + as.name).SinkTo(joins[i])
				groups[i] = weir.NewCollectSink[cgOut]()
				weir.CoGroup(ka, kb, as.a, weir.CoGroupFunc[int, jrow, jrow, cgOut](func(k int, w weir.TimeWindow, xs, ys []jrow, out weir.Collector[cgOut]) error {
					if len(xs)+len(ys) == 0 {
						return fmt.Errorf("window %v of key %d is empty", w, k)
					}
					out.Collect(cgOut{Key: k, Start: w.Start, End: w.End, As: len(xs), Bs: len(ys)})
					return nil
				})).UID("cogroup-" + as.name).SinkTo(groups[i])
			}
			if err := env.Execute(context.Background(), "window-join"); err != nil {
				t.Fatal(err)
			}
			for i, asg := range assigners {
				windowsOf := func(side int64, r jrow) []weir.TimeWindow {
					if asg.of == nil {
						return []weir.TimeWindow{sessionOf[[2]int64{side, r.Off}]}
					}
					return asg.of(r.TS)
				}
				type kw struct {
					key int
					w   weir.TimeWindow
				}
				groupsWant := map[kw]*cgOut{}
				cg := func(k int, w weir.TimeWindow) *cgOut {
					if groupsWant[kw{k, w}] == nil {
						groupsWant[kw{k, w}] = &cgOut{Key: k, Start: w.Start, End: w.End}
					}
					return groupsWant[kw{k, w}]
				}
				var wantJoin []pair
				for _, x := range as {
					for _, w := range windowsOf(0, x) {
						cg(x.Key, w).As++
					}
				}
				for _, y := range bs {
					for _, w := range windowsOf(1, y) {
						cg(y.Key, w).Bs++
					}
				}
				for _, x := range as {
					for _, y := range bs {
						if x.Key != y.Key {
							continue
						}
						for _, wx := range windowsOf(0, x) {
							if slices.Contains(windowsOf(1, y), wx) {
								wantJoin = append(wantJoin, pair{Key: x.Key, Left: x.Off, Right: y.Off})
							}
						}
					}
				}
				var wantCG []cgOut
				for _, g := range groupsWant {
					wantCG = append(wantCG, *g)
				}
				wj := slices.SortedFunc(slices.Values(wantJoin), cmpPair)
				if len(wj) < 50 {
					t.Fatalf("%s: only %d pairs expected", asg.name, len(wj))
				}
				if got := slices.SortedFunc(slices.Values(joins[i].Committed()), cmpPair); !slices.Equal(got, wj) {
					t.Errorf("%s join: got %d pairs, want %d\n got %v\nwant %v", asg.name, len(got), len(wj), head(got), head(wj))
				}
				if got, want := slices.SortedFunc(slices.Values(groups[i].Committed()), cmpCG), slices.SortedFunc(slices.Values(wantCG), cmpCG); !slices.Equal(got, want) {
					t.Errorf("%s co-group: got %d groups, want %d\n got %v\nwant %v", asg.name, len(got), len(want), head(got), head(want))
				}
			}
		})
	}
}
