// Package ha provides the jobmanager's high-availability services on etcd:
// leader election per job, and the two pieces of job state a new leader must
// find after a failover — the checkpoint id counter and the pointer to the
// latest completed checkpoint. The checkpoints themselves live in checkpoint
// storage (S3, a shared file system); etcd holds only small pointers.
//
// A jobmanager opens the services, campaigns for its job and, once elected,
// performs every write through its Leadership. Each write is an etcd
// transaction guarded by the create revision of the leader's election key, so
// a jobmanager that lost its leadership (its lease expired during a long GC
// pause or a network partition) cannot overwrite what its successor wrote: its
// writes fail with ErrNotLeader.
//
//	svc, err := ha.Open(ctx, "etcd://10.0.0.1:2379,10.0.0.2:2379/weir")
//	lead, err := svc.Campaign(ctx, "wordcount", "jm-1:6123") // blocks until elected
//	defer lead.Resign(context.Background())
//	id, err := lead.NextCheckpointID(ctx)
//	...
//	err = lead.SetLatestCheckpoint(ctx, ha.Pointer{ID: id, Location: "s3://bucket/wordcount/chk-17"})
//	<-lead.Done() // leadership lost: stop scheduling, restart as a standby
//
// # Key layout
//
// All keys live under the prefix given in the URL (etcd://host:port/weir gives
// the prefix "/weir"). For a job named <job>:
//
//	<prefix>/jobs/<job>/leader/<lease>
//	    One key per candidate, attached to the candidate's session lease
//	    (<lease> is the lease id in hex); the value is the candidate ID. The
//	    key with the lowest create revision leads (the election of
//	    go.etcd.io/etcd/client/v3/concurrency); its create revision is the
//	    leader's fencing token.
//	<prefix>/jobs/<job>/checkpoint-id
//	    The last checkpoint id handed out, in decimal ASCII ("17"). Absent:
//	    none yet, the first id is 1.
//	<prefix>/jobs/<job>/latest-checkpoint
//	    The latest completed checkpoint, JSON, version 1:
//	    {"version":1,"id":17,"location":"s3://bucket/wordcount/chk-17"}
//
// Job names must not contain '/'. Neither value key is ever deleted by this
// package; it only moves forward.
//
// # Failure detection
//
// A leader's session lease is kept alive by the etcd client. If the process
// dies or loses etcd, the lease expires after the session TTL (WithSessionTTL,
// default 5 s), etcd deletes the leader key and the next candidate is elected.
// Leadership.Done is closed when the lease is no longer kept alive or the key
// is gone, whichever the process notices first. Done is advisory: a process may
// learn late that it was deposed, which is why writes are fenced.
package ha

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

var (
	// ErrNotLeader is returned by the operations of a Leadership that has been
	// deposed: its election key is gone or belongs to a newer leader. Nothing
	// was written.
	ErrNotLeader = errors.New("not the leader")
	// ErrOlderCheckpoint is returned by SetLatestCheckpoint when the pointer
	// would move backwards.
	ErrOlderCheckpoint = errors.New("older than the latest checkpoint")
	// ErrInvalidURL marks a malformed etcd URL (a configuration error;
	// retrying does not help).
	ErrInvalidURL = errors.New("invalid etcd URL")
	// ErrUnreachable marks an etcd cluster that did not answer within the dial
	// timeout (usually transient).
	ErrUnreachable = errors.New("etcd unreachable")
)

const (
	defaultSessionTTL  = 5 * time.Second
	defaultDialTimeout = 5 * time.Second
)

// Option configures Open.
type Option func(*options)

type options struct {
	sessionTTL  time.Duration
	dialTimeout time.Duration
	logger      *zap.Logger
}

// WithSessionTTL sets the TTL of the lease behind every campaign: how long
// after a leader dies (or loses etcd) a standby takes over. etcd counts in
// whole seconds, so d is rounded up; etcd itself may raise very small TTLs to
// its minimum (about 2 s with default timing). Default 5 s.
func WithSessionTTL(d time.Duration) Option {
	return func(o *options) { o.sessionTTL = d }
}

// WithDialTimeout bounds how long Open waits for the etcd cluster to answer.
// Default 5 s.
func WithDialTimeout(d time.Duration) Option {
	return func(o *options) { o.dialTimeout = d }
}

// WithLogger sets the logger of the etcd client. By default the client logs
// nothing.
func WithLogger(lg *zap.Logger) Option {
	return func(o *options) { o.logger = lg }
}

// Services is a connection to the etcd cluster holding the HA state of any
// number of jobs. It is safe for concurrent use.
type Services struct {
	cli       *clientv3.Client
	prefix    string // "/weir": no trailing slash
	endpoints []string
	ttl       int // session TTL in seconds

	mu struct {
		sync.Mutex
		closed bool // Close was called: no new Leadership goroutines
	}
	// monitors counts the goroutines of live Leaderships, so that Close can
	// wait for them. Add only under mu while !closed.
	monitors sync.WaitGroup
}

// Open connects to the etcd cluster named by rawURL,
// "etcd://host:port[,host:port...]/<prefix>", and checks within the dial
// timeout (or ctx, if sooner) that the cluster answers a linearizable read.
// The caller must Close the Services.
func Open(ctx context.Context, rawURL string, opts ...Option) (*Services, error) {
	o := options{sessionTTL: defaultSessionTTL, dialTimeout: defaultDialTimeout, logger: zap.NewNop()}
	for _, opt := range opts {
		opt(&o)
	}
	if o.sessionTTL <= 0 {
		return nil, fmt.Errorf("cannot open HA services at %s: session TTL %v is not positive", rawURL, o.sessionTTL)
	}
	if o.dialTimeout <= 0 {
		return nil, fmt.Errorf("cannot open HA services at %s: dial timeout %v is not positive", rawURL, o.dialTimeout)
	}
	if o.logger == nil {
		o.logger = zap.NewNop()
	}
	endpoints, prefix, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	clientEndpoints := make([]string, len(endpoints))
	for i, ep := range endpoints {
		clientEndpoints[i] = "http://" + ep
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   clientEndpoints,
		DialTimeout: o.dialTimeout,
		Logger:      o.logger,
	})
	if err != nil {
		return nil, fmt.Errorf("cannot create etcd client for %s: %w", strings.Join(endpoints, ","), err)
	}
	s := &Services{
		cli:       cli,
		prefix:    prefix,
		endpoints: endpoints,
		ttl:       int((o.sessionTTL + time.Second - 1) / time.Second),
	}
	pctx, cancel := context.WithTimeout(ctx, o.dialTimeout)
	defer cancel()
	if _, err := cli.Get(pctx, prefix+"/jobs/", clientv3.WithCountOnly()); err != nil {
		cli.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("cannot reach etcd at %s: %w", strings.Join(endpoints, ","), ctx.Err())
		}
		return nil, fmt.Errorf("cannot reach etcd at %s within %v: %w: %w", strings.Join(endpoints, ","), o.dialTimeout, ErrUnreachable, err)
	}
	return s, nil
}

// Close closes the connection to etcd. Leaderships obtained from s end
// without resigning: their Done channels are closed and their leases expire
// after the session TTL. Close waits for the goroutines of s to exit; calls
// after the first do nothing.
func (s *Services) Close() error {
	s.mu.Lock()
	already := s.mu.closed
	s.mu.closed = true
	s.mu.Unlock()
	if already {
		return nil
	}
	err := s.cli.Close()
	s.monitors.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("cannot close etcd client for %s: %w", strings.Join(s.endpoints, ","), err)
	}
	return nil
}

// Leader returns the candidate ID of the current leader of job; ok is false
// while the job has no leader. Taskmanagers use it to find the jobmanager.
func (s *Services) Leader(ctx context.Context, job string) (candidateID string, ok bool, err error) {
	if err := checkJobName(job); err != nil {
		return "", false, err
	}
	resp, err := s.cli.Get(ctx, s.electionPrefix(job)+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", false, fmt.Errorf("cannot read leader of job %q from etcd: %w", job, err)
	}
	if len(resp.Kvs) == 0 {
		return "", false, nil
	}
	return string(resp.Kvs[0].Value), true, nil
}

func (s *Services) jobPrefix(job string) string      { return s.prefix + "/jobs/" + job }
func (s *Services) electionPrefix(job string) string { return s.jobPrefix(job) + "/leader" }
func (s *Services) counterKey(job string) string     { return s.jobPrefix(job) + "/checkpoint-id" }
func (s *Services) pointerKey(job string) string     { return s.jobPrefix(job) + "/latest-checkpoint" }

func checkJobName(job string) error {
	if job == "" {
		return errors.New("empty job name")
	}
	if strings.Contains(job, "/") {
		return fmt.Errorf("job name %q contains '/'", job)
	}
	return nil
}

// parseURL splits "etcd://h1:p1,h2:p2/some/prefix" into its endpoints
// (host:port) and the key prefix ("/some/prefix").
func parseURL(raw string) (endpoints []string, prefix string, err error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: %s (want etcd://host:port[,host:port...]/<prefix>)", ErrInvalidURL, raw, fmt.Sprintf(format, args...))
	}
	rest, ok := strings.CutPrefix(raw, "etcd://")
	if !ok {
		if scheme, _, found := strings.Cut(raw, "://"); found {
			return nil, "", bad("unsupported scheme %q", scheme)
		}
		return nil, "", bad("missing scheme etcd://")
	}
	if strings.ContainsAny(rest, "?#") {
		return nil, "", bad("query and fragment are not supported")
	}
	hosts, path, _ := strings.Cut(rest, "/")
	if hosts == "" {
		return nil, "", bad("no endpoint")
	}
	if strings.Contains(hosts, "@") {
		return nil, "", bad("user information is not supported")
	}
	for ep := range strings.SplitSeq(hosts, ",") {
		host, port, err := net.SplitHostPort(ep)
		if err != nil {
			return nil, "", bad("endpoint %q is not host:port", ep)
		}
		if host == "" {
			return nil, "", bad("endpoint %q has no host", ep)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, "", bad("endpoint %q has an invalid port", ep)
		}
		endpoints = append(endpoints, ep)
	}
	path = strings.TrimSuffix(path, "/")
	if path == "" {
		return nil, "", bad("no key prefix")
	}
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return nil, "", bad("key prefix %q has an empty, '.' or '..' segment", "/"+path)
		}
	}
	return endpoints, "/" + path, nil
}
