package jobflags

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/storage"
)

// Logger is the logger of the job, as configured by --log-format and
// --log-level (valid once Options returned without an error).
func (f *Flags) Logger() *slog.Logger {
	if f.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return f.log
}

// ErrRestoreRequired is returned (wrapped) when --restore-mode required
// finds no checkpoint to restore.
var ErrRestoreRequired = errors.New("--restore-mode required: no completed checkpoint to restore")

// lifecycleLauncher starts the job with inner (nil: in this process) and
// logs what Run's users see at the start: what --restore latest found and
// the start banner. It refuses to start when --restore-mode required
// finds nothing.
type lifecycleLauncher struct {
	f     *Flags
	inner runtime.Launcher
}

// Launch implements runtime.Launcher.
func (l *lifecycleLauncher) Launch(ctx context.Context, g *runtime.JobGraph, cfg runtime.Config) (*runtime.Job, error) {
	f, log := l.f, l.f.Logger()
	tm := f.Role == "taskmanager"
	// A job manager with high availability learns the checkpoint to
	// restore from the leader election inside its launcher: checked below.
	haDecides := f.Role == "jobmanager" && f.HA != ""
	if !tm && !haDecides && f.Restore == "latest" {
		if err := l.checkLatest(cfg); err != nil {
			return nil, err
		}
	}
	var j *runtime.Job
	var err error
	if l.inner != nil {
		j, err = l.inner.Launch(ctx, g, cfg)
	} else {
		j, err = runtime.Start(ctx, g, cfg)
	}
	if err != nil {
		return nil, err
	}
	if tm {
		log.Info("job started", "job", g.Name, "role", "taskmanager", "jobmanager", f.JobManager, "slots", f.Slots)
		return j, nil
	}
	jc := j.Config()
	if haDecides && f.Restore == "latest" {
		if err := l.checkLatest(jc); err != nil {
			j.Cancel()
			<-j.Done()
			return nil, err
		}
	}
	log.Info("job started", l.banner(g, jc)...)
	return j, nil
}

// checkLatest logs what --restore latest found in cfg and fails when
// nothing was found and a restore is required.
func (l *lifecycleLauncher) checkLatest(cfg runtime.Config) error {
	f, log := l.f, l.f.Logger()
	where := "the checkpoint storage"
	if cfg.Storage != nil {
		where = cfg.Storage.String()
	}
	if cfg.RestoreStorage != nil {
		log.Info("--restore latest: found a completed checkpoint", "checkpoint", cfg.RestoreID,
			"path", storage.Location(cfg.RestoreStorage, cfg.RestoreID))
		return nil
	}
	if f.RestoreMode == "required" {
		return fmt.Errorf("%w in %s (start without --restore-mode required for a fresh start)", ErrRestoreRequired, where)
	}
	log.Info("--restore latest: no completed checkpoint; fresh start", "storage", where)
	return nil
}

// banner is the start banner's attributes: job, role, parallelism, mode,
// storage, REST address and where the job starts from.
func (l *lifecycleLauncher) banner(g *runtime.JobGraph, cfg runtime.Config) []any {
	f := l.f
	maxP := 0
	for _, v := range g.Vertices {
		maxP = max(maxP, v.Parallelism)
	}
	mode := "no checkpoints"
	if cfg.Checkpointing {
		mode = fmt.Sprintf("%s every %s", cfg.Mode, cfg.Coordinator.Interval)
	}
	stor := "none"
	if cfg.Storage != nil {
		stor = cfg.Storage.String()
	}
	restURL := f.restURL
	if restURL == "" {
		restURL = "off"
	}
	from := "fresh start"
	if cfg.RestoreStorage != nil {
		from = fmt.Sprintf("restored checkpoint %d from %s", cfg.RestoreID, storage.Location(cfg.RestoreStorage, cfg.RestoreID))
	}
	role := f.Role
	if role == "" {
		role = "local"
	}
	backend := f.StateBackend
	if backend == "" {
		backend = "heap"
	}
	return []any{"job", g.Name, "role", role, "parallelism", maxP, "maxParallelism", g.MaxParallelism,
		"mode", mode, "storage", stor, "stateBackend", backend, "rest", restURL, "start", from}
}

// Run executes the job defined on env (configured with this Flags'
// Options) until it ends, and handles its lifecycle as a process:
//
//   - SIGTERM or SIGINT (Ctrl-C) stops the job with a savepoint when
//     --stop-with-savepoint-on-sigterm is set (a second signal cancels),
//     else cancels it; a task manager always cancels (the job manager
//     decides savepoints).
//   - A job that finished, stopped with a savepoint (its path is logged)
//     or was cancelled (by a signal, through the REST API, or by ctx)
//     returns nil, so the process exits 0; a failed job returns its error.
func (f *Flags) Run(ctx context.Context, env *weir.Environment, jobName string) error {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(sigs)
	return f.run(ctx, env, jobName, sigs)
}

type stopResult struct {
	path string
	err  error
}

func (f *Flags) run(ctx context.Context, env *weir.Environment, jobName string, sigs <-chan os.Signal) error {
	log := f.Logger()
	// A signal while the job starts (a standby job manager waits in the
	// leader election until it leads) cancels the start.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	early := make(chan os.Signal, 1)
	started := make(chan struct{})
	go func() {
		defer close(early)
		select {
		case s := <-sigs:
			early <- s
			cancel()
		case <-started:
		}
	}()
	jc, err := env.Start(ctx, jobName)
	close(started)
	if s, ok := <-early; ok {
		if err == nil {
			jc.Cancel()
			jc.Wait()
		}
		log.Info("cancelled while starting", "signal", s.String())
		return nil
	}
	if err != nil {
		return err
	}
	// stopping is the result of a stop with a savepoint in flight.
	var stopping chan stopResult
	var stop stopResult
	var signalled os.Signal
	userCancelled := false
	done := jc.Done()
	for done != nil || stopping != nil {
		select {
		case <-done:
			done = nil
		case s := <-sigs:
			signalled = s
			if f.StopWithSavepointOnSigterm && f.Role != "taskmanager" && stopping == nil && stop == (stopResult{}) {
				log.Info("stopping the job with a savepoint (a second signal cancels it)", "signal", s.String())
				stopping = make(chan stopResult, 1)
				go func() {
					p, err := jc.StopWithSavepoint(context.WithoutCancel(ctx))
					stopping <- stopResult{p, err}
				}()
				continue
			}
			log.Info("cancelling the job", "signal", s.String())
			userCancelled = true
			jc.Cancel()
		case stop = <-stopping:
			stopping = nil
			switch {
			case stop.err == nil:
			case userCancelled:
				// The second signal cancelled the stop: no error of the job.
				log.Info("the stop with a savepoint was abandoned: the job was cancelled")
			default:
				log.Error("cannot stop the job with a savepoint; cancelling it", "err", stop.err)
				jc.Cancel()
			}
		}
	}
	err = jc.Wait()
	switch {
	case err == nil && stop.path != "":
		log.Info("job stopped with a savepoint; resume it with --restore", "savepoint", stop.path)
		return nil
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled):
		if stop.err != nil && !userCancelled {
			return fmt.Errorf("the job was cancelled: %w", stop.err)
		}
		attrs := []any{}
		if signalled != nil {
			attrs = append(attrs, "signal", signalled.String())
		}
		if st := jc.Storage(); st != nil {
			id := jc.LatestCheckpoint()
			if id == 0 {
				// Cancelled before a checkpoint of its own (while it
				// restored, say): --restore latest finds an older one.
				lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				if l, ok, err := st.Latest(lctx); err == nil && ok {
					id = l
				}
				cancel()
			}
			if id != 0 {
				attrs = append(attrs, "latestCheckpoint", storage.Location(st, id))
			}
		}
		log.Info("cancelled", attrs...)
		return nil
	}
	return err
}
