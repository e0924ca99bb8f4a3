package runtime

import (
	"context"
	"sync"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/checkpoint/coordinator"
)

// Attempt is one execution of a job graph, from deployment to the end of
// its subtasks, as the coordinator sees it: every subtask of the job
// (wherever it runs), the coordinator driver, and the way to mail a
// subtask. Its Executor decides where the subtasks run.
//
// The report methods (Ack, Decline, SourceEnded, TaskFinished) make an
// Attempt the TaskHost of the subtasks that run in this process; an
// executor that runs them elsewhere calls them with what their hosts
// report.
type Attempt struct {
	job     *Job
	number  int
	restore *RestorePoint
	ctx     context.Context
	cancel  context.CancelCauseFunc
	all     []TaskRef // every subtask of the job
	driver  *driver
	mailer  func(checkpoint.TaskID, Mail)
	// nextID and retained carry the coordinator's ids from attempt to
	// attempt.
	nextID   checkpoint.ID
	retained []checkpoint.ID

	mu struct {
		sync.Mutex
		firstErr error
	}
}

// TaskRef is a subtask as the coordinator knows it, wherever it runs.
type TaskRef struct {
	ID     checkpoint.TaskID
	Source bool
}

// Number is the attempt's number (part of the data plane's channel ids).
func (a *Attempt) Number() int { return a.number }

// Graph is the job graph.
func (a *Attempt) Graph() *JobGraph { return a.job.graph }

// Config is the job's configuration.
func (a *Attempt) Config() Config { return a.job.cfg }

// Restore is the checkpoint the attempt restores (nil: a fresh start).
func (a *Attempt) Restore() *RestorePoint { return a.restore }

// Context ends when the attempt fails or the job is cancelled.
func (a *Attempt) Context() context.Context { return a.ctx }

// Tasks lists every subtask of the job.
func (a *Attempt) Tasks() []TaskRef { return a.all }

// Fail fails the attempt with err (the first error wins).
func (a *Attempt) Fail(err error) {
	a.mu.Lock()
	if a.mu.firstErr == nil {
		a.mu.firstErr = err
	}
	a.mu.Unlock()
	a.cancel(err)
}

// Err is the error that failed the attempt, if any.
func (a *Attempt) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.mu.firstErr
}

func (a *Attempt) run(parent context.Context, nextID checkpoint.ID, retained []checkpoint.ID) error {
	a.nextID, a.retained = nextID, retained
	a.ctx, a.cancel = context.WithCancelCause(parent)
	defer a.cancel(nil)
	for _, v := range a.job.graph.Vertices {
		for s := range v.Parallelism {
			a.all = append(a.all, TaskRef{ID: tid(v, s), Source: v.IsSource})
		}
	}
	err := a.job.exec.Execute(a)
	a.freezeMetrics()
	if first := a.Err(); first != nil {
		err = first
	}
	if err == nil && parent.Err() != nil {
		err = parent.Err()
	}
	return err
}

// StartDriver starts the coordinator driver of the attempt (with
// checkpointing) and makes the attempt the job's current one. mail
// delivers mail to a subtask wherever it runs. beforeRun, if set, runs
// once the driver exists (reports reach it) but before its loop starts
// (nothing is triggered yet). stop ends the driver and keeps its ids for
// the next attempt.
func (a *Attempt) StartDriver(mail func(checkpoint.TaskID, Mail), beforeRun func()) (stop func(), err error) {
	a.mailer = mail
	j := a.job
	if j.cfg.Checkpointing {
		if a.driver, err = newDriver(a, a.nextID, a.retained); err != nil {
			return nil, err
		}
	}
	if beforeRun != nil {
		beforeRun()
	}
	j.setAttempt(a)
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
		j.setAttempt(nil)
	}, nil
}

func (a *Attempt) mail(id checkpoint.TaskID, m Mail) {
	if a.mailer != nil {
		a.mailer(id, m)
	}
}

// Ack implements TaskHost.
func (a *Attempt) Ack(id checkpoint.ID, task checkpoint.TaskID, snap checkpoint.TaskSnapshot) {
	if a.driver != nil {
		a.driver.events.Put(driverEvent{kind: evAck, id: id, task: task, snap: snap})
	}
}

// Decline implements TaskHost.
func (a *Attempt) Decline(id checkpoint.ID, task checkpoint.TaskID, why coordinator.DeclineReason, err error) {
	if a.driver != nil {
		a.driver.events.Put(driverEvent{kind: evDecline, id: id, task: task, why: why, err: err})
	}
}

// SourceEnded implements TaskHost. Without checkpoints there is no final
// checkpoint to wait for: the source finishes at once.
func (a *Attempt) SourceEnded(task checkpoint.TaskID) {
	if a.driver != nil {
		a.driver.events.Put(driverEvent{kind: evSourceEnded, task: task})
		return
	}
	a.mail(task, Mail{Kind: mailFinishSource})
}

// TaskFinished implements TaskHost.
func (a *Attempt) TaskFinished(task checkpoint.TaskID) {
	if a.driver != nil {
		a.driver.events.Put(driverEvent{kind: evFinished, task: task})
	}
}

// LocalExecutor runs every subtask of an attempt in this process.
type LocalExecutor struct{}

// Execute implements Executor.
func (LocalExecutor) Execute(a *Attempt) error {
	d, err := Deploy(a.ctx, DeploySpec{Graph: a.job.graph, Config: a.job.cfg, Attempt: a.number, Restore: a.restore, Host: a})
	if err != nil {
		return err
	}
	a.SetMetricsSource(d.Sample)
	stop, err := a.StartDriver(func(id checkpoint.TaskID, m Mail) { d.Mail(id, m) }, nil)
	if err != nil {
		d.Fail(err)
		d.Run()
		return err
	}
	err = d.Run()
	stop()
	return err
}
