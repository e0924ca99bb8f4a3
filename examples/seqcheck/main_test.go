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

// proc is a seqcheck process of a cluster test.
type proc struct {
	cmd    *exec.Cmd
	done   chan error // its exit
	stderr *strings.Builder
}

// startProc starts bin with args; it is killed when the test ends.
func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), done: make(chan error, 1), stderr: &strings.Builder{}}
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { p.cmd.Process.Kill() })
	return p
}

// wait waits for the process to exit 0.
func (p *proc) wait(t *testing.T, what string, timeout time.Duration) {
	t.Helper()
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("%s: %v\n%s", what, err, p.stderr)
		}
	case <-time.After(timeout):
		t.Fatalf("%s did not end within %s\n%s", what, timeout, p.stderr)
	}
}

func loopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// clusterArgs are the flags every process of a cluster test shares.
func clusterArgs(out, chk string, keys, count int, extra ...string) []string {
	return append([]string{"--sink", "file", "--sink-url", out, "--checkpoint-dir", chk, "--checkpoint-interval", "40ms",
		"--keys", fmt.Sprint(keys), "--count", fmt.Sprint(count), "--rate", "2000", "--parallelism", "2",
		"--log-level", "warn"}, extra...)
}

// waitCheckpoints waits until checkpoint n of the storage in dir completed.
func waitCheckpoints(t *testing.T, dir string, n int) *storage.Storage {
	t.Helper()
	st, err := storage.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		if id, ok, _ := st.Latest(t.Context()); ok && int(id) >= n {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint %d did not complete within a minute", n)
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
	const keys, count = 4, 6000
	common := clusterArgs(out, chk, keys, count, "--jobmanager", loopbackAddr(t), "--token", "kill-test")
	jm := startProc(t, bin, append([]string{"--role", "jobmanager", "--restart-strategy", "fixed-delay:attempts=1000,delay=50ms"}, common...)...)
	startTM := func(i int) *proc {
		return startProc(t, bin, append([]string{"--role", "taskmanager", "--name", fmt.Sprintf("tm-%d", i)}, common...)...)
	}
	tms := []*proc{startTM(0), startTM(1), startTM(2)}
	rng := rand.New(rand.NewPCG(11, 11))
	for k := range 10 {
		select {
		case err := <-jm.done:
			t.Fatalf("job manager ended after %d kills (%v): the workload is too short\n%s", k, err, jm.stderr)
		case <-time.After(time.Duration(250+rng.IntN(400)) * time.Millisecond):
		}
		i := rng.IntN(len(tms))
		tms[i].cmd.Process.Signal(syscall.SIGKILL)
		<-tms[i].done
		tms[i] = startTM(i)
	}
	jm.wait(t, "the job manager", 3*time.Minute)
	if !strings.Contains(jm.stderr.String(), "restarting") {
		t.Fatalf("no kill made the job fail over: the test proves nothing\n%s", jm.stderr)
	}
	for i, p := range tms {
		p.wait(t, fmt.Sprintf("task manager %d", i), 30*time.Second)
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
	haURL := "etcd://" + etcdtest.Start(t) + "/weir-test"
	out, chk := t.TempDir(), t.TempDir()
	const keys, count = 4, 6000
	common := clusterArgs(out, chk, keys, count, "--token", "ha-test", "--ha", haURL, "--ha-session-ttl", "1s")
	jms := map[string]*proc{}
	for range 2 {
		addr := loopbackAddr(t)
		jms[addr] = startProc(t, bin, append([]string{"--role", "jobmanager", "--jobmanager", addr, "--restart-strategy", "fixed-delay:attempts=1000,delay=50ms"}, common...)...)
	}
	var tms []*proc
	for i := range 3 {
		tms = append(tms, startProc(t, bin, append([]string{"--role", "taskmanager", "--name", fmt.Sprintf("tm-%d", i)}, common...)...))
	}
	st := waitCheckpoints(t, chk, 3)
	svc, err := ha.Open(context.Background(), haURL)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	leader, ok, err := svc.Leader(context.Background(), "seqcheck")
	if err != nil || !ok || jms[leader] == nil {
		t.Fatalf("leader %q %v %v; job managers %v", leader, ok, err, jms)
	}
	before, _ := st.MaxID(t.Context())
	jms[leader].cmd.Process.Signal(syscall.SIGKILL)
	<-jms[leader].done
	for addr, p := range jms {
		if addr != leader {
			p.wait(t, "the standby job manager", 3*time.Minute)
		}
	}
	if now, _, _ := svc.Leader(context.Background(), "seqcheck"); now == leader {
		t.Fatalf("the killed job manager %s still leads", leader)
	}
	if after, _ := st.MaxID(t.Context()); after <= before {
		t.Fatalf("checkpoint ids did not go on: %d before the kill, %d at the end", before, after)
	}
	for i, p := range tms {
		p.wait(t, fmt.Sprintf("task manager %d", i), 30*time.Second)
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
	const keys, count = 4, 6000
	common := clusterArgs(out, chk, keys, count, "--jobmanager", loopbackAddr(t), "--heartbeat-timeout", "1s")
	jm := startProc(t, bin, append([]string{"--role", "jobmanager", "--restart-strategy", "fixed-delay:attempts=100,delay=50ms"}, common...)...)
	var tms []*proc
	for i := range 3 {
		tms = append(tms, startProc(t, bin, append([]string{"--role", "taskmanager", "--name", fmt.Sprintf("tm-%d", i)}, common...)...))
	}
	waitCheckpoints(t, chk, 3)
	// tm-0 holds slot 0 (slots go out in name order): it runs subtasks.
	tms[0].cmd.Process.Signal(syscall.SIGSTOP)
	time.Sleep(2500 * time.Millisecond) // longer than the heartbeat timeout
	tms[0].cmd.Process.Signal(syscall.SIGCONT)
	jm.wait(t, "the job manager", 3*time.Minute)
	if !strings.Contains(jm.stderr.String(), "missed its heartbeats") {
		t.Fatalf("the frozen task manager was not detected by its heartbeats:\n%s", jm.stderr)
	}
	verify(t, out, keys, count)
}
