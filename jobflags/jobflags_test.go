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
	f, err := parse(t, nil, map[string]string{"WEIR_STATE_BACKEND": "rocksdb"})
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

// Duration flags refuse what the runtime would otherwise replace by its
// default without a word (a negative or zero timeout), and say that a
// duration needs a unit.
func TestDurationFlags(t *testing.T) {
	const unitHint = "not a duration; use a number with a unit, like 5s or 500ms"
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want []string
	}{
		{[]string{"--heartbeat-timeout", "-1s"}, nil, []string{"-heartbeat-timeout", "must be more than 0"}},
		{[]string{"--heartbeat-timeout", "0"}, nil, []string{"-heartbeat-timeout", "must be more than 0"}},
		{[]string{"--ha-session-ttl", "-5s"}, nil, []string{"-ha-session-ttl", "must be more than 0"}},
		{[]string{"--ha-session-ttl", "0s"}, nil, []string{"-ha-session-ttl", "must be more than 0"}},
		{[]string{"--checkpoint-interval", "-1s"}, nil, []string{"-checkpoint-interval", "must not be negative (0 disables checkpointing)"}},
		{[]string{"--checkpoint-interval", "abc"}, nil, []string{`invalid value "abc"`, "-checkpoint-interval", unitHint}},
		{[]string{"--checkpoint-interval", "5"}, nil, []string{`invalid value "5"`, "-checkpoint-interval", unitHint}},
		{[]string{"--heartbeat-timeout", "10"}, nil, []string{"-heartbeat-timeout", unitHint}},
		{[]string{"--ha-session-ttl", "soon"}, nil, []string{"-ha-session-ttl", unitHint}},
		{nil, map[string]string{"WEIR_HEARTBEAT_TIMEOUT": "-1s"}, []string{"WEIR_HEARTBEAT_TIMEOUT (--heartbeat-timeout)", "must be more than 0"}},
		{nil, map[string]string{"WEIR_CHECKPOINT_INTERVAL": "5"}, []string{`invalid value "5" for WEIR_CHECKPOINT_INTERVAL (--checkpoint-interval)`, unitHint}},
	} {
		_, err := parse(t, tc.args, tc.env)
		if err == nil {
			t.Errorf("%v %v: accepted", tc.args, tc.env)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v %v: error %q does not say %q", tc.args, tc.env, err, w)
			}
		}
	}

	f, err := parse(t, []string{"--checkpoint-interval", "0", "--heartbeat-timeout", "2s", "--ha-session-ttl", "1500ms"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.CheckpointInterval != 0 || f.Heartbeat != 2*time.Second || f.HATTL != 1500*time.Millisecond {
		t.Fatalf("durations %v %v %v", f.CheckpointInterval, f.Heartbeat, f.HATTL)
	}
	f, err = parse(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.CheckpointInterval != time.Second || f.Heartbeat != 5*time.Second || f.HATTL != 5*time.Second {
		t.Fatalf("defaults %v %v %v", f.CheckpointInterval, f.Heartbeat, f.HATTL)
	}

	// Flags built by hand: a negative duration is refused by Options.
	for _, tc := range []struct {
		f    Flags
		want string
	}{
		{Flags{Parallelism: 1, CheckpointInterval: -time.Second}, "--checkpoint-interval"},
		{Flags{Parallelism: 1, Role: "jobmanager", Heartbeat: -time.Second}, "--heartbeat-timeout"},
		{Flags{Parallelism: 1, Role: "jobmanager", HATTL: -time.Second}, "--ha-session-ttl"},
	} {
		if _, err := tc.f.Options("job"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: want an error naming %s, got %v", tc.f, tc.want, err)
		}
	}
}

func TestRESTListen(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // error; "" for none
	}{
		{[]string{"--rest-listen", "127.0.0.1:0"}, ""},
		{[]string{"--rest-listen", "0.0.0.0:8081"}, "--token"},
		{[]string{"--rest-listen", "0.0.0.0:8081", "--token", "t"}, ""},
		{[]string{"--rest-listen", "127.0.0.1:0", "--role", "taskmanager"}, "not a task manager"},
		{[]string{"--rest-listen", "127.0.0.1:0", "--role", "jobmanager"}, ""},
	} {
		f, err := parse(t, tc.args, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.Options("job")
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%v: want error %q, got %v", tc.args, tc.want, err)
		}
	}
	if f, _ := parse(t, nil, map[string]string{"WEIR_REST_LISTEN": "127.0.0.1:9"}); f.RESTListen != "127.0.0.1:9" {
		t.Errorf("WEIR_REST_LISTEN: got %q", f.RESTListen)
	}
}
