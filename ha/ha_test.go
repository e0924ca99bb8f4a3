package ha

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/grpclog"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/internal/etcdtest"
)

// testTTL is the session TTL of the tests: the smallest etcd accepts with its
// default timing.
const testTTL = 2 * time.Second

// takeoverTimeout bounds every wait for a standby to take over. It is far
// above testTTL so that a slow machine does not fail the tests; they assert
// that the takeover happens, not how fast.
const takeoverTimeout = 20 * time.Second

func TestMain(m *testing.M) {
	// gRPC prints errors of closing connections to stderr by default.
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, io.Discard, io.Discard))
	os.Exit(m.Run())
}

// startEtcd starts a single-member etcd on free loopback ports with its data
// in a temporary directory and returns its client address. The test's cleanup
// stops it and then checks that no goroutine of etcd, gRPC or this package is
// left running.
func startEtcd(t *testing.T) string {
	t.Helper()
	t.Cleanup(func() { checkNoGoroutines(t) }) // registered first: runs last
	return etcdtest.Start(t)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// checkNoGoroutines fails t if goroutines of etcd, gRPC or this package are
// still running a few seconds after the test ended.
func checkNoGoroutines(t *testing.T) {
	t.Helper()
	var leaked []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		leaked = leaked[:0]
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			if strings.Contains(g, "testing.tRunner(") || strings.Contains(g, "testing.(*M).Run(") {
				continue // the goroutines of the tests themselves
			}
			if strings.Contains(g, "go.etcd.io/") || strings.Contains(g, "google.golang.org/grpc") || strings.Contains(g, "weirstream/weir/ha.") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return
		}
	}
	t.Errorf("%d goroutines left running after the test, first:\n%s", len(leaked), leaked[0])
}

func open(t *testing.T, endpoint string) *Services {
	t.Helper()
	svc, err := Open(t.Context(), "etcd://"+endpoint+"/weir-test", WithSessionTTL(testTTL))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	return svc
}

// adminClient is a plain etcd client for inspecting and tampering with keys.
func adminClient(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + endpoint}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func campaign(t *testing.T, svc *Services, job, candidate string) *Leadership {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), takeoverTimeout)
	defer cancel()
	l, err := svc.Campaign(ctx, job, candidate)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

type campaignResult struct {
	l   *Leadership
	err error
}

// campaignAsync campaigns in a goroutine that ends with the test at the latest.
func campaignAsync(t *testing.T, svc *Services, job, candidate string) <-chan campaignResult {
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan campaignResult, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		l, err := svc.Campaign(ctx, job, candidate)
		res <- campaignResult{l, err}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return res
}

func awaitElected(t *testing.T, res <-chan campaignResult) *Leadership {
	t.Helper()
	select {
	case r := <-res:
		if r.err != nil {
			t.Fatalf("campaign failed: %v", r.err)
		}
		return r.l
	case <-time.After(takeoverTimeout):
		t.Fatalf("standby not elected within %v", takeoverTimeout)
	}
	return nil
}

func assertBlocked(t *testing.T, res <-chan campaignResult) {
	t.Helper()
	select {
	case r := <-res:
		t.Fatalf("standby campaign returned while the leader is alive: %+v", r)
	case <-time.After(500 * time.Millisecond):
	}
}

func awaitDone(t *testing.T, l *Leadership, why string) {
	t.Helper()
	select {
	case <-l.Done():
	case <-time.After(takeoverTimeout):
		t.Fatalf("Done of %s not closed within %v after %s", l.CandidateID(), takeoverTimeout, why)
	}
}

func assertLeader(t *testing.T, svc *Services, job, want string) {
	t.Helper()
	got, ok, err := svc.Leader(t.Context(), job)
	if err != nil || !ok || got != want {
		t.Fatalf("Leader(%q) = %q, %v, %v; want %q", job, got, ok, err, want)
	}
}

// takeIDs takes n checkpoint ids and checks they are want, want+1, ...
func takeIDs(t *testing.T, l *Leadership, n int, want checkpoint.ID) {
	t.Helper()
	for i := range n {
		id, err := l.NextCheckpointID(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if id != want+checkpoint.ID(i) {
			t.Fatalf("checkpoint id %d, want %d", id, want+checkpoint.ID(i))
		}
	}
}

func assertLatest(t *testing.T, l *Leadership, want Pointer) {
	t.Helper()
	got, ok, err := l.LatestCheckpoint(t.Context())
	if err != nil || !ok || got != want {
		t.Fatalf("LatestCheckpoint = %+v, %v, %v; want %+v", got, ok, err, want)
	}
}

func chk(id checkpoint.ID) Pointer {
	return Pointer{ID: id, Location: fmt.Sprintf("s3://bucket/wordcount/chk-%d", id)}
}

// TestFailoverAfterLeaderDies: the leader's process dies without resigning
// (its client is closed, the lease is left to expire); the standby takes
// over and continues the checkpoint ids and the latest pointer.
func TestFailoverAfterLeaderDies(t *testing.T) {
	ep := startEtcd(t)
	svcA, svcB := open(t, ep), open(t, ep)

	if _, ok, err := svcB.Leader(t.Context(), "wordcount"); err != nil || ok {
		t.Fatalf("Leader before any campaign: ok=%v err=%v", ok, err)
	}
	a := campaign(t, svcA, "wordcount", "jm-a:6123")
	assertLeader(t, svcB, "wordcount", "jm-a:6123")
	takeIDs(t, a, 5, 1)
	if err := a.SetLatestCheckpoint(t.Context(), chk(5)); err != nil {
		t.Fatal(err)
	}

	standby := campaignAsync(t, svcB, "wordcount", "jm-b:6123")
	assertBlocked(t, standby)

	if err := svcA.Close(); err != nil { // the process of A dies
		t.Fatal(err)
	}
	awaitDone(t, a, "its client was closed")
	b := awaitElected(t, standby)
	defer b.Resign(context.Background())

	assertLeader(t, svcB, "wordcount", "jm-b:6123")
	if b.FencingToken() <= a.FencingToken() {
		t.Errorf("fencing token of the new leader %d <= old %d", b.FencingToken(), a.FencingToken())
	}
	assertLatest(t, b, chk(5))
	id, err := b.NextCheckpointID(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if id <= 5 {
		t.Fatalf("new leader's first checkpoint id %d, want > 5", id)
	}
	if err := b.SetLatestCheckpoint(t.Context(), chk(3)); !errors.Is(err, ErrOlderCheckpoint) {
		t.Fatalf("moving the pointer back from 5 to 3: err = %v, want ErrOlderCheckpoint", err)
	}
	assertLatest(t, b, chk(5))
	if err := b.SetLatestCheckpoint(t.Context(), chk(id)); err != nil {
		t.Fatal(err)
	}
	assertLatest(t, b, chk(id))
}

// TestDeposedLeaderIsFenced: the leader's lease expires while its process
// still runs (a long GC pause, a partition that healed). Its writes after the
// takeover fail with ErrNotLeader and change nothing.
func TestDeposedLeaderIsFenced(t *testing.T) {
	ep := startEtcd(t)
	svcA, svcB := open(t, ep), open(t, ep)
	admin := adminClient(t, ep)

	a := campaign(t, svcA, "wordcount", "jm-a")
	takeIDs(t, a, 5, 1)
	if err := a.SetLatestCheckpoint(t.Context(), chk(5)); err != nil {
		t.Fatal(err)
	}
	standby := campaignAsync(t, svcB, "wordcount", "jm-b")
	assertBlocked(t, standby)

	// What etcd does when A's lease expires.
	if _, err := admin.Revoke(t.Context(), a.session.Lease()); err != nil {
		t.Fatal(err)
	}
	b := awaitElected(t, standby)
	defer b.Resign(context.Background())

	if _, err := a.NextCheckpointID(t.Context()); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("deposed NextCheckpointID: err = %v, want ErrNotLeader", err)
	}
	err := a.SetLatestCheckpoint(t.Context(), chk(6))
	if !errors.Is(err, ErrNotLeader) {
		t.Fatalf("deposed SetLatestCheckpoint: err = %v, want ErrNotLeader", err)
	}
	if !strings.Contains(err.Error(), "wordcount") || !strings.Contains(err.Error(), a.key) {
		t.Errorf("error does not name the job and the leader key: %v", err)
	}
	if _, _, err := a.LatestCheckpoint(t.Context()); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("deposed LatestCheckpoint: err = %v, want ErrNotLeader", err)
	}

	// Nothing changed in etcd.
	resp, err := admin.Get(t.Context(), svcB.counterKey("wordcount"))
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "5" {
		t.Fatalf("counter after fenced writes: %v, %v; want 5", resp, err)
	}
	assertLatest(t, b, chk(5))
	takeIDs(t, b, 1, 6)

	awaitDone(t, a, "its lease was revoked")
	if err := a.Resign(t.Context()); err != nil {
		t.Errorf("Resign of a deposed leader: %v", err)
	}
	assertLeader(t, svcA, "wordcount", "jm-b")
}

// TestResignHandsOver: a resigning leader hands over at once.
func TestResignHandsOver(t *testing.T) {
	ep := startEtcd(t)
	svcA, svcB := open(t, ep), open(t, ep)

	a := campaign(t, svcA, "job", "jm-a")
	standby := campaignAsync(t, svcB, "job", "jm-b")
	assertBlocked(t, standby)
	if err := a.Resign(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.Done():
	default:
		t.Fatal("Done not closed after Resign")
	}
	if err := a.Resign(t.Context()); err != nil {
		t.Fatalf("second Resign: %v", err)
	}
	b := awaitElected(t, standby)
	assertLeader(t, svcA, "job", "jm-b")
	if _, err := a.NextCheckpointID(t.Context()); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("NextCheckpointID after Resign: err = %v, want ErrNotLeader", err)
	}
	if err := b.Resign(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := svcA.Leader(t.Context(), "job"); err != nil || ok {
		t.Fatalf("Leader after both resigned: ok=%v err=%v", ok, err)
	}
}

// TestDeletedLeaderKeyEndsLeadership: if the election key disappears while
// the lease lives (an operator deleted it), Done is closed promptly.
func TestDeletedLeaderKeyEndsLeadership(t *testing.T) {
	ep := startEtcd(t)
	svc := open(t, ep)
	admin := adminClient(t, ep)

	a := campaign(t, svc, "job", "jm-a")
	if _, err := admin.Delete(t.Context(), a.key); err != nil {
		t.Fatal(err)
	}
	awaitDone(t, a, "its key was deleted")
	if err := a.Resign(t.Context()); err != nil {
		t.Fatal(err)
	}
	a2 := campaign(t, svc, "job", "jm-a")
	defer a2.Resign(context.Background())
	takeIDs(t, a2, 1, 1)
}

// TestCampaignCanceled: a standby that gives up leaves no candidacy behind.
func TestCampaignCanceled(t *testing.T) {
	ep := startEtcd(t)
	svcA, svcB := open(t, ep), open(t, ep)
	admin := adminClient(t, ep)

	a := campaign(t, svcA, "job", "jm-a")
	defer a.Resign(context.Background())
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := svcB.Campaign(ctx, "job", "jm-b"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Campaign with expired context: err = %v, want DeadlineExceeded", err)
	}
	resp, err := admin.Get(t.Context(), svcA.electionPrefix("job")+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 1 {
		t.Fatalf("candidates left: %v, %v; want 1", resp, err)
	}
	assertLeader(t, svcB, "job", "jm-a")
}

// TestStandbyLosesLeaseWhileWaiting: a standby whose lease expires while it
// waits campaigns again with a new lease instead of failing or believing it
// leads.
func TestStandbyLosesLeaseWhileWaiting(t *testing.T) {
	ep := startEtcd(t)
	svcA, svcB := open(t, ep), open(t, ep)
	admin := adminClient(t, ep)

	a := campaign(t, svcA, "job", "jm-a")
	standby := campaignAsync(t, svcB, "job", "jm-b")
	candidates := func() []*mvccpb.KeyValue {
		t.Helper()
		resp, err := admin.Get(t.Context(), svcA.electionPrefix("job")+"/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Kvs
	}
	var kvs []*mvccpb.KeyValue
	for deadline := time.Now().Add(takeoverTimeout); len(kvs) < 2 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		kvs = candidates()
	}
	if len(kvs) != 2 || string(kvs[1].Value) != "jm-b" {
		t.Fatalf("candidates %v, want jm-a and jm-b", kvs)
	}
	first := kvs[1]
	if _, err := admin.Revoke(t.Context(), clientv3.LeaseID(first.Lease)); err != nil {
		t.Fatal(err)
	}
	// B notices at its next keep-alive and campaigns with a new lease.
	for deadline := time.Now().Add(takeoverTimeout); ; time.Sleep(10 * time.Millisecond) {
		kvs = candidates()
		if len(kvs) == 2 && string(kvs[1].Value) == "jm-b" && kvs[1].CreateRevision > first.CreateRevision {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("standby did not campaign again: candidates %v", kvs)
		}
	}
	assertBlocked(t, standby)
	if err := a.Resign(t.Context()); err != nil {
		t.Fatal(err)
	}
	b := awaitElected(t, standby)
	defer b.Resign(context.Background())
	assertLeader(t, svcA, "job", "jm-b")
}

// TestConcurrentCheckpointIDs: concurrent callers on one leadership never get
// the same id.
func TestConcurrentCheckpointIDs(t *testing.T) {
	ep := startEtcd(t)
	svc := open(t, ep)
	l := campaign(t, svc, "job", "jm")
	defer l.Resign(context.Background())

	const workers, each = 4, 25
	var (
		mu  sync.Mutex
		ids []checkpoint.ID
		wg  sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for range each {
				id, err := l.NextCheckpointID(t.Context())
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(ids)
	for i, id := range ids {
		if id != checkpoint.ID(i+1) {
			t.Fatalf("ids %v: want 1..%d without repeats", ids, workers*each)
		}
	}
}

// TestLatestCheckpointRules: validation, idempotent retries, no conflicting
// location for one id, independent jobs.
func TestLatestCheckpointRules(t *testing.T) {
	ep := startEtcd(t)
	svc := open(t, ep)
	l := campaign(t, svc, "job", "jm")
	defer l.Resign(context.Background())
	other := campaign(t, svc, "other-job", "jm")
	defer other.Resign(context.Background())

	if _, ok, err := l.LatestCheckpoint(t.Context()); err != nil || ok {
		t.Fatalf("LatestCheckpoint of a new job: ok=%v err=%v", ok, err)
	}
	for _, p := range []Pointer{{ID: 0, Location: "x"}, {ID: -1, Location: "x"}, {ID: 1}} {
		if err := l.SetLatestCheckpoint(t.Context(), p); err == nil {
			t.Errorf("SetLatestCheckpoint(%+v) accepted", p)
		}
	}
	if err := l.SetLatestCheckpoint(t.Context(), chk(7)); err != nil {
		t.Fatal(err)
	}
	if err := l.SetLatestCheckpoint(t.Context(), chk(7)); err != nil {
		t.Fatalf("repeating the same pointer: %v", err)
	}
	if err := l.SetLatestCheckpoint(t.Context(), Pointer{ID: 7, Location: "s3://elsewhere"}); err == nil {
		t.Fatal("checkpoint 7 recorded at a second location")
	}
	err := l.SetLatestCheckpoint(t.Context(), chk(6))
	if !errors.Is(err, ErrOlderCheckpoint) || !strings.Contains(err.Error(), "7") {
		t.Fatalf("moving back to 6: %v", err)
	}
	assertLatest(t, l, chk(7))
	if _, ok, err := other.LatestCheckpoint(t.Context()); err != nil || ok {
		t.Fatalf("pointer leaked into another job: ok=%v err=%v", ok, err)
	}
	takeIDs(t, other, 1, 1)
}

func TestBadNames(t *testing.T) {
	ep := startEtcd(t)
	svc := open(t, ep)
	for _, job := range []string{"", "a/b"} {
		if _, err := svc.Campaign(t.Context(), job, "jm"); err == nil {
			t.Errorf("Campaign accepted job name %q", job)
		}
		if _, _, err := svc.Leader(t.Context(), job); err == nil {
			t.Errorf("Leader accepted job name %q", job)
		}
	}
	if _, err := svc.Campaign(t.Context(), "job", ""); err == nil {
		t.Error("Campaign accepted an empty candidate ID")
	}
}

func TestParseURL(t *testing.T) {
	good := []struct {
		url       string
		endpoints []string
		prefix    string
	}{
		{"etcd://127.0.0.1:2379/weir", []string{"127.0.0.1:2379"}, "/weir"},
		{"etcd://a:1,b:2,c:3/weir/prod/", []string{"a:1", "b:2", "c:3"}, "/weir/prod"},
		{"etcd://[::1]:2379/w", []string{"[::1]:2379"}, "/w"},
	}
	for _, g := range good {
		eps, prefix, err := parseURL(g.url)
		if err != nil || !slices.Equal(eps, g.endpoints) || prefix != g.prefix {
			t.Errorf("parseURL(%q) = %q, %q, %v; want %q, %q", g.url, eps, prefix, err, g.endpoints, g.prefix)
		}
	}
	for _, bad := range []string{
		"", "127.0.0.1:2379/weir", "http://127.0.0.1:2379/weir", "etcd://", "etcd:///weir",
		"etcd://host/weir", "etcd://host:port/weir", "etcd://host:0/weir", "etcd://host:70000/weir",
		"etcd://:2379/weir", "etcd://a:1,/weir", "etcd://a:1", "etcd://a:1/", "etcd://a:1/x//y",
		"etcd://a:1/x/../y", "etcd://user:pw@a:1/weir", "etcd://a:1/weir?x=1",
	} {
		_, _, err := parseURL(bad)
		if !errors.Is(err, ErrInvalidURL) || !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) {
			t.Errorf("parseURL(%q): err = %v; want ErrInvalidURL naming the URL", bad, err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	t.Cleanup(func() { checkNoGoroutines(t) })

	t.Run("bad URL", func(t *testing.T) {
		_, err := Open(t.Context(), "etcd://localhost/weir")
		if !errors.Is(err, ErrInvalidURL) {
			t.Fatalf("err = %v, want ErrInvalidURL", err)
		}
		t.Log(err)
	})
	t.Run("unreachable", func(t *testing.T) {
		addr := freeAddr(t) // nothing listens there any more
		start := time.Now()
		_, err := Open(t.Context(), "etcd://"+addr+"/weir", WithDialTimeout(500*time.Millisecond))
		if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), addr) {
			t.Fatalf("err = %v, want ErrUnreachable naming %s", err, addr)
		}
		if elapsed := time.Since(start); elapsed > 5*time.Second {
			t.Errorf("Open took %v with a 500ms dial timeout", elapsed)
		}
		t.Log(err)
	})
	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := Open(ctx, "etcd://"+freeAddr(t)+"/weir")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
	t.Run("bad options", func(t *testing.T) {
		if _, err := Open(t.Context(), "etcd://a:1/weir", WithSessionTTL(0)); err == nil {
			t.Error("Open accepted a zero session TTL")
		}
		if _, err := Open(t.Context(), "etcd://a:1/weir", WithDialTimeout(-1)); err == nil {
			t.Error("Open accepted a negative dial timeout")
		}
	})
}
