// Command nexmark runs one Nexmark query on the generator and reports the
// events per second it processed, the figure Nexmark results publish.
// Rows go to a sink that discards them (the reference's blackhole). It
// takes the standard job flags, so it also runs as a cluster:
//
//	go run ./examples/nexmark -query q1 -events 10000000 -parallelism 2
//
// The queries are those package nexmark/queries has: q0 to q22 but q10's
// file sink; "source" runs the generator alone.
//
// With --verify it checks exactly-once results instead: every stateful
// query (or those of -queries) runs twice on the same events into a
// collecting exactly-once sink with checkpoints every
// -checkpoint-interval (default here 20ms): once without failures, once
// with -failures task failures injected at chosen event numbers (each
// once, by a map after the source), and the committed outputs are
// compared as multisets (for updating queries, the final row per key). It
// prints a table of query, events, rows, failures, restarts and whether
// the outputs are equal, and fails if one differs:
//
//	go run ./examples/nexmark --verify -events 100000 -parallelism 2 -queries q3,q5,q7
//
// q12 is not verified (its processing-time windows differ between runs).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/jobflags"
	"github.com/weirstream/weir/nexmark"
	"github.com/weirstream/weir/nexmark/queries"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "nexmark:", err)
		os.Exit(1)
	}
}

func discard[T any](s weir.Stream[T]) { s.SinkTo(weir.DiscardSink[T]{}).Name("blackhole").UID("sink") }

// jobs adds a query and its sink to a job.
var jobs = map[string]func(weir.Stream[nexmark.Event]){
	"source": discard[nexmark.Event],
	"q0":     func(s weir.Stream[nexmark.Event]) { discard(queries.Q0(s)) },
	"q1":     func(s weir.Stream[nexmark.Event]) { discard(queries.Q1(s)) },
	"q2":     func(s weir.Stream[nexmark.Event]) { discard(queries.Q2(s)) },
	"q3":     func(s weir.Stream[nexmark.Event]) { discard(queries.Q3(s)) },
	"q4":     func(s weir.Stream[nexmark.Event]) { discard(queries.Q4(s)) },
	"q5":     func(s weir.Stream[nexmark.Event]) { discard(queries.Q5(s)) },
	"q6":     func(s weir.Stream[nexmark.Event]) { discard(queries.Q6(s)) },
	"q7":     func(s weir.Stream[nexmark.Event]) { discard(queries.Q7(s)) },
	"q8":     func(s weir.Stream[nexmark.Event]) { discard(queries.Q8(s)) },
	"q9":     func(s weir.Stream[nexmark.Event]) { discard(queries.Q9(s)) },
	"q10":    func(s weir.Stream[nexmark.Event]) { discard(queries.Q10(s)) },
	"q11":    func(s weir.Stream[nexmark.Event]) { discard(queries.Q11(s)) },
	"q12":    func(s weir.Stream[nexmark.Event]) { discard(queries.Q12(s)) },
	"q13":    func(s weir.Stream[nexmark.Event]) { discard(queries.Q13(s, nexmark.SideInput())) },
	"q14":    func(s weir.Stream[nexmark.Event]) { discard(queries.Q14(s)) },
	"q15":    func(s weir.Stream[nexmark.Event]) { discard(queries.Q15(s)) },
	"q16":    func(s weir.Stream[nexmark.Event]) { discard(queries.Q16(s)) },
	"q17":    func(s weir.Stream[nexmark.Event]) { discard(queries.Q17(s)) },
	"q18":    func(s weir.Stream[nexmark.Event]) { discard(queries.Q18(s)) },
	"q19":    func(s weir.Stream[nexmark.Event]) { discard(queries.Q19(s)) },
	"q20":    func(s weir.Stream[nexmark.Event]) { discard(queries.Q20(s)) },
	"q21":    func(s weir.Stream[nexmark.Event]) { discard(queries.Q21(s)) },
	"q22":    func(s weir.Stream[nexmark.Event]) { discard(queries.Q22(s)) },
}

func names() string {
	var out []string
	for n := range jobs {
		out = append(out, n)
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

func run(args []string) error {
	fs := flag.NewFlagSet("nexmark", flag.ContinueOnError)
	jf := jobflags.Register(fs)
	query := fs.String("query", "q0", "the query to run: "+names())
	events := fs.Int64("events", 10_000_000, "events to generate")
	partitions := fs.Int("partitions", 0, "source partitions (default: the parallelism)")
	rate := fs.Float64("rate", 10_000, "events per second of event time (sets the events' timestamps)")
	paced := fs.Bool("paced", false, "emit events no faster than their event time (default: as fast as the job goes)")
	seed := fs.Uint64("seed", 1, "generator seed")
	doVerify := fs.Bool("verify", false, "compare each query's exactly-once output with and without injected failures (see -queries, -failures)")
	only := fs.String("queries", "", "with --verify: the queries to verify, comma separated (default: "+strings.Join(checkNames(), ",")+")")
	failures := fs.Int("failures", 3, "with --verify: the task failures to inject")
	if err := jobflags.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *doVerify {
		return runVerify(jf.Parallelism, *partitions, *events, set["events"], *rate, *seed, *only, *failures,
			jf.CheckpointInterval, set["checkpoint-interval"])
	}
	add, ok := jobs[*query]
	if !ok {
		return fmt.Errorf("unknown query %q: want one of %s", *query, names())
	}
	if *events < 1 {
		return fmt.Errorf("--events must be at least 1, got %d", *events)
	}
	cfg := nexmark.DefaultConfig()
	cfg.MaxEvents, cfg.EventsPerSecond, cfg.Seed = *events, *rate, *seed
	if err := cfg.Validate(); err != nil {
		return err
	}
	parts := *partitions
	if parts == 0 {
		parts = max(jf.Parallelism, 1)
	}
	if parts < 1 {
		return fmt.Errorf("--partitions must be at least 1, got %d", parts)
	}
	opts, err := jf.Options("nexmark-" + *query)
	if err != nil {
		return err
	}
	env := weir.NewEnvironment(opts...)
	src := queries.NewSource(cfg, parts)
	src.Paced = *paced
	add(queries.Events(env, src).UID("nexmark-source"))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	if err := env.Execute(ctx, "nexmark-"+*query); err != nil {
		return err
	}
	if jf.Role != "taskmanager" {
		el := time.Since(start)
		fmt.Printf("%s: %d events in %s: %.2f M events/s\n", *query, *events, el.Round(time.Millisecond), float64(*events)/el.Seconds()/1e6)
	}
	return nil
}

// runVerify checks the flags of --verify and runs it.
func runVerify(parallelism, partitions int, events int64, eventsSet bool, rate float64, seed uint64, only string, failures int,
	interval time.Duration, intervalSet bool) error {
	if !eventsSet {
		events = 100_000
	}
	if !intervalSet {
		interval = 20 * time.Millisecond
	}
	if interval <= 0 {
		return fmt.Errorf("--verify needs checkpoints: --checkpoint-interval must be positive, got %v", interval)
	}
	if failures < 0 || int64(failures) >= events {
		return fmt.Errorf("--failures must be in [0, %d), got %d", events, failures)
	}
	if events < 1 {
		return fmt.Errorf("--events must be at least 1, got %d", events)
	}
	names := checkNames()
	if only != "" {
		names = nil
		for _, q := range strings.Split(only, ",") {
			q = strings.TrimSpace(q)
			if _, ok := checks[q]; !ok {
				return fmt.Errorf("--queries: %q is not a stateful query to verify: want some of %s", q, strings.Join(checkNames(), ","))
			}
			names = append(names, q)
		}
	}
	cfg := nexmark.DefaultConfig()
	cfg.MaxEvents, cfg.EventsPerSecond, cfg.Seed = events, rate, seed
	if err := cfg.Validate(); err != nil {
		return err
	}
	if partitions == 0 {
		partitions = parallelism
	}
	if partitions < 1 {
		return fmt.Errorf("--partitions must be at least 1, got %d", partitions)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return verify(ctx, os.Stdout, verifyRun{cfg: cfg, parallelism: parallelism, partitions: partitions, failures: failures, interval: interval}, names)
}
