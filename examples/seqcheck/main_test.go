package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weirstream/weir/ha"
	"github.com/weirstream/weir/internal/etcdtest"
	"github.com/weirstream/weir/internal/pgtest"
	"github.com/weirstream/weir/storage"
)

// TestKillAndRestore starts seqcheck as a real OS process, kills it with
// SIGKILL at random times (at least 10 times), restarts it each time with
// --restore latest, lets the last run finish, and checks the committed
// output: every (key, seq) exactly once, with cnt = seq.
func TestKillAndRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a process")
	}
	bin := buildSeqcheck(t)
	out, chk := t.TempDir(), t.TempDir()
	const keys, count = 4, 5000
	args := []string{"--sink", "file", "--sink-url", out, "--checkpoint-dir", chk, "--checkpoint-interval", "40ms",
		"--restore", "latest", "--keys", fmt.Sprint(keys), "--count", fmt.Sprint(count), "--rate", "2000",
		"--parallelism", "2", "--log-level", "warn"}
	killAndRestart(t, bin, args, 10)
	verify(t, out, keys, count)
	// A finished job restarted with --restore latest changes nothing.
	again := exec.Command(bin, args...)
	again.Stderr = os.Stderr
	if err := again.Run(); err != nil {
		t.Fatalf("restart after finishing: %v", err)
	}
	verify(t, out, keys, count)
}

// TestKillAndRestorePostgres is the same against a private PostgreSQL: the
// table ends with every (key, seq) exactly once and no prepared
// transaction is left behind.
func TestKillAndRestorePostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a process")
	}
	dsn := pgtest.Start(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE seqcheck (key BIGINT, seq BIGINT, cnt BIGINT)"); err != nil {
		t.Fatal(err)
	}
	bin := buildSeqcheck(t)
	const keys, count = 4, 5000
	args := []string{"--sink", "postgres", "--sink-url", dsn, "--table", "seqcheck", "--checkpoint-dir", t.TempDir(),
		"--checkpoint-interval", "40ms", "--restore", "latest", "--keys", fmt.Sprint(keys), "--count", fmt.Sprint(count),
		"--rate", "2000", "--parallelism", "2", "--log-level", "warn"}
	killAndRestart(t, bin, args, 10)
	var rows, distinct, bad, prepared int
	if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT (key, seq)), count(*) FILTER (WHERE cnt <> seq),
		(SELECT count(*) FROM pg_prepared_xacts) FROM seqcheck`).Scan(&rows, &distinct, &bad, &prepared); err != nil {
		t.Fatal(err)
	}
	if rows != keys*count || distinct != keys*count || bad != 0 || prepared != 0 {
		t.Fatalf("rows %d, distinct (key, seq) %d, want %d each; %d with cnt <> seq; %d prepared transactions left",
			rows, distinct, keys*count, bad, prepared)
	}
}

func buildSeqcheck(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "seqcheck")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("cannot build seqcheck: %v", err)
	}
	return bin
}

// killAndRestart runs bin with args, kills it with SIGKILL kills times at
// random moments (restarting it each time), then lets a last run finish.
func killAndRestart(t *testing.T, bin string, args []string, kills int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 7))
	for k := 0; k < kills; k++ {
		cmd := exec.Command(bin, args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			t.Fatalf("seqcheck ended before kill %d (%v): the workload is too short\n%s", k+1, err, stderr.String())
		case <-time.After(time.Duration(80+rng.IntN(300)) * time.Millisecond):
		}
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
	final := exec.Command(bin, args...)
	final.Stderr = os.Stderr
	runErr := make(chan error, 1)
	if err := final.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { runErr <- final.Wait() }()
	select {
	case err := <-runErr:
		if err != nil {
			t.Fatalf("final run: %v", err)
		}
	case <-time.After(2 * time.Minute):
		final.Process.Kill()
		t.Fatal("final run did not finish")
	}
}

func verify(t *testing.T, dir string, keys, count int64) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[[2]int64]int{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("uncommitted file left: %s", e.Name())
			continue
		}
		f, _ := os.Open(filepath.Join(dir, e.Name()))
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

// TestClusterKillTaskManagers runs seqcheck as a cluster of real OS
// processes on loopback: one job manager and three task managers (two
// slots needed, one spare). Task managers are killed with SIGKILL at
// random times, ten times, and started again; the job fails over each time
// and the committed output is exactly once.
func TestClusterKillTaskManagers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills processes")
	}
	bin := buildSeqcheck(t)
	out, chk := t.TempDir(), t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	jmAddr := l.Addr().String()
	l.Close()
	const keys, count = 4, 6000
	common := []string{"--sink", "file", "--sink-url", out, "--checkpoint-dir", chk, "--checkpoint-interval", "40ms",
		"--keys", fmt.Sprint(keys), "--count", fmt.Sprint(count), "--rate", "2000", "--parallelism", "2",
		"--log-level", "warn", "--jobmanager", jmAddr, "--token", "kill-test"}
	jm := exec.Command(bin, append([]string{"--role", "jobmanager", "--restart-strategy", "fixed-delay:attempts=1000,delay=50ms"}, common...)...)
	var jmErr strings.Builder
	jm.Stderr = &jmErr
	if err := jm.Start(); err != nil {
		t.Fatal(err)
	}
	jmDone := make(chan error, 1)
	go func() { jmDone <- jm.Wait() }()
	defer jm.Process.Kill()

	type tm struct {
		cmd  *exec.Cmd
		done chan error
	}
	start := func(i int) *tm {
		cmd := exec.Command(bin, append([]string{"--role", "taskmanager", "--name", fmt.Sprintf("tm-%d", i)}, common...)...)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		x := &tm{cmd: cmd, done: make(chan error, 1)}
		go func() { x.done <- cmd.Wait() }()
		return x
	}
	tms := []*tm{start(0), start(1), start(2)}
	defer func() {
		for _, x := range tms {
			x.cmd.Process.Kill()
		}
	}()
	rng := rand.New(rand.NewPCG(11, 11))
	for k := range 10 {
		select {
		case err := <-jmDone:
			t.Fatalf("job manager ended after %d kills (%v): the workload is too short\n%s", k, err, jmErr.String())
		case <-time.After(time.Duration(250+rng.IntN(400)) * time.Millisecond):
		}
		i := rng.IntN(len(tms))
		tms[i].cmd.Process.Signal(syscall.SIGKILL)
		<-tms[i].done
		tms[i] = start(i)
	}
	select {
	case err := <-jmDone:
		if err != nil {
			t.Fatalf("job manager: %v\n%s", err, jmErr.String())
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("the job did not finish\n%s", jmErr.String())
	}
	if !strings.Contains(jmErr.String(), "restarting") {
		t.Fatalf("no kill made the job fail over: the test proves nothing\n%s", jmErr.String())
	}
	for i, x := range tms {
		select {
		case err := <-x.done:
			if err != nil {
				t.Errorf("task manager %d: %v", i, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("task manager %d did not exit after the job ended", i)
		}
	}
	verify(t, out, keys, count)
}

// TestClusterJobManagerFailover runs two job managers with high
// availability on a real (embedded) etcd, and three task managers, as OS
// processes. The leading job manager is killed with SIGKILL mid-run: the
// standby is elected, the task managers find it, it restores the latest
// checkpoint recorded in etcd, checkpoint ids keep increasing, and the
// output is exactly once.
func TestClusterJobManagerFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills processes")
	}
	bin := buildSeqcheck(t)
	etcd := etcdtest.Start(t)
	haURL := "etcd://" + etcd + "/weir-test"
	out, chk := t.TempDir(), t.TempDir()
	const keys, count = 4, 6000
	common := []string{"--sink", "file", "--sink-url", out, "--checkpoint-dir", chk, "--checkpoint-interval", "40ms",
		"--keys", fmt.Sprint(keys), "--count", fmt.Sprint(count), "--rate", "2000", "--parallelism", "2",
		"--log-level", "warn", "--token", "ha-test", "--ha", haURL, "--ha-session-ttl", "1s"}
	type proc struct {
		cmd    *exec.Cmd
		done   chan error
		stderr *strings.Builder
	}
	start := func(args ...string) *proc {
		p := &proc{cmd: exec.Command(bin, append(args, common...)...), done: make(chan error, 1), stderr: &strings.Builder{}}
		p.cmd.Stderr = p.stderr
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.done <- p.cmd.Wait() }()
		t.Cleanup(func() { p.cmd.Process.Kill() })
		return p
	}
	jms := map[string]*proc{}
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		jms[addr] = start("--role", "jobmanager", "--jobmanager", addr, "--restart-strategy", "fixed-delay:attempts=1000,delay=50ms")
	}
	var tms []*proc
	for i := range 3 {
		tms = append(tms, start("--role", "taskmanager", "--name", fmt.Sprintf("tm-%d", i)))
	}
	st, err := storage.NewFile(chk)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if id, ok, _ := st.Latest(); ok && id >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint completed within a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	svc, err := ha.Open(context.Background(), haURL)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	leader, ok, err := svc.Leader(context.Background(), "seqcheck")
	if err != nil || !ok || jms[leader] == nil {
		t.Fatalf("leader %q %v %v; job managers %v", leader, ok, err, jms)
	}
	before, _ := st.MaxID()
	jms[leader].cmd.Process.Signal(syscall.SIGKILL)
	<-jms[leader].done
	var standby *proc
	for addr, p := range jms {
		if addr != leader {
			standby = p
		}
	}
	select {
	case err := <-standby.done:
		if err != nil {
			t.Fatalf("standby job manager: %v\n%s", err, standby.stderr)
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("the standby did not finish the job\n%s", standby.stderr)
	}
	if now, _, _ := svc.Leader(context.Background(), "seqcheck"); now == leader {
		t.Fatalf("the killed job manager %s still leads", leader)
	}
	after, _ := st.MaxID()
	if after <= before {
		t.Fatalf("checkpoint ids did not go on: %d before the kill, %d at the end", before, after)
	}
	for i, p := range tms {
		select {
		case err := <-p.done:
			if err != nil {
				t.Errorf("task manager %d: %v\n%s", i, err, p.stderr)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("task manager %d did not exit after the job ended", i)
		}
	}
	verify(t, out, keys, count)
}

// TestClusterFrozenTaskManager freezes a task manager that runs subtasks
// (SIGSTOP: its connections stay open, it just stops answering). The job
// manager notices the missing heartbeats within the timeout (1 s here),
// fails the job over to the spare task manager, and the output stays
// exactly once; the frozen one, thawed, stops its stale tasks.
func TestClusterFrozenTaskManager(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and freezes processes")
	}
	bin := buildSeqcheck(t)
	out, chk := t.TempDir(), t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	jmAddr := l.Addr().String()
	l.Close()
	const keys, count = 4, 6000
	common := []string{"--sink", "file", "--sink-url", out, "--checkpoint-dir", chk, "--checkpoint-interval", "40ms",
		"--keys", fmt.Sprint(keys), "--count", fmt.Sprint(count), "--rate", "2000", "--parallelism", "2",
		"--log-level", "warn", "--jobmanager", jmAddr, "--heartbeat-timeout", "1s"}
	jm := exec.Command(bin, append([]string{"--role", "jobmanager", "--restart-strategy", "fixed-delay:attempts=100,delay=50ms"}, common...)...)
	var jmErr strings.Builder
	jm.Stderr = &jmErr
	if err := jm.Start(); err != nil {
		t.Fatal(err)
	}
	jmDone := make(chan error, 1)
	go func() { jmDone <- jm.Wait() }()
	defer jm.Process.Kill()
	var tms []*exec.Cmd
	for i := range 3 {
		cmd := exec.Command(bin, append([]string{"--role", "taskmanager", "--name", fmt.Sprintf("tm-%d", i)}, common...)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		tms = append(tms, cmd)
	}
	st, err := storage.NewFile(chk)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		if id, ok, _ := st.Latest(); ok && id >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint completed within a minute")
		}
	}
	// tm-0 holds slot 0 (slots go out in name order): it runs subtasks.
	tms[0].Process.Signal(syscall.SIGSTOP)
	time.Sleep(2500 * time.Millisecond) // longer than the heartbeat timeout
	tms[0].Process.Signal(syscall.SIGCONT)
	select {
	case err := <-jmDone:
		if err != nil {
			t.Fatalf("job manager: %v\n%s", err, jmErr.String())
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("the job did not finish\n%s", jmErr.String())
	}
	if !strings.Contains(jmErr.String(), "missed its heartbeats") {
		t.Fatalf("the frozen task manager was not detected by its heartbeats:\n%s", jmErr.String())
	}
	verify(t, out, keys, count)
}
