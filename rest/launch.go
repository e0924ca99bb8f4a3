package rest

import (
	"context"

	"github.com/weirstream/weir/runtime"
)

// Serving returns a launcher that starts a job with inner (nil: in this
// process, runtime.Start) and serves its REST API, metrics and web UI per
// cfg until the job ends. started, if set, is called with the server once
// it listens (its URL, for a log line or a test).
func Serving(cfg Config, inner runtime.Launcher, started func(*Server)) runtime.Launcher {
	return servingLauncher{cfg: cfg, inner: inner, started: started}
}

type servingLauncher struct {
	cfg     Config
	inner   runtime.Launcher
	started func(*Server)
}

// Launch implements runtime.Launcher.
func (l servingLauncher) Launch(ctx context.Context, g *runtime.JobGraph, cfg runtime.Config) (*runtime.Job, error) {
	rc := l.cfg
	if rc.Logger == nil {
		rc.Logger = cfg.Logger
	}
	srv, err := Start(rc)
	if err != nil {
		return nil, err
	}
	var j *runtime.Job
	if l.inner != nil {
		j, err = l.inner.Launch(ctx, g, cfg)
	} else {
		j, err = runtime.Start(ctx, g, cfg)
	}
	if err != nil {
		srv.Close()
		return nil, err
	}
	srv.Register(j)
	if l.started != nil {
		l.started(srv)
	}
	go func() {
		<-j.Done()
		srv.Close()
	}()
	return j, nil
}
