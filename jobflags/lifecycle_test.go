package jobflags

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/connector/files"
	"github.com/weirstream/weir/internal/etcdtest"
	"github.com/weirstream/weir/storage"
)

// The test binary doubles as a job binary: with testJobEnv set it runs
// testJob with its arguments instead of the tests, so that the tests can
// send a real process real signals.
const testJobEnv = "WEIR_JOBFLAGS_TEST_JOB"

func TestMain(m *testing.M) {
	if os.Getenv(testJobEnv) == "1" {
		err := testJob(os.Args[1:])
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			os.Exit(0)
		default:
			fmt.Fprintln(os.Stderr, "testjob:", err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

// rec is sequence number Seq of key Key; row adds the count of the key
// so far, which equals Seq when every record affected the state once.
type rec struct{ Key, Seq int64 }
type row struct{ Key, Seq, Cnt int64 }

type counter struct {
	cnt     weir.ValueState[int64]
	panicAt int64
	// padBytes, if not 0, keeps that many bytes more per key in state,
	// to make checkpoints large.
	padBytes int
	pad      weir.ValueState[[]byte]
}

func (c *counter) Open(ctx *weir.KeyedContext[int64]) (err error) {
	if c.cnt, err = weir.GetValueState[int64](ctx, "cnt"); err != nil {
		return err
	}
	c.pad, err = weir.GetValueState[[]byte](ctx, "pad")
	return err
}

func (c *counter) ProcessElement(_ *weir.KeyedContext[int64], in rec, out weir.Collector[row]) error {
	if in.Key == 0 && in.Seq == c.panicAt {
		var m map[string]int
		m["boom"]++ // a panic in user code: assignment to a nil map
	}
	if c.padBytes > 0 {
		if p, _ := c.pad.Value(); len(p) == 0 {
			c.pad.Update(bytes.Repeat([]byte{'p'}, c.padBytes))
		}
	}
	n, _ := c.cnt.Value()
	n++
	c.cnt.Update(n)
	out.Collect(row{Key: in.Key, Seq: in.Seq, Cnt: n})
	return nil
}

// testJob is a job binary: per key the sequence numbers 1..count from a
// checkpointed source, counted per key in keyed state, written as rows
// "key seq cnt" to an exactly-once file sink.
func testJob(args []string) error {
	fs := flag.NewFlagSet("testjob", flag.ContinueOnError)
	jf := Register(fs)
	keys := fs.Int("keys", 4, "number of keys")
	count := fs.Int64("count", 1000, "sequence numbers per key")
	rate := fs.Float64("rate", 0, "records per second per source subtask (0: no bound)")
	out := fs.String("out", "", "the output directory")
	panicAt := fs.Int64("panic-at", 0, "panic in the counter at this sequence number (0: never)")
	pad := fs.Int("pad", 0, "bytes of padding kept in state per key (0: none)")
	if err := fs.Set("parallelism", "2"); err != nil {
		return err
	}
	if err := Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	opts, err := jf.Options("testjob")
	if err != nil {
		return err
	}
	env := weir.NewEnvironment(opts...)
	gen := weir.Generator(*keys, *count, func(p int, off int64) rec { return rec{Key: int64(p), Seq: off + 1} }).WithRate(*rate)
	recs := weir.FromSource(env, gen, "sequences").UID("sequences")
	rows := weir.Process(weir.KeyBy(recs, func(r rec) int64 { return r.Key }), &counter{panicAt: *panicAt, padBytes: *pad}).Name("count").UID("count")
	rows.SinkTo(files.Sink(*out, ".txt", func(dst []byte, r row) []byte {
		return fmt.Appendf(dst, "%d %d %d\n", r.Key, r.Seq, r.Cnt)
	})).Name("files").UID("sink")
	return jf.Run(context.Background(), env, "testjob")
}

// jobProc is the test job running as a process.
type jobProc struct {
	cmd    *exec.Cmd
	done   chan error
	stderr *syncBuffer
}

// syncBuffer is a buffer the process writes while a test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) Bytes() []byte { return []byte(b.String()) }

// waitLog waits until the process logged want, failing if it ends first.
func (p *jobProc) waitLog(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(p.stderr.String(), want) {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("the job ended (%v) before logging %q\n%s", err, want, p.stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q logged within 2 minutes\n%s", want, p.stderr)
		}
	}
}

func startJob(t *testing.T, args ...string) *jobProc {
	t.Helper()
	p := &jobProc{cmd: exec.Command(os.Args[0], args...), done: make(chan error, 1), stderr: &syncBuffer{}}
	p.cmd.Env = append(os.Environ(), testJobEnv+"=1")
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// wait waits for the process to exit and returns its error; stderr is
// safe to read afterwards.
func (p *jobProc) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err // for Cleanup
		return err
	case <-time.After(timeout):
		t.Fatalf("the job did not end within %s", timeout)
		return nil
	}
}

// waitCheckpoint waits until a checkpoint completed in dir, failing if
// the job ends first.
func (p *jobProc) waitCheckpoint(t *testing.T, dir string) {
	t.Helper()
	st, err := storage.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, ok, _ := st.Latest(t.Context()); ok {
			return
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("the job ended (%v) before its first checkpoint: the workload is too short\n%s", err, p.stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint completed within 2 minutes\n%s", p.stderr)
		}
	}
}

// savepointsIn lists the completed savepoints in dir.
func savepointsIn(t *testing.T, dir string) []checkpoint.ID {
	t.Helper()
	st, err := storage.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := st.Completed(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var sps []checkpoint.ID
	for _, id := range ids {
		md, err := st.ReadMetadata(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if md.Kind == checkpoint.KindSavepoint {
			sps = append(sps, id)
		}
	}
	return sps
}

// countRows counts the committed rows in dir.
func countRows(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		n += bytes.Count(b, []byte("\n"))
	}
	return n
}

// verifyOutput checks the committed rows of dir: every (key, seq) of
// 1..count exactly once, with cnt = seq.
func verifyOutput(t *testing.T, dir string, keys, count int64) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[[2]int64]int{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue // an uncommitted file
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var k, s, c int64
			if _, err := fmt.Sscanf(sc.Text(), "%d %d %d", &k, &s, &c); err != nil {
				t.Fatalf("%s: bad row %q", e.Name(), sc.Text())
			}
			if c != s {
				t.Errorf("key %d seq %d has cnt %d: state affected twice or lost", k, s, c)
			}
			seen[[2]int64{k, s}]++
		}
		f.Close()
	}
	for k := range keys {
		for s := int64(1); s <= count; s++ {
			if n := seen[[2]int64{k, s}]; n != 1 {
				t.Fatalf("key %d seq %d written %d times, want exactly once", k, s, n)
			}
		}
	}
}

// A job process sent SIGTERM or SIGINT with --stop-with-savepoint-on-sigterm
// takes a savepoint, commits its output and exits 0; started again from
// that savepoint it continues where it stopped: every record exactly once.
func TestSignalStopsWithSavepoint(t *testing.T) {
	if testing.Short() {
		t.Skip("runs job processes")
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			out, chk := t.TempDir(), t.TempDir()
			const keys, count = 4, 20000
			common := []string{"--out", out, "--checkpoint-dir", chk, "--checkpoint-interval", "50ms",
				"--keys", fmt.Sprint(keys), "--count", fmt.Sprint(count)}
			p := startJob(t, append(common, "--rate", "2000", "--stop-with-savepoint-on-sigterm")...)
			p.waitCheckpoint(t, chk)
			if err := p.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if err := p.wait(t, 2*time.Minute); err != nil {
				t.Fatalf("exit: %v, want 0\n%s", err, p.stderr)
			}
			sps := savepointsIn(t, chk)
			if len(sps) != 1 {
				t.Fatalf("savepoints %v after the stop, want one\n%s", sps, p.stderr)
			}
			path := filepath.Join(chk, fmt.Sprintf("chk-%d", sps[0]))
			log := p.stderr.String()
			if !strings.Contains(log, "job stopped with a savepoint") || !strings.Contains(log, "savepoint="+path) {
				t.Fatalf("the log does not name savepoint %s:\n%s", path, log)
			}
			if strings.Contains(log, "cancelled") {
				t.Fatalf("a stop with a savepoint logged a cancellation:\n%s", log)
			}
			// The stop came before the end of the input: the restart
			// has something left to do.
			if n := countRows(t, out); n == 0 || n >= keys*count {
				t.Fatalf("%d rows committed by the stopped job, want some but not all %d", n, keys*count)
			}
			again := startJob(t, append(common, "--restore", path)...)
			if err := again.wait(t, 2*time.Minute); err != nil {
				t.Fatalf("restart from %s: %v\n%s", path, err, again.stderr)
			}
			if l := again.stderr.String(); !strings.Contains(l, fmt.Sprintf(`start="restored checkpoint %d from %s"`, sps[0], path)) {
				t.Fatalf("the start banner does not name the savepoint:\n%s", l)
			}
			verifyOutput(t, out, keys, count)
		})
	}
}

// Without --stop-with-savepoint-on-sigterm a signal cancels the job: the
// process exits 0 and logs "cancelled", not an error, and takes no
// savepoint.
func TestSignalCancels(t *testing.T) {
	if testing.Short() {
		t.Skip("runs job processes")
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			out, chk := t.TempDir(), t.TempDir()
			p := startJob(t, "--out", out, "--checkpoint-dir", chk, "--checkpoint-interval", "50ms",
				"--count", "1000000", "--rate", "2000")
			p.waitCheckpoint(t, chk)
			if err := p.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if err := p.wait(t, 2*time.Minute); err != nil {
				t.Fatalf("exit: %v, want 0\n%s", err, p.stderr)
			}
			log := p.stderr.String()
			if !strings.Contains(log, `msg=cancelled signal=`+sig.String()) {
				t.Fatalf("no cancelled record naming the signal:\n%s", log)
			}
			if strings.Contains(log, "testjob:") || strings.Contains(log, "level=ERROR") {
				t.Fatalf("a cancellation logged an error:\n%s", log)
			}
			if sps := savepointsIn(t, chk); len(sps) != 0 {
				t.Fatalf("a cancellation took savepoints %v", sps)
			}
		})
	}
}

// --restore-mode required with nothing to restore fails before the job
// starts, naming where it looked; optional (the default) starts fresh and
// says so.
func TestRestoreModeRequired(t *testing.T) {
	chk := t.TempDir()
	out := t.TempDir()
	err := testJob([]string{"--out", out, "--checkpoint-dir", chk, "--restore", "latest", "--restore-mode", "required", "--log-level", "error"})
	if !errors.Is(err, ErrRestoreRequired) || !strings.Contains(err.Error(), chk) {
		t.Fatalf("want an error naming %s, got %v", chk, err)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Fatalf("the job ran: %d files in the output", len(entries))
	}
	err = testJob([]string{"--out", out, "--checkpoint-dir", chk, "--restore-mode", "required"})
	if err == nil || !strings.Contains(err.Error(), "needs --restore") {
		t.Fatalf("required without --restore: %v", err)
	}
	err = testJob([]string{"--out", out, "--checkpoint-dir", chk, "--restore", "latest", "--restore-mode", "always"})
	if err == nil || !strings.Contains(err.Error(), "--restore-mode") {
		t.Fatalf("unknown restore mode: %v", err)
	}
}

// --restore latest logs what it found: nothing (a fresh start), then the
// checkpoint the first run left; the banner says the same.
func TestRestoreLatestLogs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs job processes")
	}
	out, chk := t.TempDir(), t.TempDir()
	args := []string{"--out", out, "--checkpoint-dir", chk, "--checkpoint-interval", "50ms", "--restore", "latest", "--count", "200"}
	p := startJob(t, args...)
	if err := p.wait(t, 2*time.Minute); err != nil {
		t.Fatalf("first run: %v\n%s", err, p.stderr)
	}
	log := p.stderr.String()
	for _, want := range []string{`msg="--restore latest: no completed checkpoint; fresh start" storage=file://` + chk,
		`msg="job started" job=testjob role=local parallelism=2 maxParallelism=128 mode="exactly-once every 50ms" storage=file://` + chk + ` stateBackend=heap rest=off start="fresh start"`} {
		if !strings.Contains(log, want) {
			t.Fatalf("first run: no %s in\n%s", want, log)
		}
	}
	st, err := storage.NewFile(chk)
	if err != nil {
		t.Fatal(err)
	}
	id, ok, err := st.Latest(t.Context())
	if err != nil || !ok {
		t.Fatalf("no checkpoint after the first run: %v", err)
	}
	p = startJob(t, append(args, "--restore-mode", "required", "--max-parallelism", "64")...)
	err = p.wait(t, 2*time.Minute)
	log = p.stderr.String()
	// The finished job's final checkpoint has 128 key groups: the
	// restore must refuse 64, after saying what it found.
	path := filepath.Join(chk, fmt.Sprintf("chk-%d", id))
	if want := fmt.Sprintf(`msg="--restore latest: found a completed checkpoint" checkpoint=%d path=%s`, id, path); !strings.Contains(log, want) {
		t.Fatalf("second run: no %s in\n%s", want, log)
	}
	if err == nil || !strings.Contains(log, "max parallelism 128, the job has 64") {
		t.Fatalf("restoring 128 key groups with --max-parallelism 64: exit %v\n%s", err, log)
	}
	p = startJob(t, append(args, "--restore-mode", "required")...)
	if err := p.wait(t, 2*time.Minute); err != nil {
		t.Fatalf("third run: %v\n%s", err, p.stderr)
	}
	if want := fmt.Sprintf(`start="restored checkpoint %d from %s"`, id, path); !strings.Contains(p.stderr.String(), want) {
		t.Fatalf("third run: no %s in\n%s", want, p.stderr)
	}
	verifyOutput(t, out, 4, 200)
}

// --help prints a usage line and the defaults the program really has
// (testjob sets --parallelism 2 before parsing).
func TestHelp(t *testing.T) {
	fs := flag.NewFlagSet("testjob", flag.ContinueOnError)
	Register(fs)
	if err := fs.Set("parallelism", "2"); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := parseTo(fs, []string{"--help"}, func(string) string { return "" }, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("got %v, want flag.ErrHelp", err)
	}
	help := out.String()
	for _, want := range []string{"Usage: testjob [flags]\n", "WEIR_CHECKPOINT_DIR",
		"-parallelism number\n", "(default 2)\n", "-mode mode\n", "(default exactly-once)\n",
		"-max-parallelism number\n", "(default 128)\n", "-log-level level\n", "(default info)\n",
		"-checkpoint-interval duration\n", "(default 1s)\n", "-stop-with-savepoint-on-sigterm\n",
		"-restore-mode string\n", `(default "optional")`, "-log-format string\n", `(default "text")`} {
		if !strings.Contains(help, want) {
			t.Errorf("help does not say %q:\n%s", want, help)
		}
	}
	if strings.Contains(help, "(default 1)\n") && !strings.Contains(help, "-slots int") {
		t.Errorf("help shows parallelism's registered default:\n%s", help)
	}
}

// A panic in user code is logged once: one record naming the operator and
// the subtask, followed by the stack on its own lines; the error the
// process exits with is one line.
func TestPanicLoggedOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("runs job processes")
	}
	p := startJob(t, "--out", t.TempDir(), "--checkpoint-interval", "0", "--count", "100", "--panic-at", "50",
		"--restart-strategy", "none")
	if err := p.wait(t, 2*time.Minute); err == nil {
		t.Fatalf("the job did not fail\n%s", p.stderr)
	}
	log := p.stderr.String()
	if n := strings.Count(log, "[running]:"); n != 1 {
		t.Fatalf("the stack appears %d times, want once:\n%s", n, log)
	}
	lines := strings.Split(log, "\n")
	at := -1
	for i, l := range lines {
		if strings.Contains(l, `msg="user code panicked"`) {
			if at >= 0 {
				t.Fatalf("two panic records:\n%s", log)
			}
			at = i
		}
	}
	if at < 0 {
		t.Fatalf("no panic record:\n%s", log)
	}
	rec := lines[at]
	for _, want := range []string{"job=testjob", `operator=count`, "subtask=", `panic="assignment to entry in nil map"`} {
		if !strings.Contains(rec, want) {
			t.Errorf("the panic record does not say %s: %s", want, rec)
		}
	}
	if !strings.HasPrefix(lines[at+1], "    goroutine ") || !strings.HasPrefix(lines[at+2], "    panic(") ||
		!strings.Contains(log, "(*counter).ProcessElement") {
		t.Errorf("the stack does not follow the record on its own lines:\n%s", log)
	}
	var final string
	for _, l := range lines {
		if strings.HasPrefix(l, "testjob: ") {
			final = l
		}
	}
	if !strings.Contains(final, "operator count in task") || !strings.Contains(final, "panicked: assignment to entry in nil map") {
		t.Errorf("the exit error does not name the operator and the panic: %q", final)
	}
}

// --log-format json writes one JSON object per line; each completed
// checkpoint is one record with its per-subtask breakdown.
func TestJSONLogs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs job processes")
	}
	chk := t.TempDir()
	p := startJob(t, "--out", t.TempDir(), "--checkpoint-dir", chk, "--checkpoint-interval", "50ms", "--count", "2000",
		"--rate", "4000", "--log-format", "json")
	if err := p.wait(t, 2*time.Minute); err != nil {
		t.Fatalf("%v\n%s", err, p.stderr)
	}
	type subtask struct {
		Task                                              string
		Vertex, Subtask                                   int
		AckMs, StartDelayMs, AlignmentMs, SyncMs, AsyncMs float64
		StateSize                                         int64
	}
	var started, completed int
	sc := bufio.NewScanner(bytes.NewReader(p.stderr.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r struct {
			Msg      string
			Job      string
			Kind     string
			ID       int64
			Duration int64
			Size     int64
			Start    string
			Subtasks []subtask
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("not a JSON record: %q: %v", sc.Text(), err)
		}
		switch r.Msg {
		case "job started":
			started++
			if r.Job != "testjob" || r.Start != "fresh start" {
				t.Errorf("banner %s", sc.Text())
			}
		case "checkpoint completed":
			completed++
			// Two chains of two subtasks: the source, and count -> files.
			if len(r.Subtasks) != 4 || r.ID == 0 || r.Duration <= 0 || r.Kind != "checkpoint" {
				t.Fatalf("checkpoint record %s", sc.Text())
			}
			var size int64
			for _, s := range r.Subtasks {
				if s.AckMs <= 0 || s.Task == "" {
					t.Errorf("subtask %+v of %s", s, sc.Text())
				}
				size += s.StateSize
			}
			if size != r.Size || size == 0 {
				t.Errorf("subtask sizes add up to %d, the checkpoint's is %d: %s", size, r.Size, sc.Text())
			}
		}
	}
	if started != 1 || completed == 0 {
		t.Fatalf("%d banners and %d checkpoint records in\n%s", started, completed, p.stderr)
	}
}

// A standby job manager waits in the leader election; SIGTERM ends its
// wait: it exits 0 without having run the job.
func TestSignalWhileStandby(t *testing.T) {
	if testing.Short() {
		t.Skip("runs job processes")
	}
	haURL := "etcd://" + etcdtest.Start(t) + "/weir-test"
	chk := t.TempDir()
	common := []string{"--out", t.TempDir(), "--checkpoint-dir", chk, "--ha", haURL, "--ha-session-ttl", "1s",
		"--role", "jobmanager", "--stop-with-savepoint-on-sigterm"}
	leader := startJob(t, append(common, "--jobmanager", "127.0.0.1:0")...)
	leader.waitLog(t, "elected leader")
	standby := startJob(t, append(common, "--jobmanager", "127.0.0.1:0")...)
	standby.waitLog(t, "campaigning for the leadership")
	if err := standby.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := standby.wait(t, 2*time.Minute); err != nil {
		t.Fatalf("standby exit: %v, want 0\n%s", err, standby.stderr)
	}
	log := standby.stderr.String()
	if !strings.Contains(log, `msg="cancelled while starting" signal=terminated`) || strings.Contains(log, "elected leader") {
		t.Fatalf("the standby did not end its wait:\n%s", log)
	}
}

// checkLatestRestorable checks that what --restore latest picks in chk is
// a complete checkpoint (readable metadata, every state blob of the size
// it recorded) and that no checkpoint in flight was left behind.
func checkLatestRestorable(t *testing.T, chk string) checkpoint.ID {
	t.Helper()
	st, err := storage.NewFile(chk)
	if err != nil {
		t.Fatal(err)
	}
	id, ok, err := st.Latest(t.Context())
	if err != nil || !ok {
		t.Fatalf("no completed checkpoint in %s: %v", chk, err)
	}
	md, err := st.ReadMetadata(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range md.Operators {
		for _, sub := range op.Subtasks {
			for _, h := range sub.Keyed {
				r, err := st.OpenStream(t.Context(), h.Stream)
				if err != nil {
					t.Fatalf("checkpoint %d: %v", id, err)
				}
				r.Close()
			}
		}
	}
	if inc, err := st.Incomplete(t.Context()); err != nil || len(inc) != 0 {
		t.Fatalf("incomplete checkpoints left in %s: %v %v", chk, inc, err)
	}
	return id
}

// A second signal while the stop-with-savepoint of the first is in
// flight cancels the job: the process exits 0 and logs "cancelled", and
// --restore latest picks a complete checkpoint, from which the job
// finishes exactly once.
func TestSecondSignalDuringSavepoint(t *testing.T) {
	if testing.Short() {
		t.Skip("runs job processes")
	}
	out, chk := t.TempDir(), t.TempDir()
	const keys, count = 4, 4000
	common := []string{"--out", out, "--checkpoint-dir", chk, "--checkpoint-interval", "50ms",
		"--keys", fmt.Sprint(keys), "--count", fmt.Sprint(count), "--pad", fmt.Sprint(4 << 20)}
	p := startJob(t, append(common, "--rate", "200", "--stop-with-savepoint-on-sigterm")...)
	p.waitCheckpoint(t, chk)
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "stopping the job with a savepoint")
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, time.Minute); err != nil {
		t.Fatalf("exit: %v, want 0\n%s", err, p.stderr)
	}
	log := p.stderr.String()
	if !strings.Contains(log, "msg=cancelled") && !strings.Contains(log, "job stopped with a savepoint") {
		t.Fatalf("neither cancelled nor stopped:\n%s", log)
	}
	if strings.Contains(log, "testjob:") || strings.Contains(log, "level=ERROR") {
		t.Fatalf("the second signal logged an error:\n%s", log)
	}
	checkLatestRestorable(t, chk)
	again := startJob(t, append(common, "--restore", "latest")...)
	if err := again.wait(t, 2*time.Minute); err != nil {
		t.Fatalf("restart with --restore latest: %v\n%s", err, again.stderr)
	}
	verifyOutput(t, out, keys, count)
}

// A signal while the job restores a large checkpoint cancels it: the
// process exits 0 promptly and logs "cancelled", and --restore latest
// still picks a complete checkpoint.
func TestSignalDuringRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("runs job processes")
	}
	out, chk := t.TempDir(), t.TempDir()
	const keys, count = 4, 4000
	common := []string{"--out", out, "--checkpoint-dir", chk, "--checkpoint-interval", "200ms",
		"--keys", fmt.Sprint(keys), "--count", fmt.Sprint(count), "--pad", fmt.Sprint(16 << 20), "--rate", "200"}
	p := startJob(t, common...)
	p.waitCheckpoint(t, chk)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, time.Minute); err != nil {
		t.Fatalf("exit: %v, want 0\n%s", err, p.stderr)
	}
	before := checkLatestRestorable(t, chk)

	again := startJob(t, append(common, "--restore", "latest")...)
	again.waitLog(t, "msg=restoring")
	if err := again.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := again.wait(t, time.Minute); err != nil {
		t.Fatalf("exit: %v, want 0\n%s", err, again.stderr)
	}
	log := again.stderr.String()
	t.Logf("the restoring job:\n%s", log)
	if want := fmt.Sprintf("msg=cancelled signal=interrupt latestCheckpoint=%s", filepath.Join(chk, fmt.Sprintf("chk-%d", before))); !strings.Contains(log, want) {
		t.Fatalf("no cancellation naming the checkpoint to resume from (%s) logged:\n%s", want, log)
	}
	if strings.Contains(log, "testjob:") || strings.Contains(log, "level=ERROR") {
		t.Fatalf("a cancelled restore logged an error:\n%s", log)
	}
	if after := checkLatestRestorable(t, chk); after < before {
		t.Fatalf("the latest checkpoint went back from %d to %d", before, after)
	}
}

// Two processes of a job binary on one --checkpoint-dir: the second
// exits 1 at once, naming the directory and the first one's pid; after
// the first one is killed with SIGKILL the directory is free again (the
// kernel dropped the lock) and --restore latest resumes it.
func TestSecondProcessOnCheckpointDir(t *testing.T) {
	if testing.Short() {
		t.Skip("runs job processes")
	}
	out, chk := t.TempDir(), t.TempDir()
	const keys, count = 4, 2000
	common := []string{"--out", out, "--checkpoint-dir", chk, "--checkpoint-interval", "50ms",
		"--keys", fmt.Sprint(keys), "--count", fmt.Sprint(count), "--restore", "latest"}
	p := startJob(t, append(common, "--rate", "500")...)
	p.waitCheckpoint(t, chk)
	second := startJob(t, common...)
	err := second.wait(t, time.Minute)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("the second process: %v, want exit status 1\n%s", err, second.stderr)
	}
	log := second.stderr.String()
	for _, want := range []string{"checkpoint directory " + chk + " is in use by another job", fmt.Sprintf("pid %d on host", p.cmd.Process.Pid)} {
		if !strings.Contains(log, want) {
			t.Errorf("the second process does not say %q:\n%s", want, log)
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait(t, time.Minute)
	again := startJob(t, common...)
	if err := again.wait(t, 2*time.Minute); err != nil {
		t.Fatalf("after the holder was killed: %v\n%s", err, again.stderr)
	}
	verifyOutput(t, out, keys, count)
}
