package weir_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/connector/files"
	"github.com/weirstream/weir/internal/sinktest"
	"github.com/weirstream/weir/restart"
	"github.com/weirstream/weir/state/pebblestate"
)

// Failure invariants of event-time windows in the manner of Flink's
// end-to-end DataStreamAllroundTestProgram: every key emits sequence
// numbers 0, 1, 2, ... with growing event timestamps; sliding windows
// (size = 3 × slide) collect them; failures are injected in the job, in
// the window function and around the exactly-once file sink's pre-commit
// and commit. Then:
//
//   - every event lands in exactly size/slide windows;
//   - no window result is committed twice;
//   - nothing is lost: each window holds exactly the sequence numbers
//     whose timestamps it covers, no gap, no duplicate;
//   - the output with failures equals the output of the same job without
//     failures.
//
// Timestamps grow per source partition, so no record is ever late, also
// after a restore (which starts the watermarks over): the output cannot
// depend on when failures happen.

// seqEv is record Seq of key Key at event time TS.
type seqEv struct {
	Key, Seq, TS int64
}

const (
	allroundKeys   = 6 // keys p, p+2, p+4 in partition p of 2
	allroundPerKey = 300
	allroundStep   = 10 // ms between a key's records
	allroundSlide  = 40
	allroundSize   = 3 * allroundSlide
	allroundBase   = 1_000
)

// allroundEvent is record off of partition p: its keys round robin.
func allroundEvent(p int, off int64) seqEv {
	seq := off / 3
	return seqEv{Key: int64(p) + 2*(off%3), Seq: seq, TS: allroundBase + seq*allroundStep}
}

// seqWindow is a window's result: its key and bounds, how many records it
// held, the smallest and largest sequence number, and whether the numbers
// were contiguous without duplicates.
type seqWindow struct {
	Key, Start, End, N, First, Last int64
	Contiguous                      bool
}

func (w seqWindow) line() string {
	return fmt.Sprintf("%d %d %d %d %d %d %t", w.Key, w.Start, w.End, w.N, w.First, w.Last, w.Contiguous)
}

// seqWindowOf is the window function: it sorts the window's sequence
// numbers and says whether they form a range.
func seqWindowOf(ctx *weir.WindowContext[int64], elems []seqEv) seqWindow {
	seqs := make([]int64, len(elems))
	for i, e := range elems {
		seqs[i] = e.Seq
	}
	slices.Sort(seqs)
	ok := true
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			ok = false
		}
	}
	w := ctx.Window()
	return seqWindow{Key: ctx.Key(), Start: w.Start, End: w.End, N: int64(len(seqs)), First: seqs[0], Last: seqs[len(seqs)-1], Contiguous: ok}
}

// expectedSeqWindows are the windows of the allround input: per key, every
// sliding window covering one of its timestamps, with the sequence numbers
// whose timestamps it covers.
func expectedSeqWindows(perKey int64) []string {
	var out []string
	for k := range int64(allroundKeys) {
		seen := map[int64]bool{}
		for seq := range perKey {
			ts := allroundBase + seq*allroundStep
			for start := ts - ts%allroundSlide; start > ts-allroundSize; start -= allroundSlide {
				if seen[start] {
					continue
				}
				seen[start] = true
				end := start + allroundSize
				first := max(0, (start-allroundBase+allroundStep-1)/allroundStep)
				last := min(perKey-1, (end-1-allroundBase)/allroundStep)
				out = append(out, seqWindow{Key: k, Start: start, End: end, N: last - first + 1, First: first, Last: last, Contiguous: true}.line())
			}
		}
	}
	return out
}

// flakyFiles fails the file sink's pre-commit and commit at random: before
// the commit (the crash window after pre-commit) and after it (a crash
// before weir heard of the commit).
type flakyFiles struct {
	weir.TwoPhaseCommitter[string, *files.Txn]
	inj *sinktest.Injector
}

func (f flakyFiles) PreCommit(txn *files.Txn) error {
	if err := f.inj.Maybe("pre-commit", 0.03); err != nil {
		return err
	}
	return f.TwoPhaseCommitter.PreCommit(txn)
}

func (f flakyFiles) Commit(txn *files.Txn) error {
	if err := f.inj.Maybe("before-commit", 0.03); err != nil {
		return err
	}
	if err := f.TwoPhaseCommitter.Commit(txn); err != nil {
		return err
	}
	return f.inj.Maybe("after-commit", 0.03)
}

// readCommittedLines reads the committed files of a file sink's directory
// (one line per record); a hidden file left behind is an error.
func readCommittedLines(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left behind in the sink's directory: %s", e.Name())
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return lines
}

// runAllround runs the allround job into the file sink in out and returns
// how often it restarted and where failures were injected; maxFailures 0
// is the failure-free run.
func runAllround(t *testing.T, out string, maxFailures int, seed uint64, backend ...weir.Option) (int, map[string]int) {
	t.Helper()
	inj := sinktest.NewInjector(seed, maxFailures)
	opts := []weir.Option{weir.Parallelism(2), weir.Checkpointing(15*time.Millisecond, weir.ExactlyOnce),
		weir.CheckpointStorage(t.TempDir()), weir.RestartStrategy(restart.FixedDelay(100, 5*time.Millisecond)),
		weir.AutoWatermarkInterval(2 * time.Millisecond)}
	env := weir.NewEnvironment(append(opts, backend...)...)
	src := weir.FromSourceWithWatermarks(env, weir.Generator(2, 3*allroundPerKey, allroundEvent).WithRate(3000),
		weir.ForMonotonousTimestamps[seqEv]().WithTimestampAssigner(func(e seqEv, _ int64) int64 { return e.TS }), "seq").UID("seq")
	flaky := weir.MapErr(src, func(e seqEv) (seqEv, error) { return e, inj.Maybe("map", 0.002) }).UID("flaky")
	wins := weir.WindowProcess(weir.Window(weir.KeyBy(flaky, func(e seqEv) int64 { return e.Key }),
		weir.SlidingEventTimeWindows(allroundSize*time.Millisecond, allroundSlide*time.Millisecond)),
		weir.ProcessWindowFunc[int64, seqEv, string](func(ctx *weir.WindowContext[int64], elems []seqEv, out weir.Collector[string]) error {
			if err := inj.Maybe("window", 0.004); err != nil {
				return err
			}
			out.Collect(seqWindowOf(ctx, elems).line())
			return nil
		})).UID("windows")
	c := files.Committer(out, ".txt", func(dst []byte, line string) []byte { return append(append(dst, line...), '\n') })
	wins.SinkTo(weir.TwoPhaseCommitSink[string, *files.Txn](flakyFiles{c, inj})).UID("sink")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	job, err := env.Start(ctx, "allround")
	if err != nil {
		t.Fatal(err)
	}
	if err := job.Wait(); err != nil {
		t.Fatalf("job: %v (injected %v)", err, inj.Hits())
	}
	return job.Restarts(), inj.Hits()
}

// checkSeqWindows checks the invariants on committed window lines.
func checkSeqWindows(t *testing.T, what string, lines []string, perKey int64) {
	t.Helper()
	seen := map[string]int{}
	for _, l := range lines {
		if seen[l]++; seen[l] == 2 {
			t.Errorf("%s: window committed twice: %s", what, l)
		}
	}
	// Every record in exactly size/slide windows.
	in := map[[2]int64]int{}
	for _, l := range lines {
		var w seqWindow
		if _, err := fmt.Sscanf(l, "%d %d %d %d %d %d %t", &w.Key, &w.Start, &w.End, &w.N, &w.First, &w.Last, &w.Contiguous); err != nil {
			t.Fatalf("%s: bad line %q: %v", what, l, err)
		}
		if !w.Contiguous || w.N != w.Last-w.First+1 {
			t.Errorf("%s: window %s lost or doubled records", what, l)
		}
		for s := w.First; s <= w.Last; s++ {
			in[[2]int64{w.Key, s}]++
		}
	}
	var wrong int
	for k := range int64(allroundKeys) {
		for s := range perKey {
			if n := in[[2]int64{k, s}]; n != allroundSize/allroundSlide {
				if wrong++; wrong <= 5 {
					t.Errorf("%s: key %d seq %d is in %d windows, want %d", what, k, s, n, allroundSize/allroundSlide)
				}
			}
		}
	}
	sameLines(t, what+": windows against the expected ranges", lines, expectedSeqWindows(perKey))
}

func TestWindowsAllround(t *testing.T) {
	for _, backend := range []string{"heap", "pebble"} {
		t.Run(backend, func(t *testing.T) {
			opts := func() []weir.Option {
				if backend == "pebble" {
					return []weir.Option{weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: t.TempDir()}))}
				}
				return nil
			}
			const seed = 5
			clean, faulty := t.TempDir(), t.TempDir()
			if restarts, _ := runAllround(t, clean, 0, seed, opts()...); restarts != 0 {
				t.Fatalf("the failure-free run restarted %d times", restarts)
			}
			restarts, hits := runAllround(t, faulty, 6, seed, opts()...)
			t.Logf("seed %d: %d restarts, failures injected %v", seed, restarts, hits)
			if restarts == 0 || len(hits) == 0 {
				t.Fatal("no failure was injected: the run proves nothing")
			}
			withoutFailures, withFailures := readCommittedLines(t, clean), readCommittedLines(t, faulty)
			checkSeqWindows(t, "without failures", withoutFailures, allroundPerKey)
			checkSeqWindows(t, "with failures", withFailures, allroundPerKey)
			sameLines(t, "with failures against without", withFailures, withoutFailures)
		})
	}
}

// epochSink is a CollectSink that also records, for the writers of a
// job's first attempt, which checkpoint each record belongs to: the
// records written before the barrier of checkpoint id are epoch id.
type epochSink struct {
	*weir.CollectSink[string]
	mu     sync.Mutex
	epochs map[checkpoint.ID][]string
}

func newEpochSink() *epochSink {
	return &epochSink{CollectSink: weir.NewCollectSink[string](), epochs: map[checkpoint.ID][]string{}}
}

// before returns the first attempt's records of the epochs up to id: what
// the job emitted before the barrier of checkpoint id.
func (s *epochSink) before(id checkpoint.ID) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for e, recs := range s.epochs {
		if e <= id {
			out = append(out, recs...)
		}
	}
	return out
}

func (s *epochSink) CreateWriter(ctx weir.SinkContext) (weir.SinkWriter[string], error) {
	w, err := s.CollectSink.CreateWriter(ctx)
	if err != nil {
		return nil, err
	}
	return &epochWriter{SinkWriter: w, s: s, record: ctx.Attempt == 0 && !ctx.Restored}, nil
}

type epochWriter struct {
	weir.SinkWriter[string]
	s       *epochSink
	record  bool
	pending []string
}

func (w *epochWriter) Write(r string) error {
	if w.record {
		w.pending = append(w.pending, r)
	}
	return w.SinkWriter.Write(r)
}

func (w *epochWriter) SnapshotState(id checkpoint.ID) ([][]byte, error) {
	w.s.mu.Lock()
	w.s.epochs[id] = append(w.s.epochs[id], w.pending...)
	w.s.mu.Unlock()
	w.pending = nil
	return w.SinkWriter.(weir.SnapshottingWriter).SnapshotState(id)
}

func (w *epochWriter) NotifyCheckpointComplete(id checkpoint.ID) error {
	return w.SinkWriter.(weir.CheckpointListener).NotifyCheckpointComplete(id)
}

func (w *epochWriter) NotifyCheckpointAborted(id checkpoint.ID) error {
	return w.SinkWriter.(weir.CheckpointListener).NotifyCheckpointAborted(id)
}

func (w *epochWriter) Finish() error { return w.SinkWriter.(weir.Finisher).Finish() }

// savepointJob is the allround windows (no random failures) into sink:
// at rate records per second per partition (0: unbounded); the map fails
// once when failNow is set. minOff records the smallest offset each
// source partition read.
func savepointJob(sink weir.Sink[string], dir string, rate float64, failNow, failed *atomic.Bool, minOff *[2]atomic.Int64, opts ...weir.Option) *weir.Environment {
	base := []weir.Option{weir.Parallelism(2), weir.Checkpointing(20*time.Millisecond, weir.ExactlyOnce),
		weir.CheckpointStorage(dir), weir.RestartStrategy(restart.FixedDelay(3, 5*time.Millisecond)),
		weir.AutoWatermarkInterval(2 * time.Millisecond)}
	env := weir.NewEnvironment(append(base, opts...)...)
	gen := weir.Generator(2, 3*allroundPerKey, func(p int, off int64) seqEv {
		for {
			m := minOff[p].Load()
			if off >= m || minOff[p].CompareAndSwap(m, off) {
				break
			}
		}
		return allroundEvent(p, off)
	}).WithRate(rate)
	src := weir.FromSourceWithWatermarks(env, gen,
		weir.ForMonotonousTimestamps[seqEv]().WithTimestampAssigner(func(e seqEv, _ int64) int64 { return e.TS }), "seq").UID("seq")
	flaky := weir.MapErr(src, func(e seqEv) (seqEv, error) {
		if failNow.Load() && failed.CompareAndSwap(false, true) {
			return e, errors.New("injected failure after the savepoint")
		}
		return e, nil
	}).UID("flaky")
	weir.WindowProcess(weir.Window(weir.KeyBy(flaky, func(e seqEv) int64 { return e.Key }),
		weir.SlidingEventTimeWindows(allroundSize*time.Millisecond, allroundSlide*time.Millisecond)),
		weir.ProcessWindowFunc[int64, seqEv, string](func(ctx *weir.WindowContext[int64], elems []seqEv, out weir.Collector[string]) error {
			out.Collect(seqWindowOf(ctx, elems).line())
			return nil
		})).UID("windows").SinkTo(sink).UID("sink")
	return env
}

func newMinOff() *[2]atomic.Int64 {
	var m [2]atomic.Int64
	m[0].Store(math.MaxInt64)
	m[1].Store(math.MaxInt64)
	return &m
}

// savepointThenFailure runs savepointJob at rate records/s per partition:
// it takes a savepoint once a window fired, then fails once after a later
// checkpoint and recovers. It returns the sink and the savepoint, or why
// the run proves nothing (the input ended before the savepoint, the later
// checkpoint or the failure).
func savepointThenFailure(t *testing.T, ctx context.Context, rate float64, opts []weir.Option) (*epochSink, string, checkpoint.ID, string) {
	t.Helper()
	var failNow, failed atomic.Bool
	first := newEpochSink()
	job, err := savepointJob(first, t.TempDir(), rate, &failNow, &failed, newMinOff(), opts...).Start(ctx, "windows")
	if err != nil {
		t.Fatal(err)
	}
	ended := func(what string) string {
		if err := job.Wait(); err != nil {
			t.Fatalf("job: %v", err)
		}
		return "the input ended before " + what
	}
	waitFor := func(what string, ok func() bool) bool {
		for !ok() {
			select {
			case <-job.Done():
				return false
			case <-time.After(2 * time.Millisecond):
			}
		}
		return true
	}
	if !waitFor("checkpoint 2", func() bool { return job.LatestCheckpoint() >= 2 }) {
		return nil, "", 0, ended("checkpoint 2")
	}
	// A window fired: the savepoint comes after it.
	if !waitFor("a window", func() bool { return len(first.Written()) > 0 }) {
		return nil, "", 0, ended("a window fired")
	}
	sp, err := job.TriggerSavepoint(ctx)
	if err != nil {
		select {
		case <-job.Done():
			return nil, "", 0, ended("the savepoint")
		default:
		}
		t.Fatalf("savepoint: %v", err)
	}
	var spID checkpoint.ID
	for _, c := range job.Checkpoints() {
		if c.Kind == checkpoint.KindSavepoint && c.Completed {
			spID = c.ID
		}
	}
	if spID == 0 {
		t.Fatalf("savepoint %s is not among the job's completed checkpoints", sp)
	}
	if !waitFor("a checkpoint after the savepoint", func() bool { return job.LatestCheckpoint() > spID }) {
		return nil, "", 0, ended("a checkpoint after the savepoint")
	}
	failNow.Store(true)
	if err := job.Wait(); err != nil {
		t.Fatalf("job: %v", err)
	}
	if !failed.Load() {
		return nil, "", 0, "the input ended before the injected failure"
	}
	if job.Restarts() != 1 {
		t.Fatalf("failure injected, restarts %d, want 1", job.Restarts())
	}
	return first, sp, spID, ""
}

// A windowed job takes a savepoint while windows are open, then fails
// after a later checkpoint and recovers from that checkpoint; a new job
// restores the savepoint, twice, one after the other. The failed-over
// job's output, and the savepoint's prefix of the first job plus each
// restored job's output, equal the output of a run without failure; the
// two restores of the savepoint emit the same.
func TestWindowsSavepointThenFailure(t *testing.T) {
	for _, backend := range []string{"heap", "pebble"} {
		t.Run(backend, func(t *testing.T) {
			opts := func() []weir.Option {
				if backend == "pebble" {
					return []weir.Option{weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: t.TempDir()}))}
				}
				return nil
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			var never, unused atomic.Bool

			// The reference: no savepoint, no failure.
			ref := newEpochSink()
			if err := savepointJob(ref, t.TempDir(), 0, &never, &unused, newMinOff(), opts()...).Execute(ctx, "windows"); err != nil {
				t.Fatal(err)
			}
			want := ref.Committed()
			checkSeqWindows(t, "reference run", want, allroundPerKey)

			// The savepoint, then a failure after a later checkpoint. On a
			// loaded machine the paced input can end before all of that
			// happened: the attempt then proves nothing and is repeated
			// with slower input.
			var (
				first *epochSink
				sp    string
				spID  checkpoint.ID
			)
			for attempt, rate := 1, 100.0; ; attempt, rate = attempt+1, rate/2 {
				var why string
				first, sp, spID, why = savepointThenFailure(t, ctx, rate, opts())
				if why == "" {
					break
				}
				if attempt == 4 {
					t.Fatalf("attempt %d at %.0f records/s: %s: the run proves nothing", attempt, rate, why)
				}
				t.Logf("attempt %d at %.0f records/s: %s; again, slower", attempt, rate, why)
			}
			checkSeqWindows(t, "failed over after the savepoint", first.Committed(), allroundPerKey)
			sameLines(t, "failed over after the savepoint against the reference", first.Committed(), want)
			prefix := first.before(spID)
			if len(prefix) == 0 || len(prefix) >= len(want) {
				t.Fatalf("the savepoint (checkpoint %d) came after %d of %d windows: not mid-run", spID, len(prefix), len(want))
			}

			// Restore the savepoint twice.
			var restored [2][]string
			for i := range restored {
				sink, minOff := newEpochSink(), newMinOff()
				if err := savepointJob(sink, t.TempDir(), 0, &never, &unused, minOff, append(opts(), weir.Restore(sp))...).Execute(ctx, "windows"); err != nil {
					t.Fatalf("restore %d of savepoint %s: %v", i+1, sp, err)
				}
				restored[i] = sink.Committed()
				sameLines(t, fmt.Sprintf("restore %d: the savepoint's prefix plus the restored output against the reference", i+1),
					append(slices.Clone(prefix), restored[i]...), want)
				// Some window emitted after the restore holds records read
				// before the savepoint: open windows were restored.
				var straddling int
				for _, l := range restored[i] {
					var w seqWindow
					fmt.Sscanf(l, "%d %d %d %d %d %d %t", &w.Key, &w.Start, &w.End, &w.N, &w.First, &w.Last, &w.Contiguous)
					if read := minOff[w.Key%2].Load(); read != math.MaxInt64 && w.First < read/3 {
						straddling++
					}
				}
				if straddling == 0 {
					t.Errorf("restore %d: no window holds records from before the savepoint: were windows open?", i+1)
				}
				t.Logf("restore %d of savepoint %d: %d windows, %d of them opened before the savepoint; %d windows before it", i+1, spID, len(restored[i]), straddling, len(prefix))
			}
			sameLines(t, "second restore of the savepoint against the first", restored[1], restored[0])
		})
	}
}
