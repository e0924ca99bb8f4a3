package main

import (
	"strings"
	"testing"
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
