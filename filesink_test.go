package weir_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/connector/files"
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
				c := files.Committer(out, ".txt", func(dst []byte, r sinktest.Row) []byte {
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
	weir.FromSlice(env, []string{"a", "b", "c"}).SinkTo(files.Sink(out, ".txt", files.Lines[string])).UID("files")
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
	c := files.CommitterWith(out, files.SinkOptions{Suffix: ".txt", RollSize: 2000}, func(dst []byte, r sinktest.Row) []byte {
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
		src.Rebalance().SinkTo(files.Sink(out, ".txt", files.Lines[int64])).UID("files")
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

// A savepoint that does not stop the job, then a task failure before the
// next checkpoint: no duplicates, no loss, and no committed file is ever
// renamed over or changed (small parts, so many files exist). Before
// savepoints stopped committing, the savepoint's files were committed,
// the failover replayed them, and later transactions reused their names.
func TestFileSinkSavepointThenFailure(t *testing.T) {
	out := t.TempDir()
	c := files.CommitterWith(out, files.SinkOptions{Suffix: ".txt", RollSize: 300}, func(dst []byte, r sinktest.Row) []byte {
		return fmt.Appendf(dst, "%d %d %d\n", r.Key, r.Seq, r.Cnt)
	})
	sinktest.SavepointThenFailure(t, c, func() ([]string, error) { return committedFiles(out) }, func() []sinktest.Row { return readRows(t, out) })
}

// committedFiles lists the committed files of dir with a hash of their
// content.
func committedFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, fmt.Sprintf("%s:%x", e.Name(), sha256.Sum256(b)))
	}
	return out, nil
}

// The file sink never renames onto a committed file: a commit whose final
// name exists fails loudly, and the committed file keeps its content.
func TestFileSinkRefusesToReplaceCommittedFile(t *testing.T) {
	dir := t.TempDir()
	c := files.Committer(dir, ".txt", files.Lines[int])
	tc := weir.TxnContext{Prefix: "weir-j-s-0", Seq: 7}
	txn, err := c.Begin(tc)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Write(txn, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.PreCommit(txn); err != nil {
		t.Fatal(err)
	}
	final := filepath.Join(dir, tc.Name()+".0.txt")
	if err := os.WriteFile(final, []byte("committed earlier\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = c.Commit(txn)
	if err == nil || !strings.Contains(err.Error(), "never replaced") {
		t.Fatalf("commit onto a committed file: %v", err)
	}
	if b, _ := os.ReadFile(final); string(b) != "committed earlier\n" {
		t.Fatalf("the committed file changed: %q", b)
	}
	// A commit interrupted between its link and its removal finishes.
	txn2, _ := c.Begin(weir.TxnContext{Prefix: "weir-j-s-0", Seq: 8})
	c.Write(txn2, 2)
	if err := c.PreCommit(txn2); err != nil {
		t.Fatal(err)
	}
	pending := filepath.Join(dir, ".weir-j-s-0-8.0.pending")
	final2 := filepath.Join(dir, "weir-j-s-0-8.0.txt")
	if err := os.Link(pending, final2); err != nil {
		t.Fatal(err)
	}
	if err := c.Commit(txn2); err != nil {
		t.Fatalf("finishing an interrupted commit: %v", err)
	}
	if _, err := os.Stat(pending); !os.IsNotExist(err) {
		t.Fatalf("pending file left: %v", err)
	}
	// A transaction whose files are gone is lost, not committed.
	txn3, _ := c.Begin(weir.TxnContext{Prefix: "weir-j-s-0", Seq: 9})
	c.Write(txn3, 3)
	c.PreCommit(txn3)
	os.Remove(filepath.Join(dir, ".weir-j-s-0-9.0.pending"))
	if err := c.Commit(txn3); !errors.Is(err, weir.ErrTransactionLost) {
		t.Fatalf("commit of a lost transaction: %v", err)
	}
}
