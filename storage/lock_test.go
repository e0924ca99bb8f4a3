package storage

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// A directory store's lock excludes a second holder in the same process
// (flock locks belong to the open file) and names the directory and the
// holder; it can be taken again once released; stores that cannot lock
// take none.
func TestFileStoreLock(t *testing.T) {
	dir := t.TempDir()
	s, err := NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := s.TryLock("job one, pid 1 on host h")
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := NewFile(dir)
	_, err = s2.TryLock("job two")
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("a second lock of %s: %v", dir, err)
	}
	for _, want := range []string{dir, "job one, pid 1 on host h"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not name %q: %v", want, err)
		}
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	if err := unlock(); err != nil {
		t.Fatalf("a second unlock: %v", err)
	}
	unlock2, err := s2.TryLock("job two")
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	defer unlock2()
	// The lock file is no checkpoint, nor debris.
	if all, err := s2.Incomplete(ctx); err != nil || len(all) != 0 {
		t.Fatalf("the lock file shows as checkpoints: %v %v", all, err)
	}
	m := NewMemory("m")
	u1, err1 := m.TryLock("a")
	u2, err2 := m.TryLock("b")
	if err1 != nil || err2 != nil || u1() != nil || u2() != nil {
		t.Fatalf("memory storage: %v %v", err1, err2)
	}
}

// The kernel releases the lock of a process killed with SIGKILL: no stale
// lock survives a crash.
func TestFileStoreLockReleasedOnKill(t *testing.T) {
	if dir := os.Getenv("WEIR_TEST_LOCK_HOLDER"); dir != "" {
		s, err := NewFile(dir)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		if _, err := s.TryLock(Holder("holder")); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("locked")
		select {} // until killed
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFileStoreLockReleasedOnKill$")
	cmd.Env = append(os.Environ(), "WEIR_TEST_LOCK_HOLDER="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("the holder process: %q %v", line, err)
	}
	s, _ := NewFile(dir)
	_, err = s.TryLock("me")
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("job holder, pid %d on host", cmd.Process.Pid)) {
		t.Fatalf("want the lock held by pid %d: %v", cmd.Process.Pid, err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	unlock, err := s.TryLock("me")
	if err != nil {
		t.Fatalf("the lock outlived its killed holder: %v", err)
	}
	unlock()
}
