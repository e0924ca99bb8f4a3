package weir_test

import (
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/restart"
	"github.com/weirstream/weir/state/pebblestate"
)

// Checkpoints and savepoints written by earlier builds of weir restore in
// this one: testdata/compat holds a savepoint of each state backend and a
// pebble (incremental, native) checkpoint of compatJob, taken mid-stream
// by the build named in the directory, and TestCompatRestore resumes each
// to the end and checks every state kind came back (see checkCompat).
// When a format changes, add fixtures of the new version beside the old
// ones (never replace them):
//
//	WEIR_WRITE_COMPAT=metadata-v2 go test -run TestCompatWrite .
const compatDir = "testdata/compat"

const (
	compatKeysPerPartition = 4
	compatPerPartition     = 2000
	compatTick             = 10 // ms of event time per offset
)

// compatRec is record off of partition p: key p·4 + off mod 4, the
// (off/4+1)-th record of its key, at event time off·10 ms. Keys belong to
// one partition each, so a key's records arrive in order.
type compatRec struct{ Key, Seq, TS int64 }

func compatGen(p int, off int64) compatRec {
	return compatRec{Key: int64(p)*compatKeysPerPartition + off%compatKeysPerPartition, Seq: off/compatKeysPerPartition + 1, TS: off * compatTick}
}

// compatOut is what the keyed function emits per record: its count (value
// state), how many of the last five sequence numbers it remembers (map
// state), and how many multiples of 100 it has listed (list state).
type compatOut struct{ Key, Seq, Count, MapLen, ListLen int64 }

// compatWin is a window's result: Elems from the window's list of
// records, Count from an aggregate.
type compatWin struct {
	Kind            string
	Key, Start, End int64
	Count           int64
	Seqs            []int64
}

type compatCounter struct {
	count weir.ValueState[int64]
	last  weir.MapState[int64, int64]
	hund  weir.ListState[int64]
}

func (c *compatCounter) Open(ctx *weir.KeyedContext[int64]) (err error) {
	if c.count, err = weir.GetValueState[int64](ctx, "count"); err != nil {
		return err
	}
	if c.last, err = weir.GetMapState[int64, int64](ctx, "last5"); err != nil {
		return err
	}
	c.hund, err = weir.GetListState[int64](ctx, "hundreds")
	return err
}

func (c *compatCounter) ProcessElement(_ *weir.KeyedContext[int64], r compatRec, out weir.Collector[compatOut]) error {
	n, _ := c.count.Value()
	n++
	c.count.Update(n)
	c.last.Put(r.Seq%5, r.Seq)
	if r.Seq%100 == 0 {
		c.hund.Add(r.Seq)
	}
	var m int64
	for range c.last.All() {
		m++
	}
	out.Collect(compatOut{Key: r.Key, Seq: r.Seq, Count: n, MapLen: m, ListLen: int64(len(c.hund.Get()))})
	return nil
}

type compatCount struct{}

func (compatCount) CreateAccumulator() int64         { return 0 }
func (compatCount) Add(_ compatRec, acc int64) int64 { return acc + 1 }
func (compatCount) Result(acc int64) int64           { return acc }
func (compatCount) Merge(a, b int64) int64           { return a + b }

// compatJob: generator (event time) → keyBy → keyed counter with value,
// map and list state; and two 1 s tumbling event-time windows per key, one
// keeping its records, one an aggregate.
func compatJob(dir string, rate float64, opts ...weir.Option) (*weir.Environment, *weir.CollectSink[compatOut], *weir.CollectSink[compatWin]) {
	env := weir.NewEnvironment(append([]weir.Option{weir.Parallelism(2), weir.Checkpointing(50*time.Millisecond, weir.ExactlyOnce),
		weir.CheckpointStorage(dir), weir.RestartStrategy(restart.None())}, opts...)...)
	src := weir.FromSourceWithWatermarks(env, weir.Generator(2, compatPerPartition, compatGen).WithRate(rate),
		weir.ForMonotonousTimestamps[compatRec]().WithTimestampAssigner(func(r compatRec, _ int64) int64 { return r.TS }), "gen").UID("gen")
	keyed := weir.KeyBy(src, func(r compatRec) int64 { return r.Key })
	outs := weir.NewCollectSink[compatOut]()
	weir.Process(keyed, &compatCounter{}).UID("counter").SinkTo(outs).UID("counter-sink")
	wins := weir.NewCollectSink[compatWin]() // one sink for both window operators
	weir.WindowProcess(weir.Window(keyed, weir.TumblingEventTimeWindows(time.Second)),
		weir.ProcessWindowFunc[int64, compatRec, compatWin](func(ctx *weir.WindowContext[int64], elems []compatRec, out weir.Collector[compatWin]) error {
			w := compatWin{Kind: "list", Key: ctx.Key(), Start: ctx.Window().Start, End: ctx.Window().End, Count: int64(len(elems))}
			for _, e := range elems {
				w.Seqs = append(w.Seqs, e.Seq)
			}
			out.Collect(w)
			return nil
		})).UID("window-list").SinkTo(wins).UID("window-list-sink")
	weir.WindowAggregateProcess(weir.Window(keyed, weir.TumblingEventTimeWindows(time.Second)), weir.Aggregator[compatRec, int64, int64](compatCount{}),
		weir.ProcessWindowFunc[int64, int64, compatWin](func(ctx *weir.WindowContext[int64], counts []int64, out weir.Collector[compatWin]) error {
			out.Collect(compatWin{Kind: "agg", Key: ctx.Key(), Start: ctx.Window().Start, End: ctx.Window().End, Count: counts[0]})
			return nil
		})).UID("window-agg").SinkTo(wins).UID("window-agg-sink")
	return env, outs, wins
}

// compatFixtures are the fixtures a build writes, by name, with the
// options of their state backend (a fresh pebble directory each call).
// Names ending in -checkpoint are retained checkpoints, the others
// savepoints.
func compatFixtures(t *testing.T) map[string]func() []weir.Option {
	pebble := func() []weir.Option {
		return []weir.Option{weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: t.TempDir()}))}
	}
	return map[string]func() []weir.Option{
		"heap-savepoint":    func() []weir.Option { return nil },
		"pebble-savepoint":  pebble,
		"pebble-checkpoint": pebble,
	}
}

// TestCompatWrite writes this build's fixtures into testdata/compat/$WEIR_WRITE_COMPAT.
func TestCompatWrite(t *testing.T) {
	version := os.Getenv("WEIR_WRITE_COMPAT")
	if version == "" {
		t.Skip("writes compatibility fixtures only with WEIR_WRITE_COMPAT=<directory name>")
	}
	for name, backend := range compatFixtures(t) {
		dst := filepath.Join(compatDir, version, name)
		if _, err := os.Stat(dst); err == nil {
			t.Fatalf("%s exists: fixtures are never replaced", dst)
		}
		dir := t.TempDir()
		env, outs, _ := compatJob(dir, 400, backend()...)
		job, err := env.Start(context.Background(), "compat")
		if err != nil {
			t.Fatal(err)
		}
		// Mid-stream: every key has counted a few hundred records.
		for len(outs.Committed()) < 2*compatKeysPerPartition*200 {
			select {
			case <-job.Done():
				t.Fatalf("%s: the job ended early: %v", name, job.Wait())
			case <-time.After(5 * time.Millisecond):
			}
		}
		var src string
		if name == "pebble-checkpoint" {
			// A retained checkpoint: cancel right after one completes.
			id := job.LatestCheckpoint() + 1
			waitForCheckpoint(t, job, id)
			job.Cancel()
			_ = job.Wait()
			src = dir
		} else {
			p, err := job.StopWithSavepoint(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := job.Wait(); err != nil {
				t.Fatal(err)
			}
			src = p
		}
		if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
			t.Fatal(err)
		}
		_ = os.Remove(filepath.Join(dst, "_lock"))
		t.Logf("wrote %s from %s", dst, src)
	}
}

// Every fixture restores and runs to the end, into the backend it was
// taken with and, for savepoints, into the other one too.
func TestCompatRestore(t *testing.T) {
	versions, err := os.ReadDir(compatDir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range versions {
		for name := range compatFixtures(t) {
			fixture := filepath.Join(compatDir, v.Name(), name)
			if _, err := os.Stat(fixture); errors.Is(err, fs.ErrNotExist) {
				continue
			}
			targets := []string{"heap", "pebble"}
			if name == "pebble-checkpoint" {
				targets = []string{"pebble"} // a native checkpoint restores into pebble only
			}
			for _, target := range targets {
				n++
				t.Run(v.Name()+"/"+name+"/into-"+target, func(t *testing.T) {
					// A copy: a restore must not change the fixture, and
					// the checkpoint's job may take over its directory.
					tmp := t.TempDir()
					if err := os.CopyFS(tmp, os.DirFS(fixture)); err != nil {
						t.Fatal(err)
					}
					from := tmp
					if name == "pebble-checkpoint" {
						from = "latest"
					}
					opts := []weir.Option{weir.Restore(from)}
					if target == "pebble" {
						opts = append(opts, weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: t.TempDir()})))
					}
					dir := t.TempDir()
					if name == "pebble-checkpoint" {
						dir = tmp
					}
					env, outs, wins := compatJob(dir, 0, opts...)
					if err := env.Execute(context.Background(), "compat"); err != nil {
						t.Fatalf("restoring %s: %v", fixture, err)
					}
					checkCompat(t, outs.Committed(), wins.Committed())
				})
			}
		}
	}
	if n == 0 {
		t.Fatalf("no fixtures in %s", compatDir)
	}
}

// checkCompat checks the output of a job resumed from a fixture taken
// mid-stream. Per key: the records after the restore continue where the
// fixture stopped (the source's offsets) and are counted on top of the
// restored count, map and list; every window from the one of the first
// record after the restore to the last fires once, with all its records
// (those before the fixture included: window contents and timers came
// back).
func checkCompat(t *testing.T, outs []compatOut, wins []compatWin) {
	t.Helper()
	const keys = 2 * compatKeysPerPartition
	const perKey = compatPerPartition / compatKeysPerPartition
	first := map[int64]int64{}
	next := map[int64]int64{}
	for _, o := range outs {
		if _, ok := first[o.Key]; !ok {
			first[o.Key], next[o.Key] = o.Seq, o.Seq
		}
		if o.Seq != next[o.Key] {
			t.Fatalf("key %d: record %d after %d", o.Key, o.Seq, next[o.Key]-1)
		}
		next[o.Key]++
		if o.Count != o.Seq || o.MapLen != min(o.Seq, 5) || o.ListLen != o.Seq/100 {
			t.Fatalf("key %d record %d: count %d, map of %d, list of %d; want %d, %d, %d (state not restored)",
				o.Key, o.Seq, o.Count, o.MapLen, o.ListLen, o.Seq, min(o.Seq, 5), o.Seq/100)
		}
	}
	for k := range int64(keys) {
		if first[k] <= 1 {
			t.Fatalf("key %d starts at record %d after the restore: the fixture was taken mid-stream", k, first[k])
		}
		if next[k] != perKey+1 {
			t.Fatalf("key %d ends at record %d, want %d", k, next[k]-1, perKey)
		}
	}
	// Expected windows: a key's record seq is at offset (seq-1)·4 + key mod
	// 4, so at event time offset·10 ms.
	ts := func(k, seq int64) int64 {
		return ((seq-1)*compatKeysPerPartition + k%compatKeysPerPartition) * compatTick
	}
	for _, kind := range []string{"list", "agg"} {
		for k := range int64(keys) {
			want := map[int64]bool{}
			for seq := first[k]; seq <= perKey; seq++ {
				want[ts(k, seq)/1000*1000] = true
			}
			got := map[int64]compatWin{}
			for _, w := range wins {
				if w.Kind == kind && w.Key == k {
					if _, dup := got[w.Start]; dup {
						t.Fatalf("%s window [%d, %d) of key %d fired twice", kind, w.Start, w.End, k)
					}
					got[w.Start] = w
				}
			}
			for start := range want {
				if _, ok := got[start]; !ok {
					t.Fatalf("%s window at %d of key %d never fired (its timer was not restored); fired: %v", kind, start, k, slices.Sorted(maps.Keys(got)))
				}
			}
			// Windows before the first record's may have been open at
			// the fixture too (the watermark trails): each one that
			// fires holds all its records.
			for start, w := range got {
				var seqs []int64
				for seq := int64(1); seq <= perKey; seq++ {
					if ts(k, seq)/1000*1000 == start {
						seqs = append(seqs, seq)
					}
				}
				if w.Count != int64(len(seqs)) || kind == "list" && !slices.Equal(w.Seqs, seqs) {
					t.Fatalf("%s window at %d of key %d: %d records %v, want %d %v", kind, start, k, w.Count, w.Seqs, len(seqs), seqs)
				}
			}
		}
	}
}

// A savepoint restores under any directory name (the fixtures above are
// named heap-savepoint, not chk-41); an incremental checkpoint moved out
// of its checkpoint directory cannot, and says why.
func TestRelocatedCheckpointNeedsItsRoot(t *testing.T) {
	moved := filepath.Join(t.TempDir(), "my-checkpoint")
	if err := os.CopyFS(moved, os.DirFS(filepath.Join(compatDir, "metadata-v2", "pebble-checkpoint", "chk-16"))); err != nil {
		t.Fatal(err)
	}
	env, _, _ := compatJob(t.TempDir(), 0, weir.Restore(moved), weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: t.TempDir()})))
	err := env.Execute(context.Background(), "compat")
	if err == nil || !strings.Contains(err.Error(), "checkpoint 16 refers to") || !strings.Contains(err.Error(), "shared files of the checkpoint directory it was taken in") ||
		!strings.Contains(err.Error(), "take a savepoint") {
		t.Fatalf("restoring a moved incremental checkpoint: %v", err)
	}
}
