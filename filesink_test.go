package weir_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/restart"
)

// flakyCommitter fails pre-commits and commits at random: before the
// commit (the crash window between pre-commit and commit) and after it (a
// crash after the rename, before weir heard of it).
type flakyCommitter struct {
	weir.TwoPhaseCommitter[seqOut, *weir.FileTxn]
	inj *injector
}

func (c flakyCommitter) PreCommit(txn *weir.FileTxn) error {
	if err := c.inj.maybe("pre-commit", 0.03); err != nil {
		return err
	}
	return c.TwoPhaseCommitter.PreCommit(txn)
}

func (c flakyCommitter) Commit(txn *weir.FileTxn) error {
	if err := c.inj.maybe("before-commit", 0.05); err != nil {
		return err
	}
	if err := c.TwoPhaseCommitter.Commit(txn); err != nil {
		return err
	}
	return c.inj.maybe("after-commit", 0.05)
}

// fileCommitterOf digs the committer out of FileSink for wrapping.
func fileCommitter(dir string) weir.TwoPhaseCommitter[seqOut, *weir.FileTxn] {
	return weir.FileCommitter[seqOut](dir, ".txt", func(dst []byte, o seqOut) []byte {
		return fmt.Appendf(dst, "%d %d %d\n", o.Key, o.Seq, o.Cnt)
	})
}

// TestFileSinkExactlyOnce runs sequence-numbered records through a keyed
// counter into the file sink while failures hit the map, the pre-commit,
// and both sides of the commit; the committed files hold every (key, seq)
// exactly once with cnt = seq, and no in-progress or pending file is left.
func TestFileSinkExactlyOnce(t *testing.T) {
	for _, mode := range []weir.Mode{weir.ExactlyOnce, weir.AtLeastOnce} {
		for seed := uint64(1); seed <= 3; seed++ {
			t.Run(fmt.Sprintf("%s/seed%d", mode, seed), func(t *testing.T) { runFileSink(t, mode, seed) })
		}
	}
}

func runFileSink(t *testing.T, mode weir.Mode, seed uint64) {
	const keys, perKey = 4, 2000
	out := t.TempDir()
	inj := newInjector(seed, 10)
	env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(10*time.Millisecond, mode),
		weir.CheckpointStorage(t.TempDir()), weir.RestartStrategy(restart.FixedDelay(100, time.Millisecond)), weir.BufferSize(64))
	gen := weir.Generator(keys, perKey, func(p int, off int64) seqRec { return seqRec{Key: int64(p), Seq: off + 1} }).WithRate(15000)
	src := weir.FromSource[seqRec](env, gen, "seq").UID("src")
	mapped := weir.MapErr(src, func(r seqRec) (seqRec, error) { return r, inj.maybe("map", 0.0003) }).UID("map")
	counted := weir.Process(weir.KeyBy(mapped, func(r seqRec) int64 { return r.Key }), &counter{}).UID("count")
	counted.SinkTo(weir.TwoPhaseCommitSink[seqOut, *weir.FileTxn](flakyCommitter{fileCommitter(out), inj})).UID("files")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	job, err := env.Start(ctx, "filesink")
	if err != nil {
		t.Fatal(err)
	}
	if err := job.Wait(); err != nil {
		t.Fatalf("job: %v (injected %v)", err, inj.injected())
	}
	t.Logf("injected %v, restarts %d", inj.injected(), job.Restarts())
	if job.Restarts() == 0 {
		t.Fatal("no failure injected")
	}
	entries, _ := os.ReadDir(out)
	seen := map[[2]int64][]int64{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left behind: %s", e.Name())
			continue
		}
		f, err := os.Open(filepath.Join(out, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var k, s, c int64
			if _, err := fmt.Sscanf(sc.Text(), "%d %d %d", &k, &s, &c); err != nil {
				t.Fatalf("%s: bad line %q", e.Name(), sc.Text())
			}
			seen[[2]int64{k, s}] = append(seen[[2]int64{k, s}], c)
		}
		f.Close()
	}
	var lost, dups, bad int
	for k := int64(0); k < keys; k++ {
		for s := int64(1); s <= perKey; s++ {
			cs := seen[[2]int64{k, s}]
			switch {
			case len(cs) == 0:
				lost++
			case len(cs) > 1:
				dups++
			case cs[0] != s:
				bad++
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d records lost", lost)
	}
	if mode == weir.ExactlyOnce && (dups > 0 || bad > 0) {
		t.Errorf("exactly once: %d duplicated, %d with a count that is not their sequence number", dups, bad)
	}
}

// Without checkpointing the file sink commits once, at the end of input.
func TestFileSinkWithoutCheckpoints(t *testing.T) {
	out := t.TempDir()
	env := weir.NewEnvironment()
	weir.FromSlice(env, []string{"a", "b", "c"}).SinkTo(weir.FileSink(out, ".txt", weir.Lines[string])).UID("files")
	if err := env.Execute(context.Background(), "files"); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != 1 || strings.HasPrefix(entries[0].Name(), ".") {
		t.Fatalf("files: %v", entries)
	}
	b, _ := os.ReadFile(filepath.Join(out, entries[0].Name()))
	if string(b) != "a\nb\nc\n" {
		t.Fatalf("content %q", b)
	}
}
