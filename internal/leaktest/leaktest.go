// Package leaktest fails a test binary whose goroutines outlive its tests:
// every goroutine a package starts must have an owner that stops it and
// waits for it.
//
//	func TestMain(m *testing.M) { leaktest.Main(m) }
package leaktest

import (
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"
)

// grace is how long goroutines may take to exit after the last test.
const grace = 5 * time.Second

// Main runs the tests and exits with their status; when they pass but
// more goroutines run after them than before them (after a grace period
// for goroutines that are exiting), it prints every goroutine's stack and
// exits with status 1.
func Main(m *testing.M) {
	before := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		if n := Leaked(before, grace); n > 0 {
			buf := make([]byte, 1<<20)
			fmt.Fprintf(os.Stderr, "%d goroutines leaked:\n%s\n", n, buf[:runtime.Stack(buf, true)])
			code = 1
		}
	}
	os.Exit(code)
}

// Leaked waits up to grace for the number of goroutines to fall back to
// before and returns how many more there are then.
func Leaked(before int, grace time.Duration) int {
	deadline := time.Now().Add(grace)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return max(runtime.NumGoroutine()-before, 0)
}
