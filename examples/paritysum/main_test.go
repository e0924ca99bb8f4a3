package main

import (
	"bytes"
	"strings"
	"testing"
)

// The quick start: with one injected failure the job restores its last
// checkpoint and still ends with the exactly-once sums.
func TestParitySumSurvivesInjectedFailure(t *testing.T) {
	var out bytes.Buffer
	args := []string{"--checkpoint-dir", t.TempDir(), "--checkpoint-interval", "50ms", "--rate", "200",
		"--fail-after", "25", "--restart-strategy", "fixed-delay:attempts=1,delay=10ms", "--log-level", "error"}
	if err := run(args, &out); err != nil {
		t.Fatal(err)
	}
	last := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		// "1> (even,420)"
		_, kv, _ := strings.Cut(line, "(")
		k, v, _ := strings.Cut(strings.TrimSuffix(kv, ")"), ",")
		last[k] = v
	}
	if last["even"] != "420" || last["odd"] != "450" {
		t.Fatalf("final sums even=%s odd=%s, want 420 and 450\n%s", last["even"], last["odd"], out.String())
	}
}

func TestParitySumRejectsBadFlags(t *testing.T) {
	err := run([]string{"--mode", "sometimes"}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "-mode") {
		t.Fatalf("got %v", err)
	}
}
