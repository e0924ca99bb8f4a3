package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/checkpoint/coordinator"
	"github.com/weirstream/weir/metrics"
	"github.com/weirstream/weir/restart"
	"github.com/weirstream/weir/storage"
)

// Config configures the execution of a job graph in the local cluster.
type Config struct {
	// Checkpointing enables periodic checkpoints (Coordinator.Interval; 0
	// means manual triggers only) in Mode.
	Checkpointing bool
	Mode          checkpoint.Mode
	Coordinator   coordinator.Config
	// Storage is where this job's checkpoints go (required with
	// checkpointing).
	Storage *storage.Storage
	// RestoreStorage and RestoreID name the checkpoint to start from; a nil
	// RestoreStorage starts fresh.
	RestoreStorage        *storage.Storage
	RestoreID             checkpoint.ID
	AllowNonRestoredState bool
	// RetainOnCancel keeps completed checkpoints when the job is cancelled;
	// otherwise they are deleted. Checkpoints are always kept when the job
	// fails for good (so it can be restored), and the final one when it
	// finishes (so a restarted finished job does not replay its input).
	RetainOnCancel bool
	Restart        restart.Strategy
	// Data plane.
	BufferSize    int           // records per buffer
	BufferTimeout time.Duration // flush deadline for partly filled buffers; 0 flushes after every input buffer
	Credits       int           // record buffers in flight per channel
	Logger        *slog.Logger
	// HA is the job manager's leadership in the high-availability
	// services (nil: none). Checkpoint ids start above the counter it
	// hands out, every completion told to the tasks moves its latest
	// pointer first (a new leader restores that one), and losing it ends
	// the job in this process.
	HA HALeadership
}

// HALeadership is a job manager's leadership in the high-availability
// services (package ha, wired by package cluster).
type HALeadership interface {
	NextCheckpointID(ctx context.Context) (checkpoint.ID, error)
	SetLatest(ctx context.Context, id checkpoint.ID, location string) error
	Done() <-chan struct{}
}

// Executor runs the attempts of a job: the local one runs every subtask in
// this process; a job manager (package cluster) deploys them to task
// managers. Execute runs attempt a until its subtasks finished (nil), one
// failed, or a's context ended; it must start a's coordinator driver
// (Attempt.StartDriver) before any subtask runs and stop it before it
// returns.
type Executor interface {
	Execute(a *Attempt) error
}

// Launcher starts a job graph somewhere other than in this process alone
// (package cluster: a job manager, a task manager).
type Launcher interface {
	Launch(ctx context.Context, g *JobGraph, cfg Config) (*Job, error)
}

// JobEndListener is implemented by executors that must hear when the job
// ends for good (a job manager tells its task managers).
type JobEndListener interface {
	JobEnded(err error)
}

// The defaults of a job's configuration, in one place: DefaultConfig
// returns them, and a Config with zero values gets them when a job starts.
const (
	DefaultBufferSize        = 1024
	DefaultBufferTimeout     = 5 * time.Millisecond
	DefaultCredits           = 4
	DefaultCheckpointTimeout = 10 * time.Minute
	DefaultFinalTimeout      = 30 * time.Minute
	// DefaultAutoWatermarkInterval is how often periodic watermark
	// generators emit (Flink's 200 ms).
	DefaultAutoWatermarkInterval = 200 * time.Millisecond
	// DefaultRestartDelay is the delay of the default restart strategy of
	// a job with checkpoints (fixed delay, unlimited attempts); a job
	// without checkpoints does not restart by default.
	DefaultRestartDelay = time.Second
)

// DefaultConfig is the configuration of a job nobody configured:
// checkpoints off (when enabled: a 10 min timeout, 30 min for the final
// one, one at a time, one retained, no failure tolerated, kept when the
// job is cancelled), buffers of 1024 records flushed after 5 ms, 4 credits
// per channel, logs discarded.
func DefaultConfig() Config {
	return Config{
		Coordinator:    coordinator.Config{Timeout: DefaultCheckpointTimeout, FinalTimeout: DefaultFinalTimeout},
		RetainOnCancel: true,
		BufferSize:     DefaultBufferSize,
		BufferTimeout:  DefaultBufferTimeout,
		Credits:        DefaultCredits,
	}
}

// defaults fills what a Config leaves unset. A zero BufferTimeout is kept
// (it means: flush after every input buffer).
func (c *Config) defaults() {
	if c.BufferSize <= 0 {
		c.BufferSize = DefaultBufferSize
	}
	if c.Credits <= 0 {
		c.Credits = DefaultCredits
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Restart == nil {
		c.Restart = restart.None()
		if c.Checkpointing {
			c.Restart = restart.FixedDelay(math.MaxInt32, DefaultRestartDelay)
		}
	}
}

// CheckpointStats describes one finished checkpoint.
type CheckpointStats struct {
	ID          checkpoint.ID
	Kind        checkpoint.Kind
	Completed   bool
	Reason      string // why it was aborted
	TriggeredAt time.Time
	FinishedAt  time.Time
	StateSize   int64
	// Acked is when each subtask's acknowledgement reached the
	// coordinator.
	Acked map[checkpoint.TaskID]time.Time
	// MaxAlignment, MaxStartDelay and MaxSyncDuration are the largest values
	// over all subtasks.
	MaxAlignment    time.Duration
	MaxStartDelay   time.Duration
	MaxSyncDuration time.Duration
	// Subtasks holds each subtask's own figures.
	Subtasks map[checkpoint.TaskID]checkpoint.TaskSnapshot
}

// Job is a running job: the failover loop over its attempts, the restore
// point, the checkpoint statistics and the user's requests.
type Job struct {
	graph *JobGraph
	cfg   Config
	log   *slog.Logger
	exec  Executor
	done  chan struct{}
	err   error
	// started is when the job started.
	started time.Time

	cancel context.CancelFunc
	// noCoordinator names what runs a job without a coordinator (from
	// StartFunc).
	noCoordinator string
	// disposer deletes what the job no longer needs from its storage
	// (nil without checkpointing).
	disposer *disposer
	// unlock releases the job's lock on its checkpoint storage (nil: none
	// taken), when the job has ended.
	unlock storage.Unlock

	mu struct {
		sync.Mutex
		attempt *Attempt
		// attemptChanged is closed and replaced when attempt changes.
		attemptChanged chan struct{}
		stats          []CheckpointStats
		waiters        map[checkpoint.ID][]chan CheckpointStats
		latest         checkpoint.ID // newest completed checkpoint of this job (0: none)
		restarts       int
		stopSP         checkpoint.ID // the savepoint a stop-with-savepoint ended with
		hardErr        error         // set by failHard
		// restoreID is the newest checkpoint whose completion the tasks
		// were told (sinks may have committed up to it): a failover
		// restores it, never anything older.
		restoreID checkpoint.ID
		// What operators see (observe.go).
		ended       time.Time
		failures    []Failure
		restored    *Restored
		metricsSrc  func(now time.Time) []metrics.TaskSample
		lastSamples []metrics.TaskSample
		counts      CheckpointCounts
		endHooks    []func()
		// pending are the checkpoints in progress, as far as acknowledged.
		pending map[checkpoint.ID]*CheckpointStats
	}
}

// runningAttempt returns the attempt running now, waiting for one while
// the job starts or restarts.
func (j *Job) runningAttempt(ctx context.Context) (*Attempt, error) {
	if j.noCoordinator != "" {
		return nil, fmt.Errorf("%s runs no checkpoint coordinator", j.noCoordinator)
	}
	if !j.cfg.Checkpointing {
		return nil, errors.New("the job is not running with checkpointing")
	}
	for {
		j.mu.Lock()
		a, changed := j.mu.attempt, j.mu.attemptChanged
		j.mu.Unlock()
		if a != nil && a.driver != nil {
			return a, nil
		}
		select {
		case <-changed:
		case <-j.done:
			return nil, errors.New("the job has ended")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (j *Job) setAttempt(a *Attempt) {
	j.mu.Lock()
	j.mu.attempt = a
	close(j.mu.attemptChanged)
	j.mu.attemptChanged = make(chan struct{})
	j.mu.Unlock()
}

func (j *Job) setRestorePoint(id checkpoint.ID) {
	j.mu.Lock()
	j.mu.restoreID = max(j.mu.restoreID, id)
	j.mu.Unlock()
}

func (j *Job) restorePointID() checkpoint.ID {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.mu.restoreID
}

func (j *Job) setStopSavepoint(id checkpoint.ID) {
	j.mu.Lock()
	j.mu.stopSP = id
	j.mu.Unlock()
}

// StopWithSavepoint stops the job gracefully: the sources stop reading, a
// final savepoint is taken, sinks commit what it covers, and the job
// finishes. It returns the savepoint's id once the job has ended.
func (j *Job) StopWithSavepoint(ctx context.Context) (checkpoint.ID, error) {
	a, err := j.runningAttempt(ctx)
	if err != nil {
		return 0, fmt.Errorf("cannot stop with a savepoint: %w", err)
	}
	reply := make(chan triggerReply, 1)
	a.driver.events.Put(driverEvent{kind: evStop, reply: reply})
	select {
	case r := <-reply:
		if r.err != nil {
			return 0, fmt.Errorf("cannot stop with a savepoint: %w", r.err)
		}
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-a.ctx.Done():
		return 0, errors.New("cannot stop with a savepoint: the job is restarting or ending")
	}
	select {
	case <-j.done:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	if j.err != nil {
		return 0, fmt.Errorf("the job failed while stopping with a savepoint: %w", j.err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.mu.stopSP == 0 {
		return 0, errors.New("the job ended without a savepoint")
	}
	return j.mu.stopSP, nil
}

// Start validates g and starts running it in this process. The job runs
// until it finishes, fails for good, or ctx is cancelled; Wait returns its
// outcome.
func Start(ctx context.Context, g *JobGraph, cfg Config) (*Job, error) {
	return StartWith(ctx, g, cfg, LocalExecutor{})
}

// StartFunc returns a job whose whole run is run: a process that takes
// part in a job without coordinating it (a task manager). Wait returns
// run's error; what needs a coordinator (TriggerCheckpoint,
// StopWithSavepoint) fails, naming what this process is.
func StartFunc(ctx context.Context, g *JobGraph, what string, run func(ctx context.Context) error) *Job {
	j := &Job{graph: g, log: slog.New(slog.DiscardHandler), done: make(chan struct{}), noCoordinator: what, started: time.Now()}
	j.mu.waiters = map[checkpoint.ID][]chan CheckpointStats{}
	j.mu.attemptChanged = make(chan struct{})
	ctx, j.cancel = context.WithCancel(ctx)
	go func() {
		defer close(j.done)
		j.err = run(ctx)
	}()
	return j
}

// StartWith is Start with the attempts run by exec.
func StartWith(ctx context.Context, g *JobGraph, cfg Config, exec Executor) (*Job, error) {
	cfg.defaults()
	if err := ValidateGraph(g); err != nil {
		return nil, err
	}
	if cfg.Checkpointing {
		if err := cfg.Coordinator.Validate(); err != nil {
			return nil, err
		}
		if cfg.Storage == nil {
			return nil, errors.New("checkpointing needs checkpoint storage")
		}
	}
	j := &Job{graph: g, cfg: cfg, log: cfg.Logger.With("job", g.Name), done: make(chan struct{}), exec: exec, started: time.Now()}
	j.mu.waiters = map[checkpoint.ID][]chan CheckpointStats{}
	j.mu.attemptChanged = make(chan struct{})
	if err := j.lockStorage(); err != nil {
		return nil, err
	}
	var initial *RestorePoint
	if cfg.RestoreStorage != nil {
		md, err := cfg.RestoreStorage.ReadMetadata(ctx, cfg.RestoreID)
		if err != nil {
			j.releaseStorage()
			return nil, fmt.Errorf("cannot restore job %s: %w", g.Name, restoreFailure(ctx, cfg.RestoreStorage, cfg.RestoreID, err, cfg.Storage))
		}
		if err := checkRestorable(g, md, cfg.AllowNonRestoredState); err != nil {
			j.releaseStorage()
			return nil, fmt.Errorf("cannot restore job %s from checkpoint %d in %s: %w", g.Name, cfg.RestoreID, cfg.RestoreStorage, err)
		}
		initial = newRestorePoint(cfg.RestoreStorage, md, g, cfg.Storage)
		j.log.Info("restoring", "checkpoint", md.CheckpointID, "kind", md.Kind, "from", storage.Location(cfg.RestoreStorage, md.CheckpointID), "owned", initial.Owned)
	}
	ctx, j.cancel = context.WithCancel(ctx)
	go j.run(ctx, initial)
	return j, nil
}

// lockStorage takes the exclusive lock of the job's checkpoint storage
// when the job writes checkpoints into it, so that a second job started
// on the same directory fails at once instead of overwriting and sweeping
// this one's checkpoints. A store that cannot lock (memory, S3) is not
// locked; with high availability the leader election already keeps a
// second job manager out (and a standby that takes over must not wait
// for a lock an old leader, cut off but alive, still holds).
func (j *Job) lockStorage() error {
	if !j.cfg.Checkpointing || j.cfg.HA != nil {
		return nil
	}
	unlock, err := j.cfg.Storage.TryLock(storage.Holder(j.graph.Name))
	if errors.Is(err, storage.ErrLockUnsupported) {
		j.log.Warn("cannot lock the checkpoint storage; nothing keeps a second job from writing into it", "storage", j.cfg.Storage, "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot start job %s: %w", j.graph.Name, err)
	}
	j.unlock = unlock
	return nil
}

// releaseStorage releases the lock of lockStorage, if taken.
func (j *Job) releaseStorage() {
	if j.unlock == nil {
		return
	}
	if err := j.unlock(); err != nil {
		j.log.Warn("cannot release the lock of the checkpoint storage", "err", err)
	}
}

// Wait blocks until the job ends and returns nil when it finished, the
// error that failed it for good, or the context's error when cancelled.
func (j *Job) Wait() error {
	<-j.done
	return j.err
}

// Done is closed when the job has ended.
func (j *Job) Done() <-chan struct{} { return j.done }

// Cancel stops the job.
func (j *Job) Cancel() { j.cancel() }

// Abort ends the job with err at once, without a restart (a job manager
// that lost its leadership).
func (j *Job) Abort(err error) {
	j.mu.Lock()
	j.mu.hardErr = err
	j.mu.Unlock()
	j.cancel()
}

// Restarts is the number of times the job failed over so far.
func (j *Job) Restarts() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.mu.restarts
}

// maxStatsHistory bounds the checkpoint stats a job keeps: a job that
// checkpoints every second for months must not grow without end.
const maxStatsHistory = 1000

// Checkpoints returns the stats of the checkpoints finished so far (the
// last 1000), oldest first.
func (j *Job) Checkpoints() []CheckpointStats {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]CheckpointStats(nil), j.mu.stats...)
}

// LatestCompleted is the newest completed checkpoint of this job (0: none).
func (j *Job) LatestCompleted() checkpoint.ID {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.mu.latest
}

// TriggerCheckpoint starts a checkpoint (or savepoint) now and waits until it
// completes or is aborted.
func (j *Job) TriggerCheckpoint(ctx context.Context, kind checkpoint.Kind) (CheckpointStats, error) {
	a, err := j.runningAttempt(ctx)
	if err != nil {
		return CheckpointStats{}, fmt.Errorf("cannot trigger a %s: %w", kind, err)
	}
	reply := make(chan triggerReply, 1)
	a.driver.events.Put(driverEvent{kind: evTrigger, ckKind: kind, reply: reply})
	var r triggerReply
	select {
	case r = <-reply:
	case <-ctx.Done():
		return CheckpointStats{}, ctx.Err()
	case <-a.ctx.Done():
		return CheckpointStats{}, fmt.Errorf("cannot trigger a %s: the job is restarting or ending", kind)
	}
	if r.err != nil {
		return CheckpointStats{}, r.err
	}
	return j.awaitCheckpoint(ctx, r.id)
}

// awaitCheckpoint waits until checkpoint id completed or was aborted.
func (j *Job) awaitCheckpoint(ctx context.Context, id checkpoint.ID) (CheckpointStats, error) {
	j.mu.Lock()
	for _, s := range j.mu.stats {
		if s.ID == id {
			j.mu.Unlock()
			return s, statsErr(s)
		}
	}
	ch := make(chan CheckpointStats, 1)
	j.mu.waiters[id] = append(j.mu.waiters[id], ch)
	j.mu.Unlock()
	select {
	case s := <-ch:
		return s, statsErr(s)
	case <-ctx.Done():
		return CheckpointStats{}, ctx.Err()
	case <-j.done:
		return CheckpointStats{}, fmt.Errorf("checkpoint %d did not finish: the job ended", id)
	}
}

func statsErr(s CheckpointStats) error {
	if s.Completed {
		return nil
	}
	return fmt.Errorf("checkpoint %d was aborted: %s", s.ID, s.Reason)
}

func (j *Job) recordStats(s CheckpointStats) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.mu.stats = append(j.mu.stats, s)
	delete(j.mu.pending, s.ID)
	if s.Completed {
		j.mu.counts.Completed++
	} else {
		j.mu.counts.Failed++
	}
	if len(j.mu.stats) > maxStatsHistory {
		j.mu.stats = append(j.mu.stats[:0:0], j.mu.stats[len(j.mu.stats)-maxStatsHistory:]...)
	}
	if s.Completed && s.Kind == checkpoint.KindCheckpoint && s.ID > j.mu.latest {
		j.mu.latest = s.ID
	}
	for _, w := range j.mu.waiters[s.ID] {
		w <- s
	}
	delete(j.mu.waiters, s.ID)
}

func newRestorePoint(st *storage.Storage, md *checkpoint.Metadata, g *JobGraph, jobStorage *storage.Storage) *RestorePoint {
	return &RestorePoint{Storage: st, Metadata: md, Owned: st == jobStorage && ownedBy(md, g)}
}

// ownedBy reports whether a checkpoint in a job's own storage belongs to
// it: a checkpoint (never a savepoint) taken by a job of that name. A job
// deletes only what it owns (Flink's no-claim mode for everything else).
func ownedBy(md *checkpoint.Metadata, g *JobGraph) bool {
	return md.Kind == checkpoint.KindCheckpoint && md.JobName == g.Name
}

// ownedCheckpoints lists, oldest first, the completed checkpoints in the
// job's storage that the job owns: they count toward the retained number,
// so the checkpoints of an earlier run of the job are retained or deleted
// by the same rule as the current run's.
func (j *Job) ownedCheckpoints(ctx context.Context) ([]checkpoint.ID, error) {
	ids, err := j.cfg.Storage.Completed(ctx)
	if err != nil {
		return nil, err
	}
	var out []checkpoint.ID
	for _, id := range ids {
		md, err := j.cfg.Storage.ReadMetadata(ctx, id)
		if err != nil {
			j.log.Warn("cannot read a checkpoint's metadata; it is kept, not counted as the job's", "id", id, "err", err)
			continue
		}
		if ownedBy(md, j.graph) {
			out = append(out, id)
		}
	}
	return out, nil
}

func (j *Job) run(ctx context.Context, restore *RestorePoint) {
	defer close(j.done)
	defer j.releaseStorage() // after the disposer's last deletes, before Wait returns
	defer j.runEndHooks()
	defer func() {
		j.mu.Lock()
		j.mu.ended = time.Now()
		j.mu.Unlock()
		if j.err != nil && !errors.Is(j.err, context.Canceled) {
			j.recordFailure(newFailure(j.err))
		}
	}()
	defer func() {
		if l, ok := j.exec.(JobEndListener); ok {
			l.JobEnded(j.err) // before Wait returns: a job manager tells its task managers
		}
	}()
	var owned []checkpoint.ID
	var nextID checkpoint.ID = 1
	if j.cfg.Checkpointing {
		j.disposer = newDisposer(j.cfg.Storage, j.log)
		defer j.disposer.close()
		var err error
		if owned, err = j.ownedCheckpoints(ctx); err != nil {
			j.err = fmt.Errorf("cannot start job %s: cannot read checkpoint storage %s: %w", j.graph.Name, j.cfg.Storage, err)
			return
		}
		// Debris of earlier runs: incomplete checkpoints older than the
		// newest completed one, and shared files nothing references.
		if latest, ok, err := j.cfg.Storage.Latest(ctx); err == nil && ok {
			j.disposer.sweep(latest, nil)
		}
		maxID, err := j.cfg.Storage.MaxID(ctx)
		if err != nil {
			j.err = fmt.Errorf("cannot start job %s: cannot read checkpoint storage %s: %w", j.graph.Name, j.cfg.Storage, err)
			return
		}
		j.disposer.startCollection(maxID + 1)
	}
	for attemptNo := 0; ; attemptNo++ {
		if j.cfg.Checkpointing {
			maxID, err := j.cfg.Storage.MaxID(ctx)
			if err != nil {
				j.err = fmt.Errorf("cannot start job %s: cannot read checkpoint storage %s: %w", j.graph.Name, j.cfg.Storage, err)
				return
			}
			nextID = max(nextID, maxID+1)
		}
		number := attemptNo
		if j.cfg.HA != nil {
			// Ids continue above every id a leader of this job handed out.
			id, err := j.cfg.HA.NextCheckpointID(ctx)
			if err != nil {
				j.err = fmt.Errorf("cannot start job %s: high availability: %w", j.graph.Name, err)
				return
			}
			nextID = max(nextID, id)
			// The counter grows with every attempt of every leader: as
			// the attempt number, it keeps the data-plane channel ids of
			// a new leader's attempts apart from an old leader's.
			number = int(id)
		}
		a := &Attempt{job: j, number: number, restore: restore}
		j.recordRestored(restore)
		err := a.run(ctx, nextID, owned)
		nextID = max(nextID, a.nextID)
		owned = a.retained
		if j.cfg.Checkpointing {
			// Every task of the attempt has stopped: an incomplete
			// checkpoint of it is debris now.
			j.disposer.sweep(nextID, nil)
		}
		if err == nil {
			// The final checkpoint is kept: restarting a finished job with
			// --restore latest then restores the end state and finishes at
			// once, instead of replaying everything from the start.
			j.log.Info("job finished", "attempt", attemptNo)
			return
		}
		if ctx.Err() != nil {
			j.err = ctx.Err()
			j.mu.Lock()
			if j.mu.hardErr != nil {
				j.err = j.mu.hardErr
			}
			j.mu.Unlock()
			j.log.Info("job cancelled", "err", j.err)
			if j.cfg.Checkpointing && !j.cfg.RetainOnCancel {
				for _, id := range owned {
					j.disposer.discard(id, true)
				}
			}
			return
		}
		if permanent, why := restoreVerdict(ctx, restore, err); permanent {
			cause := err
			if why != nil {
				cause = fmt.Errorf("%w (the checkpoint is damaged: %v)", err, why)
			}
			j.err = fmt.Errorf("job %s failed and will not restart: %w", j.graph.Name,
				restoreFailure(ctx, restore.Storage, restore.Metadata.CheckpointID, cause, j.cfg.Storage))
			j.log.Error("job failed: its checkpoint cannot be restored", "err", j.err)
			return
		}
		if IsPermanent(err) {
			j.err = fmt.Errorf("job %s failed and will not restart (a restart cannot help): %w", j.graph.Name, err)
			j.log.Error("job failed", "err", err)
			return
		}
		delay, ok, reason := j.cfg.Restart.OnFailure(time.Now())
		if !ok {
			j.err = fmt.Errorf("job %s failed and will not restart (%s): %w", j.graph.Name, reason, err)
			j.log.Error("job failed", "err", err, "restart", reason)
			return
		}
		// Restore the newest checkpoint whose completion the tasks were
		// told (sinks may have committed up to it), else where we began.
		if id := j.restorePointID(); id != 0 && j.cfg.Checkpointing && (restore == nil || restore.Storage != j.cfg.Storage || restore.Metadata.CheckpointID != id) {
			md, rerr := j.cfg.Storage.ReadMetadata(ctx, id)
			if rerr != nil {
				j.err = fmt.Errorf("job %s failed (%v) and cannot restore: %w", j.graph.Name, err, restoreFailure(ctx, j.cfg.Storage, id, rerr, nil))
				return
			}
			restore = newRestorePoint(j.cfg.Storage, md, j.graph, j.cfg.Storage)
		}
		from := "the beginning"
		if restore != nil {
			from = fmt.Sprintf("%s %d", restore.Metadata.Kind, restore.Metadata.CheckpointID)
		}
		j.log.Warn("job failed; restarting", "err", err, "delay", delay, "restore", from, "attempt", attemptNo+1)
		f := newFailure(err)
		f.Restart = true
		if restore != nil {
			f.RestoredFrom = restore.Metadata.CheckpointID
		}
		j.recordFailure(f)
		j.mu.Lock()
		j.mu.restarts++
		j.mu.Unlock()
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			j.err = ctx.Err()
			return
		}
	}
}

// ValidateGraph checks a job graph before it runs: parallelism within the
// max parallelism, unique operator UIDs, forward edges between equal
// parallelism.
func ValidateGraph(g *JobGraph) error {
	if g == nil || len(g.Vertices) == 0 {
		return errors.New("the job has no operators")
	}
	if g.MaxParallelism < 1 {
		return fmt.Errorf("job %s: max parallelism %d must be at least 1", g.Name, g.MaxParallelism)
	}
	uids := map[string]string{}
	for _, v := range g.Vertices {
		if v.Parallelism < 1 {
			return fmt.Errorf("operator %s: parallelism %d must be at least 1", v.Name, v.Parallelism)
		}
		if v.Parallelism > g.MaxParallelism {
			return fmt.Errorf("operator %s: parallelism %d exceeds max parallelism %d", v.Name, v.Parallelism, g.MaxParallelism)
		}
		for _, op := range v.Operators {
			if other, dup := uids[op.UID]; dup {
				return fmt.Errorf("operators %s and %s have the same UID %q", other, op.Name, op.UID)
			}
			uids[op.UID] = op.Name
		}
		for _, e := range v.Inputs {
			if e.Kind == Forward && e.Source.Parallelism != v.Parallelism {
				return fmt.Errorf("forward edge %s joins parallelism %d and %d", e, e.Source.Parallelism, v.Parallelism)
			}
		}
	}
	return nil
}

// checkRestorable verifies a checkpoint fits the job graph.
func checkRestorable(g *JobGraph, md *checkpoint.Metadata, allowNonRestored bool) error {
	if md.MaxParallelism != 0 && md.MaxParallelism != g.MaxParallelism {
		return fmt.Errorf("the checkpoint was taken with max parallelism %d, the job has %d: max parallelism cannot change once a job has state", md.MaxParallelism, g.MaxParallelism)
	}
	uids := map[string]bool{}
	for _, v := range g.Vertices {
		for _, op := range v.Operators {
			uids[op.UID] = true
		}
	}
	for _, os := range md.Operators {
		if uids[os.UID] {
			continue
		}
		empty := true
		for _, s := range os.Subtasks {
			if !s.IsEmpty() {
				empty = false
			}
		}
		if !empty && !allowNonRestored {
			return fmt.Errorf("the checkpoint has state for operator UID %q (%s), which is not in the job; set allow-non-restored-state to drop it", os.UID, os.Name)
		}
	}
	return nil
}
