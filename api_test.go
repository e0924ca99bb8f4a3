package weir_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/connector/files"
	"github.com/weirstream/weir/connector/socket"
	"github.com/weirstream/weir/internal/leaktest"
	"github.com/weirstream/weir/restart"
)

// TestMain fails the package when goroutines outlive the tests: every
// task, driver and snapshot goroutine must be stopped and awaited.
func TestMain(m *testing.M) { leaktest.Main(m) }

func sorted[T any](xs []T, less func(a, b T) int) []T {
	out := slices.Clone(xs)
	slices.SortFunc(out, less)
	return out
}

func cmpInt(a, b int) int { return a - b }

// The transformations compute what they promise, across parallelism
// changes and every partitioning.
func TestTransformations(t *testing.T) {
	env := weir.NewEnvironment(weir.Parallelism(3))
	nums := weir.FromSlice(env, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	doubled := weir.Map(nums, func(n int) int { return n * 2 })
	evens := weir.Filter(doubled, func(n int) bool { return n%4 == 0 })
	split := weir.FlatMap(evens, func(n int, out weir.Collector[int]) {
		out.Collect(n)
		out.Collect(-n)
	})
	mapSink := weir.NewCollectSink[int]()
	split.SinkTo(mapSink)

	other := weir.FromSlice(env, []int{100, 200})
	union := weir.Union(nums, other).Rebalance()
	unionSink := weir.NewCollectSink[int]()
	union.SinkTo(unionSink)

	// A union of a stream with itself: two edges between the same vertices.
	selfSink := weir.NewCollectSink[int]()
	weir.Union(evens, evens).SinkTo(selfSink)

	bc := weir.FromSlice(env, []int{7}).Broadcast()
	bcSink := weir.NewCollectSink[int]()
	weir.Map(bc, func(n int) int { return n }).SetParallelism(3).SinkTo(bcSink)

	words := weir.FromSlice(env, strings.Fields("a b a c b a"))
	reduced := weir.Reduce(weir.KeyBy(weir.Map(words, func(w string) weir.KV[string, int] { return weir.KV[string, int]{Key: w, Value: 1} }),
		func(kv weir.KV[string, int]) string { return kv.Key }),
		func(acc, in weir.KV[string, int]) weir.KV[string, int] {
			return weir.KV[string, int]{Key: acc.Key, Value: acc.Value + in.Value}
		})
	reduceSink := weir.NewCollectSink[weir.KV[string, int]]()
	reduced.SinkTo(reduceSink)

	if err := env.Execute(context.Background(), "transformations"); err != nil {
		t.Fatal(err)
	}
	if got, want := sorted(mapSink.Committed(), cmpInt), []int{-20, -16, -12, -8, -4, 4, 8, 12, 16, 20}; !slices.Equal(got, want) {
		t.Errorf("map/filter/flatMap: %v, want %v", got, want)
	}
	if got, want := sorted(unionSink.Committed(), cmpInt), []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 100, 200}; !slices.Equal(got, want) {
		t.Errorf("union: %v, want %v", got, want)
	}
	if got, want := sorted(selfSink.Committed(), cmpInt), []int{4, 4, 8, 8, 12, 12, 16, 16, 20, 20}; !slices.Equal(got, want) {
		t.Errorf("union with itself: %v, want %v", got, want)
	}
	if got := bcSink.Committed(); !slices.Equal(got, []int{7, 7, 7}) {
		t.Errorf("broadcast to 3 subtasks: %v", got)
	}
	final := map[string]int{}
	for _, kv := range reduceSink.Committed() {
		final[kv.Key] = max(final[kv.Key], kv.Value)
	}
	if final["a"] != 3 || final["b"] != 2 || final["c"] != 1 {
		t.Errorf("reduce: %v", final)
	}
}

// Print prefixes the subtask number when the sink is parallel.
func TestPrint(t *testing.T) {
	var out strings.Builder
	env := weir.NewEnvironment(weir.Parallelism(2), weir.Stdout(&out))
	weir.FromSource(env, weir.Generator(2, 2, func(p int, off int64) string { return fmt.Sprintf("p%d-%d", p, off) }), "gen").Print()
	if err := env.Execute(context.Background(), "print"); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	sort.Strings(lines)
	want := []string{"1> p0-0", "1> p0-1", "2> p1-0", "2> p1-1"}
	if !slices.Equal(lines, want) {
		t.Fatalf("printed %q, want %q", lines, want)
	}
}

// The text file source resumes at its checkpointed byte offset: a failure
// after a checkpoint neither loses nor repeats committed lines.
func TestTextFileSourceRestore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "in.txt")
	var content strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&content, "line %d\r\n", i)
	}
	os.WriteFile(path, []byte(content.String()+"last line without newline"), 0o644)
	env := weir.NewEnvironment(weir.Checkpointing(5*time.Millisecond, weir.ExactlyOnce), weir.CheckpointStorage(t.TempDir()),
		weir.RestartStrategy(restart.FixedDelay(3, 0)), weir.BufferSize(16))
	failed := false
	lines := files.TextFile(env, path)
	slow := weir.MapErr(lines, func(s string) (string, error) {
		if s == "line 1500" && !failed {
			failed = true
			return "", fmt.Errorf("injected")
		}
		if strings.HasSuffix(s, "00") {
			time.Sleep(2 * time.Millisecond) // let checkpoints happen mid-file
		}
		return s, nil
	})
	sink := weir.NewCollectSink[string]()
	slow.SinkTo(sink)
	job, err := env.Start(context.Background(), "file")
	if err != nil {
		t.Fatal(err)
	}
	if err := job.Wait(); err != nil {
		t.Fatal(err)
	}
	if job.Restarts() != 1 {
		t.Fatalf("restarts %d, want 1", job.Restarts())
	}
	got := sink.Committed()
	if len(got) != 2001 {
		t.Fatalf("%d lines committed, want 2001", len(got))
	}
	for i := range 2000 {
		if got[i] != fmt.Sprintf("line %d", i) {
			t.Fatalf("line %d is %q", i, got[i])
		}
	}
	if got[2000] != "last line without newline" {
		t.Fatalf("last line %q", got[2000])
	}
}

// The socket source reads lines until the server closes the connection.
func TestSocketTextStream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		w := bufio.NewWriter(c)
		for i := range 100 {
			fmt.Fprintf(w, "msg %d\n", i)
		}
		w.Flush()
		c.Close()
	}()
	env := weir.NewEnvironment()
	sink := weir.NewCollectSink[string]()
	socket.TextStream(env, ln.Addr().String()).SinkTo(sink)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := env.Execute(ctx, "socket"); err != nil {
		t.Fatal(err)
	}
	if got := sink.Committed(); len(got) != 100 || got[99] != "msg 99" {
		t.Fatalf("got %d lines", len(got))
	}
	// An unreachable server is a clear error.
	env = weir.NewEnvironment()
	socket.TextStream(env, "127.0.0.1:1").Print()
	if err := env.Execute(ctx, "socket"); err == nil || !strings.Contains(err.Error(), "cannot connect to socket source 127.0.0.1:1") {
		t.Fatalf("unreachable: %v", err)
	}
}

// A panic in user code fails the task and, with a restart strategy, the
// job recovers; without one it fails with the panic in the error.
func TestPanicInUserCode(t *testing.T) {
	env := weir.NewEnvironment()
	weir.Map(weir.FromSlice(env, []int{1, 2, 3}), func(n int) int {
		if n == 2 {
			panic("boom")
		}
		return n
	}).Print()
	err := env.Execute(context.Background(), "panic")
	if err == nil || !strings.Contains(err.Error(), "panicked: boom") {
		t.Fatalf("got %v", err)
	}
}

// After a rescale down, CollectSink commits the epochs that subtasks which
// no longer exist pre-committed at the restored checkpoint, and drops later
// ones.
func TestCollectSinkRescaleDown(t *testing.T) {
	c := weir.NewCollectSink[int]()
	w, err := c.CreateWriter(weir.SinkContext{Subtask: 1, Parallelism: 2, Checkpointing: true})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(5)
	w.(weir.SnapshottingWriter).SnapshotState(3)
	w.Write(6)
	w.(weir.SnapshottingWriter).SnapshotState(4) // never completes
	if _, err := c.CreateWriter(weir.SinkContext{Subtask: 0, Parallelism: 1, Checkpointing: true, Restored: true, RestoredCheckpoint: 3}); err != nil {
		t.Fatal(err)
	}
	if got := c.Committed(); len(got) != 1 || got[0] != 5 {
		t.Fatalf("committed %v, want [5]", got)
	}
}
