package weir_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/internal/sinktest"
	"github.com/weirstream/weir/restart"
	"github.com/weirstream/weir/state/pebblestate"
)

// CoMap and CoFlatMap read two streams of different types into one, at
// parallelism 1 and 3: the output is the reference computed from the
// inputs, record for record.
func TestCoMapCoFlatMap(t *testing.T) {
	for _, p := range []int{1, 3} {
		t.Run(fmt.Sprint("p", p), func(t *testing.T) {
			env := weir.NewEnvironment(weir.Parallelism(p), weir.RestartStrategy(restart.None()))
			nums := weir.FromSource(env, weir.Generator(2, 500, func(part int, off int64) int64 { return int64(part)*1000 + off }), "nums")
			words := weir.FromSource(env, weir.Generator(1, 50, func(_ int, off int64) string { return "w" + strconv.FormatInt(off, 10) }), "words").SetParallelism(1)
			mapped := weir.NewCollectSink[string]()
			weir.CoMap(weir.Connect(nums, words), func(n int64) string { return "n" + strconv.FormatInt(n, 10) },
				func(w string) string { return w }).SinkTo(mapped)
			flat := weir.NewCollectSink[string]()
			weir.CoFlatMap(weir.Connect(nums, words), func(n int64, out weir.Collector[string]) {
				if n%2 == 0 {
					out.Collect("even" + strconv.FormatInt(n, 10))
				}
			}, func(w string, out weir.Collector[string]) {
				out.Collect(w)
				out.Collect(w + "!")
			}).SinkTo(flat)
			if err := env.Execute(context.Background(), "comap"); err != nil {
				t.Fatal(err)
			}
			var wantMap, wantFlat []string
			for part := range int64(2) {
				for off := range int64(500) {
					n := part*1000 + off
					wantMap = append(wantMap, "n"+strconv.FormatInt(n, 10))
					if n%2 == 0 {
						wantFlat = append(wantFlat, "even"+strconv.FormatInt(n, 10))
					}
				}
			}
			for off := range int64(50) {
				w := "w" + strconv.FormatInt(off, 10)
				wantMap = append(wantMap, w)
				wantFlat = append(wantFlat, w, w+"!")
			}
			if got, want := slices.Sorted(slices.Values(mapped.Committed())), slices.Sorted(slices.Values(wantMap)); !slices.Equal(got, want) {
				t.Errorf("CoMap: got %d records, want %d", len(got), len(want))
			}
			if got, want := slices.Sorted(slices.Values(flat.Committed())), slices.Sorted(slices.Values(wantFlat)); !slices.Equal(got, want) {
				t.Errorf("CoFlatMap: got %d records, want %d", len(got), len(want))
			}
		})
	}
}

// order and pay are the two sides of the keyed co-process tests: orders
// and payments of a customer.
type order struct {
	Cust, Seq int64
	TS        int64
}

type pay struct {
	Cust, Seq int64
	Amount    int64
	TS        int64
}

// coOut is what balanceFn emits: a record's running count over both sides
// of its key, or (Final) the key's totals when its end-of-time timer fires.
type coOut struct {
	Cust          int64
	Side          int
	Seq           int64
	Count         int64
	Orders, Payed int64
	Final         bool
	Timers        int64 // Finish: timers fired by the subtask
}

// balanceFn counts the records of both sides per key in one shared state,
// sums the payments, and registers an event-time timer at the end of time
// whose OnTimer emits the key's totals: it fires only when the watermark
// of both inputs passed it.
type balanceFn struct {
	count, orders, payed weir.ValueState[int64]
	fired                int64
}

const endOfTime = int64(1) << 50

func (f *balanceFn) Open(ctx *weir.KeyedContext[int64]) (err error) {
	if f.count, err = weir.GetValueState[int64](ctx, "count"); err != nil {
		return err
	}
	if f.orders, err = weir.GetValueState[int64](ctx, "orders"); err != nil {
		return err
	}
	f.payed, err = weir.GetValueState[int64](ctx, "payed")
	return err
}

func (f *balanceFn) bump(ctx *weir.KeyedContext[int64], side int, seq int64, out weir.Collector[coOut]) {
	c, _ := f.count.Value()
	c++
	f.count.Update(c)
	ctx.RegisterEventTimeTimer(endOfTime)
	out.Collect(coOut{Cust: ctx.CurrentKey(), Side: side, Seq: seq, Count: c})
}

func (f *balanceFn) ProcessElement1(ctx *weir.KeyedContext[int64], o order, out weir.Collector[coOut]) error {
	n, _ := f.orders.Value()
	f.orders.Update(n + 1)
	f.bump(ctx, 1, o.Seq, out)
	return nil
}

func (f *balanceFn) ProcessElement2(ctx *weir.KeyedContext[int64], p pay, out weir.Collector[coOut]) error {
	n, _ := f.payed.Value()
	f.payed.Update(n + p.Amount)
	f.bump(ctx, 2, p.Seq, out)
	return nil
}

func (f *balanceFn) OnTimer(ctx *weir.KeyedContext[int64], ts int64, out weir.Collector[coOut]) error {
	f.fired++
	o, _ := f.orders.Value()
	p, _ := f.payed.Value()
	c, _ := f.count.Value()
	out.Collect(coOut{Cust: ctx.CurrentKey(), Count: c, Orders: o, Payed: p, Final: true})
	return nil
}

func (f *balanceFn) Finish(_ *weir.KeyedContext[int64], out weir.Collector[coOut]) error {
	out.Collect(coOut{Cust: -1, Timers: f.fired})
	return nil
}

const coCustomers = 7

func mkOrder(part int, off int64) order {
	seq := off*2 + int64(part)
	return order{Cust: seq % coCustomers, Seq: seq, TS: 10_000 + off*5}
}

func mkPay(part int, off int64) pay {
	seq := off*3 + int64(part)
	return pay{Cust: seq % coCustomers, Seq: seq, Amount: seq%10 + 1, TS: 10_000 + off*2}
}

// coProcessJob connects orders (2 partitions of nOrders, fast: they end
// long before the payments) with payments (3 partitions of nPays, rate
// limited) by customer into balanceFn.
func coProcessJob(env *weir.Environment, nOrders, nPays int64, payRate float64, mapOrder func(order) (order, error)) weir.Stream[coOut] {
	orders := weir.FromSourceWithWatermarks(env, weir.Generator(2, nOrders, mkOrder),
		weir.ForMonotonousTimestamps[order]().WithTimestampAssigner(func(o order, _ int64) int64 { return o.TS }), "orders").UID("orders")
	pays := weir.FromSourceWithWatermarks(env, weir.Generator(3, nPays, mkPay).WithRate(payRate),
		weir.ForMonotonousTimestamps[pay]().WithTimestampAssigner(func(p pay, _ int64) int64 { return p.TS }), "pays").UID("pays")
	if mapOrder != nil {
		orders = weir.MapErr(orders, mapOrder).UID("flaky")
	}
	return weir.KeyedCoProcess(weir.ConnectKeyed(weir.KeyBy(orders, func(o order) int64 { return o.Cust }), weir.KeyBy(pays, func(p pay) int64 { return p.Cust })),
		weir.KeyedCoProcessFunction[int64, order, pay, coOut](&balanceFn{})).UID("balance")
}

// checkBalance checks the output of balanceFn against the inputs: every
// record once, with each key's running counts exactly 1..n (state shared
// by both sides, each record counted once), one final timer per key with
// the key's totals, and Finish's count of fired timers.
func checkBalance(t *testing.T, got []coOut, nOrders, nPays int64) {
	t.Helper()
	type totals struct{ n, orders, payed int64 }
	want := map[int64]*totals{}
	tot := func(c int64) *totals {
		if want[c] == nil {
			want[c] = &totals{}
		}
		return want[c]
	}
	for part := range 2 {
		for off := range nOrders {
			o := mkOrder(part, off)
			tot(o.Cust).n++
			tot(o.Cust).orders++
		}
	}
	for part := range 3 {
		for off := range nPays {
			p := mkPay(part, off)
			tot(p.Cust).n++
			tot(p.Cust).payed += p.Amount
		}
	}
	seen := map[[3]int64]int{}
	counts := map[int64][]int64{}
	finals := map[int64]coOut{}
	var timers int64
	for _, o := range got {
		switch {
		case o.Cust == -1:
			timers += o.Timers
		case o.Final:
			if _, dup := finals[o.Cust]; dup {
				t.Errorf("customer %d: final timer fired twice", o.Cust)
			}
			finals[o.Cust] = o
		default:
			seen[[3]int64{o.Cust, int64(o.Side), o.Seq}]++
			counts[o.Cust] = append(counts[o.Cust], o.Count)
		}
	}
	var records int64
	for c, w := range want {
		records += w.n
		cs := slices.Sorted(slices.Values(counts[c]))
		for i, n := range cs {
			if n != int64(i)+1 {
				t.Fatalf("customer %d: running counts %v... are not 1..%d: a record counted twice or lost", c, cs[:min(len(cs), 10)], w.n)
			}
		}
		if int64(len(cs)) != w.n {
			t.Errorf("customer %d: %d records, want %d", c, len(cs), w.n)
		}
		f := finals[c]
		if f.Count != w.n || f.Orders != w.orders || f.Payed != w.payed {
			t.Errorf("customer %d: final %+v, want count %d orders %d payed %d", c, f, w.n, w.orders, w.payed)
		}
	}
	if int64(len(seen)) != records {
		t.Errorf("%d distinct records emitted, want %d", len(seen), records)
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("record %v emitted %d times", k, n)
		}
	}
	if timers != int64(len(want)) {
		t.Errorf("Finish counted %d fired timers, want %d (one per key)", timers, len(want))
	}
}

// A keyed co-process function sees both sides of a key in one keyed state,
// and its event-time timers follow the minimum watermark of both inputs:
// the orders end long before the payments, and the timer at the end of
// time fires only after every payment, with the key's full totals. Heap
// and pebble, parallelism 1 and 3.
func TestKeyedCoProcess(t *testing.T) {
	for _, backend := range []string{"heap", "pebble"} {
		for _, p := range []int{1, 3} {
			t.Run(fmt.Sprintf("%s/p%d", backend, p), func(t *testing.T) {
				const nOrders, nPays = 200, 400
				opts := []weir.Option{weir.Parallelism(p), weir.RestartStrategy(restart.None()), weir.AutoWatermarkInterval(2 * time.Millisecond)}
				if backend == "pebble" {
					opts = append(opts, weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: t.TempDir()})))
				}
				env := weir.NewEnvironment(opts...)
				sink := weir.NewCollectSink[coOut]()
				coProcessJob(env, nOrders, nPays, 4000, nil).SinkTo(sink)
				if err := env.Execute(context.Background(), "co-process"); err != nil {
					t.Fatal(err)
				}
				checkBalance(t, sink.Committed(), nOrders, nPays)
			})
		}
	}
}

// The keyed co-process under injected failures (exactly once, checkpoints
// aligned over both inputs) commits every record once with the right
// running counts, as without failures.
func TestKeyedCoProcessFailureInjection(t *testing.T) {
	for _, backend := range []string{"heap", "pebble"} {
		t.Run(backend, func(t *testing.T) {
			const nOrders, nPays = 600, 600
			inj := sinktest.NewInjector(11, 4)
			opts := []weir.Option{weir.Parallelism(2), weir.Checkpointing(15*time.Millisecond, weir.ExactlyOnce),
				weir.CheckpointStorage(t.TempDir()), weir.RestartStrategy(restart.FixedDelay(100, time.Millisecond)),
				weir.AutoWatermarkInterval(2 * time.Millisecond)}
			if backend == "pebble" {
				opts = append(opts, weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: t.TempDir()})))
			}
			env := weir.NewEnvironment(opts...)
			sink := weir.NewCollectSink[coOut]()
			// Orders at 2000/s too, so failures hit while both sides run.
			coProcessJob(env, nOrders, nPays, 3000, func(o order) (order, error) { return o, inj.Maybe("orders", 0.004) }).SinkTo(sink).UID("sink")
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			job, err := env.Start(ctx, "co-process-failures")
			if err != nil {
				t.Fatal(err)
			}
			if err := job.Wait(); err != nil {
				t.Fatal(err)
			}
			if job.Restarts() == 0 {
				t.Fatal("no failure was injected: the test proves nothing")
			}
			checkBalance(t, sink.Committed(), nOrders, nPays)
			t.Logf("%d restarts", job.Restarts())
		})
	}
}

// The keyed co-process across processes: both inputs cross the TCP data
// plane between two task managers, tagged with the connected codec.
func TestClusterKeyedCoProcess(t *testing.T) {
	const nOrders, nPays = 300, 300
	dir := t.TempDir()
	jm := freeAddr(t)
	sink := weir.NewCollectSink[coOut]()
	build := func(o clusterOpts) *weir.Environment {
		o.JobManager = jm
		env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(10*time.Millisecond, weir.ExactlyOnce),
			weir.CheckpointStorage(dir), weir.RestartStrategy(restart.None()), weir.AutoWatermarkInterval(2*time.Millisecond), o.option())
		coProcessJob(env, nOrders, nPays, 5000, nil).SinkTo(sink).UID("sink")
		return env
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	job, err := build(clusterOpts{Role: roleJM}).Start(ctx, "co-process")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := build(clusterOpts{Role: roleTM, Name: fmt.Sprint("tm-", i)}).Execute(ctx, "co-process"); err != nil {
				t.Errorf("task manager %d: %v", i, err)
			}
		}()
	}
	if err := job.Wait(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	checkBalance(t, sink.Committed(), nOrders, nPays)
}

// A non-keyed CoProcess sees each side's records with their timestamps and
// the watermark of both inputs.
type tsCheck struct{ bad []string }

func (f *tsCheck) ProcessElement1(ctx *weir.CoContext, o order, out weir.Collector[string]) error {
	if ts, ok := ctx.Timestamp(); !ok || ts != o.TS {
		return fmt.Errorf("order %+v has timestamp %d", o, ts)
	}
	out.Collect("o" + strconv.FormatInt(o.Seq, 10))
	return nil
}

func (f *tsCheck) ProcessElement2(ctx *weir.CoContext, p pay, out weir.Collector[string]) error {
	if ts, ok := ctx.Timestamp(); !ok || ts != p.TS {
		return fmt.Errorf("payment %+v has timestamp %d", p, ts)
	}
	if wm := ctx.CurrentWatermark(); wm >= p.TS {
		return fmt.Errorf("payment %+v at watermark %d: the watermark passed an in-order record", p, wm)
	}
	out.Collect("p" + strconv.FormatInt(p.Seq, 10))
	return nil
}

func TestCoProcess(t *testing.T) {
	env := weir.NewEnvironment(weir.Parallelism(2), weir.RestartStrategy(restart.None()), weir.AutoWatermarkInterval(time.Millisecond))
	orders := weir.FromSourceWithWatermarks(env, weir.Generator(2, 100, mkOrder),
		weir.ForMonotonousTimestamps[order]().WithTimestampAssigner(func(o order, _ int64) int64 { return o.TS }), "orders")
	pays := weir.FromSourceWithWatermarks(env, weir.Generator(3, 300, mkPay).WithRate(6000),
		weir.ForMonotonousTimestamps[pay]().WithTimestampAssigner(func(p pay, _ int64) int64 { return p.TS }), "pays")
	sink := weir.NewCollectSink[string]()
	weir.CoProcess(weir.Connect(orders, pays), weir.CoProcessFunction[order, pay, string](&tsCheck{})).SinkTo(sink)
	if err := env.Execute(context.Background(), "co-process"); err != nil {
		t.Fatal(err)
	}
	if got := len(sink.Committed()); got != 2*100+3*300 {
		t.Fatalf("got %d records, want %d", got, 2*100+3*300)
	}
}
