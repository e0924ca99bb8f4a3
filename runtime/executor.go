package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/checkpoint/barrier"
	"github.com/weirstream/weir/checkpoint/coordinator"
	"github.com/weirstream/weir/restart"
	"github.com/weirstream/weir/state"
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
	Storage storage.Storage
	// RestoreStorage and RestoreID name the checkpoint to start from; a nil
	// RestoreStorage starts fresh.
	RestoreStorage        storage.Storage
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
}

func (c *Config) defaults() {
	if c.BufferSize <= 0 {
		c.BufferSize = 1024
	}
	if c.Credits <= 0 {
		c.Credits = 4
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Restart == nil {
		c.Restart = restart.None()
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
	// MaxAlignment, MaxStartDelay and MaxSyncDuration are the largest values
	// over all subtasks.
	MaxAlignment    time.Duration
	MaxStartDelay   time.Duration
	MaxSyncDuration time.Duration
	// Subtasks holds each subtask's own figures.
	Subtasks map[checkpoint.TaskID]checkpoint.TaskSnapshot
}

// Job is a running job in the local cluster.
type Job struct {
	graph *JobGraph
	cfg   Config
	log   *slog.Logger
	done  chan struct{}
	err   error

	cancel context.CancelFunc
	jm     *JobManager // nil: the local cluster
	onEnd  func(error) // called when the job ends, before done closes

	mu struct {
		sync.Mutex
		attempt  *attempt
		stats    []CheckpointStats
		waiters  map[checkpoint.ID][]chan CheckpointStats
		latest   checkpoint.ID // newest completed checkpoint of this job (0: none)
		restarts int
		stopSP   checkpoint.ID // the savepoint a stop-with-savepoint ended with
		hardErr  error         // set by failHard
	}
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
	j.mu.Lock()
	a := j.mu.attempt
	j.mu.Unlock()
	if a == nil || a.driver == nil {
		return 0, errors.New("cannot stop with a savepoint: the job is not running with checkpointing")
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

// Start validates g and starts running it. The job runs until it finishes,
// fails for good, or ctx is cancelled; Wait returns its outcome.
func Start(ctx context.Context, g *JobGraph, cfg Config) (*Job, error) {
	return startJob(ctx, g, cfg, nil)
}

func startJob(ctx context.Context, g *JobGraph, cfg Config, jm *JobManager) (*Job, error) {
	cfg.defaults()
	if err := validateGraph(g); err != nil {
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
	j := &Job{graph: g, cfg: cfg, log: cfg.Logger.With("job", g.Name), done: make(chan struct{}), jm: jm}
	if jm != nil {
		j.onEnd = jm.endJob
	}
	j.mu.waiters = map[checkpoint.ID][]chan CheckpointStats{}
	var initial *restorePoint
	if cfg.RestoreStorage != nil {
		md, err := cfg.RestoreStorage.ReadMetadata(cfg.RestoreID)
		if err != nil {
			return nil, fmt.Errorf("cannot restore job %s from checkpoint %d in %s: %w", g.Name, cfg.RestoreID, cfg.RestoreStorage, err)
		}
		if err := checkRestorable(g, md, cfg.AllowNonRestoredState); err != nil {
			return nil, fmt.Errorf("cannot restore job %s from checkpoint %d in %s: %w", g.Name, cfg.RestoreID, cfg.RestoreStorage, err)
		}
		initial = &restorePoint{storage: cfg.RestoreStorage, md: md}
	}
	ctx, j.cancel = context.WithCancel(ctx)
	go j.run(ctx, initial)
	return j, nil
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

// failHard ends the job with err at once, without a restart (a job manager
// that lost its leadership).
func (j *Job) failHard(err error) {
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
	j.mu.Lock()
	a := j.mu.attempt
	j.mu.Unlock()
	if a == nil || a.driver == nil {
		return CheckpointStats{}, errors.New("cannot trigger a checkpoint: the job is not running with checkpointing")
	}
	reply := make(chan triggerReply, 1)
	a.driver.events.Put(driverEvent{kind: evTrigger, ckKind: kind, reply: reply})
	var r triggerReply
	select {
	case r = <-reply:
	case <-ctx.Done():
		return CheckpointStats{}, ctx.Err()
	case <-a.ctx.Done():
		return CheckpointStats{}, errors.New("cannot trigger a checkpoint: the job is restarting or ending")
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

type restorePoint struct {
	storage storage.Storage
	md      *checkpoint.Metadata
}

func (j *Job) run(ctx context.Context, restore *restorePoint) {
	defer close(j.done)
	defer func() {
		if j.onEnd != nil {
			j.onEnd(j.err) // before Wait returns: a job manager tells its task managers
		}
	}()
	var retained []checkpoint.ID
	if restore != nil && restore.storage == j.cfg.Storage {
		retained = []checkpoint.ID{restore.md.CheckpointID}
	}
	var nextID checkpoint.ID = 1
	for attemptNo := 0; ; attemptNo++ {
		if j.cfg.Checkpointing {
			maxID, err := j.cfg.Storage.MaxID()
			if err != nil {
				j.err = fmt.Errorf("cannot start job %s: cannot read checkpoint storage %s: %w", j.graph.Name, j.cfg.Storage, err)
				return
			}
			nextID = max(nextID, maxID+1)
		}
		number := attemptNo
		if j.jm != nil && j.jm.cfg.HA != nil {
			// Ids continue above every id a leader of this job handed out.
			id, err := j.jm.cfg.HA.NextCheckpointID(ctx)
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
		a := &attempt{job: j, number: number, restore: restore}
		err := a.run(ctx, nextID, retained)
		nextID = max(nextID, a.nextID)
		retained = a.retained
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
				j.discardAll(retained)
			}
			return
		}
		delay, ok, reason := j.cfg.Restart.OnFailure(time.Now())
		if !ok {
			j.err = fmt.Errorf("job %s failed and will not restart (%s): %w", j.graph.Name, reason, err)
			j.log.Error("job failed", "err", err, "restart", reason)
			return
		}
		// Restore from the newest completed checkpoint, else where we began.
		if id, ok := latestOf(retained); ok && j.cfg.Checkpointing {
			md, rerr := j.cfg.Storage.ReadMetadata(id)
			if rerr != nil {
				j.err = fmt.Errorf("job %s failed (%v) and cannot restore checkpoint %d: %w", j.graph.Name, err, id, rerr)
				return
			}
			restore = &restorePoint{storage: j.cfg.Storage, md: md}
		}
		from := "the beginning"
		if restore != nil {
			from = fmt.Sprintf("checkpoint %d", restore.md.CheckpointID)
		}
		j.log.Warn("job failed; restarting", "err", err, "delay", delay, "restore", from, "attempt", attemptNo+1)
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

func latestOf(ids []checkpoint.ID) (checkpoint.ID, bool) {
	if len(ids) == 0 {
		return 0, false
	}
	return ids[len(ids)-1], true
}

func (j *Job) discardAll(ids []checkpoint.ID) {
	for _, id := range ids {
		if err := j.cfg.Storage.Discard(id); err != nil {
			j.log.Warn("cannot discard checkpoint", "id", id, "err", err)
		}
	}
}

func validateGraph(g *JobGraph) error {
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

// attempt is one execution of the job graph, from deployment to the end of
// its tasks.
type attempt struct {
	job     *Job
	number  int
	restore *restorePoint
	ctx     context.Context
	cancel  context.CancelCauseFunc
	tasks   []*Task // the subtasks running in this process
	byID    map[checkpoint.TaskID]*Task
	all     []taskRef // every subtask of the job
	driver  *driver
	// placement spreads the subtasks over processes (nil: local);
	// remoteMail delivers mail to subtasks of other processes; closers
	// are the network channels to close when the attempt ends.
	placement  *Placement
	remoteMail func(checkpoint.TaskID, Mail)
	closers    []any
	// report sends what the tasks of a task manager's attempt report to
	// the job manager; remoteFinished counts the job manager's finished
	// subtasks.
	report         func(ctlMsg)
	remoteFinished func(checkpoint.TaskID)
	cluster        *clusterAttempt
	nextID         checkpoint.ID
	retained       []checkpoint.ID

	mu struct {
		sync.Mutex
		firstErr error
	}
}

func (a *attempt) failWith(err error) {
	a.mu.Lock()
	if a.mu.firstErr == nil {
		a.mu.firstErr = err
	}
	a.mu.Unlock()
	a.cancel(err)
}

func (a *attempt) run(parent context.Context, nextID checkpoint.ID, retained []checkpoint.ID) error {
	a.nextID, a.retained = nextID, retained
	a.ctx, a.cancel = context.WithCancelCause(parent)
	defer a.cancel(nil)
	if a.job.jm != nil {
		err := a.runRemote(a.job.jm)
		if err == nil && parent.Err() != nil {
			err = parent.Err()
		}
		return err
	}
	if err := a.deploy(); err != nil {
		return err
	}
	stop, err := a.startDriver(nil)
	if err != nil {
		return err
	}
	a.runTasks()
	stop()
	a.mu.Lock()
	err = a.mu.firstErr
	a.mu.Unlock()
	if err == nil && parent.Err() != nil {
		err = parent.Err()
	}
	return err
}

// startDriver starts the coordinator driver of the attempt (with
// checkpointing) and makes the attempt the job's current one; stop ends
// both and keeps the driver's next id and retained checkpoints for the
// next attempt. beforeRun, if set, runs once the driver exists (reports
// reach it) but before its loop starts (nothing is triggered yet).
func (a *attempt) startDriver(beforeRun func()) (stop func(), err error) {
	j := a.job
	if j.cfg.Checkpointing {
		if a.driver, err = newDriver(a, a.nextID, a.retained); err != nil {
			return nil, err
		}
	}
	if beforeRun != nil {
		beforeRun()
	}
	j.mu.Lock()
	j.mu.attempt = a
	j.mu.Unlock()
	var driverDone chan struct{}
	driverCtx, stopDriver := context.WithCancel(a.ctx)
	if a.driver != nil {
		driverDone = make(chan struct{})
		go func() {
			defer close(driverDone)
			a.driver.run(driverCtx)
		}()
	}
	return func() {
		stopDriver()
		if driverDone != nil {
			<-driverDone
			a.nextID = a.driver.nextID
			a.retained = a.driver.coord.Completed()
		}
		j.mu.Lock()
		j.mu.attempt = nil
		j.mu.Unlock()
	}, nil
}

// runTasks runs the subtasks of this process to their end (a failure
// fails the attempt) and closes the attempt's network channels.
func (a *attempt) runTasks() {
	var wg sync.WaitGroup
	for _, t := range a.tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := t.run()
			if err != nil && a.ctx.Err() == nil {
				a.failWith(fmt.Errorf("task %s failed: %w", t.Name, err))
			}
		}()
	}
	wg.Wait()
	for _, c := range a.closers {
		if c, ok := c.(ChannelCloser); ok {
			c.Close()
		}
	}
}

// taskRef is a subtask as the coordinator driver knows it, wherever it
// runs.
type taskRef struct {
	ID     checkpoint.TaskID
	source bool
}

// Placement says where the subtasks of an attempt run when the job is
// spread over processes (nil: all in this one).
type Placement struct {
	// Self is the index of this process among the task managers; -1 for
	// the job manager, which runs no task.
	Self int
	// Where maps every subtask to the index of the process running it.
	Where map[checkpoint.TaskID]int
	// Addrs are the data-plane addresses of the processes, by index.
	Addrs []string
	// DataPlane carries records to and from the other processes.
	DataPlane DataPlane
}

func (p *Placement) local(id checkpoint.TaskID) bool { return p == nil || p.Where[id] == p.Self }

// ChannelID is the id of the channel of edge number edge (in graph order)
// from sender to receiver in attempt, on the data plane: the same in every
// process.
func ChannelID(attempt, edge, sender, receiver int) uint64 {
	return uint64(attempt&0xFFFF)<<48 | uint64(edge&0xFFFF)<<32 | uint64(sender&0xFFFF)<<16 | uint64(receiver&0xFFFF)
}

// mail delivers m to subtask id, in this process or, through the control
// plane, in another.
func (a *attempt) mail(id checkpoint.TaskID, m Mail) {
	if t := a.byID[id]; t != nil {
		t.mailbox.Put(m)
		return
	}
	if a.remoteMail != nil {
		a.remoteMail(id, m)
	}
}

func (a *attempt) numSources() int {
	n := 0
	for _, t := range a.all {
		if t.source {
			n++
		}
	}
	return n
}

// deploy creates the channels, gates, writers and tasks of every subtask
// that runs in this process (all of them, in the local cluster).
func (a *attempt) deploy() error {
	j := a.job
	g := j.graph
	cfg := j.cfg
	maxP := g.MaxParallelism
	pl := a.placement
	for _, v := range g.Vertices {
		for s := range v.Parallelism {
			a.all = append(a.all, taskRef{ID: checkpoint.TaskID{Vertex: v.ID, Subtask: s}, source: v.IsSource})
		}
	}
	if pl != nil && pl.Self < 0 {
		return nil // the job manager runs no task
	}
	edgeNo := map[*Edge]int{}
	for _, v := range g.Vertices {
		for _, e := range v.Inputs {
			edgeNo[e] = len(edgeNo)
		}
	}
	tid := func(v *Vertex, s int) checkpoint.TaskID { return checkpoint.TaskID{Vertex: v.ID, Subtask: s} }
	// channels[edge][sender][receiver]: the sending ends in this process
	type edgeChans struct{ ch [][]any }
	chans := map[*Edge]*edgeChans{}
	gates := map[*Vertex][]*InputGate{}
	readersIn := map[*Vertex][][]any{} // per subtask, gate channel order
	for _, v := range g.Vertices {
		for _, e := range v.Inputs {
			ec := &edgeChans{ch: make([][]any, e.Source.Parallelism)}
			for s := range ec.ch {
				ec.ch[s] = make([]any, v.Parallelism)
			}
			chans[e] = ec
		}
		if len(v.Inputs) == 0 {
			continue
		}
		n := 0
		for _, e := range v.Inputs {
			if e.Kind == Forward {
				n++
			} else {
				n += e.Source.Parallelism
			}
		}
		gs := make([]*InputGate, v.Parallelism)
		ins := make([][]any, v.Parallelism)
		for r := range gs {
			if pl.local(tid(v, r)) {
				gs[r] = NewInputGate(n)
			}
		}
		for r := range v.Parallelism {
			idx := 0
			for _, e := range v.Inputs {
				for s := range e.Source.Parallelism {
					if e.Kind == Forward && s != r {
						continue
					}
					sendLocal, recvLocal := pl.local(tid(e.Source, s)), pl.local(tid(v, r))
					var c any
					var err error
					switch {
					case sendLocal && recvLocal:
						c = e.Type.newChannel(gs[r], idx, cfg.Credits, cfg.BufferSize)
						chans[e].ch[s][r] = c
					case recvLocal:
						c, err = e.Type.newRemoteInput(pl.DataPlane, ChannelID(a.number, edgeNo[e], s, r), gs[r], idx, cfg.Credits, cfg.BufferSize)
					case sendLocal:
						chans[e].ch[s][r], err = e.Type.newRemoteOutput(a.ctx, pl.DataPlane, pl.Addrs[pl.Where[tid(v, r)]], ChannelID(a.number, edgeNo[e], s, r), cfg.BufferSize)
						if err == nil {
							a.closers = append(a.closers, chans[e].ch[s][r])
						}
					}
					if err != nil {
						return fmt.Errorf("cannot connect %s subtask %d to subtask %d: %w", e, s, r, err)
					}
					if c != nil {
						ins[r] = append(ins[r], c)
						if !(sendLocal && recvLocal) {
							a.closers = append(a.closers, c)
						}
					}
					idx++
				}
			}
		}
		gates[v] = gs
		readersIn[v] = ins
	}
	a.byID = map[checkpoint.TaskID]*Task{}
	for _, v := range g.Vertices {
		for s := range v.Parallelism {
			id := tid(v, s)
			if !pl.local(id) {
				continue
			}
			name := fmt.Sprintf("%s (%d/%d)", v.Name, s+1, v.Parallelism)
			t := &Task{ID: id, Name: name, ctx: a.ctx, host: a, opInfo: v.Operators,
				mailbox: NewQueue[Mail](), bufferTimeout: cfg.BufferTimeout}
			onFail := func(err error) {
				if a.ctx.Err() == nil {
					a.failWith(fmt.Errorf("task %s: cannot send: %w", name, err))
				}
			}
			collectors := make([]any, len(v.Outputs))
			for i, e := range v.Outputs {
				var targets []any
				var kgMap []int32
				if e.Kind == Forward {
					targets = []any{chans[e].ch[s][s]}
				} else {
					targets = chans[e].ch[s]
				}
				if e.Kind == Hash {
					kgMap = make([]int32, maxP)
					for kg := range kgMap {
						kgMap[kg] = int32(state.SubtaskForKeyGroup(maxP, e.Target.Parallelism, kg))
					}
				}
				c, w := e.Type.newWriter(a.ctx, e.Kind, targets, cfg.BufferSize, kgMap, onFail)
				collectors[i] = c
				t.outputs = append(t.outputs, w)
			}
			chain, err := v.Build(s, collectors)
			if err != nil {
				return fmt.Errorf("cannot build %s: %w", name, err)
			}
			if len(chain.Operators) != len(v.Operators) {
				return fmt.Errorf("cannot build %s: %d operators built, %d declared", name, len(chain.Operators), len(v.Operators))
			}
			t.chain = chain
			if len(v.Inputs) > 0 {
				t.gate = gates[v][s]
				r, err := v.Inputs[0].Type.newGateReader(t.gate, readersIn[v][s], chain.Input)
				if err != nil {
					return fmt.Errorf("cannot build %s: %w", name, err)
				}
				t.reader = r
				t.ended = make([]bool, t.gate.NumChannels())
				t.handler = barrier.New(cfg.Mode, t.gate.NumChannels())
			} else if chain.Source == nil {
				return fmt.Errorf("cannot build %s: a vertex without inputs must be a source", name)
			}
			if err := a.openContexts(t, v, s); err != nil {
				return err
			}
			a.tasks = append(a.tasks, t)
			a.byID[id] = t
		}
	}
	return nil
}

// openContexts prepares each operator's context, with the restored state
// assigned to subtask s.
func (a *attempt) openContexts(t *Task, v *Vertex, s int) error {
	j := a.job
	maxP := j.graph.MaxParallelism
	kgr := state.RangeForSubtask(maxP, v.Parallelism, s)
	t.opCtx = make([]*OperatorContext, len(v.Operators))
	for i, info := range v.Operators {
		oc := &OperatorContext{
			JobName: j.graph.Name, TaskName: t.Name, OperatorUID: info.UID, OperatorName: info.Name,
			Subtask: s, Parallelism: v.Parallelism, MaxParallelism: maxP, Attempt: a.number,
			Checkpointing: j.cfg.Checkpointing, CheckpointInterval: j.cfg.Coordinator.Interval, Mode: j.cfg.Mode, KeyGroups: kgr, Fail: t.fail,
			Logger: j.log.With("operator", info.Name, "subtask", s),
		}
		if rp := a.restore; rp != nil {
			oc.Restored = true
			oc.RestoredCheckpoint = rp.md.CheckpointID
			oc.OpenStream = rp.storage.OpenStream
			oc.RestoredFromJobStorage = rp.storage == j.cfg.Storage
			if os := rp.md.Operator(info.UID); os != nil {
				for _, st := range os.Subtasks {
					for _, h := range st.Keyed {
						if h.Range.Intersect(kgr).Len() > 0 {
							oc.RestoredKeyed = append(oc.RestoredKeyed, h)
						}
					}
				}
				oc.RestoredList = assignListState(os, v.Parallelism, s)
			}
		}
		t.opCtx[i] = oc
	}
	return nil
}

// The taskHost side of an attempt: tasks report here, the coordinator
// driver hears about it.

func (a *attempt) ack(id checkpoint.ID, task checkpoint.TaskID, snap checkpoint.TaskSnapshot) {
	if a.report != nil {
		a.report(ctlMsg{Kind: msgAck, ID: id, Task: task, Snap: &snap})
		return
	}
	if a.driver != nil {
		a.driver.events.Put(driverEvent{kind: evAck, id: id, task: task, snap: snap})
	}
}

func (a *attempt) decline(id checkpoint.ID, task checkpoint.TaskID, reason error) {
	if a.report != nil {
		a.report(ctlMsg{Kind: msgDecline, ID: id, Task: task, Err: reason.Error()})
		return
	}
	if a.driver != nil {
		a.driver.events.Put(driverEvent{kind: evDecline, id: id, task: task, err: reason})
	}
}

func (a *attempt) sourceEnded(task checkpoint.TaskID) {
	if a.report != nil {
		a.report(ctlMsg{Kind: msgSourceEnded, Task: task})
		return
	}
	if a.driver != nil {
		a.driver.events.Put(driverEvent{kind: evSourceEnded, task: task})
		return
	}
	// Without checkpoints there is no final checkpoint to wait for.
	a.mail(task, Mail{Kind: mailFinishSource})
}

func (a *attempt) taskFinished(task checkpoint.TaskID) {
	if a.report != nil {
		a.report(ctlMsg{Kind: msgFinished, Task: task})
		return
	}
	if a.driver != nil {
		a.driver.events.Put(driverEvent{kind: evFinished, task: task})
	}
	if a.remoteFinished != nil {
		a.remoteFinished(task)
	}
}

func (a *attempt) writeKeyed(id checkpoint.ID, name string, s KeyedSnapshot) (checkpoint.KeyedStateHandle, error) {
	if hw, ok := s.(state.HandleWriter); ok {
		return hw.WriteHandle(storage.NewTarget(a.job.cfg.Storage, id, strings.TrimSuffix(name, ".keyed")))
	}
	w, err := a.job.cfg.Storage.CreateStream(id, name)
	if err != nil {
		return checkpoint.KeyedStateHandle{}, err
	}
	offsets, err := s.WriteKeyGroups(w)
	if err != nil {
		w.Abort()
		return checkpoint.KeyedStateHandle{}, err
	}
	h, err := w.Close()
	if err != nil {
		return checkpoint.KeyedStateHandle{}, err
	}
	return checkpoint.KeyedStateHandle{Stream: h, Offsets: offsets, States: state.SnapshotStates(s)}, nil
}

// assignListState picks subtask s's operator list state out of a
// checkpoint: at the same parallelism a subtask gets back its own entries
// (and, for Union states, everyone's); at another parallelism the entries
// are redistributed.
func assignListState(os *checkpoint.OperatorState, parallelism, s int) []checkpoint.ListStateSnapshot {
	old := make([][]checkpoint.ListStateSnapshot, len(os.Subtasks))
	for k, st := range os.Subtasks {
		old[k] = st.Operator
	}
	if os.Parallelism != parallelism {
		return state.Redistribute(old, parallelism)[s]
	}
	var out []checkpoint.ListStateSnapshot
	for _, l := range old[s] {
		if l.Mode == checkpoint.Union {
			l = checkpoint.ListStateSnapshot{Name: l.Name, Mode: l.Mode}
			for _, sub := range old {
				for _, other := range sub {
					if other.Name == l.Name {
						l.Entries = append(l.Entries, other.Entries...)
					}
				}
			}
		}
		out = append(out, l)
	}
	return out
}
