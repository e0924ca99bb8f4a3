package weir

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/restart"
	"github.com/weirstream/weir/state/pebblestate"
)

type ijRow struct {
	Key int
	TS  int64
}

// The interval join's buffers are empty at the end of the input: every
// buffered row was dropped by its cleanup timer (counted per subtask as
// rows added minus rows dropped), on the heap and in pebble, while rows
// did get buffered and joined.
func TestIntervalJoinStateCleanedUp(t *testing.T) {
	for _, backend := range []string{"heap", "pebble"} {
		t.Run(backend, func(t *testing.T) {
			var mu sync.Mutex
			left := map[int]int64{}
			intervalJoinTestHook = func(subtask int, buffered int64) {
				mu.Lock()
				defer mu.Unlock()
				left[subtask] += buffered
			}
			defer func() { intervalJoinTestHook = nil }()
			opts := []Option{Parallelism(3), RestartStrategy(restart.None()), AutoWatermarkInterval(2 * time.Millisecond)}
			if backend == "pebble" {
				opts = append(opts, StateBackend(pebblestate.New(pebblestate.Options{Dir: t.TempDir()})))
			}
			env := NewEnvironment(opts...)
			strategy := ForBoundedOutOfOrderness[ijRow](20 * time.Millisecond).WithTimestampAssigner(func(r ijRow, _ int64) int64 { return r.TS })
			mk := func(part int, off int64) ijRow {
				return ijRow{Key: int(off % 4), TS: 1000 + off*5 - int64((off*7+int64(part))%15)}
			}
			a := FromSourceWithWatermarks(env, Generator(2, 500, mk).WithRate(10000), strategy, "a")
			b := FromSourceWithWatermarks(env, Generator(2, 300, mk).WithRate(5000), strategy, "b")
			key := func(r ijRow) int { return r.Key }
			sink := NewCollectSink[int]()
			IntervalJoinProcess(IntervalJoin(KeyBy(a, key), KeyBy(b, key)).Between(-30*time.Millisecond, 30*time.Millisecond),
				IntervalJoinFunc[int, ijRow, ijRow, int](func(x, y ijRow, _ *IntervalJoinContext[int], out Collector[int]) error {
					out.Collect(1)
					return nil
				})).SinkTo(sink)
			if err := env.Execute(context.Background(), "cleanup"); err != nil {
				t.Fatal(err)
			}
			if len(sink.Committed()) < 100 {
				t.Fatalf("%d pairs joined: the test proves nothing", len(sink.Committed()))
			}
			mu.Lock()
			defer mu.Unlock()
			if len(left) != 3 {
				t.Fatalf("the end of input was reported by %d subtasks, want 3", len(left))
			}
			for s, n := range left {
				if n != 0 {
					t.Errorf("subtask %d still buffers %d rows at the end", s, n)
				}
			}
		})
	}
}
