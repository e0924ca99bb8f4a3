package jobflags

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/checkpoint"
)

func parse(t *testing.T, args []string, env map[string]string) (*Flags, error) {
	t.Helper()
	fs := flag.NewFlagSet("job", flag.ContinueOnError)
	f := Register(fs)
	err := Parse(fs, args, func(k string) string { return env[k] })
	return f, err
}

func TestFlagsAndEnvironment(t *testing.T) {
	f, err := parse(t, []string{"--checkpoint-dir", "/x", "--mode", "at-least-once", "--parallelism", "3"},
		map[string]string{"WEIR_CHECKPOINT_INTERVAL": "250ms", "WEIR_PARALLELISM": "9", "WEIR_RESTORE": "latest"})
	if err != nil {
		t.Fatal(err)
	}
	if f.CheckpointDir != "/x" || f.Mode != checkpoint.AtLeastOnce || f.CheckpointInterval != 250*time.Millisecond || f.Restore != "latest" {
		t.Fatalf("flags %+v", f)
	}
	if f.Parallelism != 3 {
		t.Fatalf("the command line must win over WEIR_PARALLELISM: got %d", f.Parallelism)
	}
	if opts, err := f.Options("job"); err != nil || len(opts) == 0 {
		t.Fatalf("options: %v", err)
	}
}

func TestInvalidValuesNameTheFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--mode", "twice"}, nil, "-mode"},
		{[]string{"--parallelism", "0"}, nil, "-parallelism"},
		{[]string{"--checkpoint-interval", "soon"}, nil, "-checkpoint-interval"},
		{nil, map[string]string{"WEIR_MODE": "maybe"}, "WEIR_MODE (--mode)"},
		{nil, map[string]string{"WEIR_PARALLELISM": "-2"}, "WEIR_PARALLELISM (--parallelism)"},
		{[]string{"--restart-strategy", "fixed-delay:attempts=x"}, nil, "attempts"},
		{[]string{"--bogus"}, nil, "bogus"},
		{[]string{"extra"}, nil, `unexpected argument "extra"`},
	} {
		_, err := parse(t, tc.args, tc.env)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: want error naming %q, got %v", tc.args, tc.env, tc.want, err)
		}
	}
	f, err := parse(t, []string{"--checkpoint-interval", "-1s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Options("job"); err == nil || !strings.Contains(err.Error(), "--checkpoint-interval") {
		t.Fatalf("negative interval: %v", err)
	}
	f, err = parse(t, nil, map[string]string{"WEIR_STATE_BACKEND": "rocksdb"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Options("job"); err == nil || !strings.Contains(err.Error(), "--state-backend") {
		t.Fatalf("unknown state backend: %v", err)
	}
	f, err = parse(t, []string{"--state-backend", "pebble", "--incremental=false"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.StateBackend != "pebble" || f.Incremental {
		t.Fatalf("state flags not parsed: %+v", f)
	}
	if _, err := f.Options("job"); err != nil {
		t.Fatalf("pebble state backend: %v", err)
	}
}
