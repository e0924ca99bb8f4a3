package ha

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Leadership is the proof that this process leads a job. Its operations are
// fenced: once another candidate has been elected they fail with ErrNotLeader
// and change nothing. It is safe for concurrent use.
//
// The holder must call Resign when it stops leading, also after Done is
// closed, to release the lease and the goroutine watching the election key.
type Leadership struct {
	svc         *Services
	job         string
	candidateID string
	session     *concurrency.Session
	key         string // election key of this leader
	rev         int64  // create revision of key: the fencing token

	done     chan struct{} // closed by lost
	lostOnce sync.Once

	stopMonitor context.CancelFunc
	monitorDone chan struct{} // closed when the monitor goroutine exits

	resign struct {
		once     sync.Once
		election *concurrency.Election // touched only inside once
		err      error
	}
}

// Campaign blocks until candidateID is elected leader of job, ctx is done or
// etcd fails. candidateID is what Leader reports to others, typically the
// jobmanager's RPC address; it must not be empty. A process may campaign for
// several jobs with one Services.
//
// The candidacy is attached to a new etcd lease with the session TTL: if this
// process dies, the lease expires and the next candidate is elected.
func (s *Services) Campaign(ctx context.Context, job, candidateID string) (*Leadership, error) {
	if err := checkJobName(job); err != nil {
		return nil, fmt.Errorf("cannot campaign: %w", err)
	}
	if candidateID == "" {
		return nil, fmt.Errorf("cannot campaign for leadership of job %q: empty candidate ID", job)
	}
	for {
		l, retry, err := s.campaignOnce(ctx, job, candidateID)
		if err != nil || !retry {
			return l, err
		}
	}
}

// campaignOnce runs one election with a fresh session. retry reports that the
// session ended before the candidate was elected (etcd was out of reach
// longer than the TTL), so a new session should try again.
func (s *Services) campaignOnce(ctx context.Context, job, candidateID string) (_ *Leadership, retry bool, _ error) {
	// Grant the lease here rather than in NewSession, which would ignore ctx.
	grant, err := s.cli.Grant(ctx, int64(s.ttl))
	if err != nil {
		return nil, false, fmt.Errorf("cannot campaign for leadership of job %q: cannot grant a %d s lease: %w", job, s.ttl, err)
	}
	session, err := concurrency.NewSession(s.cli, concurrency.WithTTL(s.ttl), concurrency.WithLease(grant.ID))
	if err == nil && session == nil {
		err = errors.New("etcd client closed")
	}
	if err != nil {
		return nil, false, fmt.Errorf("cannot campaign for leadership of job %q: cannot keep lease %x alive: %w", job, grant.ID, err)
	}
	election := concurrency.NewElection(session, s.electionPrefix(job))

	cctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(session.Ctx(), cancel) // stop waiting when the session ends
	err = election.Campaign(cctx, candidateID)
	stop()
	cancel()
	if err != nil {
		session.Close()
		if ctx.Err() != nil {
			return nil, false, fmt.Errorf("cannot become leader of job %q: %w", job, ctx.Err())
		}
		select {
		case <-session.Done():
			return nil, true, nil
		default:
		}
		return nil, false, fmt.Errorf("cannot campaign for leadership of job %q: %w", job, err)
	}

	// The session may have ended while Campaign waited for the candidates
	// ahead of us; then our key is gone and we lead nothing.
	resp, err := s.cli.Get(ctx, election.Key())
	if err != nil {
		session.Close()
		return nil, false, fmt.Errorf("cannot confirm leadership of job %q at key %s: %w", job, election.Key(), err)
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != election.Rev() {
		session.Close()
		return nil, true, nil
	}

	l := &Leadership{
		svc:         s,
		job:         job,
		candidateID: candidateID,
		session:     session,
		key:         election.Key(),
		rev:         election.Rev(),
		done:        make(chan struct{}),
		monitorDone: make(chan struct{}),
	}
	l.resign.election = election

	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		session.Close()
		return nil, false, fmt.Errorf("cannot campaign for leadership of job %q: HA services closed", job)
	}
	s.monitors.Add(1)
	s.mu.Unlock()
	mctx, mcancel := context.WithCancel(session.Ctx())
	l.stopMonitor = mcancel
	go l.monitor(mctx, resp.Header.Revision+1)
	return l, false, nil
}

// monitor closes Done when the session ends (lease expired or no longer kept
// alive), the election key is deleted, or ctx is cancelled by Resign. It
// watches the key from revision rev on.
func (l *Leadership) monitor(ctx context.Context, rev int64) {
	defer l.svc.monitors.Done()
	defer close(l.monitorDone)
	defer l.lost()
	cli := l.svc.cli
	for {
		wctx, cancel := context.WithCancel(ctx)
		for wr := range cli.Watch(wctx, l.key, clientv3.WithRev(rev)) {
			if wr.Err() != nil {
				break // e.g. compacted: check the key directly below
			}
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE {
					cancel()
					return
				}
			}
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		resp, err := cli.Get(ctx, l.key)
		if err != nil || len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != l.rev {
			// Cannot confirm the leadership: give it up rather than risk
			// two leaders acting at once.
			return
		}
		rev = resp.Header.Revision + 1
	}
}

// lost closes Done and stops keeping the lease alive, so that if the key
// still exists it expires within the TTL and a standby takes over.
func (l *Leadership) lost() {
	l.lostOnce.Do(func() {
		close(l.done)
		l.session.Orphan()
	})
}

// Done is closed when the leadership is lost or resigned. After that the
// process must stop acting as leader; fenced writes fail anyway.
func (l *Leadership) Done() <-chan struct{} { return l.done }

// Job is the name of the job this process leads.
func (l *Leadership) Job() string { return l.job }

// CandidateID is the ID this process campaigned with.
func (l *Leadership) CandidateID() string { return l.candidateID }

// FencingToken identifies this leadership: the create revision of the
// election key. Every later leader of the job has a greater token, so a
// component that remembers the highest token it has seen can reject requests
// of deposed leaders.
func (l *Leadership) FencingToken() int64 { return l.rev }

// Resign gives up the leadership: it deletes the election key, so the next
// candidate is elected at once, closes Done and revokes the lease. It is
// idempotent; calls after the first return the first result. It is also the
// way to release a Leadership whose Done is already closed.
func (l *Leadership) Resign(ctx context.Context) error {
	l.resign.once.Do(func() {
		var errs []error
		if err := l.resign.election.Resign(ctx); err != nil {
			errs = append(errs, fmt.Errorf("cannot delete leader key %s: %w", l.key, err))
		}
		l.stopMonitor()
		<-l.monitorDone
		if _, err := l.svc.cli.Revoke(ctx, l.session.Lease()); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			errs = append(errs, fmt.Errorf("cannot revoke lease %x: %w", l.session.Lease(), err))
		}
		if err := errors.Join(errs...); err != nil {
			l.resign.err = fmt.Errorf("cannot resign leadership of job %q: %w", l.job, err)
		}
	})
	return l.resign.err
}

// fence is the condition every operation of l is guarded by: the election key
// still exists and is the one this leadership created.
func (l *Leadership) fence() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.rev)
}

func (l *Leadership) errNotLeader() error {
	return fmt.Errorf("%w of job %q: leader key %s with create revision %d is gone or replaced", ErrNotLeader, l.job, l.key, l.rev)
}

// fencedGet reads key if l still leads; kv is nil if the key is absent.
func (l *Leadership) fencedGet(ctx context.Context, key string) (*mvccpb.KeyValue, error) {
	resp, err := l.svc.cli.Txn(ctx).If(l.fence()).Then(clientv3.OpGet(key)).Commit()
	if err != nil {
		return nil, err
	}
	if !resp.Succeeded {
		return nil, l.errNotLeader()
	}
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		return kvs[0], nil
	}
	return nil, nil
}

// fencedPut writes key = value if l still leads and key was not modified
// since revision modRev (0: key absent). ok=false with a nil error means key
// was modified meanwhile: read it again and retry.
func (l *Leadership) fencedPut(ctx context.Context, key string, modRev int64, value string) (ok bool, err error) {
	resp, err := l.svc.cli.Txn(ctx).
		If(l.fence(), clientv3.Compare(clientv3.ModRevision(key), "=", modRev)).
		Then(clientv3.OpPut(key, value)).
		Else(clientv3.OpGet(l.key, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return false, err
	}
	if resp.Succeeded {
		return true, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 || kvs[0].CreateRevision != l.rev {
		return false, l.errNotLeader()
	}
	return false, nil
}
