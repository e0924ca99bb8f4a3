package weir_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/internal/sinktest"
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
