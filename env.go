// Package weir is the DataStream API of weir, a stateful stream processor
// built around consistent distributed snapshots (the asynchronous barrier
// snapshot of Apache Flink).
//
// A job is a dataflow of generic transformations (Go has no generic
// methods, so they are functions):
//
//	env := weir.NewEnvironment(
//		weir.Parallelism(2),
//		weir.Checkpointing(time.Second, weir.ExactlyOnce),
//		weir.CheckpointStorage("file:///var/lib/weir/checkpoints"),
//	)
//	nums := weir.FromSource(env, weir.Generator(2, -1, func(p int, off int64) int64 { return off }), "numbers")
//	sums := weir.Sum(weir.KeyBy(nums, func(n int64) int64 { return n % 2 }), func(n int64) int64 { return n })
//	sums.Print()
//	err := env.Execute(ctx, "parity-sum")
//
// Execute builds the job graph (operators joined by forward edges with equal
// parallelism are chained into one goroutine), runs every parallel subtask
// in the local cluster, checkpoints all state on an interval without
// stopping the stream, and on any failure restores the latest completed
// checkpoint and rewinds the sources.
package weir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/plan"
	"github.com/weirstream/weir/restart"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/state"
	"github.com/weirstream/weir/storage"
)

// Mode is the checkpointing guarantee.
type Mode = checkpoint.Mode

const (
	// ExactlyOnce aligns barriers: after a restore every record has
	// affected the state exactly once.
	ExactlyOnce = checkpoint.ExactlyOnce
	// AtLeastOnce never blocks channels: lower latency, but after a restore
	// some records may have affected the state twice.
	AtLeastOnce = checkpoint.AtLeastOnce
)

// Collector receives records emitted by a function.
type Collector[T any] = runtime.Collector[T]

// Option configures an Environment.
type Option func(*config) error

// config is what the options set: the runtime's configuration (its
// defaults come from runtime.DefaultConfig, the one place defaults live)
// and what only the API needs.
type config struct {
	rc             runtime.Config
	parallelism    int
	maxParallelism int
	storageURL     string
	restore        string
	stdout         io.Writer
	stateBackend   state.RawStoreFactory
	launcher       runtime.Launcher
	// watermarkInterval is how often periodic watermarks are emitted.
	watermarkInterval time.Duration
}

// Launch runs the job with l instead of in this process alone: package
// cluster's AsJobManager and AsTaskManager make the processes of a job
// spread over machines (every process runs the same program, with its own
// launcher).
func Launch(l runtime.Launcher) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("launcher must not be nil")
		}
		c.launcher = l
		return nil
	}
}

// StateBackend sets where keyed state lives: nil (the default) keeps it on
// the heap, in per-key-group hash tables with copy-on-write snapshots;
// pebblestate.New(...) keeps it in a local Pebble database per operator and
// subtask, for state larger than memory, with incremental checkpoints.
// Savepoints of either restore into the other.
func StateBackend(f state.RawStoreFactory) Option {
	return func(c *config) error { c.stateBackend = f; return nil }
}

// Parallelism sets the default parallelism of operators (default 1).
func Parallelism(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("parallelism must be at least 1, got %d", n)
		}
		c.parallelism = n
		return nil
	}
}

// MaxParallelism sets the number of key groups (default 128). It bounds the
// parallelism of keyed operators and cannot change once a job has state.
func MaxParallelism(n int) Option {
	return func(c *config) error {
		if n < 1 || n > 1<<15 {
			return fmt.Errorf("max parallelism must be between 1 and 32768, got %d", n)
		}
		c.maxParallelism = n
		return nil
	}
}

// Checkpointing enables checkpoints every interval in the given mode.
func Checkpointing(interval time.Duration, mode Mode) Option {
	return func(c *config) error {
		if interval <= 0 {
			return fmt.Errorf("checkpoint interval must be positive, got %s", interval)
		}
		c.rc.Checkpointing = true
		c.rc.Coordinator.Interval = interval
		c.rc.Mode = mode
		return nil
	}
}

// CheckpointTimeout expires checkpoints that take longer (default 10 min).
func CheckpointTimeout(d time.Duration) Option {
	return func(c *config) error { c.rc.Coordinator.Timeout = d; return nil }
}

// MinPauseBetweenCheckpoints is the least time between the end of one
// checkpoint and the start of the next (default 0).
func MinPauseBetweenCheckpoints(d time.Duration) Option {
	return func(c *config) error { c.rc.Coordinator.MinPause = d; return nil }
}

// MaxConcurrentCheckpoints bounds the checkpoints in flight (default 1).
func MaxConcurrentCheckpoints(n int) Option {
	return func(c *config) error { c.rc.Coordinator.MaxConcurrent = n; return nil }
}

// TolerableCheckpointFailures is the number of consecutive failed
// checkpoints after which the job fails over (default 0; -1 unlimited).
func TolerableCheckpointFailures(n int) Option {
	return func(c *config) error { c.rc.Coordinator.TolerableFailures = n; return nil }
}

// FinalCheckpointTimeout bounds the time from the end of the input (or a
// stop with a savepoint) to the completion of the job's final checkpoint,
// retries included (default 30 min). A job whose final checkpoint cannot
// complete in that time fails for good: restarting it would only replay
// the input into checkpoints that cannot complete.
func FinalCheckpointTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("final checkpoint timeout must be positive, got %s", d)
		}
		c.rc.Coordinator.FinalTimeout = d
		return nil
	}
}

// RetainedCheckpoints is the number of completed checkpoints kept (default 1).
func RetainedCheckpoints(n int) Option {
	return func(c *config) error { c.rc.Coordinator.NumRetained = n; return nil }
}

// RetainOnCancel keeps completed checkpoints when the job is cancelled
// (default true), so that it can be resumed with Restore("latest").
func RetainOnCancel(retain bool) Option {
	return func(c *config) error { c.rc.RetainOnCancel = retain; return nil }
}

// CheckpointStorage sets where checkpoints go: "file:///path", a plain path,
// or "memory://" (default).
func CheckpointStorage(location string) Option {
	return func(c *config) error { c.storageURL = location; return nil }
}

// CheckpointStorageOf sets the checkpoint storage itself: one opened
// already, or the checkpoint layout over a blob store of your own
// (storage.New), e.g. one wrapped for fault injection.
func CheckpointStorageOf(s *storage.Storage) Option {
	return func(c *config) error {
		if s == nil {
			return errors.New("checkpoint storage must not be nil")
		}
		c.rc.Storage = s
		return nil
	}
}

// Restore starts the job from a checkpoint: "latest" (the newest completed
// checkpoint in the checkpoint storage, or a fresh start if there is none),
// a checkpoint directory (".../chk-17"), or its _metadata file. Empty means
// a fresh start.
func Restore(from string) Option {
	return func(c *config) error { c.restore = from; return nil }
}

// AllowNonRestoredState lets a job restore from a checkpoint that has state
// for operators the job no longer has (that state is dropped).
func AllowNonRestoredState() Option {
	return func(c *config) error { c.rc.AllowNonRestoredState = true; return nil }
}

// RestartStrategy sets what happens when a task fails (default: fixed delay,
// unlimited attempts, 1 s apart, with checkpointing; none without).
func RestartStrategy(s restart.Strategy) Option {
	return func(c *config) error {
		if s == nil {
			return errors.New("restart strategy must not be nil")
		}
		c.rc.Restart = s
		return nil
	}
}

// BufferTimeout is the longest a partly filled output buffer waits before it
// is sent (default 5 ms). 0 sends after every input buffer.
func BufferTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("buffer timeout must not be negative, got %s", d)
		}
		c.rc.BufferTimeout = d
		return nil
	}
}

// BufferSize is the number of records per network buffer (default 1024).
func BufferSize(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("buffer size must be at least 1, got %d", n)
		}
		c.rc.BufferSize = n
		return nil
	}
}

// Logger sets the structured logger (default: discard).
func Logger(l *slog.Logger) Option {
	return func(c *config) error { c.rc.Logger = l; return nil }
}

// Stdout is where Print writes (default os.Stdout).
func Stdout(w io.Writer) Option {
	return func(c *config) error { c.stdout = w; return nil }
}

// Environment is where a job is defined and executed.
type Environment struct {
	cfg   config
	err   error
	graph plan.Graph // the logical graph of the job
	print *lockedWriter
	// eventTime is set when the program uses event time (watermarks).
	eventTime bool
	// nodeErrs are definition errors of operators, reported with the
	// operator's name as it is when the job is built.
	nodeErrs []nodeErr
}

type nodeErr struct {
	n   *plan.Node
	err error
}

// NewEnvironment returns an environment configured by opts. An invalid
// option is reported by Execute.
func NewEnvironment(opts ...Option) *Environment {
	e := &Environment{cfg: config{rc: runtime.DefaultConfig(), parallelism: 1, maxParallelism: state.DefaultMaxParallelism, stdout: os.Stdout,
		watermarkInterval: runtime.DefaultAutoWatermarkInterval}}
	for _, o := range opts {
		if err := o(&e.cfg); err != nil && e.err == nil {
			e.err = fmt.Errorf("invalid configuration: %w", err)
		}
	}
	e.print = &lockedWriter{w: e.cfg.stdout}
	return e
}

// Err returns the first configuration or definition error, if any.
// Errors of an operator's definition name the operator.
func (e *Environment) Err() error {
	if e.err != nil {
		return e.err
	}
	if len(e.nodeErrs) > 0 {
		ne := e.nodeErrs[0]
		return fmt.Errorf("operator %s (uid %q): %w", ne.n.Name, ne.n.OperatorUID(), ne.err)
	}
	return nil
}

// setNodeErr records a definition error of operator n.
func (e *Environment) setNodeErr(n *plan.Node, err error) {
	e.nodeErrs = append(e.nodeErrs, nodeErr{n, err})
}

func (e *Environment) setErr(err error) {
	if e.err == nil {
		e.err = err
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Execute runs the job until it finishes, fails for good, or ctx ends.
func (e *Environment) Execute(ctx context.Context, jobName string) error {
	j, err := e.Start(ctx, jobName)
	if err != nil {
		return err
	}
	return j.Wait()
}

// JobClient controls a job started with Start.
type JobClient struct {
	job     *runtime.Job
	storage *storage.Storage
}

// Wait blocks until the job ends; see Execute.
func (j *JobClient) Wait() error { return j.job.Wait() }

// Done is closed when the job has ended.
func (j *JobClient) Done() <-chan struct{} { return j.job.Done() }

// Cancel stops the job.
func (j *JobClient) Cancel() { j.job.Cancel() }

// TriggerCheckpoint takes a checkpoint now and waits for it to complete.
func (j *JobClient) TriggerCheckpoint(ctx context.Context) (runtime.CheckpointStats, error) {
	return j.job.TriggerCheckpoint(ctx, checkpoint.KindCheckpoint)
}

// TriggerSavepoint takes a savepoint now (kept until you delete it; never
// removed by checkpoint retention) and returns its path.
func (j *JobClient) TriggerSavepoint(ctx context.Context) (string, error) {
	s, err := j.job.TriggerCheckpoint(ctx, checkpoint.KindSavepoint)
	if err != nil {
		return "", err
	}
	return j.pathOf(s.ID), nil
}

// StopWithSavepoint stops the job gracefully: sources stop, a final
// savepoint is taken and committed by the sinks, and the job ends. It
// returns the savepoint's path, to start the job again with Restore(path).
func (j *JobClient) StopWithSavepoint(ctx context.Context) (string, error) {
	id, err := j.job.StopWithSavepoint(ctx)
	if err != nil {
		return "", err
	}
	return j.pathOf(id), nil
}

func (j *JobClient) pathOf(id checkpoint.ID) string {
	return storage.Location(j.storage, id)
}

// Checkpoints lists the finished checkpoints, oldest first.
func (j *JobClient) Checkpoints() []runtime.CheckpointStats { return j.job.Checkpoints() }

// LatestCheckpoint is the newest completed checkpoint (0 if none).
func (j *JobClient) LatestCheckpoint() checkpoint.ID { return j.job.LatestCompleted() }

// Restarts counts the failovers so far.
func (j *JobClient) Restarts() int { return j.job.Restarts() }

// Storage is the job's checkpoint storage (nil without checkpointing).
func (j *JobClient) Storage() *storage.Storage { return j.storage }

// Start builds the job graph and starts the job; it returns at once.
func (e *Environment) Start(ctx context.Context, jobName string) (*JobClient, error) {
	g, rc, stor, err := e.prepare(ctx, jobName)
	if err != nil {
		return nil, err
	}
	var j *runtime.Job
	if e.cfg.launcher != nil {
		j, err = e.cfg.launcher.Launch(ctx, g, rc)
	} else {
		j, err = runtime.Start(ctx, g, rc)
	}
	if err != nil {
		return nil, err
	}
	return &JobClient{job: j, storage: stor}, nil
}

// jobGraph plans the job graph of the program defined so far.
func (e *Environment) jobGraph(jobName string) (*runtime.JobGraph, error) {
	return plan.Build(&e.graph, plan.Config{JobName: jobName, Parallelism: e.cfg.parallelism, MaxParallelism: e.cfg.maxParallelism, EventTime: e.eventTime})
}

// prepare builds the job graph and the runtime configuration.
func (e *Environment) prepare(ctx context.Context, jobName string) (*runtime.JobGraph, runtime.Config, *storage.Storage, error) {
	if err := e.Err(); err != nil {
		return nil, runtime.Config{}, nil, err
	}
	g, err := e.jobGraph(jobName)
	if err != nil {
		return nil, runtime.Config{}, nil, err
	}
	c := e.cfg
	rc := c.rc
	stor := rc.Storage
	if stor == nil && (rc.Checkpointing || c.restore != "") {
		loc := c.storageURL
		if loc == "" {
			loc = "memory://"
		}
		stor, err = storage.Open(ctx, loc)
		if err != nil {
			return nil, runtime.Config{}, nil, fmt.Errorf("cannot open checkpoint storage %q: %w", loc, err)
		}
		rc.Storage = stor
	}
	switch c.restore {
	case "":
	case "latest":
		id, ok, err := stor.Latest(ctx)
		if err != nil {
			return nil, runtime.Config{}, nil, fmt.Errorf("cannot find the latest checkpoint in %s: %w", stor, err)
		}
		if ok {
			rc.RestoreStorage, rc.RestoreID = stor, id
		}
	default:
		rs, id, err := storage.ResolveRestorePath(ctx, c.restore)
		if err != nil {
			return nil, runtime.Config{}, nil, err
		}
		rc.RestoreStorage, rc.RestoreID = rs, id
		if rs.String() == stor.String() {
			rc.RestoreStorage = stor
		}
	}
	return g, rc, stor, nil
}
