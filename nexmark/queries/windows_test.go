package queries

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/nexmark"
	"github.com/weirstream/weir/nexmark/reference"
	"github.com/weirstream/weir/state/pebblestate"
)

// windowedConfig spreads the test events over 200 s of event time, so
// that the 10 s windows are many and sessions end.
func windowedConfig() nexmark.GeneratorConfig {
	c := testConfig()
	c.EventsPerSecond = 100
	return c
}

// windowedQueries adds the event-time windowed queries to the job.
func windowedQueries(events weir.Stream[nexmark.Event]) []result {
	return []result{
		sinkTo("q5", Q5(events), reference.Q5, nil),
		sinkTo("q7", Q7(events), reference.Q7, nil),
		sinkTo("q8", Q8(events), reference.Q8, nil),
		sinkTo("q11", Q11(events), reference.Q11, nil),
	}
}

// The windowed queries give the reference's rows over many windows, at
// parallelism 1 and 3, on the heap and the pebble backend.
func TestWindowedQueriesMatchReference(t *testing.T) {
	cfg := windowedConfig()
	events := generated(t, cfg)
	if n := len(reference.Q11(events)); n < 2*len(reference.Q8(events)) || len(reference.Q7(events)) < 20 {
		t.Fatalf("the input makes too few windows: %d sessions, %d q7 rows", n, len(reference.Q7(events)))
	}
	for _, c := range []struct {
		p      int
		pebble bool
	}{{1, false}, {3, false}, {1, true}, {3, true}} {
		t.Run(fmt.Sprintf("parallelism%d-pebble%t", c.p, c.pebble), func(t *testing.T) {
			opts := []weir.Option{weir.Parallelism(c.p)}
			if c.pebble {
				opts = append(opts, weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: t.TempDir()})))
			}
			env := weir.NewEnvironment(opts...)
			results := windowedQueries(Events(env, NewSource(cfg, testPartitions)))
			if err := env.Execute(context.Background(), "nexmark-windows"); err != nil {
				t.Fatal(err)
			}
			for _, r := range results {
				r.check(t, events)
			}
		})
	}
}

// q12's windows follow the clock: its rows are aligned 10 s windows of
// the run's wall time, and per bidder they count the reference's bids
// (the reference's q12 with every event processed in one window).
func TestQ12ProcessingTimeWindows(t *testing.T) {
	cfg := testConfig()
	events := generated(t, cfg)
	env := weir.NewEnvironment(weir.Parallelism(2))
	sink := weir.NewCollectSink[nexmark.Q12Row]()
	Q12(Events(env, NewSource(cfg, testPartitions))).SinkTo(sink)
	before := time.Now().UnixMilli()
	if err := env.Execute(context.Background(), "nexmark-q12"); err != nil {
		t.Fatal(err)
	}
	after := time.Now().UnixMilli()
	got := map[int64]int64{}
	for _, r := range sink.Committed() {
		if r.EndTime-r.StartTime != 10_000 || r.StartTime%10_000 != 0 || r.EndTime <= before || r.StartTime > after {
			t.Fatalf("row %+v: not an aligned 10 s window of the run's time [%d, %d]", r, before, after)
		}
		got[r.Bidder] += r.BidCount
	}
	want := reference.Q12(events, func(int) int64 { return 0 })
	if len(got) != len(want) {
		t.Errorf("%d bidders, the reference has %d", len(got), len(want))
	}
	for _, w := range want {
		if got[w.Bidder] != w.BidCount {
			t.Errorf("bidder %d: %d bids, the reference counts %d", w.Bidder, got[w.Bidder], w.BidCount)
		}
	}
}
