// Package jobflags gives every weir job binary the same standard flags, so
// that a job started by hand, by systemd or by Kubernetes is configured the
// same way. Each flag can also be set through an environment variable named
// WEIR_ plus the flag name in upper case with dashes as underscores
// (--checkpoint-dir is WEIR_CHECKPOINT_DIR); a flag on the command line wins
// over the environment.
//
//	fs := flag.NewFlagSet("myjob", flag.ContinueOnError)
//	jf := jobflags.Register(fs)
//	failAfter := fs.Int("fail-after", 0, "...") // the job's own flags
//	if err := jobflags.Parse(fs, os.Args[1:], os.Getenv); err != nil { ... }
//	opts, err := jf.Options()
//	env := weir.NewEnvironment(opts...)
package jobflags

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/cluster"
	"github.com/weirstream/weir/rest"
	"github.com/weirstream/weir/restart"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/state"
	"github.com/weirstream/weir/state/pebblestate"
	// Job binaries read and write s3:// checkpoint locations.
	_ "github.com/weirstream/weir/storage/s3"
)

// Flags holds the standard job flags.
type Flags struct {
	CheckpointDir      string
	CheckpointInterval time.Duration
	Mode               checkpoint.Mode
	Parallelism        int
	Restore            string
	Restart            restart.Strategy
	LogLevel           slog.Level
	// StateBackend is "heap" or "pebble"; StateDir is pebble's local
	// working directory; Incremental selects pebble's incremental
	// checkpoints.
	StateBackend string
	StateDir     string
	Incremental  bool
	// Cluster: the role of this process and where the job manager is.
	// HATTL and Heartbeat of zero (in Flags built by hand) take the
	// runtime's defaults; the flags themselves refuse zero.
	Role       string
	JobManager string
	DataListen string
	Token      string
	Slots      int
	Name       string
	HA         string
	HATTL      time.Duration
	Heartbeat  time.Duration
	TLSCert    string
	TLSKey     string
	TLSCA      string
	// RESTListen is where a local job or a job manager serves its REST
	// API, metrics and web UI ("" serves none).
	RESTListen string
	// RestoreMode is "optional" (the default: --restore latest with no
	// checkpoint is a fresh start) or "required" (it is an error).
	RestoreMode string
	// AllowNonRestoredState drops the state of operators the job no
	// longer has when it restores.
	AllowNonRestoredState bool
	// MaxParallelism is the number of key groups (0: weir's default).
	MaxParallelism int
	// StopWithSavepointOnSigterm makes Run stop the job with a savepoint
	// on SIGTERM or SIGINT instead of cancelling it.
	StopWithSavepointOnSigterm bool
	// LogFormat is "text" (the default) or "json".
	LogFormat string

	// What Options and the job's launch learn, for Run's logs.
	log     *slog.Logger
	jobName string
	restURL string
}

type modeValue struct{ m *checkpoint.Mode }

func (v modeValue) String() string {
	if v.m == nil {
		return ""
	}
	return v.m.String()
}

func (v modeValue) Set(s string) error {
	m, err := checkpoint.ParseMode(s)
	if err != nil {
		return err
	}
	*v.m = m
	return nil
}

type restartValue struct{ s *restart.Strategy }

func (v restartValue) String() string {
	if v.s == nil || *v.s == nil {
		return ""
	}
	return (*v.s).String()
}

func (v restartValue) Set(s string) error {
	st, err := restart.Parse(s)
	if err != nil {
		return err
	}
	*v.s = st
	return nil
}

type positiveInt struct{ n *int }

func (v positiveInt) String() string {
	if v.n == nil {
		return "0"
	}
	return strconv.Itoa(*v.n)
}

func (v positiveInt) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("not a whole number: %q", s)
	}
	if n < 1 {
		return fmt.Errorf("must be at least 1, got %d", n)
	}
	*v.n = n
	return nil
}

// durationValue is a duration flag that must be positive, or with zeroOK
// at least zero. flag.Duration would take -1s (which the runtime then
// replaces by its default without a word) and says only "parse error" for
// "abc" or a bare "5".
type durationValue struct {
	d      *time.Duration
	zeroOK bool
	// zeroMeans says what 0 does when zeroOK, for the error of a
	// negative value.
	zeroMeans string
}

func (v durationValue) String() string {
	if v.d == nil {
		return "0s"
	}
	return v.d.String()
}

func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return errors.New("not a duration; use a number with a unit, like 5s or 500ms")
	}
	switch {
	case v.zeroOK && d < 0:
		return fmt.Errorf("must not be negative (0 %s)", v.zeroMeans)
	case !v.zeroOK && d <= 0:
		return errors.New("must be more than 0, like 5s or 500ms")
	}
	*v.d = d
	return nil
}

// maxParallelismValue is a whole number from 1 to 32768.
type maxParallelismValue struct{ n *int }

func (v maxParallelismValue) String() string {
	if v.n == nil {
		return "0"
	}
	return strconv.Itoa(*v.n)
}

func (v maxParallelismValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("not a whole number: %q", s)
	}
	if n < 1 || n > 1<<15 {
		return fmt.Errorf("must be between 1 and 32768, got %d", n)
	}
	*v.n = n
	return nil
}

type levelValue struct{ l *slog.Level }

func (v levelValue) String() string {
	if v.l == nil {
		return ""
	}
	return strings.ToLower(v.l.String())
}

func (v levelValue) Set(s string) error { return v.l.UnmarshalText([]byte(s)) }

// Register adds the standard flags to fs.
func Register(fs *flag.FlagSet) *Flags {
	f := &Flags{CheckpointInterval: time.Second, Parallelism: 1, Mode: checkpoint.ExactlyOnce}
	fs.StringVar(&f.CheckpointDir, "checkpoint-dir", "", "where checkpoints are stored: a directory or file:///path (default: a folder weir-checkpoints/<job> in the working directory)")
	fs.Var(durationValue{d: &f.CheckpointInterval, zeroOK: true, zeroMeans: "disables checkpointing"}, "checkpoint-interval", "the `duration` between checkpoints (with a unit: 500ms, 10s, 1m); 0 disables checkpointing")
	fs.Var(modeValue{&f.Mode}, "mode", "checkpointing `mode`: exactly-once or at-least-once")
	fs.Var(positiveInt{&f.Parallelism}, "parallelism", "the default `number` of parallel subtasks of each operator")
	fs.StringVar(&f.Restore, "restore", "", "start from a checkpoint: 'latest' (the newest in --checkpoint-dir, or a fresh start when there is none) or a checkpoint path")
	fs.Var(restartValue{&f.Restart}, "restart-strategy", "what a failure does: `strategy` none, fixed-delay:attempts=N,delay=D, failure-rate:max=N,interval=D,delay=D or exponential-delay:initial=D,max=D (default: with checkpointing fixed-delay with unlimited attempts 1s apart, without none)")
	fs.Var(levelValue{&f.LogLevel}, "log-level", "the least `level` logged: debug, info, warn or error")
	fs.StringVar(&f.StateBackend, "state-backend", "heap", "where keyed state lives: heap (memory) or pebble (local disk, incremental checkpoints)")
	fs.StringVar(&f.StateDir, "state-dir", "", "local working directory of the pebble state backend (default: weir-pebble in the temporary directory)")
	f.Incremental = true
	fs.BoolVar(&f.Incremental, "incremental", true, "pebble state backend: incremental checkpoints (false: every checkpoint writes the full state)")
	fs.StringVar(&f.Role, "role", "local", "local (the whole job in this process), jobmanager or taskmanager")
	fs.StringVar(&f.JobManager, "jobmanager", "127.0.0.1:6123", "the job manager's control address (it listens there; task managers dial it)")
	fs.StringVar(&f.DataListen, "data-listen", "127.0.0.1:0", "task manager: the data-plane listen address")
	fs.StringVar(&f.Token, "token", "", "the cluster's shared secret; required when an address is not loopback")
	fs.IntVar(&f.Slots, "slots", 1, "task manager: task slots offered (subtasks of each operator it runs)")
	fs.StringVar(&f.Name, "name", "", "task manager: its name (default its data address)")
	fs.StringVar(&f.HA, "ha", "", "high availability on etcd: etcd://host:port[,host:port]/prefix (job managers elect a leader; task managers find it there)")
	f.HATTL, f.Heartbeat = 5*time.Second, 5*time.Second
	fs.Var(durationValue{d: &f.HATTL}, "ha-session-ttl", "with --ha: the `duration` a dead job manager keeps its leadership")
	fs.Var(durationValue{d: &f.Heartbeat}, "heartbeat-timeout", "job manager: the `duration` of silence after which a task manager is lost (its subtasks fail over)")
	fs.StringVar(&f.TLSCert, "tls-cert", "", "cluster TLS: this process's certificate (PEM); with --tls-key and --tls-ca")
	fs.StringVar(&f.TLSKey, "tls-key", "", "cluster TLS: the certificate's private key (PEM)")
	fs.StringVar(&f.TLSCA, "tls-ca", "", "cluster TLS: the CA certificates (PEM) that verify the other processes")
	fs.StringVar(&f.RestoreMode, "restore-mode", "optional", "with --restore latest: optional (no checkpoint found is a fresh start) or required (no checkpoint found is an error)")
	fs.BoolVar(&f.AllowNonRestoredState, "allow-non-restored-state", false, "restore from a checkpoint that has state of operators the job no longer has (that state is dropped)")
	f.MaxParallelism = state.DefaultMaxParallelism
	fs.Var(maxParallelismValue{&f.MaxParallelism}, "max-parallelism", "the `number` of key groups: the most subtasks a keyed operator can have; it cannot change once the job has state (1 to 32768)")
	fs.BoolVar(&f.StopWithSavepointOnSigterm, "stop-with-savepoint-on-sigterm", false, "on SIGTERM or SIGINT stop the job with a savepoint (a second signal cancels); without it the job is cancelled")
	fs.StringVar(&f.LogFormat, "log-format", "text", "log records as text or json (one object per line)")
	fs.StringVar(&f.RESTListen, "rest-listen", "", "local job or job manager: serve the REST API, /metrics and the web UI on this address (127.0.0.1:0 picks a free port, logged at start; beyond loopback needs --token; HTTPS with --tls-cert); empty serves none")
	return f
}

// EnvName is the environment variable that sets flag name.
func EnvName(name string) string {
	return "WEIR_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Parse parses args into fs and then fills every flag not given on the
// command line from its WEIR_* environment variable (read with getenv). An
// invalid value is an error naming the flag or variable.
//
// --help (or -h) prints a usage line and every flag with its default to
// stderr and returns flag.ErrHelp. The defaults shown are the values the
// flags hold when Parse is called, so a program that changes a default
// before Parse (fs.Set("parallelism", "2")) shows its own.
func Parse(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	return parseTo(fs, args, getenv, os.Stderr)
}

func parseTo(fs *flag.FlagSet, args []string, getenv func(string) string, stderr io.Writer) error {
	fs.VisitAll(func(f *flag.Flag) { f.DefValue = f.Value.String() })
	fs.SetOutput(discard{})
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			PrintUsage(fs, stderr)
			return err
		}
		return fmt.Errorf("invalid command line: %w", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("invalid command line: unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || set[f.Name] {
			return
		}
		env := EnvName(f.Name)
		if v := getenv(env); v != "" {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("invalid value %q for %s (--%s): %w", v, env, f.Name, serr)
			}
		}
	})
	return err
}

// PrintUsage writes the usage of the program of fs to w: a usage line,
// how the environment sets flags, and every flag with its default.
func PrintUsage(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, "Usage: %s [flags]\n\n", fs.Name())
	fmt.Fprintf(w, "Every flag can also be set by an environment variable: WEIR_ and the flag name\n"+
		"in upper case with dashes as underscores (--checkpoint-dir is WEIR_CHECKPOINT_DIR);\n"+
		"the command line wins over the environment.\n\nFlags:\n")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(discard{})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Options turns the flags into environment options for job jobName.
func (f *Flags) Options(jobName string) ([]weir.Option, error) {
	// Register's flags refuse these values already; Flags built by hand
	// get the same answer. Zero means the default.
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"checkpoint-interval", f.CheckpointInterval}, {"ha-session-ttl", f.HATTL}, {"heartbeat-timeout", f.Heartbeat}} {
		if d.d < 0 {
			return nil, fmt.Errorf("invalid value %s for --%s: must not be negative", d.d, d.name)
		}
	}
	log, err := NewLogger(os.Stderr, f.LogFormat, f.LogLevel)
	if err != nil {
		return nil, err
	}
	switch f.RestoreMode {
	case "", "optional", "latest":
	case "required":
		if f.Restore == "" {
			return nil, errors.New("--restore-mode required needs --restore (latest or a checkpoint path)")
		}
	default:
		return nil, fmt.Errorf("invalid value %q for --restore-mode: want optional or required", f.RestoreMode)
	}
	f.log, f.jobName = log, jobName
	opts := []weir.Option{weir.Parallelism(f.Parallelism), weir.Logger(log)}
	if f.MaxParallelism != 0 {
		opts = append(opts, weir.MaxParallelism(f.MaxParallelism))
	}
	if f.AllowNonRestoredState {
		opts = append(opts, weir.AllowNonRestoredState())
	}
	dir := f.CheckpointDir
	if dir == "" {
		dir = "weir-checkpoints/" + jobName
	}
	if f.CheckpointInterval > 0 {
		opts = append(opts, weir.Checkpointing(f.CheckpointInterval, f.Mode), weir.CheckpointStorage(dir))
	} else if f.Restore != "" {
		opts = append(opts, weir.CheckpointStorage(dir))
	}
	if f.Restore != "" {
		opts = append(opts, weir.Restore(f.Restore))
	}
	if f.Restart != nil {
		opts = append(opts, weir.RestartStrategy(f.Restart))
	}
	tlsConfig, err := f.tlsConfig()
	if err != nil {
		return nil, err
	}
	var launcher runtime.Launcher
	switch f.Role {
	case "", "local":
	case "jobmanager", "taskmanager":
		o := cluster.Options{JobManager: f.JobManager, DataListen: f.DataListen,
			Token: f.Token, Slots: f.Slots, Name: f.Name, HA: f.HA, HASessionTTL: f.HATTL, TLS: tlsConfig, HeartbeatTimeout: f.Heartbeat}
		if f.Role == "jobmanager" {
			launcher = cluster.AsJobManager(o)
		} else {
			launcher = cluster.AsTaskManager(o)
		}
	default:
		return nil, fmt.Errorf("invalid value %q for --role: want local, jobmanager or taskmanager", f.Role)
	}
	if f.RESTListen != "" {
		if f.Role == "taskmanager" {
			return nil, errors.New("--rest-listen is for a local job or the job manager, not a task manager")
		}
		if f.Token == "" && !rest.IsLoopback(f.RESTListen) {
			return nil, fmt.Errorf("--rest-listen %s is beyond loopback: set --token, which every request must then carry", f.RESTListen)
		}
		launcher = rest.Serving(rest.Config{Listen: f.RESTListen, Token: f.Token, TLS: tlsConfig}, launcher,
			func(s *rest.Server) { f.restURL = s.URL() })
	}
	opts = append(opts, weir.Launch(&lifecycleLauncher{f: f, inner: launcher}))
	switch f.StateBackend {
	case "", "heap":
	case "pebble":
		opts = append(opts, weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: f.StateDir, Full: !f.Incremental})))
	default:
		return nil, fmt.Errorf("invalid value %q for --state-backend: want heap or pebble", f.StateBackend)
	}
	return opts, nil
}

// tlsConfig loads the cluster TLS files, if any.
func (f *Flags) tlsConfig() (*tls.Config, error) {
	if f.TLSCert == "" && f.TLSKey == "" && f.TLSCA == "" {
		return nil, nil
	}
	if f.TLSCert == "" || f.TLSKey == "" || f.TLSCA == "" {
		return nil, errors.New("cluster TLS needs all of --tls-cert, --tls-key and --tls-ca")
	}
	cert, err := tls.LoadX509KeyPair(f.TLSCert, f.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("invalid --tls-cert/--tls-key: %w", err)
	}
	pem, err := os.ReadFile(f.TLSCA)
	if err != nil {
		return nil, fmt.Errorf("invalid --tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("invalid --tls-ca %s: no PEM certificate in it", f.TLSCA)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}
