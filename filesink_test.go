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
	"github.com/weirstream/weir/internal/sinktest"
	"github.com/weirstream/weir/restart"
)

// TestFileSinkConformance runs the exactly-once sink conformance job into
// the file sink with failures around pre-commit and commit; the committed
// files hold every (key, seq) exactly once with cnt = seq, and no
// in-progress or pending file is left.
func TestFileSinkConformance(t *testing.T) {
	for _, mode := range []weir.Mode{weir.ExactlyOnce, weir.AtLeastOnce} {
		for seed := uint64(1); seed <= 3; seed++ {
			t.Run(fmt.Sprintf("%s/seed%d", mode, seed), func(t *testing.T) {
				out := t.TempDir()
				c := weir.FileCommitter(out, ".txt", func(dst []byte, r sinktest.Row) []byte {
					return fmt.Appendf(dst, "%d %d %d\n", r.Key, r.Seq, r.Cnt)
				})
				sinktest.Run(t, c, mode, seed)
				sinktest.Check(t, mode, readRows(t, out))
			})
		}
	}
}

func readRows(t *testing.T, dir string) []sinktest.Row {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	var rows []sinktest.Row
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left behind: %s", e.Name())
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var r sinktest.Row
			if _, err := fmt.Sscanf(sc.Text(), "%d %d %d", &r.Key, &r.Seq, &r.Cnt); err != nil {
				t.Fatalf("%s: bad line %q", e.Name(), sc.Text())
			}
			rows = append(rows, r)
		}
		f.Close()
	}
	return rows
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

// Rolling by size splits an epoch into several part files, all committed
// together: the conformance run still holds every row exactly once.
func TestFileSinkRollsBySize(t *testing.T) {
	out := t.TempDir()
	c := weir.FileCommitterWith(out, weir.FileSinkOptions{Suffix: ".txt", RollSize: 2000}, func(dst []byte, r sinktest.Row) []byte {
		return fmt.Appendf(dst, "%d %d %d\n", r.Key, r.Seq, r.Cnt)
	})
	sinktest.Run(t, c, weir.ExactlyOnce, 4)
	rows := readRows(t, out)
	sinktest.Check(t, weir.ExactlyOnce, rows)
	entries, _ := os.ReadDir(out)
	big := 0
	for _, e := range entries {
		info, _ := e.Info()
		if info.Size() > 2000+64 {
			big++
		}
	}
	if big > 0 || len(entries) < 30 {
		t.Fatalf("%d files over the roll size, %d files in all: not rolled by size", big, len(entries))
	}
}

// The exactly-once file sink across rescaling 2 → 4 → 1: transactions of
// subtasks that no longer exist are committed by a remaining one, and no
// new transaction reuses the name of an old one (a committed file must
// never be overwritten). The last stage also runs under another job name
// ("files"; runUntilCheckpoints names the job "count"), so it must settle
// transactions by the prefix stored in the checkpoint, not one derived
// from its own name: nothing hidden may be left behind. Every number ends
// up in exactly one committed file.
func TestFileSinkRescale(t *testing.T) {
	dir, out := t.TempDir(), t.TempDir()
	const perPartition = 3000
	job := func(p int, opts ...weir.Option) *weir.Environment {
		base := []weir.Option{weir.Parallelism(p), weir.Checkpointing(10*time.Millisecond, weir.ExactlyOnce),
			weir.CheckpointStorage(dir), weir.RestartStrategy(restart.None())}
		env := weir.NewEnvironment(append(base, opts...)...)
		src := weir.FromSource(env, weir.Generator(4, perPartition, func(p int, off int64) int64 { return int64(p)*perPartition + off }).WithRate(5000), "gen").UID("gen")
		src.Rebalance().SinkTo(weir.FileSink(out, ".txt", weir.Lines[int64])).UID("files")
		return env
	}
	for i, p := range []int{2, 4, 1} {
		var opts []weir.Option
		if i > 0 {
			opts = append(opts, weir.Restore("latest"))
		}
		env := job(p, opts...)
		if i < 2 {
			if err := runUntilCheckpoints(env, 3); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := env.Execute(context.Background(), "files"); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[int64]int{}
	entries, _ := os.ReadDir(out)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left behind: %s", e.Name())
			continue
		}
		b, err := os.ReadFile(filepath.Join(out, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Fields(string(b)) {
			var v int64
			fmt.Sscanf(line, "%d", &v)
			seen[v]++
		}
	}
	for v := int64(0); v < 4*perPartition; v++ {
		if seen[v] != 1 {
			t.Fatalf("number %d committed %d times, want once (%d distinct numbers in %d files)", v, seen[v], len(seen), len(entries))
		}
	}
}
