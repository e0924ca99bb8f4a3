package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/jobflags"
	"github.com/weirstream/weir/nexmark"
	"github.com/weirstream/weir/nexmark/queries"
	"github.com/weirstream/weir/nexmark/reference"
)

// Every query runs to the end of a small input, at parallelism 2.
func TestRunsEveryQuery(t *testing.T) {
	for q := range jobs {
		if err := run([]string{"--query", q, "--events", "5000", "--parallelism", "2", "--checkpoint-interval", "0"}); err != nil {
			t.Errorf("%s: %v", q, err)
		}
	}
}

func TestUnknownQuery(t *testing.T) {
	err := run([]string{"--query", "q99", "--checkpoint-interval", "0"})
	if err == nil || !strings.Contains(err.Error(), "q99") {
		t.Fatalf("run q99: %v", err)
	}
}

// --verify runs windowed, joining and updating queries with and without
// injected failures, and their committed outputs are equal.
func TestVerify(t *testing.T) {
	err := run([]string{"--verify", "--events", "20000", "--rate", "200", "--parallelism", "2", "--failures", "2",
		"--queries", "q4,q5,q7,q8,q11,q17"})
	if err != nil {
		t.Fatal(err)
	}
}

// The outputs compare as multisets: a missing, an extra or a repeated
// row is a difference.
func TestCompare(t *testing.T) {
	if r := compare("q", []string{"a", "b", "b"}, []string{"b", "a", "b"}); !r.equal {
		t.Errorf("equal multisets differ: %+v", r)
	}
	if r := compare("q", []string{"a", "b"}, []string{"a", "b", "b"}); r.equal || r.onlyFO != "b" {
		t.Errorf("a repeated row: %+v", r)
	}
	if r := compare("q", []string{"a", "c"}, []string{"a"}); r.equal || r.onlyBase != "c" {
		t.Errorf("a missing row: %+v", r)
	}
}

func TestVerifyFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--verify", "--queries", "q0"},
		{"--verify", "--queries", "q12"},
		{"--verify", "--checkpoint-interval", "0"},
		{"--verify", "--events", "10", "--failures", "10"},
	} {
		if err := run(args); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

// --output writes one JSON object per row, with the reference's column
// names: q2's rows are the reference's q2 rows of the same events.
func TestOutputJSONLines(t *testing.T) {
	out := filepath.Join(t.TempDir(), "q2.jsonl")
	if err := run([]string{"--query", "q2", "--events", "20000", "--parallelism", "2", "--checkpoint-interval", "0", "--output", out}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var got []nexmark.Q2Row
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		var m map[string]int64
		if err := json.Unmarshal([]byte(line), &m); err != nil || len(m) != 2 {
			t.Fatalf("line %q: %v, want an object of auction and price", line, err)
		}
		got = append(got, nexmark.Q2Row{Auction: m["auction"], Price: m["price"]})
	}
	cfg := nexmark.DefaultConfig()
	cfg.MaxEvents, cfg.Seed, cfg.EventsPerSecond = 20000, 1, 10_000
	g, err := nexmark.NewGenerator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	events := make([]nexmark.Event, cfg.MaxEvents)
	for n := range events {
		events[n] = g.Event(int64(n))
	}
	want := reference.Q2(events)
	slices.SortFunc(got, nexmark.Q2Row.Compare)
	if len(want) == 0 || !slices.Equal(got, want) {
		t.Fatalf("%d rows written, the reference has %d", len(got), len(want))
	}
}

// The figures of a run: every event counted, CPU time measured.
func TestMeasurement(t *testing.T) {
	jf := jobflags.Register(flag.NewFlagSet("t", flag.ContinueOnError))
	jf.CheckpointInterval, jf.Parallelism = 50*time.Millisecond, 2
	cfg := nexmark.DefaultConfig()
	cfg.MaxEvents = 50_000
	m, err := runQuery(context.Background(), jf, "q1", cfg, 2, false, "")
	if err != nil {
		t.Fatal(err)
	}
	if m.Events != 50_000 || m.Rows != 46_000 || m.CPUSeconds <= 0 || m.EventsPerCPUSecond <= 0 ||
		m.CheckpointInterval != "50ms exactly-once" {
		t.Fatalf("%+v", m)
	}
}

// q10 writes every bid exactly once into the directory of its day and
// minute, as the reference's table PARTITIONED BY (dt, hm).
func TestQ10Partitions(t *testing.T) {
	cfg := nexmark.DefaultConfig()
	cfg.MaxEvents, cfg.EventsPerSecond = 20_000, 100 // 200 s of event time: several minutes
	dir := t.TempDir()
	env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(20*time.Millisecond, weir.ExactlyOnce), weir.CheckpointStorage(t.TempDir()))
	q10(queries.Events(env, queries.NewSource(cfg, 2)), &output{dir: dir})
	if err := env.Execute(context.Background(), "q10"); err != nil {
		t.Fatal(err)
	}
	g, err := nexmark.NewGenerator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	events := make([]nexmark.Event, cfg.MaxEvents)
	for n := range events {
		events[n] = g.Event(int64(n))
	}
	want := reference.Q10(events)
	got := 0
	minutes := map[string]bool{}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") {
			return fmt.Errorf("left behind: %s", path)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var r nexmark.Q10Row
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			rel, _ := filepath.Rel(dir, filepath.Dir(path))
			if bucket := filepath.ToSlash(rel); bucket != "dt="+r.Dt+"/hm="+r.Hm {
				return fmt.Errorf("row of %s %s in %s", r.Dt, r.Hm, bucket)
			}
			minutes[rel] = true
			got++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != len(want) || len(minutes) < 3 {
		t.Fatalf("%d rows in %d minute directories, the reference has %d rows", got, len(minutes), len(want))
	}
	if n := countLines(dir); n != int64(len(want)) {
		t.Fatalf("countLines: %d, want %d", n, len(want))
	}
}
