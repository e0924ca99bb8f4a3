package main

import "testing"

// TestRuns: the example ends on its own, its windows fired.
func TestRuns(t *testing.T) {
	if err := run([]string{"--clicks", "2000", "--rate", "0", "--checkpoint-interval", "0"}); err != nil {
		t.Fatal(err)
	}
}
