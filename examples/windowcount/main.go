// Command windowcount counts words in event-time tumbling windows, with
// allowed lateness and late records to a side output: Flink's
// SocketWindowWordCount in event time. It reads lines from a text file
// (--input) or from a TCP server (--socket, like `nc -lk 9999`):
//
//	TIMESTAMP WORD [WORD...]
//
// TIMESTAMP is milliseconds since 1970 (1795003210000) or RFC 3339
// (2026-11-30T12:00:10Z); every word of the line counts once in the window
// that holds TIMESTAMP. Blank lines and lines starting with # are skipped;
// any other line that does not parse fails the job at once (no restart)
// with an error naming the file and line.
//
//	go run ./examples/windowcount --input words.txt --window 1m --lateness 30s --out-of-orderness 5s
//	go run ./examples/windowcount --socket 127.0.0.1:9999
//	go run ./examples/windowcount --input words.txt --output out/ --fail-after 100
//
// Each result is a line "START END WORD COUNT" (the window [START, END) in
// RFC 3339, UTC). A window fires when the watermark passes its end; a line
// that comes later, but within --lateness, fires the window again with the
// larger count; a line later than that is a late record, printed as "late
// TIMESTAMP WORD FILE:LINE" (side output). The watermark is the largest
// timestamp read so far minus --out-of-orderness, and it follows every
// line rather than the clock, so a file gives the same output however fast
// it is read.
//
// Guarantees. The file source is replayable: its position (byte offset,
// line number, and the largest timestamp read, so the watermark resumes
// where it was) is checkpointed, and the windows are keyed state, so a job
// that fails and restores produces the same results. With --output DIR the
// results (DIR/*.txt) and late records (DIR/late/*.txt) are written
// exactly once through the file sink's two-phase commit; printed results
// may repeat after a restore (Flink's print() does the same). --fail-after
// N injects one failure before line N+1 (once a checkpoint has completed,
// when checkpointing) to show it.
//
// A socket cannot be replayed: after a failure the lines received since
// the last checkpoint are lost (at most once end to end), so --socket runs
// its checkpoints in at-least-once mode and says so in the log, and refuses
// an explicit --mode exactly-once. It ends when the server closes the
// connection.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/connector/files"
	"github.com/weirstream/weir/connector/socket"
	"github.com/weirstream/weir/jobflags"
)

// Line is one input line that counts.
type Line struct {
	No    int64 // line number, from 1
	TS    int64 // event time, milliseconds since 1970
	Words []string
	// MaxTS is the largest timestamp of the input up to and including
	// this line: the watermark follows it.
	MaxTS int64
}

// Word is one word of a line, with the line's timestamp and number.
type Word struct {
	Key  string
	TS   int64
	Line int64
}

// Count is a word's count in a window [Start, End).
type Count struct {
	Start, End int64
	Key        string
	N          int64
}

func (c Count) String() string {
	return fmt.Sprintf("%s %s %s %d", formatTS(c.Start), formatTS(c.End), c.Key, c.N)
}

func formatTS(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "windowcount:", err)
		os.Exit(1)
	}
}

// config is what the job's own flags say.
type config struct {
	input, socket, output      string
	window, lateness, disorder time.Duration
	failAfter                  int64
}

func parseFlags(args []string) (*jobflags.Flags, config, bool, error) {
	var c config
	fs := flag.NewFlagSet("windowcount", flag.ContinueOnError)
	jf := jobflags.Register(fs)
	fs.StringVar(&c.input, "input", "", "read this text `file`: lines \"TIMESTAMP WORD [WORD...]\", TIMESTAMP in milliseconds since 1970 or RFC 3339 (2026-11-30T12:00:10Z); blank lines and # comments are skipped")
	fs.StringVar(&c.socket, "socket", "", "read lines (same format) from the TCP server at `host:port` instead; not replayable: at most once after a failure")
	fs.StringVar(&c.output, "output", "", "write results exactly once into committed files in this `directory` (late records in its late/ folder) instead of printing them")
	c.window, c.lateness, c.disorder = time.Minute, 30*time.Second, 5*time.Second
	fs.Var((*duration)(&c.window), "window", "the tumbling window's `size` (1m, 10s, 500ms)")
	fs.Var((*duration)(&c.lateness), "lateness", "allowed lateness (`duration`): a line this much later than its window's end still updates it; later lines go to the late side output")
	fs.Var((*duration)(&c.disorder), "out-of-orderness", "how far out of order lines may come (`duration`): the watermark is the largest timestamp read minus this")
	fs.Int64Var(&c.failAfter, "fail-after", 0, "--input: inject one failure after this many lines (0: none), to show a restore")
	if err := jobflags.Parse(fs, args, os.Getenv); err != nil {
		return nil, c, false, err
	}
	explicitMode := os.Getenv(jobflags.EnvName("mode")) != ""
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "mode" {
			explicitMode = true
		}
	})
	switch {
	case c.input == "" && c.socket == "":
		return nil, c, false, errors.New("give --input FILE or --socket HOST:PORT")
	case c.input != "" && c.socket != "":
		return nil, c, false, errors.New("give either --input or --socket, not both")
	case c.window < time.Millisecond || c.window%time.Millisecond != 0:
		return nil, c, false, fmt.Errorf("invalid value %s for --window: must be a whole number of milliseconds, at least 1ms", c.window)
	case c.lateness < 0:
		return nil, c, false, fmt.Errorf("invalid value %s for --lateness: must not be negative", c.lateness)
	case c.disorder < 0:
		return nil, c, false, fmt.Errorf("invalid value %s for --out-of-orderness: must not be negative", c.disorder)
	case c.failAfter < 0:
		return nil, c, false, fmt.Errorf("invalid value %d for --fail-after: must not be negative", c.failAfter)
	case c.failAfter > 0 && c.input == "":
		return nil, c, false, errors.New("--fail-after needs --input: a socket cannot be replayed after the failure")
	}
	return jf, c, explicitMode, nil
}

// duration is a time.Duration flag whose error says what to write.
type duration time.Duration

func (d *duration) String() string { return time.Duration(*d).String() }

func (d *duration) Set(s string) error {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return errors.New("not a duration; use a number with a unit, like 1m, 30s or 500ms")
	}
	*d = duration(v)
	return nil
}

func run(args []string, stdout, stderr io.Writer) error {
	jf, c, explicitMode, err := parseFlags(args)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: jf.LogLevel}))
	if c.socket != "" {
		if explicitMode && jf.Mode == checkpoint.ExactlyOnce {
			return fmt.Errorf("--socket cannot be exactly-once: a socket cannot be replayed after a failure; use --mode at-least-once (the lines received since the last checkpoint are then lost on a failure) or --input FILE")
		}
		jf.Mode = checkpoint.AtLeastOnce
		log.Warn("the socket source cannot be replayed: checkpoints run in at-least-once mode, and after a failure the lines received since the last checkpoint are lost (at most once end to end)", "socket", c.socket)
	} else if _, err := os.Stat(c.input); err != nil {
		return fmt.Errorf("cannot read --input: %w", err)
	}
	opts, err := jf.Options("windowcount")
	if err != nil {
		return err
	}
	env := weir.NewEnvironment(append(opts, weir.Stdout(stdout), weir.Logger(log))...)

	bound := c.disorder.Milliseconds()
	strategy := weir.ForGenerator(func() weir.WatermarkGenerator[Line] { return lineWatermarks{bound: bound} }).
		WithTimestampAssigner(func(l Line, _ int64) int64 { return l.TS })
	var lines weir.Stream[Line]
	where := c.input
	if c.input != "" {
		src := &lineSource{path: c.input, failAfter: c.failAfter, checkpointing: jf.CheckpointInterval > 0}
		lines = weir.FromSourceWithWatermarks(env, src, strategy, "lines "+c.input).UID("lines")
	} else {
		where = "socket " + c.socket
		text := socket.TextStream(env, c.socket).UID("socket")
		parsed := weir.FlatMapWith(text, &socketLines{where: where}).Name("parse").SetParallelism(1)
		lines = weir.AssignTimestampsAndWatermarks(parsed, strategy).SetParallelism(1)
	}
	words := weir.FlatMap(lines, func(l Line, out weir.Collector[Word]) {
		for _, w := range l.Words {
			out.Collect(Word{Key: w, TS: l.TS, Line: l.No})
		}
	}).Name("words")

	late := weir.NewOutputTag[Word]("late")
	windows := weir.Window(weir.KeyBy(words, func(w Word) string { return w.Key }), weir.TumblingEventTimeWindows(c.window)).
		AllowedLateness(c.lateness).
		SideOutputLateData(late)
	counts := weir.WindowAggregateProcess(windows, weir.Aggregator[Word, int64, int64](countWords{}),
		weir.ProcessWindowFunc[string, int64, Count](withWindow)).Name("count").UID("count")
	lateLines := weir.Map(weir.GetSideOutput(counts, late), func(w Word) string {
		if c.input != "" {
			return fmt.Sprintf("late %s %s %s:%d", formatTS(w.TS), w.Key, where, w.Line)
		}
		return fmt.Sprintf("late %s %s %s line %d", formatTS(w.TS), w.Key, where, w.Line)
	}).Name("late")
	if c.output != "" {
		counts.SinkTo(files.Sink(c.output, ".txt", files.Lines[Count])).UID("output")
		lateLines.SinkTo(files.Sink(filepath.Join(c.output, "late"), ".txt", files.Lines[string])).UID("late-output")
	} else {
		counts.Print()
		lateLines.Print()
	}

	// Ctrl-C or SIGTERM cancels the job (or stops it with a savepoint,
	// with --stop-with-savepoint-on-sigterm) and exits 0.
	return jf.Run(context.Background(), env, "windowcount")
}

type countWords struct{}

func (countWords) CreateAccumulator() int64  { return 0 }
func (countWords) Add(_ Word, n int64) int64 { return n + 1 }
func (countWords) Result(n int64) int64      { return n }
func (countWords) Merge(a, b int64) int64    { return a + b }

func withWindow(ctx *weir.WindowContext[string], n []int64, out weir.Collector[Count]) error {
	w := ctx.Window()
	out.Collect(Count{Start: w.Start, End: w.End, Key: ctx.Key(), N: n[0]})
	return nil
}

// lineWatermarks is bounded out-of-orderness emitted with every line (a
// punctuated generator): the watermark is the line's MaxTS minus the
// bound, minus 1 ms. MaxTS comes with the line, so it is checkpointed with
// the source's position and a restored job resumes the same watermark.
type lineWatermarks struct{ bound int64 }

func (g lineWatermarks) OnEvent(l Line, _ int64, out weir.WatermarkOutput) {
	out.EmitWatermark(l.MaxTS - g.bound - 1)
}

func (lineWatermarks) OnPeriodicEmit(weir.WatermarkOutput) {}

// Timestamps must fall in [minTS, maxTS): 1970 to 9999.
const (
	minTS = 0
	maxTS = 253402300800000
)

// parseLine parses "TIMESTAMP WORD [WORD...]"; skip is true for a blank
// line or a comment.
func parseLine(text string) (ts int64, words []string, skip bool, err error) {
	fields := strings.Fields(text)
	if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
		return 0, nil, true, nil
	}
	ts, err = strconv.ParseInt(fields[0], 10, 64)
	if err != nil {
		t, terr := time.Parse(time.RFC3339Nano, fields[0])
		if terr != nil {
			return 0, nil, false, fmt.Errorf("malformed timestamp %q in line %q: want milliseconds since 1970 or RFC 3339 (2026-11-30T12:00:10Z)", fields[0], text)
		}
		ts = t.UnixMilli()
	}
	if ts < minTS || ts >= maxTS {
		return 0, nil, false, fmt.Errorf("timestamp %s is outside the years 1970 to 9999", fields[0])
	}
	if len(fields) < 2 {
		return 0, nil, false, fmt.Errorf("no word after the timestamp in line %q: want \"TIMESTAMP WORD [WORD...]\"", text)
	}
	return ts, fields[1:], false, nil
}

// socketLines parses the socket's lines (one subtask; the socket is not
// replayable, so its line numbers and largest timestamp are not
// checkpointed).
type socketLines struct {
	where string
	no    int64
	maxTS int64
}

func (p *socketLines) FlatMap(text string, out weir.Collector[Line]) error {
	p.no++
	ts, words, skip, err := parseLine(text)
	if err != nil {
		return weir.Permanent(fmt.Errorf("%s line %d: %w", p.where, p.no, err))
	}
	if skip {
		return nil
	}
	p.maxTS = max(p.maxTS, ts)
	out.Collect(Line{No: p.no, TS: ts, Words: words, MaxTS: p.maxTS})
	return nil
}

// lineSource reads and parses a text file, one subtask. Its position is
// the byte offset of the next line, the number of the last line read and
// the largest timestamp read. failAfter > 0 injects one failure (the
// first attempt that reaches it) after that many lines; with
// checkpointing, only once a checkpoint has completed, so the job restores
// from a checkpoint rather than from the start.
type lineSource struct {
	path          string
	failAfter     int64
	checkpointing bool
	failed        atomic.Bool
}

// NonParallel implements weir.NonParallel.
func (*lineSource) NonParallel() {}

// The position entry: three big-endian int64s.
const positionSize = 24

// CreateReader implements weir.Source.
func (s *lineSource) CreateReader(ctx weir.SourceContext) (weir.SourceReader[Line], error) {
	f, err := os.Open(s.path)
	if err != nil {
		return nil, fmt.Errorf("cannot open --input: %w", err)
	}
	r := &lineReader{src: s, f: f, maxTS: math.MinInt64}
	for _, e := range ctx.Restored {
		if len(e) != positionSize {
			f.Close()
			return nil, fmt.Errorf("cannot restore the position in %s from checkpoint %d: entry of %d bytes, want %d", s.path, ctx.RestoredCheckpoint, len(e), positionSize)
		}
		pos, no := int64(binary.BigEndian.Uint64(e)), int64(binary.BigEndian.Uint64(e[8:]))
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("cannot restore the position in %s: %w", s.path, err)
		}
		if pos < 0 || pos > st.Size() || no < 0 {
			f.Close()
			return nil, fmt.Errorf("cannot restore the position in %s from checkpoint %d: byte %d of %d (was the file replaced?)", s.path, ctx.RestoredCheckpoint, pos, st.Size())
		}
		if _, err := f.Seek(pos, io.SeekStart); err != nil {
			f.Close()
			return nil, fmt.Errorf("cannot restore the position in %s: %w", s.path, err)
		}
		r.pos, r.no, r.maxTS = pos, no, int64(binary.BigEndian.Uint64(e[16:]))
		if ctx.Logger != nil {
			ctx.Logger.Info("resuming the input from a checkpoint", "file", s.path, "line", r.no+1, "byte", r.pos, "checkpoint", ctx.RestoredCheckpoint)
		}
	}
	r.br = bufio.NewReaderSize(f, 64<<10)
	return r, nil
}

type lineReader struct {
	src   *lineSource
	f     *os.File
	br    *bufio.Reader
	pos   int64 // byte offset of the next line
	no    int64 // number of the last line read
	maxTS int64
	// completed is set when a checkpoint completed since the reader
	// opened; waiting while the injected failure waits for one.
	completed, waiting bool
}

func (r *lineReader) Read(buf []Line) ([]Line, weir.ReadStatus, error) {
	r.waiting = false
	for len(buf) < cap(buf) {
		if s := r.src; s.failAfter > 0 && r.no == s.failAfter && !s.failed.Load() {
			if s.checkpointing && !r.completed {
				r.waiting = true
				if len(buf) > 0 {
					return buf, weir.MoreAvailable, nil
				}
				return buf, weir.NothingAvailable, nil
			}
			s.failed.Store(true)
			return buf, weir.NothingAvailable, fmt.Errorf("injected failure after line %d of %s (--fail-after)", r.no, s.path)
		}
		text, err := r.br.ReadString('\n')
		if err != nil && err != io.EOF {
			return buf, weir.NothingAvailable, fmt.Errorf("cannot read %s at byte %d: %w", r.src.path, r.pos, err)
		}
		if text == "" { // the end of the file
			if len(buf) == 0 {
				return buf, weir.EndOfInput, nil
			}
			return buf, weir.MoreAvailable, nil
		}
		r.pos += int64(len(text))
		r.no++
		ts, words, skip, perr := parseLine(strings.TrimRight(text, "\r\n"))
		if perr != nil {
			return buf, weir.NothingAvailable, weir.Permanent(fmt.Errorf("%s:%d: %w", r.src.path, r.no, perr))
		}
		if skip {
			continue
		}
		r.maxTS = max(r.maxTS, ts)
		buf = append(buf, Line{No: r.no, TS: ts, Words: words, MaxTS: r.maxTS})
	}
	return buf, weir.MoreAvailable, nil
}

// neverReady is a channel never ready: a waiting reader wakes up with the
// checkpoint notification in the subtask's mailbox.
var neverReady = make(chan struct{})

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (r *lineReader) Available() <-chan struct{} {
	if r.waiting {
		return neverReady
	}
	return closedChan
}

func (r *lineReader) Snapshot(checkpoint.ID) ([][]byte, error) {
	e := make([]byte, positionSize)
	binary.BigEndian.PutUint64(e, uint64(r.pos))
	binary.BigEndian.PutUint64(e[8:], uint64(r.no))
	binary.BigEndian.PutUint64(e[16:], uint64(r.maxTS))
	return [][]byte{e}, nil
}

// NotifyCheckpointComplete implements weir.CheckpointListener.
func (r *lineReader) NotifyCheckpointComplete(checkpoint.ID) error {
	r.completed = true
	return nil
}

// NotifyCheckpointAborted implements weir.CheckpointListener.
func (r *lineReader) NotifyCheckpointAborted(checkpoint.ID) error { return nil }

func (r *lineReader) Close() error { return r.f.Close() }
