package runtime

import (
	"context"
	"fmt"

	"github.com/weirstream/weir/metrics"
)

// JobGraph is the parallel dataflow the runtime executes: vertices (chains
// of operators that run fused in one goroutine per subtask) joined by
// partitioned edges.
type JobGraph struct {
	Name           string
	MaxParallelism int
	Vertices       []*Vertex // in topological order (sources first)
	// EventTime is set when the job uses event time: its edges carry
	// every record's timestamp (Stamped) and its tasks track watermarks.
	EventTime bool
}

// OperatorInfo names one operator of a chain.
type OperatorInfo struct {
	UID  string
	Name string
}

// Vertex is a chain of operators with a parallelism.
type Vertex struct {
	ID          int
	Name        string
	Parallelism int
	Operators   []OperatorInfo // head first
	IsSource    bool
	Inputs      []*Edge // gate channel order: edge by edge, sender by sender
	Outputs     []*Edge
	// Build creates the chain of one subtask. outputs[i] is the
	// Collector[T] for Outputs[i] (a *RecordWriter[T]); ops[i] is the
	// context of Operators[i].
	Build func(subtask int, outputs []any) (*Chain, error)
}

// Edge is a partitioned connection between two vertices.
type Edge struct {
	Source *Vertex
	Target *Vertex
	Kind   PartitionKind
	Type   EdgeType
}

func (e *Edge) String() string {
	return fmt.Sprintf("%s -%s-> %s", e.Source.Name, e.Kind, e.Target.Name)
}

// EdgeType creates the typed parts of an edge (channels, writers, the
// reading side of a gate) for the element type T of the edge. Get one with
// TypeOf. With a timestamp slot ts (a job with event time), the edge
// carries Stamped[T]: the writer stamps each record with *ts, the gate
// reader sets *ts before it hands the record on.
type EdgeType interface {
	newChannel(gate *InputGate, index, credits, bufSize int, stamped bool) any
	newRemoteOutput(ctx context.Context, dp DataPlane, addr string, id uint64, bufSize int, stamped bool) (any, error)
	newRemoteInput(dp DataPlane, id uint64, gate *InputGate, index, credits, bufSize int, stamped bool) (any, error)
	newWriter(ctx context.Context, kind PartitionKind, channels []any, bufSize int, kgToChannel []int32, onFail func(error), ts *int64) (collector any, out outputWriter)
	newGateReader(gate *InputGate, channels []any, head any, ts *int64) (gateReader, error)
}

// WatermarkStage receives the watermarks and input status that flow
// through a chain in order with its records. Every Collector of a chain
// built by the API implements it: an operator handles a watermark (fires
// its event-time timers) and passes it on to its output; record writers
// send it downstream; fan-outs hand it to each branch.
type WatermarkStage interface {
	ProcessWatermark(wm int64)
	ProcessStatus(idle bool)
}

// ForwardWatermark hands wm to out if out takes watermarks.
func ForwardWatermark(out any, wm int64) {
	if s, ok := out.(WatermarkStage); ok {
		s.ProcessWatermark(wm)
	}
}

// ForwardStatus hands an input status to out if out takes it.
func ForwardStatus(out any, idle bool) {
	if s, ok := out.(WatermarkStage); ok {
		s.ProcessStatus(idle)
	}
}

// outputWriter is the type-independent side of a RecordWriter.
type outputWriter interface {
	Flush()
	EmitEvent(Event)
	Err() error
}

// metricsSetter is implemented by writers that count into a subtask's
// metrics (RecordWriter).
type metricsSetter interface {
	SetMetrics(*metrics.Task)
}

// gateReader reads one buffer from a channel of the gate: records go
// straight into the chain's head; an event is returned to the task.
type gateReader interface {
	read(ch int) (ev Event, isEvent, ok bool)
	setMetrics(*metrics.Task)
}

type edgeType[T any] struct {
	newHash       func() func(T) uint32
	remote        RemoteChannels[T]
	remoteStamped RemoteChannels[Stamped[T]]
}

// TypeOf returns the EdgeType for records of type T. newHash creates the key
// hash function of a Hash edge, once per sending subtask (so it may keep
// scratch space); nil for other edges.
func TypeOf[T any](newHash func() func(T) uint32) EdgeType { return edgeType[T]{newHash: newHash} }

// TypeOfRemote is TypeOf for an edge that may also cross processes through
// remote channels (package runtime/network makes them), of records and of
// timestamped records.
func TypeOfRemote[T any](newHash func() func(T) uint32, remote RemoteChannels[T], stamped RemoteChannels[Stamped[T]]) EdgeType {
	return edgeType[T]{newHash: newHash, remote: remote, remoteStamped: stamped}
}

// DataPlane is this process's end of the network between processes
// (a *network.Endpoint).
type DataPlane interface {
	Addr() string
}

// RemoteChannels creates the channels of records of type T between
// processes.
type RemoteChannels[T any] interface {
	NewOutput(ctx context.Context, dp DataPlane, addr string, id uint64, bufSize int) (OutputChannel[T], error)
	NewInput(dp DataPlane, id uint64, gate *InputGate, index, credits, bufSize int) (InputChannel[T], error)
}

// ChannelCloser is implemented by channels that must be closed when an
// attempt ends (remote channels).
type ChannelCloser interface{ Close() }

func (et edgeType[T]) noCodec() error {
	var zero T
	return fmt.Errorf("records of type %T cannot cross processes (no codec)", zero)
}

func (et edgeType[T]) newRemoteOutput(ctx context.Context, dp DataPlane, addr string, id uint64, bufSize int, stamped bool) (any, error) {
	switch {
	case stamped && et.remoteStamped != nil:
		return et.remoteStamped.NewOutput(ctx, dp, addr, id, bufSize)
	case !stamped && et.remote != nil:
		return et.remote.NewOutput(ctx, dp, addr, id, bufSize)
	}
	return nil, et.noCodec()
}

func (et edgeType[T]) newRemoteInput(dp DataPlane, id uint64, gate *InputGate, index, credits, bufSize int, stamped bool) (any, error) {
	switch {
	case stamped && et.remoteStamped != nil:
		return et.remoteStamped.NewInput(dp, id, gate, index, credits, bufSize)
	case !stamped && et.remote != nil:
		return et.remote.NewInput(dp, id, gate, index, credits, bufSize)
	}
	return nil, et.noCodec()
}

func (edgeType[T]) newChannel(gate *InputGate, index, credits, bufSize int, stamped bool) any {
	if stamped {
		return NewLocalChannel[Stamped[T]](gate, index, credits, bufSize)
	}
	return NewLocalChannel[T](gate, index, credits, bufSize)
}

func (et edgeType[T]) newWriter(ctx context.Context, kind PartitionKind, channels []any, bufSize int, kgToChannel []int32, onFail func(error), ts *int64) (any, outputWriter) {
	var hash func(T) uint32
	if et.newHash != nil {
		hash = et.newHash()
	}
	if ts != nil {
		outs := make([]OutputChannel[Stamped[T]], len(channels))
		for i, c := range channels {
			outs[i] = c.(OutputChannel[Stamped[T]])
		}
		var sh func(Stamped[T]) uint32
		if hash != nil {
			sh = func(r Stamped[T]) uint32 { return hash(r.Value) }
		}
		w := NewRecordWriter(ctx, kind, outs, bufSize, sh, kgToChannel, onFail)
		s := &stampingWriter[T]{w: w, ts: ts}
		if kind == Hash {
			s.hash = hash
		}
		return Collector[T](s), w
	}
	outs := make([]OutputChannel[T], len(channels))
	for i, c := range channels {
		outs[i] = c.(OutputChannel[T])
	}
	w := NewRecordWriter(ctx, kind, outs, bufSize, hash, kgToChannel, onFail)
	return Collector[T](w), w
}

// stampingWriter writes each record with the current record timestamp.
type stampingWriter[T any] struct {
	w  *RecordWriter[Stamped[T]]
	ts *int64
	// hash, on a Hash edge, routes by the record's key here rather than
	// through the writer's hash of the stamped record, which would wrap
	// it in one more function call per record.
	hash func(T) uint32
}

func (s *stampingWriter[T]) Collect(r T) {
	if s.hash != nil {
		w := s.w
		w.add(int(w.kgToChan[s.hash(r)%w.maxPar]), Stamped[T]{Timestamp: *s.ts, Value: r})
		return
	}
	s.w.Collect(Stamped[T]{Timestamp: *s.ts, Value: r})
}

func (s *stampingWriter[T]) ProcessWatermark(wm int64) { s.w.ProcessWatermark(wm) }
func (s *stampingWriter[T]) ProcessStatus(idle bool)   { s.w.ProcessStatus(idle) }

func (edgeType[T]) newGateReader(gate *InputGate, channels []any, head any, ts *int64) (gateReader, error) {
	h, ok := head.(Collector[T])
	if !ok {
		var zero T
		return nil, fmt.Errorf("chain input is %T, want Collector[%T]", head, zero)
	}
	if ts != nil {
		r := &stampedGateReader[T]{head: h, gate: gate, ts: ts, channels: make([]InputChannel[Stamped[T]], len(channels))}
		for i, c := range channels {
			ic, ok := c.(InputChannel[Stamped[T]])
			if !ok {
				var zero T
				return nil, fmt.Errorf("channel %d is %T, want InputChannel[Stamped[%T]]", i, c, zero)
			}
			r.channels[i] = ic
		}
		return r, nil
	}
	r := &typedGateReader[T]{head: h, gate: gate, channels: make([]InputChannel[T], len(channels))}
	for i, c := range channels {
		ic, ok := c.(InputChannel[T])
		if !ok {
			var zero T
			return nil, fmt.Errorf("channel %d is %T, want InputChannel[%T]", i, c, zero)
		}
		r.channels[i] = ic
	}
	return r, nil
}

// stampedGateReader reads timestamped records: it sets the task's record
// timestamp before handing each record to the chain's head.
type stampedGateReader[T any] struct {
	head     Collector[T]
	channels []InputChannel[Stamped[T]]
	gate     *InputGate
	ts       *int64
	metrics  *metrics.Task
}

func (r *stampedGateReader[T]) setMetrics(m *metrics.Task) { r.metrics = m }

func (r *stampedGateReader[T]) read(ch int) (Event, bool, bool) {
	c := r.channels[ch]
	b, more, ok := c.Poll()
	if !ok {
		return Event{}, false, false
	}
	if more {
		r.gate.notify(ch)
	}
	if b.IsEvent() {
		return b.Event, true, true
	}
	if r.metrics != nil {
		r.metrics.RecordsIn.Add(int64(len(b.Records)))
	}
	head := r.head
	for _, rec := range b.Records {
		*r.ts = rec.Timestamp
		head.Collect(rec.Value)
	}
	c.Recycle(b.Records)
	return Event{}, false, true
}

type typedGateReader[T any] struct {
	head     Collector[T]
	channels []InputChannel[T]
	gate     *InputGate
	metrics  *metrics.Task
}

func (r *typedGateReader[T]) setMetrics(m *metrics.Task) { r.metrics = m }

func (r *typedGateReader[T]) read(ch int) (Event, bool, bool) {
	c := r.channels[ch]
	b, more, ok := c.Poll()
	if !ok {
		return Event{}, false, false
	}
	if more {
		r.gate.notify(ch)
	}
	if b.IsEvent() {
		return b.Event, true, true
	}
	if r.metrics != nil {
		r.metrics.RecordsIn.Add(int64(len(b.Records)))
	}
	head := r.head
	for _, rec := range b.Records {
		head.Collect(rec)
	}
	c.Recycle(b.Records)
	return Event{}, false, true
}

// FanOut returns a Collector that hands every record to each of outs (an
// operator whose output feeds several downstream operators).
func FanOut[T any](outs []Collector[T]) Collector[T] {
	if len(outs) == 1 {
		return outs[0]
	}
	return fanOut[T](outs)
}

type fanOut[T any] []Collector[T]

func (f fanOut[T]) Collect(r T) {
	for _, o := range f {
		o.Collect(r)
	}
}

func (f fanOut[T]) ProcessWatermark(wm int64) {
	for _, o := range f {
		ForwardWatermark(o, wm)
	}
}

func (f fanOut[T]) ProcessStatus(idle bool) {
	for _, o := range f {
		ForwardStatus(o, idle)
	}
}

// Discard is a Collector that drops everything.
type Discard[T any] struct{}

func (Discard[T]) Collect(T)              {}
func (Discard[T]) ProcessWatermark(int64) {}
func (Discard[T]) ProcessStatus(bool)     {}
