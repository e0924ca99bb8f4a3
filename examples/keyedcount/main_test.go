package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func build(b testing.TB) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "keyedcount")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("cannot build keyedcount: %v", err)
	}
	return bin
}

// TestRunsLocally: the job ends and reports its throughput.
func TestRunsLocally(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	if err := run([]string{"--records", "100000", "--checkpoint-interval", "0"}); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkProcesses runs b.N records of the keyed count as separate OS
// processes: one local process, and a job manager with two task managers
// (one slot each, loopback), both with exactly-once checkpoints every
// second to a local folder. events/s is end to end, start-up included.
//
//	go test -run X -bench Processes -benchtime 50000000x ./examples/keyedcount
func BenchmarkProcesses(b *testing.B) {
	bin := build(b)
	common := func(b *testing.B) []string {
		return []string{"--records", fmt.Sprint(b.N), "--parallelism", "2", "--checkpoint-interval", "1s",
			"--checkpoint-dir", b.TempDir(), "--log-level", "error"}
	}
	b.Run("local", func(b *testing.B) {
		start := time.Now()
		cmd := exec.Command(bin, common(b)...)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	})
	b.Run("jobmanager+2taskmanagers", func(b *testing.B) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		jm := l.Addr().String()
		l.Close()
		args := append(common(b), "--jobmanager", jm)
		var tms []*exec.Cmd
		for i := range 2 {
			tm := exec.Command(bin, append(args, "--role", "taskmanager", "--name", fmt.Sprint("tm-", i))...)
			tm.Stderr = os.Stderr
			if err := tm.Start(); err != nil {
				b.Fatal(err)
			}
			tms = append(tms, tm)
		}
		start := time.Now()
		cmd := exec.Command(bin, append(args, "--role", "jobmanager")...)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
		el := time.Since(start)
		for _, tm := range tms {
			if err := tm.Wait(); err != nil {
				b.Errorf("task manager: %v", err)
			}
		}
		b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
	})
}
