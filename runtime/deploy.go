package runtime

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/checkpoint/barrier"
	"github.com/weirstream/weir/checkpoint/coordinator"
	"github.com/weirstream/weir/metrics"
	"github.com/weirstream/weir/runtime/watermark"
	"github.com/weirstream/weir/state"
	"github.com/weirstream/weir/storage"
)

// TaskHost is what the subtasks of a deployment report to: the coordinator
// driver of the attempt (in this process), or the control plane to the job
// manager (in a task manager). Calls come from task goroutines and from
// their snapshot goroutines concurrently; none may block for long.
type TaskHost interface {
	// Ack: the subtask took its snapshot of checkpoint id.
	Ack(id checkpoint.ID, task checkpoint.TaskID, snap checkpoint.TaskSnapshot)
	// Decline: the subtask cannot take checkpoint id, for reason why.
	Decline(id checkpoint.ID, task checkpoint.TaskID, why coordinator.DeclineReason, err error)
	// SourceEnded: a source subtask reached the end of its input (or
	// stopped); it waits for the mail that finishes it.
	SourceEnded(task checkpoint.TaskID)
	// TaskFinished: the subtask finished (every input ended).
	TaskFinished(task checkpoint.TaskID)
}

// RestorePoint is the checkpoint an attempt restores.
type RestorePoint struct {
	Storage  *storage.Storage
	Metadata *checkpoint.Metadata
	// Owned: the checkpoint belongs to the job (a checkpoint, not a
	// savepoint, of this job in its own storage): the job may delete it by
	// retention, and incremental snapshots may keep referencing its files.
	Owned bool
}

// Placement says where the subtasks of an attempt run when the job is
// spread over processes (nil: all in this one).
type Placement struct {
	// Self is the index of this process among the task managers.
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

// DeploySpec is what one process builds of an attempt.
type DeploySpec struct {
	Graph  *JobGraph
	Config Config
	// Attempt is the attempt's number (part of the data plane's channel
	// ids).
	Attempt int
	// Restore is the checkpoint to restore (nil: a fresh start).
	Restore *RestorePoint
	// Placement spreads the subtasks over processes (nil: every subtask
	// runs here).
	Placement *Placement
	Host      TaskHost
}

// Deployment is the subtasks of one attempt that run in this process,
// with their channels, gates and writers: built by Deploy, run by Run.
type Deployment struct {
	spec    DeploySpec
	ctx     context.Context
	cancel  context.CancelCauseFunc
	tasks   []*Task
	byID    map[checkpoint.TaskID]*Task
	closers []ChannelCloser // network channels to close at the end
	// bytesIn and bytesOut are the remote channels of each local subtask
	// that count their bytes.
	bytesIn, bytesOut map[checkpoint.TaskID][]ChannelBytes

	mu struct {
		sync.Mutex
		firstErr error
	}
}

// Deploy builds the subtasks spec places in this process. Nothing runs
// until Run.
func Deploy(ctx context.Context, spec DeploySpec) (*Deployment, error) {
	spec.Config.defaults()
	d := &Deployment{spec: spec, byID: map[checkpoint.TaskID]*Task{},
		bytesIn: map[checkpoint.TaskID][]ChannelBytes{}, bytesOut: map[checkpoint.TaskID][]ChannelBytes{}}
	d.ctx, d.cancel = context.WithCancelCause(ctx)
	if err := d.build(); err != nil {
		d.cancel(err)
		d.closeChannels()
		return nil, err
	}
	return d, nil
}

// Fail ends the deployment with err (the first error wins): every task is
// cancelled, and Run returns err.
func (d *Deployment) Fail(err error) {
	d.mu.Lock()
	if d.mu.firstErr == nil {
		d.mu.firstErr = err
	}
	d.mu.Unlock()
	d.cancel(err)
}

// Err is the error that failed the deployment, if any.
func (d *Deployment) Err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mu.firstErr
}

// Mail delivers m to subtask id if it runs here, and reports whether it
// does.
func (d *Deployment) Mail(id checkpoint.TaskID, m Mail) bool {
	t := d.byID[id]
	if t == nil {
		return false
	}
	t.mailbox.Put(m)
	return true
}

// NumTasks is the number of subtasks deployed here.
func (d *Deployment) NumTasks() int { return len(d.tasks) }

// Run runs the subtasks to their end: nil when every one finished, the
// first error when one failed (then the others are cancelled), the
// context's cause when cancelled. It closes the network channels last.
func (d *Deployment) Run() error {
	var wg sync.WaitGroup
	for _, t := range d.tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := t.run(); err != nil && d.ctx.Err() == nil {
				if pe := (*PanicError)(nil); errors.As(err, &pe) {
					// The stack is logged here, once, as an attribute
					// (jobflags' text logs put it on its own lines); the
					// error that fails the job is one line.
					d.spec.Config.Logger.Error("user code panicked", "job", d.spec.Graph.Name, "task", pe.Task,
						"operator", pe.Operator, "subtask", t.ID.Subtask, "panic", fmt.Sprint(pe.Value), "stack", pe.Stack)
				}
				d.Fail(fmt.Errorf("task %s failed: %w", t.Name, err))
			}
		}()
	}
	wg.Wait()
	var cause error
	if d.ctx.Err() != nil {
		cause = context.Cause(d.ctx)
	}
	d.closeChannels()
	if err := d.Err(); err != nil {
		return err
	}
	return cause
}

func (d *Deployment) closeChannels() {
	for _, c := range d.closers {
		c.Close()
	}
	d.cancel(nil)
}

func tid(v *Vertex, s int) checkpoint.TaskID { return checkpoint.TaskID{Vertex: v.ID, Subtask: s} }

// wiring holds the channels of the edges while a deployment is built.
type wiring struct {
	// out[edge][sender][receiver]: the sending ends in this process.
	out map[*Edge][][]any
	// gates and their channels, per vertex and subtask, in gate order.
	gates map[*Vertex][]*InputGate
	in    map[*Vertex][][]any
}

func (d *Deployment) build() error {
	w, err := d.connect()
	if err != nil {
		return err
	}
	for _, v := range d.spec.Graph.Vertices {
		for s := range v.Parallelism {
			if !d.spec.Placement.local(tid(v, s)) {
				continue
			}
			t, err := d.newTask(v, s, w)
			if err != nil {
				return err
			}
			d.tasks = append(d.tasks, t)
			d.byID[t.ID] = t
		}
	}
	return nil
}

// connect creates every channel with an end in this process: local
// channels between two local subtasks, network channels to and from the
// others.
func (d *Deployment) connect() (*wiring, error) {
	g, cfg, pl := d.spec.Graph, d.spec.Config, d.spec.Placement
	w := &wiring{out: map[*Edge][][]any{}, gates: map[*Vertex][]*InputGate{}, in: map[*Vertex][][]any{}}
	edgeNo := map[*Edge]int{}
	for _, v := range g.Vertices {
		for _, e := range v.Inputs {
			edgeNo[e] = len(edgeNo)
		}
	}
	for _, v := range g.Vertices {
		for _, e := range v.Inputs {
			w.out[e] = make([][]any, e.Source.Parallelism)
			for s := range w.out[e] {
				w.out[e][s] = make([]any, v.Parallelism)
			}
		}
		if len(v.Inputs) == 0 {
			continue
		}
		gates := make([]*InputGate, v.Parallelism)
		ins := make([][]any, v.Parallelism)
		for r := range v.Parallelism {
			if !pl.local(tid(v, r)) {
				continue
			}
			gates[r] = NewInputGate(numInputChannels(v))
			idx := 0
			for _, e := range v.Inputs {
				for s := range e.Source.Parallelism {
					if e.Kind == Forward && s != r {
						continue
					}
					id := ChannelID(d.spec.Attempt, edgeNo[e], s, r)
					var c any
					var err error
					if pl.local(tid(e.Source, s)) {
						c = e.Type.newChannel(gates[r], idx, cfg.Credits, cfg.BufferSize, g.EventTime)
						w.out[e][s][r] = c
					} else {
						c, err = e.Type.newRemoteInput(pl.DataPlane, id, gates[r], idx, cfg.Credits, cfg.BufferSize, g.EventTime)
						d.addCloser(c)
						d.countBytes(d.bytesIn, tid(v, r), c)
					}
					if err != nil {
						return nil, fmt.Errorf("cannot connect %s subtask %d to subtask %d: %w", e, s, r, err)
					}
					ins[r] = append(ins[r], c)
					idx++
				}
			}
		}
		w.gates[v], w.in[v] = gates, ins
	}
	// The sending ends of channels to subtasks in other processes.
	for _, v := range g.Vertices {
		for _, e := range v.Inputs {
			for s := range e.Source.Parallelism {
				if !pl.local(tid(e.Source, s)) {
					continue
				}
				for r := range v.Parallelism {
					if (e.Kind == Forward && s != r) || pl.local(tid(v, r)) {
						continue
					}
					id := ChannelID(d.spec.Attempt, edgeNo[e], s, r)
					c, err := e.Type.newRemoteOutput(d.ctx, pl.DataPlane, pl.Addrs[pl.Where[tid(v, r)]], id, cfg.BufferSize, g.EventTime)
					if err != nil {
						return nil, fmt.Errorf("cannot connect %s subtask %d to subtask %d: %w", e, s, r, err)
					}
					d.addCloser(c)
					d.countBytes(d.bytesOut, tid(e.Source, s), c)
					w.out[e][s][r] = c
				}
			}
		}
	}
	return w, nil
}

func (d *Deployment) addCloser(c any) {
	if c, ok := c.(ChannelCloser); ok {
		d.closers = append(d.closers, c)
	}
}

// numInputChannels is the number of channels of v's input gate: one per
// forward edge, one per upstream subtask of every other edge.
func numInputChannels(v *Vertex) int {
	n := 0
	for _, e := range v.Inputs {
		if e.Kind == Forward {
			n++
		} else {
			n += e.Source.Parallelism
		}
	}
	return n
}

// newTask builds subtask s of vertex v: its output writers, its chain of
// operators, its gate reader and barrier handler, its operators' contexts.
func (d *Deployment) newTask(v *Vertex, s int, w *wiring) (*Task, error) {
	cfg := d.spec.Config
	maxP := d.spec.Graph.MaxParallelism
	name := fmt.Sprintf("%s (%d/%d)", v.Name, s+1, v.Parallelism)
	t := &Task{ID: tid(v, s), Name: name, ctx: d.ctx, host: d.spec.Host, keyed: d, opInfo: v.Operators,
		mailbox: NewQueue[Mail](), bufferTimeout: cfg.BufferTimeout, ts: NoTimestamp, metrics: metrics.NewTask()}
	var ts *int64
	if d.spec.Graph.EventTime {
		ts = &t.ts
	}
	onFail := func(err error) {
		if d.ctx.Err() == nil {
			d.Fail(fmt.Errorf("task %s: cannot send: %w", name, err))
		}
	}
	collectors := make([]any, len(v.Outputs))
	for i, e := range v.Outputs {
		targets := w.out[e][s]
		if e.Kind == Forward {
			targets = []any{w.out[e][s][s]}
		}
		var kgMap []int32
		if e.Kind == Hash {
			kgMap = make([]int32, maxP)
			for kg := range kgMap {
				kgMap[kg] = int32(state.SubtaskForKeyGroup(maxP, e.Target.Parallelism, kg))
			}
		}
		c, out := e.Type.newWriter(d.ctx, e.Kind, targets, cfg.BufferSize, kgMap, onFail, ts)
		if ms, ok := out.(metricsSetter); ok {
			ms.SetMetrics(t.metrics)
		}
		collectors[i] = c
		t.outputs = append(t.outputs, out)
	}
	chain, err := v.Build(s, collectors)
	if err != nil {
		return nil, fmt.Errorf("cannot build %s: %w", name, err)
	}
	if len(chain.Operators) != len(v.Operators) {
		return nil, fmt.Errorf("cannot build %s: %d operators built, %d declared", name, len(chain.Operators), len(v.Operators))
	}
	t.chain = chain
	if len(v.Inputs) > 0 {
		t.gate = w.gates[v][s]
		r, err := v.Inputs[0].Type.newGateReader(t.gate, w.in[v][s], chain.Input, ts)
		if err != nil {
			return nil, fmt.Errorf("cannot build %s: %w", name, err)
		}
		r.setMetrics(t.metrics)
		t.reader = r
		t.ended = make([]bool, t.gate.NumChannels())
		t.handler = barrier.New(cfg.Mode, t.gate.NumChannels())
		if d.spec.Graph.EventTime {
			t.valve = watermark.NewValve(t.gate.NumChannels())
		}
	} else if chain.Source == nil {
		return nil, fmt.Errorf("cannot build %s: a vertex without inputs must be a source", name)
	}
	t.timers = newProcTimers(t.mailbox)
	t.opCtx = d.operatorContexts(t, v, s)
	return t, nil
}

// operatorContexts prepares each operator's context of subtask s, with the
// restored state assigned to it.
func (d *Deployment) operatorContexts(t *Task, v *Vertex, s int) []*OperatorContext {
	g, cfg := d.spec.Graph, d.spec.Config
	kgr := state.RangeForSubtask(g.MaxParallelism, v.Parallelism, s)
	out := make([]*OperatorContext, len(v.Operators))
	for i, info := range v.Operators {
		oc := &OperatorContext{
			JobName: g.Name, TaskName: t.Name, OperatorUID: info.UID, OperatorName: info.Name,
			Subtask: s, Parallelism: v.Parallelism, MaxParallelism: g.MaxParallelism, Attempt: d.spec.Attempt,
			Checkpointing: cfg.Checkpointing, CheckpointInterval: cfg.Coordinator.Interval, Mode: cfg.Mode, KeyGroups: kgr, Fail: t.fail,
			Logger:    cfg.Logger.With("job", g.Name, "operator", info.Name, "subtask", s),
			EventTime: g.EventTime, Timestamp: &t.ts, ProcessingTime: t.timers,
		}
		if rp := d.spec.Restore; rp != nil {
			oc.Restored = true
			oc.RestoredCheckpoint = rp.Metadata.CheckpointID
			oc.RestoredKind = rp.Metadata.Kind
			oc.OpenStream = rp.Storage.Opener(d.ctx)
			oc.RestoredOwned = rp.Owned
			if os := rp.Metadata.Operator(info.UID); os != nil {
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
		out[i] = oc
	}
	return out
}

// writeKeyed writes a keyed snapshot of checkpoint id into the job's
// checkpoint storage (the asynchronous part of a snapshot).
func (d *Deployment) writeKeyed(id checkpoint.ID, name string, s KeyedSnapshot) (checkpoint.KeyedStateHandle, error) {
	st := d.spec.Config.Storage
	if hw, ok := s.(state.HandleWriter); ok {
		return hw.WriteHandle(storage.NewTarget(d.ctx, st, id, strings.TrimSuffix(name, ".keyed")))
	}
	w, err := st.CreateStream(d.ctx, id, name)
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
