package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/ha"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/network"
	"github.com/weirstream/weir/runtime/network/tcp"
	"github.com/weirstream/weir/storage"
)

// Options places a process in a distributed job. Every process runs the
// same job binary, which builds the same job graph; only these options
// differ. Checkpoint storage must be one every process reaches (a shared
// directory, S3).
type Options struct {
	// JobManager is the job manager's control address: it listens there,
	// task managers dial it (default 127.0.0.1:6123).
	JobManager string
	// DataListen is the task manager's data-plane address (default
	// 127.0.0.1 on a free port). Peers dial the address it reports, so
	// listen on a reachable interface in a real cluster.
	DataListen string
	// Token authenticates task managers and data-plane peers; required
	// when an address is not loopback.
	Token string
	// Name names the task manager (default its data address); Slots is
	// the number of subtasks of each operator it runs (default 1).
	Name  string
	Slots int
	// HeartbeatTimeout is how long a silent task manager stays registered
	// (default 5s); SlotTimeout how long an attempt waits for slots
	// (default 60s); RegistrationTimeout how long a connection to the
	// control port may take to register a task manager (default 10s).
	HeartbeatTimeout    time.Duration
	SlotTimeout         time.Duration
	RegistrationTimeout time.Duration
	// HA, "etcd://host:port[,host:port]/prefix", makes job managers
	// highly available: several may run, one is elected leader, the
	// others wait; the leader keeps the checkpoint id counter and the
	// latest checkpoint in etcd; a new leader restores that checkpoint,
	// and task managers find the leader there (JobManager is then only
	// this job manager's own listen address). HASessionTTL is how long a
	// dead leader keeps its leadership (default 5s).
	HA           string
	HASessionTTL time.Duration
	// TLS, if set, secures the control plane and the data plane: servers
	// present TLS.Certificates, clients verify them with TLS.RootCAs
	// (the server name is taken from the dialled address). The token
	// still authenticates the clients.
	TLS *tls.Config
}

func (o Options) validate() error {
	switch {
	case o.Slots < 0:
		return fmt.Errorf("task slots must not be negative, got %d", o.Slots)
	case o.HeartbeatTimeout < 0, o.SlotTimeout < 0, o.RegistrationTimeout < 0, o.HASessionTTL < 0:
		return errors.New("cluster timeouts must not be negative")
	}
	return nil
}

func (o Options) config() Config {
	return Config{JobManager: o.JobManager, Token: o.Token, HeartbeatTimeout: o.HeartbeatTimeout,
		SlotTimeout: o.SlotTimeout, RegistrationTimeout: o.RegistrationTimeout, Name: o.Name, Slots: o.Slots,
		ServerTLS: o.TLS, ClientTLS: o.TLS}
}

// dataToken is the data plane's token: the cluster token, or a fixed one
// when everything listens on loopback only.
func (o Options) dataToken() string {
	if o.Token != "" {
		return o.Token
	}
	return "weir-loopback"
}

// AsJobManager returns the launcher that runs a job as the job manager of
// a cluster: weir.NewEnvironment(..., weir.Launch(cluster.AsJobManager(o))).
// The job manager runs the checkpoint coordinator and the failover loop,
// and deploys subtasks to the task managers that connect.
func AsJobManager(o Options) runtime.Launcher { return jmLauncher{o} }

// AsTaskManager returns the launcher that runs a process as a task manager
// of a cluster: it offers task slots to the job manager and runs the
// subtasks it deploys; Execute returns when the job ends.
func AsTaskManager(o Options) runtime.Launcher { return tmLauncher{o} }

type jmLauncher struct{ o Options }

func checkSharedStorage(role string, cfg runtime.Config) error {
	for _, st := range []*storage.Storage{cfg.Storage, cfg.RestoreStorage} {
		if st == nil {
			continue
		}
		if _, ok := st.Store().(*storage.MemoryStore); ok {
			return fmt.Errorf("a %s needs checkpoint storage every process of the cluster reaches (a shared directory or S3), not %s", role, st)
		}
	}
	return nil
}

// Launch implements runtime.Launcher.
func (l jmLauncher) Launch(ctx context.Context, g *runtime.JobGraph, cfg runtime.Config) (*runtime.Job, error) {
	o := l.o
	if err := o.validate(); err != nil {
		return nil, err
	}
	if err := checkSharedStorage("job manager", cfg); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var svc *ha.Services
	if o.HA != "" {
		var lead *ha.Leadership
		var err error
		if svc, lead, err = becomeLeader(ctx, o, g.Name, &cfg, log); err != nil {
			return nil, err
		}
		cfg.HA = haLeadership{lead}
	}
	j, _, err := StartJobManager(ctx, g, cfg, o.config())
	if svc != nil {
		if err != nil {
			svc.Close()
		} else {
			go func() { <-j.Done(); svc.Close() }()
		}
	}
	return j, err
}

type tmLauncher struct{ o Options }

// Launch implements runtime.Launcher: the returned job runs the task
// manager until the job ends (it has no checkpoints to trigger).
func (l tmLauncher) Launch(ctx context.Context, g *runtime.JobGraph, cfg runtime.Config) (*runtime.Job, error) {
	o := l.o
	if err := o.validate(); err != nil {
		return nil, err
	}
	if err := checkSharedStorage("task manager", cfg); err != nil {
		return nil, err
	}
	if err := runtime.ValidateGraph(g); err != nil {
		return nil, err
	}
	return runtime.StartFunc(ctx, g, "a task manager", func(ctx context.Context) error {
		err := runTaskManagerProcess(ctx, o, g, cfg)
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}), nil
}

// runTaskManagerProcess starts the data plane (and the HA lookup of the
// leader) and runs a task manager.
func runTaskManagerProcess(ctx context.Context, o Options, g *runtime.JobGraph, cfg runtime.Config) error {
	cc := o.config()
	listen := o.DataListen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	if o.Token == "" && !IsLoopback(listen) {
		return fmt.Errorf("the task manager's data plane listens on %s, beyond loopback: a cluster token is required", listen)
	}
	var onError atomic.Pointer[func(attempt int, err error)]
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	tr, err := tcp.Listen(tcp.Config{ListenAddr: listen, ServerTLS: o.TLS, ClientTLS: o.TLS})
	if err != nil {
		return err
	}
	ep, err := network.NewEndpoint(tr, network.Config{
		Name: o.Name, Token: o.dataToken(), Logger: logger,
		OnError: func(id network.ChannelID, err error) {
			if h := onError.Load(); h != nil {
				(*h)(int(id.Attempt()), err)
			}
		},
	})
	if err != nil {
		return err
	}
	defer ep.Close()
	cc.DataPlane = ep
	cc.SetDataPlaneErrorHandler = func(h func(int, error)) { onError.Store(&h) }
	if o.HA != "" {
		svc, err := openHA(ctx, o)
		if err != nil {
			return err
		}
		defer svc.Close()
		cc.ResolveJobManager = func(ctx context.Context) (string, error) {
			addr, ok, err := svc.Leader(ctx, g.Name)
			if err == nil && !ok {
				err = errors.New("no job manager is the leader yet")
			}
			return addr, err
		}
	}
	return RunTaskManager(ctx, g, cfg, cc)
}

// haLeadership adapts ha.Leadership to the runtime.
type haLeadership struct{ l *ha.Leadership }

func (h haLeadership) NextCheckpointID(ctx context.Context) (checkpoint.ID, error) {
	return h.l.NextCheckpointID(ctx)
}
func (h haLeadership) SetLatest(ctx context.Context, id checkpoint.ID, loc string) error {
	return h.l.SetLatestCheckpoint(ctx, ha.Pointer{ID: id, Location: loc})
}
func (h haLeadership) Done() <-chan struct{} { return h.l.Done() }

func openHA(ctx context.Context, o Options) (*ha.Services, error) {
	var opts []ha.Option
	if o.HASessionTTL > 0 {
		opts = append(opts, ha.WithSessionTTL(o.HASessionTTL))
	}
	return ha.Open(ctx, o.HA, opts...)
}

// becomeLeader blocks until this job manager leads job, then points the
// restore at the latest checkpoint the high-availability services record.
func becomeLeader(ctx context.Context, o Options, job string, cfg *runtime.Config, log *slog.Logger) (*ha.Services, *ha.Leadership, error) {
	svc, err := openHA(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	addr := o.JobManager
	if addr == "" {
		addr = "127.0.0.1:6123"
	}
	log.Info("campaigning for the leadership", "job", job, "address", addr)
	lead, err := svc.Campaign(ctx, job, addr)
	if err != nil {
		svc.Close()
		return nil, nil, err
	}
	log.Info("elected leader", "job", job)
	p, ok, err := lead.LatestCheckpoint(ctx)
	if err != nil {
		lead.Resign(context.Background())
		svc.Close()
		return nil, nil, err
	}
	if ok {
		if cfg.Storage == nil {
			lead.Resign(context.Background())
			svc.Close()
			return nil, nil, fmt.Errorf("the job has a latest checkpoint (%s) but no checkpoint storage is configured", p.Location)
		}
		cfg.RestoreStorage, cfg.RestoreID = cfg.Storage, p.ID
	}
	return svc, lead, nil
}
