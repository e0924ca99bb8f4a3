package weir

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
	"github.com/weirstream/weir/state"
	"github.com/weirstream/weir/storage"
)

// Roles of a process in a distributed job (Cluster).
const (
	// RoleLocal runs the whole job in this process (the default).
	RoleLocal = "local"
	// RoleJobManager runs the checkpoint coordinator and the failover
	// loop, and deploys subtasks to the task managers that connect.
	RoleJobManager = "jobmanager"
	// RoleTaskManager offers task slots to the job manager and runs the
	// subtasks it deploys; Execute returns when the job ends.
	RoleTaskManager = "taskmanager"
)

// ClusterOptions places this process in a distributed job. Every process
// runs the same job binary, which builds the same job graph; only these
// options differ. Checkpoint storage must be one every process reaches (a
// shared directory, S3).
type ClusterOptions struct {
	// Role is RoleLocal, RoleJobManager or RoleTaskManager.
	Role string
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
	// (default 5s); SlotTimeout how long an attempt waits for slots.
	HeartbeatTimeout time.Duration
	SlotTimeout      time.Duration
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

// Cluster runs the job as one process of a distributed job (see
// ClusterOptions); without it, or with RoleLocal, the job runs in this
// process alone.
func Cluster(o ClusterOptions) Option {
	return func(c *config) error {
		switch o.Role {
		case "":
			o.Role = RoleLocal
		case RoleLocal, RoleJobManager, RoleTaskManager:
		default:
			return fmt.Errorf("unknown role %q (want local, jobmanager or taskmanager)", o.Role)
		}
		if o.Slots < 0 {
			return fmt.Errorf("task slots must not be negative, got %d", o.Slots)
		}
		c.cluster = o
		return nil
	}
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

func (o ClusterOptions) openHA(ctx context.Context) (*ha.Services, error) {
	var opts []ha.Option
	if o.HASessionTTL > 0 {
		opts = append(opts, ha.WithSessionTTL(o.HASessionTTL))
	}
	return ha.Open(ctx, o.HA, opts...)
}

// becomeLeader blocks until this job manager leads job, then points the
// restore at the latest checkpoint the high-availability services record.
func (o ClusterOptions) becomeLeader(ctx context.Context, job string, rc *runtime.Config, stor storage.Storage, log *slog.Logger) (*ha.Services, *ha.Leadership, error) {
	svc, err := o.openHA(ctx)
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
		if stor == nil {
			lead.Resign(context.Background())
			svc.Close()
			return nil, nil, fmt.Errorf("the job has a latest checkpoint (%s) but no checkpoint storage is configured", p.Location)
		}
		rc.RestoreStorage, rc.RestoreID = stor, p.ID
	}
	return svc, lead, nil
}

func (o ClusterOptions) runtimeConfig() runtime.ClusterConfig {
	return runtime.ClusterConfig{JobManager: o.JobManager, Token: o.Token, HeartbeatTimeout: o.HeartbeatTimeout,
		SlotTimeout: o.SlotTimeout, Name: o.Name, Slots: o.Slots, ServerTLS: o.TLS, ClientTLS: o.TLS}
}

// dataToken is the data plane's token: the cluster token, or a fixed one
// when everything listens on loopback only.
func (o ClusterOptions) dataToken() string {
	if o.Token != "" {
		return o.Token
	}
	return "weir-loopback"
}

func (e *Environment) runTaskManager(ctx context.Context, jobName string) error {
	g, rc, _, err := e.prepare(jobName)
	if err != nil {
		return err
	}
	o := e.cfg.cluster
	cc := o.runtimeConfig()
	listen := o.DataListen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	if o.Token == "" && !runtime.IsLoopback(listen) {
		return fmt.Errorf("the task manager's data plane listens on %s, beyond loopback: a cluster token is required", listen)
	}
	var onError atomic.Pointer[func(attempt int, err error)]
	logger := e.cfg.logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ep, err := network.NewEndpoint(network.Config{
		Name: o.Name, ListenAddr: listen, Token: o.dataToken(), Logger: logger, ServerTLS: o.TLS, ClientTLS: o.TLS,
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
		svc, err := o.openHA(ctx)
		if err != nil {
			return err
		}
		defer svc.Close()
		cc.ResolveJobManager = func(ctx context.Context) (string, error) {
			addr, ok, err := svc.Leader(ctx, jobName)
			if err == nil && !ok {
				err = errors.New("no job manager is the leader yet")
			}
			return addr, err
		}
	}
	err = runtime.RunTaskManager(ctx, g, rc, cc)
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// edgeTypeOf is the runtime type of an edge carrying records of type T:
// local channels within a process, network channels (records encoded with
// state.CodecFor[T]) between processes.
func edgeTypeOf[T any](newHash func() func(T) uint32) runtime.EdgeType {
	return runtime.TypeOfRemote[T](newHash, network.Channels[T](state.CodecFor[T]()))
}
