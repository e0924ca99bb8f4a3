package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// wordsWant are the results of testdata/words.txt with one-minute windows,
// 30 s of lateness and 5 s of out-of-orderness, computed by hand. The
// watermark is the largest timestamp read minus 5 s minus 1 ms:
//
//	line  2-4  12:00:10 apple, 12:00:20 apple banana, 12:00:58 banana   wm 12:00:52.999
//	line  5    12:01:03 apple                                           wm 12:00:57.999
//	line  6    12:00:59 cherry (in ms): on time, window 12:00
//	line  7    12:01:10 banana: wm 12:01:04.999 fires window 12:00: apple 2, banana 2, cherry 1
//	line  8    12:00:30 apple: late, but the window's cleanup (12:01:29.999) has
//	           not passed: the window fires again, apple 3
//	line 10    12:01:40 cherry: wm 12:01:34.999 passes the cleanup of window 12:00
//	line 11    12:00:45 banana: later than the lateness: side output
//	line 12    12:02:05 apple banana: wm 12:01:59.999 fires window 12:01:
//	           apple 1, banana 1, cherry 1
//	end of input: the maximum watermark fires window 12:02: apple 1, banana 1
var wordsWant = []string{
	"2026-11-30T12:00:00.000Z 2026-11-30T12:01:00.000Z apple 2",
	"2026-11-30T12:00:00.000Z 2026-11-30T12:01:00.000Z banana 2",
	"2026-11-30T12:00:00.000Z 2026-11-30T12:01:00.000Z cherry 1",
	"2026-11-30T12:00:00.000Z 2026-11-30T12:01:00.000Z apple 3",
	"2026-11-30T12:01:00.000Z 2026-11-30T12:02:00.000Z apple 1",
	"2026-11-30T12:01:00.000Z 2026-11-30T12:02:00.000Z banana 1",
	"2026-11-30T12:01:00.000Z 2026-11-30T12:02:00.000Z cherry 1",
	"2026-11-30T12:02:00.000Z 2026-11-30T12:03:00.000Z apple 1",
	"2026-11-30T12:02:00.000Z 2026-11-30T12:03:00.000Z banana 1",
}

// windowFlags are the flags of the hand-computed expectations.
var windowFlags = []string{"--window", "1m", "--lateness", "30s", "--out-of-orderness", "5s"}

// lines splits printed output into sorted lines (the late side output and
// the results are printed by different operators, in no fixed order).
func lines(s string) []string {
	out := strings.Split(strings.TrimSpace(s), "\n")
	slices.Sort(out)
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// syncBuffer is a bytes.Buffer safe for the job's printers and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestFileCounts: the counts of testdata/words.txt are the hand-computed
// ones, the late line within the lateness fires its window again, the
// one beyond it goes to the side output, naming its file and line; with
// and without checkpoints, on the heap and in pebble.
func TestFileCounts(t *testing.T) {
	in := filepath.Join("testdata", "words.txt")
	want := sorted(append(slices.Clone(wordsWant), "late 2026-11-30T12:00:45.000Z banana "+in+":11"))
	for _, extra := range [][]string{
		{"--checkpoint-interval", "0"},
		{"--checkpoint-interval", "20ms", "--checkpoint-dir", t.TempDir()},
		{"--checkpoint-interval", "20ms", "--checkpoint-dir", t.TempDir(), "--state-backend", "pebble", "--state-dir", t.TempDir()},
	} {
		var out, logs syncBuffer
		args := append(append([]string{"--input", in}, windowFlags...), extra...)
		if err := run(args, &out, &logs); err != nil {
			t.Fatalf("%v: %v\n%s", extra, err, logs.String())
		}
		if got := lines(out.String()); !slices.Equal(got, want) {
			t.Errorf("%v: printed\n%s\nwant\n%s", extra, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

// TestSocket: the same lines from a TCP server give the same counts; the
// log says the socket is at most once.
func TestSocket(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "words.txt"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	served := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			served <- err
			return
		}
		_, err = c.Write(data)
		if cerr := c.Close(); err == nil {
			err = cerr
		}
		served <- err
	}()
	var out, logs syncBuffer
	args := append(append([]string{"--socket", l.Addr().String()}, windowFlags...), "--checkpoint-interval", "0")
	if err := run(args, &out, &logs); err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	if err := <-served; err != nil {
		t.Fatalf("test server: %v", err)
	}
	want := sorted(append(slices.Clone(wordsWant), "late 2026-11-30T12:00:45.000Z banana socket "+l.Addr().String()+" line 11"))
	if got := lines(out.String()); !slices.Equal(got, want) {
		t.Errorf("printed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(logs.String(), "at most once") {
		t.Errorf("the log does not say the socket source is at most once:\n%s", logs.String())
	}
}

// TestBadInput: bad flags and malformed lines fail with errors that say
// what and where, at once (no restart, although checkpointing is on).
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	badTS := write("bad-ts.txt", "# fine\n2026-11-30T12:00:10Z apple\n12:00 pear\n")
	noWord := write("no-word.txt", "2026-11-30T12:00:10Z apple\n\n1796040059000\n")
	good := write("good.txt", "2026-11-30T12:00:10Z apple\n")
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--input", badTS}, []string{badTS + ":3", `malformed timestamp "12:00"`, "will not restart"}},
		{[]string{"--input", noWord}, []string{noWord + ":3", "no word after the timestamp"}},
		{[]string{"--input", good, "--window", "0s"}, []string{"--window", "at least 1ms"}},
		{[]string{"--input", good, "--window", "1.5ms"}, []string{"--window", "whole number of milliseconds"}},
		{[]string{"--input", good, "--window", "abc"}, []string{"-window", "not a duration"}},
		{[]string{"--input", good, "--lateness", "-1s"}, []string{"--lateness", "negative"}},
		{[]string{"--input", good, "--out-of-orderness", "-1s"}, []string{"--out-of-orderness", "negative"}},
		{[]string{"--input", filepath.Join(dir, "missing.txt")}, []string{"--input", "missing.txt"}},
		{[]string{}, []string{"--input FILE or --socket HOST:PORT"}},
		{[]string{"--input", good, "--socket", "127.0.0.1:1"}, []string{"not both"}},
		{[]string{"--socket", "127.0.0.1:1", "--mode", "exactly-once"}, []string{"--socket cannot be exactly-once"}},
		{[]string{"--socket", "127.0.0.1:1", "--fail-after", "3"}, []string{"--fail-after needs --input"}},
	} {
		var out, logs syncBuffer
		args := append(c.args, "--checkpoint-interval", "20ms", "--checkpoint-dir", t.TempDir())
		err := run(args, &out, &logs)
		if err == nil {
			t.Errorf("%v: no error", c.args)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %q does not say %q", c.args, err, w)
			}
		}
	}
}

// genInput writes n lines of several words, up to 8 s out of order, and
// every 37th line 45 s late (late beyond the lateness or not, depending on
// where its window is).
func genInput(t *testing.T, n int) string {
	var b strings.Builder
	base := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC).UnixMilli()
	words := []string{"alpha", "beta", "gamma", "delta", "epsilon"}
	for i := range n {
		ts := base + int64(i)*700 - int64(i*7919%8000)
		if i%37 == 36 {
			ts -= 45_000
		}
		fmt.Fprintf(&b, "%d %s %s\n", ts, words[i%5], words[(i*3)%5])
		if i%50 == 0 {
			b.WriteString("# a comment\n")
		}
	}
	p := filepath.Join(t.TempDir(), "gen.txt")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// committed reads the committed files (names not starting with a dot) in
// dir, as sorted lines.
func committed(t *testing.T, dir string) []string {
	names, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, n := range names {
		if strings.HasPrefix(filepath.Base(n), ".") {
			continue
		}
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")...)
	}
	slices.Sort(all)
	return all
}

// TestFailureSameOutput: a run with a failure injected mid-file restores
// from a checkpoint (its position, its windows, its watermark) and
// writes, exactly once, the same results and late records as a run
// without failure. The failure comes just before a line that is late
// beyond the lateness in the clean run: it is late after the restore only
// if the watermark resumed where it was.
func TestFailureSameOutput(t *testing.T) {
	in := genInput(t, 600)
	runOnce := func(name string, extra ...string) [2][]string {
		dir := t.TempDir()
		args := append([]string{"--input", in, "--output", dir, "--checkpoint-dir", t.TempDir(),
			"--checkpoint-interval", "20ms", "--restart-strategy", "fixed-delay:attempts=3,delay=10ms"}, windowFlags...)
		var out, logs syncBuffer
		if err := run(append(args, extra...), &out, &logs); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, logs.String())
		}
		if len(extra) > 0 {
			l := logs.String()
			if !strings.Contains(l, "injected failure after line "+extra[1]) || !strings.Contains(l, "resuming the input from a checkpoint") {
				t.Fatalf("the run did not fail and resume from a checkpoint:\n%s", l)
			}
		}
		return [2][]string{committed(t, dir), committed(t, filepath.Join(dir, "late"))}
	}
	clean := runOnce("clean")
	if len(clean[0]) < 50 || len(clean[1]) < 3 {
		t.Fatalf("the clean run wrote %d results and %d late records: too few to compare", len(clean[0]), len(clean[1]))
	}
	// "late TS WORD FILE:LINE": fail just before the middle late line.
	lateLine := clean[1][len(clean[1])/2]
	var no int
	if _, err := fmt.Sscanf(lateLine[strings.LastIndex(lateLine, ":")+1:], "%d", &no); err != nil || no < 2 {
		t.Fatalf("cannot read the line number of %q: %v", lateLine, err)
	}
	failed := runOnce("failure", "--fail-after", fmt.Sprint(no-1))
	for i, what := range []string{"results", "late records"} {
		if !slices.Equal(clean[i], failed[i]) {
			t.Errorf("%s differ: without failure %d lines, with failure %d:\n%s\n---\n%s", what, len(clean[i]), len(failed[i]),
				strings.Join(clean[i], "\n"), strings.Join(failed[i], "\n"))
		}
	}
}

// TestSocketMalformedLine: a malformed line from the socket fails the job
// at once, naming the socket and the line.
func TestSocketMalformedLine(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	served := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		_, err = c.Write([]byte("2026-11-30T12:00:10Z apple\nnoon pear\n"))
		served <- err
	}()
	var out, logs syncBuffer
	args := []string{"--socket", l.Addr().String(), "--checkpoint-interval", "20ms", "--checkpoint-dir", t.TempDir()}
	err = run(args, &out, &logs)
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{"socket " + l.Addr().String() + " line 2", `malformed timestamp "noon"`, "will not restart"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	if err := <-served; err != nil {
		t.Fatalf("test server: %v", err)
	}
}
