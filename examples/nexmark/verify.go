package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/nexmark"
	"github.com/weirstream/weir/nexmark/queries"
	"github.com/weirstream/weir/restart"
)

// A check adds a query and a collecting sink to a job, and returns what
// to compare of the committed output: one line per row for the queries
// that append rows, one line per key (its final value, or the part of it
// that does not depend on arrival order) for updating ones. The lines are
// compared as multisets.
type check func(s weir.Stream[nexmark.Event]) func() []string

// rows compares every committed row.
func rows[T any](q func(weir.Stream[nexmark.Event]) weir.Stream[T]) check {
	return func(s weir.Stream[nexmark.Event]) func() []string {
		sink := weir.NewCollectSink[T]()
		q(s).SinkTo(sink).Name("collect").UID("sink")
		return func() []string {
			var out []string
			for _, r := range sink.Committed() {
				out = append(out, fmt.Sprintf("%+v", r))
			}
			return out
		}
	}
}

// final compares the last committed row of every key (a key's rows come
// from one subtask, in the order it emitted them), projected by value.
func final[T any, K comparable](q func(weir.Stream[nexmark.Event]) weir.Stream[T], key func(T) K, value func(T) any) check {
	return func(s weir.Stream[nexmark.Event]) func() []string {
		sink := weir.NewCollectSink[T]()
		q(s).SinkTo(sink).Name("collect").UID("sink")
		return func() []string {
			last := map[K]T{}
			for _, r := range sink.Committed() {
				last[key(r)] = r
			}
			var out []string
			for k, r := range last {
				out = append(out, fmt.Sprintf("%+v: %+v", k, value(r)))
			}
			return out
		}
	}
}

func whole[T any](r T) any { return r }

type auctionDay struct {
	auction int64
	day     string
}

// checks are the stateful queries --verify runs. q12 is not among them:
// its processing-time windows differ from run to run. Of q9, q18 and q19
// the bid kept among bids of equal price (and time) depends on arrival
// order, so their price and time are compared.
var checks = map[string]check{
	"q3": rows(queries.Q3),
	"q4": final(queries.Q4, func(r nexmark.Q4Row) int64 { return r.Category }, whole),
	"q5": rows(queries.Q5),
	"q6": final(queries.Q6, func(r nexmark.Q6Row) int64 { return r.Seller }, whole),
	"q7": rows(queries.Q7),
	"q8": rows(queries.Q8),
	"q9": final(queries.Q9, func(r nexmark.Q9Row) int64 { return r.ID },
		func(r nexmark.Q9Row) any { return [2]int64{r.Price, r.BidDateTime} }),
	"q11": rows(queries.Q11),
	"q15": final(queries.Q15, func(r nexmark.Q15Row) string { return r.Day }, whole),
	"q16": final(queries.Q16, func(r nexmark.Q16Row) [2]string { return [2]string{r.Channel, r.Day} }, whole),
	"q17": final(queries.Q17, func(r nexmark.Q17Row) auctionDay { return auctionDay{r.Auction, r.Day} }, whole),
	"q18": final(queries.Q18, func(r nexmark.Q18Row) [2]int64 { return [2]int64{r.Bidder, r.Auction} },
		func(r nexmark.Q18Row) any { return r.DateTime }),
	"q19": final(queries.Q19, func(r nexmark.Q19Row) [2]int64 { return [2]int64{r.Auction, r.RankNumber} },
		func(r nexmark.Q19Row) any { return r.Price }),
	"q20": rows(queries.Q20),
}

// checkNames are the names of checks, sorted by query number.
func checkNames() []string {
	return slices.SortedFunc(maps.Keys(checks), func(a, b string) int {
		return cmpQuery(a, b)
	})
}

func cmpQuery(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

// verifyRun is one run of --verify.
type verifyRun struct {
	cfg         nexmark.GeneratorConfig
	parallelism int
	partitions  int
	failures    int // failures to inject
	interval    time.Duration
}

// run runs query c over the configured events, failing failures times at
// chosen event numbers (each once, whatever attempt reaches it), and
// returns the lines to compare and the restarts the job made.
func (v verifyRun) run(ctx context.Context, name string, c check, failures int) ([]string, int, error) {
	dir, err := os.MkdirTemp("", "nexmark-verify-")
	if err != nil {
		return nil, 0, fmt.Errorf("cannot create checkpoint directory: %w", err)
	}
	defer os.RemoveAll(dir)
	env := weir.NewEnvironment(weir.Parallelism(v.parallelism),
		weir.Checkpointing(v.interval, weir.ExactlyOnce),
		weir.CheckpointStorage(dir),
		weir.RestartStrategy(restart.FixedDelay(failures+1, time.Millisecond)))
	in := queries.Events(env, queries.NewSource(v.cfg, v.partitions)).UID("nexmark-source")
	if failures > 0 {
		// The i-th failure comes at the (i+1)/(failures+1) part of the
		// events the job processed so far, counted across attempts.
		var seen atomic.Int64
		at := make([]atomic.Bool, failures)
		step := v.cfg.MaxEvents / int64(failures+1)
		in = weir.MapErr(in, func(e nexmark.Event) (nexmark.Event, error) {
			n := seen.Add(1)
			if n%step == 0 && n/step <= int64(failures) && at[n/step-1].CompareAndSwap(false, true) {
				return e, fmt.Errorf("injected failure %d of %d at the %d-th event processed", n/step, failures, n)
			}
			return e, nil
		}).Name("failures").UID("failures")
	}
	lines := c(in)
	job, err := env.Start(ctx, "nexmark-verify-"+name)
	if err != nil {
		return nil, 0, err
	}
	if err := job.Wait(); err != nil {
		return nil, job.Restarts(), err
	}
	return lines(), job.Restarts(), nil
}

// verifyResult is a row of --verify's table.
type verifyResult struct {
	query            string
	rows             int // lines compared
	restarts         int
	equal            bool
	onlyBase, onlyFO string // a line of either run missing from the other
}

// verify runs every query of names without and with failures and writes a
// table of the comparisons to w; it fails if a run fails or a comparison
// differs.
func verify(ctx context.Context, w io.Writer, v verifyRun, names []string) error {
	fmt.Fprintf(w, "%-6s %10s %8s %9s %9s %s\n", "query", "events", "rows", "failures", "restarts", "equal")
	var bad []string
	for _, name := range names {
		c := checks[name]
		base, _, err := v.run(ctx, name, c, 0)
		if err != nil {
			return fmt.Errorf("%s without failures: %w", name, err)
		}
		fo, restarts, err := v.run(ctx, name, c, v.failures)
		if err != nil {
			return fmt.Errorf("%s with %d failures: %w", name, v.failures, err)
		}
		r := compare(name, base, fo)
		r.restarts = restarts
		fmt.Fprintf(w, "%-6s %10d %8d %9d %9d %t\n", name, v.cfg.MaxEvents, r.rows, v.failures, restarts, r.equal)
		if !r.equal {
			fmt.Fprintf(w, "  only without failures: %s\n  only with failures:    %s\n", r.onlyBase, r.onlyFO)
			bad = append(bad, name)
		}
		if v.failures > 0 && restarts == 0 {
			bad = append(bad, name+" (no failure was injected)")
		}
	}
	if len(bad) > 0 {
		return errors.New("outputs differ with failures: " + strings.Join(bad, ", "))
	}
	return nil
}

// compare compares two runs' lines as multisets.
func compare(name string, base, fo []string) verifyResult {
	count := map[string]int{}
	for _, l := range base {
		count[l]++
	}
	for _, l := range fo {
		count[l]--
	}
	r := verifyResult{query: name, rows: len(base), equal: true}
	for l, n := range count {
		switch {
		case n > 0 && r.onlyBase == "":
			r.onlyBase, r.equal = l, false
		case n < 0 && r.onlyFO == "":
			r.onlyFO, r.equal = l, false
		}
	}
	return r
}
