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

// --verify runs windowed, joining and updating queries with and without
// injected failures, and their committed outputs are equal.
func TestVerify(t *testing.T) {
	err := run([]string{"--verify", "--events", "20000", "--rate", "200", "--parallelism", "2", "--failures", "2",
		"--queries", "q4,q5,q7,q8,q11,q17"})
	if err != nil {
		t.Fatal(err)
	}
}

// The outputs compare as multisets: a missing, an extra or a repeated
// row is a difference.
func TestCompare(t *testing.T) {
	if r := compare("q", []string{"a", "b", "b"}, []string{"b", "a", "b"}); !r.equal {
		t.Errorf("equal multisets differ: %+v", r)
	}
	if r := compare("q", []string{"a", "b"}, []string{"a", "b", "b"}); r.equal || r.onlyFO != "b" {
		t.Errorf("a repeated row: %+v", r)
	}
	if r := compare("q", []string{"a", "c"}, []string{"a"}); r.equal || r.onlyBase != "c" {
		t.Errorf("a missing row: %+v", r)
	}
}

func TestVerifyFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--verify", "--queries", "q0"},
		{"--verify", "--queries", "q12"},
		{"--verify", "--checkpoint-interval", "0"},
		{"--verify", "--events", "10", "--failures", "10"},
	} {
		if err := run(args); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
