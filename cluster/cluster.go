package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/checkpoint/coordinator"
	"github.com/weirstream/weir/metrics"
	"github.com/weirstream/weir/runtime"
)

// Config configures the processes of a distributed job: one job
// manager and task managers that connect to it. Every process runs the same
// job binary and builds the same job graph; only configuration differs.
type Config struct {
	// JobManager is the control address: the job manager listens on it,
	// task managers dial it. Default 127.0.0.1:6123.
	JobManager string
	// Token authenticates task managers and data-plane peers. Required
	// when the job manager listens on a non-loopback address.
	Token string
	// TLS, if set, secures the control plane (the server side on the job
	// manager, the client side on task managers).
	ServerTLS, ClientTLS *tls.Config
	// HeartbeatInterval is how often task managers report and the job
	// manager answers (default 1s); a task manager silent for
	// HeartbeatTimeout (default 5s) is lost, and a task manager that
	// hears nothing from the job manager for HeartbeatTimeout stops its
	// subtasks and dials again.
	HeartbeatInterval, HeartbeatTimeout time.Duration
	// SlotTimeout bounds how long an attempt waits for enough task slots
	// (default 60s); then it fails with the reason.
	SlotTimeout time.Duration
	// RegistrationTimeout, on the job manager, bounds how long a
	// connection to the control port may take to present the token and
	// register a task manager (default 10s); then it is closed.
	RegistrationTimeout time.Duration
	// Task manager side: its name (default the data address), its slots
	// (default 1), and its data plane (required).
	Name      string
	Slots     int
	DataPlane runtime.DataPlane
	// ResolveJobManager, on a task manager, finds the current job manager
	// before every connection (the elected leader under HA); nil dials
	// JobManager.
	ResolveJobManager func(ctx context.Context) (string, error)
	// SetDataPlaneErrorHandler lets the task manager learn of broken data
	// channels: the data plane calls the handler with the attempt number
	// of the channel (ChannelID's top 16 bits) and the error; optional.
	SetDataPlaneErrorHandler func(func(attempt int, err error))
}

func (c *Config) defaults() {
	if c.JobManager == "" {
		c.JobManager = "127.0.0.1:6123"
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = time.Second
	}
	if c.HeartbeatTimeout <= 0 {
		c.HeartbeatTimeout = 5 * time.Second
	}
	if c.SlotTimeout <= 0 {
		c.SlotTimeout = 60 * time.Second
	}
	if c.RegistrationTimeout <= 0 {
		c.RegistrationTimeout = 10 * time.Second
	}
	if c.Slots <= 0 {
		c.Slots = 1
	}
}

// JobManager is the control side of a distributed job: it runs the
// checkpoint coordinator and the failover loop, and deploys subtasks to the
// task managers that registered with it.
type JobManager struct {
	cfg    Config
	log    *slog.Logger
	lis    net.Listener
	server *grpc.Server
	stopHB context.CancelFunc
	// ctlLis is lis, closing connections that do not register in time;
	// warnEvery is how often each kind of refused connection is logged
	// at most (default 1s).
	ctlLis    *ctlListener
	warnEvery time.Duration
	// jobName is the job's name; task managers of other jobs are refused.
	jobName string
	// lostLeadership is set when the HA leadership is lost.
	lostLeadership atomic.Bool

	mu struct {
		sync.Mutex
		tms     map[string]*tmConn
		changed chan struct{} // closed and replaced when tms changes
		current *jmAttempt
		ended   bool
	}
}

type tmConn struct {
	name     string
	slots    int
	dataAddr string
	out      *runtime.Queue[ctlMsg]
	kick     chan struct{} // closed to drop the connection
	kickOnce sync.Once
	lastSeen time.Time
}

func (c *tmConn) drop() { c.kickOnce.Do(func() { close(c.kick) }) }

// StartJobManager starts the job manager of job g: it listens for task
// managers on cc.JobManager and runs the job on them, with the failover,
// checkpointing and restore of the local cluster. The returned Job behaves
// as a local one (Wait, Cancel, TriggerCheckpoint, StopWithSavepoint).
func StartJobManager(ctx context.Context, g *runtime.JobGraph, cfg runtime.Config, cc Config) (*runtime.Job, *JobManager, error) {
	cc.defaults()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if !IsLoopback(cc.JobManager) && cc.Token == "" {
		return nil, nil, fmt.Errorf("the job manager listens on %s, beyond loopback: a cluster token is required", cc.JobManager)
	}
	lis, err := net.Listen("tcp", cc.JobManager)
	if err != nil {
		return nil, nil, fmt.Errorf("job manager cannot listen on %s: %w", cc.JobManager, err)
	}
	jm := &JobManager{cfg: cc, log: cfg.Logger.With("role", "jobmanager"), jobName: g.Name}
	jm.mu.tms = map[string]*tmConn{}
	jm.mu.changed = make(chan struct{})
	jm.serveControl(lis)
	hbCtx, stopHB := context.WithCancel(context.Background())
	jm.stopHB = stopHB
	go jm.watchHeartbeats(hbCtx)
	job, err := runtime.StartWith(ctx, g, cfg, jm)
	if err != nil {
		stopHB()
		jm.server.Stop()
		return nil, nil, err
	}
	if cfg.HA != nil {
		go func() {
			select {
			case <-cfg.HA.Done():
				jm.log.Error("lost the leadership: stopping the job here; the new leader restores it")
				jm.lostLeadership.Store(true)
				job.Abort(errors.New("this job manager lost its leadership"))
			case <-job.Done():
			}
		}()
	}
	return job, jm, nil
}

// serveControl serves the control plane on lis.
func (jm *JobManager) serveControl(lis net.Listener) {
	jm.lis = lis
	if jm.warnEvery <= 0 {
		jm.warnEvery = time.Second
	}
	jm.ctlLis = newCtlListener(lis, jm.cfg.RegistrationTimeout, jm.cfg.ServerTLS != nil, jm.log, jm.warnEvery)
	// No grpc.ConnectionTimeout: the listener closes a connection that
	// has not registered in time, handshake or not, and says so.
	var opts []grpc.ServerOption
	if jm.cfg.ServerTLS != nil {
		opts = append(opts, grpc.Creds(ctlCreds{credentials.NewTLS(jm.cfg.ServerTLS)}))
	}
	jm.server = grpc.NewServer(opts...)
	jm.server.RegisterService(&ctlServiceDesc, jm)
	go jm.server.Serve(jm.ctlLis)
}

// Addr is the address the job manager listens on.
func (jm *JobManager) Addr() string { return jm.lis.Addr().String() }

// JobEnded implements runtime.JobEndListener: it tells the task managers
// the job ended and stops serving.
func (jm *JobManager) JobEnded(err error) {
	jm.stopHB()
	if jm.lostLeadership.Load() {
		// The job goes on under the new leader: hang up without saying it
		// ended, so that the task managers look for the new leader.
		jm.server.Stop()
		return
	}
	msg := ctlMsg{Kind: msgJobEnded}
	if err != nil {
		msg.Err = err.Error()
	}
	jm.mu.Lock()
	jm.mu.ended = true
	for _, c := range jm.mu.tms {
		c.out.Put(msg)
	}
	jm.mu.Unlock()
	// The task managers hang up once they heard it; wait for that (a
	// while at most), then stop serving.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		jm.mu.Lock()
		n, changed := len(jm.mu.tms), jm.mu.changed
		jm.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-changed:
		case <-time.After(time.Until(deadline)):
		}
	}
	jm.server.Stop()
}

func (jm *JobManager) notifyChanged() {
	close(jm.mu.changed)
	jm.mu.changed = make(chan struct{})
}

// connect serves one task manager's control stream.
func (jm *JobManager) connect(stream grpc.ServerStream) error {
	ctx := stream.Context()
	if err := checkToken(ctx, jm.cfg.Token); err != nil {
		jm.ctlLis.warn.log(jm.log, "token", "refused a task manager connection: wrong or missing token", "peer", peerAddr(ctx))
		return err
	}
	reg, err := jm.recvRegistration(stream)
	if err != nil {
		return err
	}
	if reg.Kind != msgRegister || reg.Name == "" || reg.Slots < 1 || reg.DataAddr == "" {
		jm.log.Warn("refused a task manager: bad registration", "peer", peerAddr(ctx), "msg", reg.Kind)
		return fmt.Errorf("weir: expected a registration, got %q", reg.Kind)
	}
	if reg.Version != ctlVersion {
		jm.log.Warn("refused a task manager speaking another control protocol version", "peer", peerAddr(ctx), "version", reg.Version, "want", ctlVersion)
		return fmt.Errorf("weir: this job manager speaks control protocol version %d, the task manager %d: run the same weir build on every process", ctlVersion, reg.Version)
	}
	if reg.Job != jm.jobName {
		jm.log.Warn("refused a task manager of another job", "peer", peerAddr(ctx), "job", reg.Job)
		return fmt.Errorf("weir: this job manager runs job %q, not %q", jm.jobName, reg.Job)
	}
	jm.ctlLis.registered(peerAddr(ctx))
	c := &tmConn{name: reg.Name, slots: reg.Slots, dataAddr: reg.DataAddr, out: runtime.NewQueue[ctlMsg](), kick: make(chan struct{}), lastSeen: time.Now()}
	jm.mu.Lock()
	if old := jm.mu.tms[c.name]; old != nil {
		old.drop() // a restarted task manager replaces its old connection
	}
	jm.mu.tms[c.name] = c
	jm.notifyChanged()
	jm.mu.Unlock()
	jm.log.Info("task manager registered", "name", c.name, "slots", c.slots, "data", c.dataAddr, "peer", peerAddr(ctx))
	defer jm.lost(c, "its control connection closed")
	c.out.Put(ctlMsg{Kind: msgRegistered})

	recvErr := make(chan error, 1)
	go func() {
		for {
			var m ctlMsg
			if err := stream.RecvMsg(&m); err != nil {
				recvErr <- err
				return
			}
			jm.mu.Lock()
			c.lastSeen = time.Now()
			a := jm.mu.current
			jm.mu.Unlock()
			if m.Kind != msgHeartbeat {
				jm.handleReport(c, a, m)
			} else if a != nil && m.Attempt == a.a.Number() && m.Metrics != nil {
				a.ca.report(c.name, m.Metrics)
			}
		}
	}()
	// A heartbeat every HeartbeatInterval tells the task manager this
	// job manager still has it (see taskManager.session).
	hb := time.NewTicker(jm.cfg.HeartbeatInterval)
	defer hb.Stop()
	var batch []ctlMsg
	for {
		select {
		case err := <-recvErr:
			return err
		case <-c.kick:
			return errors.New("weir: task manager dropped")
		case <-ctx.Done():
			return ctx.Err()
		case <-hb.C:
			if err := stream.SendMsg(&ctlMsg{Kind: msgHeartbeat}); err != nil {
				return err
			}
		case <-c.out.C():
			batch = c.out.Drain(batch[:0])
			for _, m := range batch {
				if err := stream.SendMsg(&m); err != nil {
					return err
				}
			}
			clear(batch)
		}
	}
}

// lost removes a task manager; an attempt it took part in fails over.
func (jm *JobManager) lost(c *tmConn, why string) {
	c.drop()
	jm.mu.Lock()
	if jm.mu.tms[c.name] == c {
		delete(jm.mu.tms, c.name)
		jm.notifyChanged()
	}
	a, ended := jm.mu.current, jm.mu.ended
	jm.mu.Unlock()
	if ended {
		jm.log.Debug("task manager left after the end of the job", "name", c.name)
		return
	}
	jm.log.Warn("task manager lost", "name", c.name, "reason", why)
	if a != nil {
		a.tmLost(c, why)
	}
}

func (jm *JobManager) watchHeartbeats(ctx context.Context) {
	t := time.NewTicker(jm.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		jm.mu.Lock()
		var dead []*tmConn
		for _, c := range jm.mu.tms {
			if time.Since(c.lastSeen) > jm.cfg.HeartbeatTimeout {
				dead = append(dead, c)
			}
		}
		jm.mu.Unlock()
		for _, c := range dead {
			jm.log.Warn("task manager missed its heartbeats", "name", c.name, "timeout", jm.cfg.HeartbeatTimeout)
			c.drop()
		}
	}
}

// handleReport routes a task manager's report to the attempt it belongs
// to; reports of older attempts are dropped.
func (jm *JobManager) handleReport(c *tmConn, ja *jmAttempt, m ctlMsg) {
	if ja == nil || m.Attempt != ja.a.Number() {
		return // a late report or confirmation of an earlier attempt
	}
	a := ja.a
	switch m.Kind {
	case msgAck:
		if m.Snap != nil {
			a.Ack(m.ID, m.Task, *m.Snap)
		}
	case msgDecline:
		a.Decline(m.ID, m.Task, m.Why, errors.New(m.Err))
	case msgSourceEnded:
		a.SourceEnded(m.Task)
	case msgFinished:
		a.TaskFinished(m.Task)
		ja.ca.finished(m.Task)
	case msgFailed:
		a.Fail(runtime.Declassify(fmt.Sprintf("task manager %s: %s", c.name, m.Err), m.Class))
	case msgCancelled:
		ja.ca.ended(c.name)
	}
}

// jmAttempt is an attempt the job manager runs on task managers.
type jmAttempt struct {
	a  *runtime.Attempt
	ca *clusterAttempt
}

// clusterAttempt is the job manager's view of an attempt's task managers.
type clusterAttempt struct {
	tms   []*tmConn // by process index
	index map[string]int

	mu        sync.Mutex
	remaining int             // subtasks not finished yet
	done      chan struct{}   // closed when remaining reaches 0
	stopped   map[string]bool // task managers that confirmed the end, or are gone
	changed   chan struct{}   // signalled when stopped grows
	// samples are the subtask metrics each task manager last reported.
	samples map[string][]metrics.TaskSample
	// finishedTasks are the subtasks that reported they finished.
	finishedTasks map[checkpoint.TaskID]bool
}

// report keeps the metrics task manager name reported with a heartbeat.
func (c *clusterAttempt) report(name string, s []metrics.TaskSample) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.index[name]; ok {
		for i := range s {
			s[i].Host = name
		}
		c.samples[name] = s
	}
}

// sample is the metrics of every subtask of the attempt, as last reported.
func (c *clusterAttempt) sample(time.Time) []metrics.TaskSample {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []metrics.TaskSample
	for _, tm := range c.tms {
		for _, s := range c.samples[tm.name] {
			if c.finishedTasks[checkpoint.TaskID{Vertex: s.Vertex, Subtask: s.Subtask}] {
				s.State = metrics.Finished
			}
			out = append(out, s)
		}
	}
	return out
}

// TaskManagers implements runtime.TaskManagerLister: the task managers
// registered now, by name.
func (jm *JobManager) TaskManagers() []runtime.TaskManagerInfo {
	jm.mu.Lock()
	defer jm.mu.Unlock()
	out := make([]runtime.TaskManagerInfo, 0, len(jm.mu.tms))
	for _, c := range jm.mu.tms {
		out = append(out, runtime.TaskManagerInfo{ID: c.name, DataAddr: c.dataAddr, Slots: c.slots, LastHeartbeat: c.lastSeen})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// finished counts a finished subtask; done closes after the last.
func (c *clusterAttempt) finished(task checkpoint.TaskID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.finishedTasks[task] = true
	if c.remaining > 0 {
		c.remaining--
		if c.remaining == 0 {
			close(c.done)
		}
	}
}

// ended records that task manager name ran no task of the attempt any
// more (it confirmed the cancellation, or it is gone).
func (c *clusterAttempt) ended(name string) {
	c.mu.Lock()
	if _, ok := c.index[name]; ok {
		c.stopped[name] = true
	}
	c.mu.Unlock()
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// waitStopped waits until every task manager of the attempt has stopped
// its tasks, at most timeout; it reports whether they all did.
func (c *clusterAttempt) waitStopped(timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		all := len(c.stopped) == len(c.tms)
		c.mu.Unlock()
		if all {
			return true
		}
		select {
		case <-c.changed:
		case <-deadline.C:
			return false
		}
	}
}

func (ja *jmAttempt) tmLost(c *tmConn, why string) {
	ca := ja.ca
	i, ok := ca.index[c.name]
	if !ok || ca.tms[i] != c {
		return
	}
	ca.ended(c.name)
	ja.a.Fail(fmt.Errorf("task manager %s lost: %s", c.name, why))
}

// waitSlots waits until the registered task managers offer need slots.
func (jm *JobManager) waitSlots(ctx context.Context, need int) ([]*tmConn, error) {
	deadline := time.NewTimer(jm.cfg.SlotTimeout)
	defer deadline.Stop()
	for {
		jm.mu.Lock()
		var tms []*tmConn
		have := 0
		for _, c := range jm.mu.tms {
			tms = append(tms, c)
			have += c.slots
		}
		changed := jm.mu.changed
		jm.mu.Unlock()
		if have >= need {
			sort.Slice(tms, func(i, j int) bool { return tms[i].name < tms[j].name })
			return tms, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			return nil, fmt.Errorf("not enough task slots after %s: the job needs %d, %d task managers offer %d", jm.cfg.SlotTimeout, need, len(tms), have)
		}
	}
}

// Execute implements runtime.Executor: it runs an attempt on the task
// managers. It waits for slots, places and deploys the subtasks, drives
// checkpoints, and waits until every subtask finished or the attempt
// failed; then it makes sure every task manager stopped the attempt's
// tasks before the next attempt starts.
func (jm *JobManager) Execute(a *runtime.Attempt) error {
	g := a.Graph()
	need := 0
	for _, v := range g.Vertices {
		need = max(need, v.Parallelism)
	}
	tms, err := jm.waitSlots(a.Context(), need)
	if err != nil {
		return err
	}
	// Slot s holds subtask s of every vertex (Flink's slot sharing); slots
	// are spread over the task managers in name order.
	var slotTM []int
	for i, c := range tms {
		for range c.slots {
			slotTM = append(slotTM, i)
		}
	}
	where := map[checkpoint.TaskID]int{}
	var placedList []placed
	for _, t := range a.Tasks() {
		where[t.ID] = slotTM[t.ID.Subtask]
		placedList = append(placedList, placed{Task: t.ID, Process: slotTM[t.ID.Subtask]})
	}
	addrs := make([]string, len(tms))
	ca := &clusterAttempt{tms: tms, index: map[string]int{}, done: make(chan struct{}), stopped: map[string]bool{},
		changed: make(chan struct{}, 1), remaining: len(a.Tasks()), samples: map[string][]metrics.TaskSample{}, finishedTasks: map[checkpoint.TaskID]bool{}}
	for i, c := range tms {
		addrs[i] = c.dataAddr
		ca.index[c.name] = i
	}
	ja := &jmAttempt{a: a, ca: ca}
	a.SetMetricsSource(ca.sample)
	jm.mu.Lock()
	jm.mu.current = ja
	jm.mu.Unlock()
	defer func() {
		jm.mu.Lock()
		if jm.mu.current == ja {
			jm.mu.current = nil
		}
		jm.mu.Unlock()
	}()
	// A task manager lost between waitSlots and now fails the attempt.
	jm.mu.Lock()
	for _, c := range tms {
		if jm.mu.tms[c.name] != c {
			jm.mu.Unlock()
			return fmt.Errorf("task manager %s lost before deployment", c.name)
		}
	}
	jm.mu.Unlock()
	dm := deployMsg{Where: placedList, Addrs: addrs}
	if rp := a.Restore(); rp != nil {
		dm.Restore, dm.FromJobStorage, dm.Owned = rp.Metadata, rp.Storage == a.Config().Storage, rp.Owned
	}
	mail := func(id checkpoint.TaskID, m runtime.Mail) {
		tms[where[id]].out.Put(ctlMsg{Kind: msgMail, Attempt: a.Number(), Task: id, Mail: &m})
	}
	// The driver exists before any task runs (a source may end, and
	// report it, at once), and its loop, which mails triggers, starts
	// after the deployments are queued ahead of any mail.
	stop, err := a.StartDriver(mail, func() {
		for i, c := range tms {
			d := dm
			d.Self = i
			c.out.Put(ctlMsg{Kind: msgDeploy, Attempt: a.Number(), Deploy: &d})
		}
		jm.log.Info("deployed", "attempt", a.Number(), "taskmanagers", len(tms), "subtasks", len(a.Tasks()))
	})
	if err != nil {
		return err
	}
	select {
	case <-ca.done:
	case <-a.Context().Done():
	}
	// Stop the attempt everywhere and wait until every task manager has
	// (or is gone), so that no task of this attempt outlives it.
	for _, c := range tms {
		c.out.Put(ctlMsg{Kind: msgCancel, Attempt: a.Number()})
	}
	if !ca.waitStopped(30 * time.Second) {
		jm.log.Warn("task managers did not confirm the end of the attempt in time", "attempt", a.Number())
	}
	stop()
	return a.Err()
}

// RunTaskManager runs a task manager of job g: it registers with the job
// manager at cc.JobManager, runs the subtasks deployed to it, and returns
// when the job ends (nil if it finished) or ctx is cancelled. A lost job
// manager is dialled again until ctx ends.
func RunTaskManager(ctx context.Context, g *runtime.JobGraph, cfg runtime.Config, cc Config) error {
	cc.defaults()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cc.DataPlane == nil {
		return errors.New("a task manager needs a data plane")
	}
	if cc.Name == "" {
		cc.Name = cc.DataPlane.Addr()
	}
	if err := runtime.ValidateGraph(g); err != nil {
		return err
	}
	tm := &taskManager{g: g, cfg: cfg, cc: cc, log: cfg.Logger.With("role", "taskmanager", "name", cc.Name)}
	if cc.SetDataPlaneErrorHandler != nil {
		cc.SetDataPlaneErrorHandler(tm.dataPlaneError)
	}
	backoff := 100 * time.Millisecond
	for {
		ended, err := tm.session(ctx)
		if ended {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, ErrUnauthenticated) {
			return err
		}
		tm.log.Warn("lost the job manager; reconnecting", "err", err, "in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

type taskManager struct {
	g   *runtime.JobGraph
	cfg runtime.Config
	cc  Config
	log *slog.Logger

	mu struct {
		sync.Mutex
		current *tmAttempt
	}
}

// tmAttempt is the part of an attempt a task manager runs.
type tmAttempt struct {
	number int
	dep    *runtime.Deployment
	done   chan struct{}
}

func (tm *taskManager) dataPlaneError(attempt int, err error) {
	tm.mu.Lock()
	cur := tm.mu.current
	tm.mu.Unlock()
	// Channels of an older attempt break as it is torn down: only the
	// current attempt's channels matter.
	if cur != nil && cur.number&0xFFFF == attempt && cur.dep.Err() == nil {
		cur.dep.Fail(fmt.Errorf("data plane: %w", err))
	}
}

// reporter is the task host of a task manager's subtasks: what they
// report goes to the job manager over the control stream.
type reporter struct {
	attempt int
	out     *runtime.Queue[ctlMsg]
}

func (r reporter) Ack(id checkpoint.ID, task checkpoint.TaskID, snap checkpoint.TaskSnapshot) {
	r.out.Put(ctlMsg{Kind: msgAck, Attempt: r.attempt, ID: id, Task: task, Snap: &snap})
}

func (r reporter) Decline(id checkpoint.ID, task checkpoint.TaskID, why coordinator.DeclineReason, err error) {
	r.out.Put(ctlMsg{Kind: msgDecline, Attempt: r.attempt, ID: id, Task: task, Err: err.Error(), Why: why})
}

func (r reporter) SourceEnded(task checkpoint.TaskID) {
	r.out.Put(ctlMsg{Kind: msgSourceEnded, Attempt: r.attempt, Task: task})
}

func (r reporter) TaskFinished(task checkpoint.TaskID) {
	r.out.Put(ctlMsg{Kind: msgFinished, Attempt: r.attempt, Task: task})
}

// session is one control connection to the job manager. ended is true
// when the job manager said the job ended (err is then the job's error).
func (tm *taskManager) session(ctx context.Context) (ended bool, err error) {
	creds := insecure.NewCredentials()
	if tm.cc.ClientTLS != nil {
		creds = credentials.NewTLS(tm.cc.ClientTLS)
	}
	addr := tm.cc.JobManager
	if tm.cc.ResolveJobManager != nil {
		if addr, err = tm.cc.ResolveJobManager(ctx); err != nil {
			return false, fmt.Errorf("cannot find the job manager: %w", err)
		}
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return false, fmt.Errorf("cannot reach the job manager at %s: %w", addr, err)
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(ctx, tokenHeader, tm.cc.Token))
	defer cancel()
	// The job manager sends a heartbeat every HeartbeatInterval. A task
	// manager that hears nothing for HeartbeatTimeout while it waits (a
	// partition: no error arrives until TCP gives up, many minutes later)
	// ends the session, which stops its subtasks: the job manager has
	// failed the job over by then, and subtasks running on unseen would
	// go on reading sources and writing sinks beside the new attempt.
	// heard is when the session began to wait for the job manager, or 0
	// while it handles a message (a deployment restoring large state may
	// take minutes, and does not count as silence).
	var heard atomic.Int64
	heard.Store(time.Now().UnixNano())
	var silent atomic.Bool
	go func() {
		t := time.NewTicker(min(tm.cc.HeartbeatInterval, tm.cc.HeartbeatTimeout) / 4)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case now := <-t.C:
				if h := heard.Load(); h != 0 && now.Sub(time.Unix(0, h)) > tm.cc.HeartbeatTimeout {
					silent.Store(true)
					cancel()
					return
				}
			}
		}
	}()
	silence := func(err error) error {
		if silent.Load() {
			return fmt.Errorf("the job manager at %s was silent for longer than the heartbeat timeout (%v)", addr, tm.cc.HeartbeatTimeout)
		}
		return err
	}
	stream, err := conn.NewStream(sctx, &ctlServiceDesc.Streams[0], ctlMethod, grpc.CallContentSubtype(ctlCodecName))
	if err != nil {
		return false, silence(ctlError(err))
	}
	out := runtime.NewQueue[ctlMsg]()
	defer tm.stopCurrent()
	if err := stream.SendMsg(&ctlMsg{Kind: msgRegister, Version: ctlVersion, Name: tm.cc.Name, Slots: tm.cc.Slots, DataAddr: tm.cc.DataPlane.Addr(), Job: tm.g.Name}); err != nil {
		return false, ctlError(err)
	}
	sendErr := make(chan error, 1)
	go func() {
		hb := time.NewTicker(tm.cc.HeartbeatInterval)
		defer hb.Stop()
		var batch []ctlMsg
		for {
			select {
			case <-sctx.Done():
				return
			case <-hb.C:
				out.Put(tm.heartbeat())
			case <-out.C():
			}
			batch = out.Drain(batch[:0])
			for _, m := range batch {
				if err := stream.SendMsg(&m); err != nil {
					sendErr <- err
					cancel()
					return
				}
			}
			clear(batch)
		}
	}()
	for {
		var m ctlMsg
		heard.Store(time.Now().UnixNano())
		if err := stream.RecvMsg(&m); err != nil {
			select {
			case e := <-sendErr:
				err = e
			default:
			}
			return false, silence(ctlError(err))
		}
		heard.Store(0)
		switch m.Kind {
		case msgRegistered:
			tm.log.Info("registered with the job manager", "jobmanager", addr, "slots", tm.cc.Slots)
		case msgDeploy:
			tm.stopCurrent()
			if err := tm.deploy(ctx, m, out); err != nil {
				out.Put(ctlMsg{Kind: msgFailed, Attempt: m.Attempt, Err: err.Error()})
				out.Put(ctlMsg{Kind: msgCancelled, Attempt: m.Attempt})
			}
		case msgCancel:
			tm.mu.Lock()
			cur := tm.mu.current
			tm.mu.Unlock()
			if cur == nil || cur.number != m.Attempt {
				out.Put(ctlMsg{Kind: msgCancelled, Attempt: m.Attempt})
				continue
			}
			cur.dep.Fail(errCancelledByJobManager)
			go func() {
				<-cur.done
				out.Put(ctlMsg{Kind: msgCancelled, Attempt: m.Attempt})
			}()
		case msgMail:
			tm.mu.Lock()
			cur := tm.mu.current
			tm.mu.Unlock()
			if cur != nil && cur.number == m.Attempt && m.Mail != nil {
				cur.dep.Mail(m.Task, *m.Mail)
			}
		case msgJobEnded:
			tm.log.Info("the job ended", "err", m.Err)
			if m.Err != "" {
				return true, errors.New(m.Err)
			}
			return true, nil
		}
	}
}

// heartbeat is a heartbeat with the metrics of the current attempt's
// subtasks.
func (tm *taskManager) heartbeat() ctlMsg {
	tm.mu.Lock()
	cur := tm.mu.current
	tm.mu.Unlock()
	m := ctlMsg{Kind: msgHeartbeat}
	if cur != nil {
		m.Attempt = cur.number
		m.Metrics = cur.dep.Sample(time.Now())
	}
	return m
}

func (tm *taskManager) stopCurrent() {
	tm.mu.Lock()
	cur := tm.mu.current
	tm.mu.current = nil
	tm.mu.Unlock()
	if cur != nil {
		cur.dep.Fail(errors.New("superseded by a new deployment"))
		<-cur.done
	}
}

// errCancelledByJobManager ends a task manager's part of an attempt the job
// manager ended (it is not a failure to report).
var errCancelledByJobManager = errors.New("cancelled by the job manager")

// deploy starts this task manager's subtasks of an attempt.
func (tm *taskManager) deploy(ctx context.Context, m ctlMsg, out *runtime.Queue[ctlMsg]) error {
	d := m.Deploy
	if d == nil {
		return errors.New("deployment without content")
	}
	pl := &runtime.Placement{Self: d.Self, Where: map[checkpoint.TaskID]int{}, Addrs: d.Addrs, DataPlane: tm.cc.DataPlane}
	for _, p := range d.Where {
		pl.Where[p.Task] = p.Process
	}
	var rp *runtime.RestorePoint
	if d.Restore != nil {
		st := tm.cfg.Storage
		if !d.FromJobStorage {
			st = tm.cfg.RestoreStorage
		}
		if st == nil {
			return errors.New("cannot restore: this task manager has no checkpoint storage configured for the restore")
		}
		rp = &runtime.RestorePoint{Storage: st, Metadata: d.Restore, Owned: d.Owned}
	}
	dep, err := runtime.Deploy(ctx, runtime.DeploySpec{Graph: tm.g, Config: tm.cfg, Attempt: m.Attempt, Restore: rp,
		Placement: pl, Host: reporter{attempt: m.Attempt, out: out}})
	if err != nil {
		return err
	}
	cur := &tmAttempt{number: m.Attempt, dep: dep, done: make(chan struct{})}
	tm.mu.Lock()
	tm.mu.current = cur
	tm.mu.Unlock()
	tm.log.Info("running subtasks", "attempt", m.Attempt, "count", dep.NumTasks())
	go func() {
		defer close(cur.done)
		err := dep.Run()
		if err != nil && !errors.Is(err, errCancelledByJobManager) && ctx.Err() == nil {
			out.Put(ctlMsg{Kind: msgFailed, Attempt: m.Attempt, Err: err.Error(), Class: runtime.Classify(err)})
		}
	}()
	return nil
}
