// Command nexmark runs Nexmark queries on the generator and reports, per
// run, the events per second, the CPU seconds the process used (user and
// system, from rusage) and the events per CPU-second. Rows go to a sink
// that counts and discards them (the reference's blackhole); q10's go to
// weir's exactly-once file sink as JSON lines in a temporary directory.
// It takes the standard job flags (checkpoint interval 1s exactly-once by
// default, --state-backend, --parallelism), so it also runs as a
// cluster:
//
//	go run ./examples/nexmark -query q1 -events 10000000 -parallelism 2
//
// --query all runs every query in turn and prints a table; --json prints
// one JSON object per run instead; --output FILE writes the rows of one
// query as JSON lines with the reference's column names (times in ms since
// 1970 UTC; not transactional: rows replayed after a failover repeat);
// --cpuprofile writes a CPU profile. Without --checkpoint-dir, a local
// run keeps its checkpoints in a temporary directory it removes.
//
// The queries are those of package nexmark/queries, q0 to q22; "source"
// runs the generator alone.
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
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/connector/files"
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

// output is where a query's rows go: counted and discarded (the
// reference's blackhole), or, with --output, written as JSON lines.
type output struct {
	rows  atomic.Int64
	lines *jsonLines // nil: discard
	dir   string     // q10's file sink directory
}

// sinkTo ends s in o's sink.
func sinkTo[T any](o *output, s weir.Stream[T]) {
	if o.lines != nil {
		s.SinkTo(jsonSink[T]{out: o.lines, rows: &o.rows}).Name("output").UID("sink")
		return
	}
	s.SinkTo(countingSink[T]{rows: &o.rows}).Name("blackhole").UID("sink")
}

// query adds a query to a job and ends it in o's sink.
func query[T any](q func(weir.Stream[nexmark.Event]) weir.Stream[T]) func(weir.Stream[nexmark.Event], *output) {
	return func(s weir.Stream[nexmark.Event], o *output) { sinkTo(o, q(s)) }
}

// q10 logs the bids into weir's exactly-once file sink as JSON lines,
// partitioned like the reference's file system table: a directory per
// day and, in it, per minute ("dt=2015-07-15/hm=00:01").
func q10(s weir.Stream[nexmark.Event], o *output) {
	rows := queries.Q10(s)
	if o.lines != nil {
		sinkTo(o, rows)
		return
	}
	counted := weir.Map(rows, func(r nexmark.Q10Row) nexmark.Q10Row { return r }).Name("q10-rows")
	counted.SinkTo(files.BucketedSinkWith(o.dir, files.SinkOptions{Suffix: ".jsonl"}, q10Bucket, appendJSONLine[nexmark.Q10Row])).
		Name("q10-files").UID("sink")
}

// q10Bucket is the reference's partition of a row: PARTITIONED BY (dt, hm).
func q10Bucket(r nexmark.Q10Row) string {
	return "dt=" + r.Dt + "/hm=" + r.Hm
}

// appendJSONLine appends r as a JSON line.
func appendJSONLine[T any](dst []byte, r T) []byte {
	b, err := json.Marshal(r)
	if err != nil {
		b = fmt.Appendf(nil, "{\"error\":%q}", err.Error())
	}
	return append(append(dst, b...), '\n')
}

// jobs adds a query and its sink to a job.
var jobs = map[string]func(weir.Stream[nexmark.Event], *output){
	"source": query(func(s weir.Stream[nexmark.Event]) weir.Stream[nexmark.Event] { return s }),
	"q0":     query(queries.Q0),
	"q1":     query(queries.Q1),
	"q2":     query(queries.Q2),
	"q3":     query(queries.Q3),
	"q4":     query(queries.Q4),
	"q5":     query(queries.Q5),
	"q6":     query(queries.Q6),
	"q7":     query(queries.Q7),
	"q8":     query(queries.Q8),
	"q9":     query(queries.Q9),
	"q10":    q10,
	"q11":    query(queries.Q11),
	"q12":    query(queries.Q12),
	"q13": query(func(s weir.Stream[nexmark.Event]) weir.Stream[nexmark.Q13Row] {
		return queries.Q13(s, nexmark.SideInput())
	}),
	"q14": query(queries.Q14),
	"q15": query(queries.Q15),
	"q16": query(queries.Q16),
	"q17": query(queries.Q17),
	"q18": query(queries.Q18),
	"q19": query(queries.Q19),
	"q20": query(queries.Q20),
	"q21": query(queries.Q21),
	"q22": query(queries.Q22),
}

// queryNames are the names of jobs, sorted by query number ("source"
// first).
func queryNames() []string {
	return slices.SortedFunc(maps.Keys(jobs), cmpQuery)
}

func names() string { return strings.Join(queryNames(), " ") }

func run(args []string) error {
	fs := flag.NewFlagSet("nexmark", flag.ContinueOnError)
	jf := jobflags.Register(fs)
	query := fs.String("query", "q0", "the query to run, or all (each in turn, then a table): "+names())
	events := fs.Int64("events", 10_000_000, "events to generate")
	partitions := fs.Int("partitions", 0, "source partitions (default: the parallelism)")
	rate := fs.Float64("rate", 10_000, "events per second of event time (sets the events' timestamps)")
	paced := fs.Bool("paced", false, "emit events no faster than their event time (default: as fast as the job goes)")
	seed := fs.Uint64("seed", 1, "generator seed")
	asJSON := fs.Bool("json", false, "print each run's figures as one JSON object per line")
	outFile := fs.String("output", "", "write the query's rows to this `file` as JSON lines (field names as in the reference SQL; times in ms since 1970 UTC)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the runs to this `file`")
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
	run := []string{*query}
	if *query == "all" {
		run = queryNames()
		if *outFile != "" {
			return errors.New("--output takes the rows of one query, not of --query all")
		}
	} else if _, ok := jobs[*query]; !ok {
		return fmt.Errorf("unknown query %q: want all or one of %s", *query, names())
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
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("cannot create --cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cannot start the CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var results []measurement
	for _, name := range run {
		m, err := runQuery(ctx, jf, name, cfg, parts, *paced, *outFile)
		if err != nil && ctx.Err() != nil {
			// Ctrl-C or SIGTERM: the queries measured so far are
			// printed, and the process exits 0 as a cancelled job does.
			fmt.Fprintf(os.Stderr, "%s: cancelled\n", name)
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if jf.Role == "taskmanager" {
			continue
		}
		results = append(results, m)
		if *asJSON {
			b, _ := json.Marshal(m)
			fmt.Println(string(b))
		} else if len(run) == 1 {
			fmt.Println(m)
		} else {
			fmt.Fprintln(os.Stderr, m)
		}
	}
	if len(run) > 1 && !*asJSON && jf.Role != "taskmanager" {
		printTable(os.Stdout, results)
	}
	return nil
}

// measurement is one run's figures. CPU time is the whole process's
// (user and system, from rusage): the generator, the query, the sink,
// checkpoints and the garbage collector.
type measurement struct {
	Query              string  `json:"query"`
	Events             int64   `json:"events"`
	Rows               int64   `json:"rows"`
	Parallelism        int     `json:"parallelism"`
	StateBackend       string  `json:"state_backend"`
	CheckpointInterval string  `json:"checkpoint_interval"` // "off" without checkpoints
	Checkpoints        int     `json:"checkpoints"`         // completed
	Seconds            float64 `json:"seconds"`
	CPUSeconds         float64 `json:"cpu_seconds"`
	EventsPerSecond    float64 `json:"events_per_second"`
	EventsPerCPUSecond float64 `json:"events_per_cpu_second"`
}

func (m measurement) String() string {
	return fmt.Sprintf("%s: %d events, %d rows in %.2fs: %.3f M events/s; %.2f CPU-s: %.3f M events per CPU-second (parallelism %d, %s state, checkpoints %s: %d)",
		m.Query, m.Events, m.Rows, m.Seconds, m.EventsPerSecond/1e6, m.CPUSeconds, m.EventsPerCPUSecond/1e6,
		m.Parallelism, m.StateBackend, m.CheckpointInterval, m.Checkpoints)
}

// printTable writes the figures of --query all.
func printTable(w io.Writer, ms []measurement) {
	fmt.Fprintf(w, "%-7s %11s %11s %8s %8s %12s %14s %6s\n", "query", "events", "rows", "seconds", "cpu-s", "events/s", "events/cpu-s", "ckpts")
	for _, m := range ms {
		fmt.Fprintf(w, "%-7s %11d %11d %8.2f %8.2f %12.0f %14.0f %6d\n", m.Query, m.Events, m.Rows, m.Seconds, m.CPUSeconds,
			m.EventsPerSecond, m.EventsPerCPUSecond, m.Checkpoints)
	}
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("cannot read the process's CPU time: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// runQuery runs one query to the end of the events and measures it.
// Without --checkpoint-dir a local run keeps its checkpoints in a
// temporary directory, removed afterwards.
func runQuery(ctx context.Context, jf *jobflags.Flags, name string, cfg nexmark.GeneratorConfig, parts int, paced bool, outFile string) (measurement, error) {
	flags := *jf
	var tmp []string
	defer func() {
		for _, d := range tmp {
			os.RemoveAll(d)
		}
	}()
	if flags.CheckpointDir == "" && flags.CheckpointInterval > 0 && (flags.Role == "" || flags.Role == "local") {
		d, err := os.MkdirTemp("", "nexmark-checkpoints-")
		if err != nil {
			return measurement{}, fmt.Errorf("cannot create checkpoint directory: %w", err)
		}
		tmp = append(tmp, d)
		flags.CheckpointDir = d
	}
	opts, err := flags.Options("nexmark-" + name)
	if err != nil {
		return measurement{}, err
	}
	o := &output{}
	if name == "q10" && outFile == "" {
		d, err := os.MkdirTemp("", "nexmark-q10-")
		if err != nil {
			return measurement{}, fmt.Errorf("cannot create q10's output directory: %w", err)
		}
		tmp = append(tmp, d)
		o.dir = d
	}
	var f *os.File
	if outFile != "" {
		if f, err = os.Create(outFile); err != nil {
			return measurement{}, fmt.Errorf("cannot create --output: %w", err)
		}
		defer f.Close()
		o.lines = &jsonLines{}
		o.lines.mu.w = bufio.NewWriterSize(f, 1<<20)
	}
	env := weir.NewEnvironment(opts...)
	src := queries.NewSource(cfg, parts)
	src.Paced = paced
	jobs[name](queries.Events(env, src).UID("nexmark-source"), o)

	cpu0, err := cpuTime()
	if err != nil {
		return measurement{}, err
	}
	start := time.Now()
	job, err := env.Start(ctx, "nexmark-"+name)
	if err != nil {
		return measurement{}, err
	}
	if err := job.Wait(); err != nil {
		return measurement{}, err
	}
	el := time.Since(start)
	cpu1, err := cpuTime()
	if err != nil {
		return measurement{}, err
	}
	if o.lines != nil {
		o.lines.mu.Lock()
		err := o.lines.mu.err
		if err == nil {
			err = o.lines.mu.w.Flush()
		}
		o.lines.mu.Unlock()
		if err == nil {
			err = f.Close()
		}
		if err != nil {
			return measurement{}, fmt.Errorf("cannot write --output: %w", err)
		}
	}
	if o.dir != "" {
		o.rows.Store(countLines(o.dir))
	}
	m := measurement{Query: name, Events: cfg.MaxEvents, Rows: o.rows.Load(), Parallelism: flags.Parallelism,
		StateBackend: cmp.Or(flags.StateBackend, "heap"), CheckpointInterval: "off", Checkpoints: len(job.Checkpoints()),
		Seconds: el.Seconds(), CPUSeconds: (cpu1 - cpu0).Seconds()}
	if flags.CheckpointInterval > 0 {
		m.CheckpointInterval = flags.CheckpointInterval.String() + " " + flags.Mode.String()
	}
	m.EventsPerSecond = float64(m.Events) / m.Seconds
	if m.CPUSeconds > 0 {
		m.EventsPerCPUSecond = float64(m.Events) / m.CPUSeconds
	}
	return m, nil
}

// countLines counts the lines of the committed files under dir, in
// every bucket (-1 if it cannot read them).
func countLines(dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return err
		}
		b, err := os.ReadFile(path)
		n += int64(bytes.Count(b, []byte{'\n'}))
		return err
	})
	if err != nil {
		return -1
	}
	return n
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
