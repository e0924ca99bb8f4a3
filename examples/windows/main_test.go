package main

import (
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"
)

// TestRuns: the example ends on its own, its windows fired.
func TestRuns(t *testing.T) {
	if err := run([]string{"--clicks", "2000", "--rate", "0", "--checkpoint-interval", "0"}); err != nil {
		t.Fatal(err)
	}
}

// TestCtrlCExitsCleanly: Ctrl-C (SIGINT) cancels the running job and run
// returns nil, so the process exits 0 rather than with an error.
func TestCtrlCExitsCleanly(t *testing.T) {
	// This test's own registration keeps a SIGINT that arrives before the
	// job registers its handler from ending the test process.
	mine := make(chan os.Signal, 16)
	signal.Notify(mine, os.Interrupt)
	defer signal.Stop(mine)
	done := make(chan error, 1)
	go func() {
		done <- run([]string{"--clicks", "1000000000", "--rate", "1000", "--checkpoint-interval", "100ms",
			"--checkpoint-dir", t.TempDir(), "--log-level", "warn"})
	}()
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(2 * time.Minute)
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run after Ctrl-C: %v, want nil", err)
			}
			return
		case <-tick.C:
			if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
		case <-deadline:
			t.Fatal("the job did not end after Ctrl-C")
		}
	}
}
