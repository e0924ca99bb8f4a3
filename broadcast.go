package weir

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/plan"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/network"
	"github.com/weirstream/weir/state"
)

// Broadcast state (Flink's broadcast state pattern): a low-volume stream
// (rules, configuration, thresholds) is broadcast to every parallel subtask
// of an operator that also reads a regular stream, keyed or not. Each
// subtask keeps its own copy of the broadcast state, a map that only the
// broadcast side writes; since every subtask receives the same broadcast
// elements, the copies agree. The regular side reads the map (and, when
// keyed, has keyed state as in Process).
//
// Under the hood both inputs are tagged into one internal record type and
// read by one vertex: the keyed side through a hash edge (records go to the
// subtask owning their key group, as with KeyBy), the broadcast side
// through a broadcast edge. Barrier alignment covers both inputs, so a
// checkpoint sees exactly the broadcast elements before its barrier.

// broadcastStatePrefix names the operator list states broadcast states are
// snapshotted as.
const broadcastStatePrefix = reservedStatePrefix + "broadcast/"

// BroadcastState is one named map of broadcast state, held by every
// subtask of the operator. It is written only while the operator runs
// ProcessBroadcastElement (Put, Remove and Clear return an error, and fail
// the task, anywhere else), so that every subtask applies the same updates
// and the copies stay equal; its reads work everywhere. Updates must not
// depend on the subtask, and updates from different parallel broadcast
// subtasks should commute: the order in which two broadcast subtasks'
// elements interleave may differ between receiving subtasks.
//
// A checkpoint stores one copy (subtask 0's), as a union list state of
// the operator; a restore at any parallelism gives every new subtask
// exactly that copy.
//
// Keys and values are encoded with state.CodecFor (or the codecs given to
// GetBroadcastStateWithCodec) and stored inline in the checkpoint metadata:
// broadcast state is for small maps. The methods run on the subtask's
// goroutine; a BroadcastState is not safe for concurrent use.
type BroadcastState[K comparable, V any] struct {
	name string
	core *broadcastCore
	m    map[K]V
	kc   state.Codec[K]
	vc   state.Codec[V]
	// list is the union list state the map is snapshotted as; it holds
	// the encoded entries only from a snapshot's sync to its end.
	list state.ListState[[]byte]
}

// Get returns the value of k and whether it is present.
func (s *BroadcastState[K, V]) Get(k K) (V, bool) {
	v, ok := s.m[k]
	return v, ok
}

// Contains tells whether k is present.
func (s *BroadcastState[K, V]) Contains(k K) bool {
	_, ok := s.m[k]
	return ok
}

// Len is the number of entries.
func (s *BroadcastState[K, V]) Len() int { return len(s.m) }

// All iterates over the entries, in no particular order. Put and Remove
// may be called while iterating (in ProcessBroadcastElement).
func (s *BroadcastState[K, V]) All() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		for k, v := range s.m {
			if !yield(k, v) {
				return
			}
		}
	}
}

// Put sets the value of k. Only in ProcessBroadcastElement.
func (s *BroadcastState[K, V]) Put(k K, v V) error {
	if err := s.core.checkWritable(s.name, "Put"); err != nil {
		return err
	}
	s.m[k] = v
	return nil
}

// Remove deletes k. Only in ProcessBroadcastElement.
func (s *BroadcastState[K, V]) Remove(k K) error {
	if err := s.core.checkWritable(s.name, "Remove"); err != nil {
		return err
	}
	delete(s.m, k)
	return nil
}

// Clear deletes every entry. Only in ProcessBroadcastElement.
func (s *BroadcastState[K, V]) Clear() error {
	if err := s.core.checkWritable(s.name, "Clear"); err != nil {
		return err
	}
	clear(s.m)
	return nil
}

// sync encodes the entries into the state's list, sorted so that equal
// maps give equal snapshots. Each entry is uvarint(len(key)) | key |
// value.
func (s *BroadcastState[K, V]) sync() (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("cannot encode broadcast state %q: %v", s.name, p)
		}
	}()
	entries := make([][]byte, 0, len(s.m))
	var kb []byte
	for k, v := range s.m {
		kb = s.kc.Append(kb[:0], k)
		e := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(kb)+8), uint64(len(kb)))
		e = append(e, kb...)
		e = s.vc.Append(e, v)
		entries = append(entries, e)
	}
	slices.SortFunc(entries, bytes.Compare)
	s.list.Update(entries)
	return nil
}

func (s *BroadcastState[K, V]) restore(entries [][]byte) error {
	for i, e := range entries {
		n, w := binary.Uvarint(e)
		if w <= 0 || n > uint64(len(e)-w) {
			return fmt.Errorf("entry %d is malformed", i)
		}
		k, err := s.kc.Decode(e[w : w+int(n)])
		if err != nil {
			return fmt.Errorf("cannot decode the key of entry %d: %w", i, err)
		}
		v, err := s.vc.Decode(e[w+int(n):])
		if err != nil {
			return fmt.Errorf("cannot decode the value of entry %d: %w", i, err)
		}
		s.m[k] = v
	}
	return nil
}

// broadcastTable is a registered BroadcastState of any type.
type broadcastTable interface {
	sync() error
	clearList()
}

func (s *BroadcastState[K, V]) clearList() { s.list.Clear() }

// broadcastCore holds the broadcast states of one operator in one subtask.
//
// The states are snapshotted and restored by the operator-state machinery:
// each map is a union list state named broadcastStatePrefix + its name in
// an operator backend of its own. Subtask 0 writes the entries, the other
// subtasks the name with no entries, so that a restore, which hands every
// subtask the union of all subtasks' entries, yields exactly one copy at
// any parallelism. Restored states nobody registers are carried forward
// the same way.
type broadcastCore struct {
	op     *runtime.OperatorContext
	lists  *state.OperatorBackend
	states map[string]broadcastTable
	order  []string // names of states, in registration order
	// writable is true while the operator runs ProcessBroadcastElement.
	writable bool
	// misuse is the first write outside ProcessBroadcastElement; the
	// operator fails the task with it once the user's call returns, even
	// if the user ignored the error.
	misuse error
}

// newBroadcastCore takes the restored broadcast states out of oc's
// restored operator list states and returns the rest.
func newBroadcastCore(oc *runtime.OperatorContext) (*broadcastCore, []checkpoint.ListStateSnapshot) {
	var mine, rest []checkpoint.ListStateSnapshot
	for _, l := range oc.RestoredList {
		if strings.HasPrefix(l.Name, broadcastStatePrefix) {
			mine = append(mine, l)
		} else {
			rest = append(rest, l)
		}
	}
	return &broadcastCore{op: oc, lists: state.NewOperatorBackend(mine), states: map[string]broadcastTable{}}, rest
}

func (c *broadcastCore) checkWritable(name, method string) error {
	if c.writable {
		return nil
	}
	err := fmt.Errorf("operator %s: broadcast state %q is read-only here: %s is allowed only in ProcessBroadcastElement, so that every subtask applies the same updates", c.op.OperatorName, name, method)
	if c.misuse == nil {
		c.misuse = err
	}
	return err
}

// takeMisuse returns (and forgets) a write outside ProcessBroadcastElement.
func (c *broadcastCore) takeMisuse() error {
	err := c.misuse
	c.misuse = nil
	return err
}

// snapshot writes every broadcast state: subtask 0 its entries, the other
// subtasks the state's name with no entries (see broadcastCore).
func (c *broadcastCore) snapshot() ([]checkpoint.ListStateSnapshot, error) {
	writer := c.op.Subtask == 0
	if writer {
		defer func() {
			for _, name := range c.order {
				c.states[name].clearList() // the maps hold the entries
			}
		}()
		for _, name := range c.order {
			if err := c.states[name].sync(); err != nil {
				return nil, fmt.Errorf("operator %s: %w", c.op.OperatorName, err)
			}
		}
	}
	lists, err := c.lists.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("operator %s: %w", c.op.OperatorName, err)
	}
	if !writer {
		for i := range lists {
			lists[i].Entries = nil // restored states nobody registered
		}
	}
	return lists, nil
}

// BroadcastContext gives a broadcast process function its broadcast states
// (GetBroadcastState) and tells it where it runs. In ProcessBroadcastElement
// the states are writable; everywhere else they are read-only.
type BroadcastContext struct {
	core *broadcastCore
}

// Subtask is the index of the parallel subtask running the function.
func (c *BroadcastContext) Subtask() int { return c.core.op.Subtask }

// Parallelism is the operator's parallelism.
func (c *BroadcastContext) Parallelism() int { return c.core.op.Parallelism }

// IsRestored tells whether the job restored from a checkpoint or savepoint
// (the broadcast states then hold the restored entries).
func (c *BroadcastContext) IsRestored() bool { return c.core.op.Restored }

// GetBroadcastState registers (or returns) the broadcast state called
// name, with keys and values encoded by state.CodecFor. Call it in Open and
// keep the result, or in either process method; every call with the same
// name returns the same map. After a restore the map holds the restored
// entries.
func GetBroadcastState[K comparable, V any](ctx *BroadcastContext, name string) (*BroadcastState[K, V], error) {
	return GetBroadcastStateWithCodec(ctx, name, state.CodecFor[K](), state.CodecFor[V]())
}

// GetBroadcastStateWithCodec is GetBroadcastState with explicit codecs.
func GetBroadcastStateWithCodec[K comparable, V any](ctx *BroadcastContext, name string, kc state.Codec[K], vc state.Codec[V]) (*BroadcastState[K, V], error) {
	if ctx == nil || ctx.core == nil {
		return nil, fmt.Errorf("broadcast state %q: no broadcast context", name)
	}
	c := ctx.core
	if name == "" {
		return nil, fmt.Errorf("operator %s: broadcast state needs a name", c.op.OperatorName)
	}
	if kc == nil || vc == nil {
		return nil, fmt.Errorf("operator %s: broadcast state %q needs a key and a value codec", c.op.OperatorName, name)
	}
	if t, ok := c.states[name]; ok {
		s, ok := t.(*BroadcastState[K, V])
		if !ok {
			return nil, fmt.Errorf("operator %s: broadcast state %q is already registered as %T, not %T", c.op.OperatorName, name, t, s)
		}
		return s, nil
	}
	list, err := state.GetListState(c.lists, broadcastStatePrefix+name, checkpoint.Union, state.CodecFor[[]byte]())
	if err != nil {
		return nil, fmt.Errorf("operator %s: %w", c.op.OperatorName, err)
	}
	s := &BroadcastState[K, V]{name: name, core: c, m: map[K]V{}, kc: kc, vc: vc, list: list}
	if err := s.restore(list.Get()); err != nil {
		return nil, fmt.Errorf("operator %s: cannot restore broadcast state %q from checkpoint %d: %w", c.op.OperatorName, name, c.op.RestoredCheckpoint, err)
	}
	list.Clear()
	c.states[name] = s
	c.order = append(c.order, name)
	return s, nil
}

// KeyedBroadcastProcessFunction processes a keyed stream connected with a
// broadcast stream (Flink's KeyedBroadcastProcessFunction).
//
// ProcessElement handles a record of the keyed side with keyed state
// scoped to its key (ctx, as in Process) and read-only broadcast state
// (bc). ProcessBroadcastElement handles an element of the broadcast side,
// which every subtask receives, and may update broadcast state; there is
// no current key there, so it must not touch keyed state.
//
// Implementations may also implement KeyedBroadcastOpener (setup per
// subtask: get state handles), CheckpointedFunction (operator state) and
// CheckpointListener.
type KeyedBroadcastProcessFunction[K comparable, IN, B, OUT any] interface {
	ProcessElement(ctx *KeyedContext[K], bc *BroadcastContext, in IN, out Collector[OUT]) error
	ProcessBroadcastElement(bc *BroadcastContext, in B, out Collector[OUT]) error
}

// KeyedBroadcastOpener is implemented by keyed broadcast functions that
// need setup per subtask; Open runs after the restore, before the first
// record of either side. Broadcast state is read-only in Open.
type KeyedBroadcastOpener[K comparable] interface {
	Open(ctx *KeyedContext[K], bc *BroadcastContext) error
}

// BroadcastProcessFunction processes a non-keyed stream connected with a
// broadcast stream (Flink's BroadcastProcessFunction): ProcessElement sees
// broadcast state read-only, ProcessBroadcastElement may update it. It may
// also implement BroadcastOpener, CheckpointedFunction and
// CheckpointListener.
type BroadcastProcessFunction[IN, B, OUT any] interface {
	ProcessElement(bc *BroadcastContext, in IN, out Collector[OUT]) error
	ProcessBroadcastElement(bc *BroadcastContext, in B, out Collector[OUT]) error
}

// BroadcastOpener is implemented by broadcast functions that need setup
// per subtask; Open runs after the restore, before the first record.
type BroadcastOpener interface {
	Open(bc *BroadcastContext) error
}

// connected is the record type of a broadcast-connected operator's input:
// an element of the regular side or of the broadcast side.
type connected[IN, B any] struct {
	fromBroadcast bool
	in            IN
	b             B
}

// connectedCodec encodes a connected record for the network: a tag byte
// (0: main side, 1: broadcast side) and the record's own encoding.
type connectedCodec[IN, B any] struct {
	in state.Codec[IN]
	b  state.Codec[B]
}

func (c connectedCodec[IN, B]) Append(dst []byte, r connected[IN, B]) []byte {
	if r.fromBroadcast {
		return c.b.Append(append(dst, 1), r.b)
	}
	return c.in.Append(append(dst, 0), r.in)
}

func (c connectedCodec[IN, B]) Decode(src []byte) (connected[IN, B], error) {
	if len(src) == 0 {
		return connected[IN, B]{}, errors.New("empty connected record")
	}
	switch src[0] {
	case 0:
		in, err := c.in.Decode(src[1:])
		return connected[IN, B]{in: in}, err
	case 1:
		b, err := c.b.Decode(src[1:])
		return connected[IN, B]{fromBroadcast: true, b: b}, err
	}
	return connected[IN, B]{}, fmt.Errorf("connected record with unknown side %d", src[0])
}

// connectedType is the edge type of both inputs of a broadcast connection.
func connectedType[IN, B any](newHash func() func(connected[IN, B]) uint32) runtime.EdgeType {
	c := connectedCodec[IN, B]{state.CodecFor[IN](), state.CodecFor[B]()}
	return runtime.TypeOfRemote[connected[IN, B]](newHash, network.Channels[connected[IN, B]](c),
		network.Channels[runtime.Stamped[connected[IN, B]]](runtime.StampedCodec[connected[IN, B]](c)))
}

// ConnectBroadcast connects a keyed stream with a broadcast stream: every
// element of bc reaches every parallel subtask of the new operator, where
// fn.ProcessBroadcastElement may store it in broadcast state; every record
// of keyed reaches the subtask that owns its key, where fn.ProcessElement
// sees keyed state and reads broadcast state. bc is broadcast by the
// operator itself: calling bc.Broadcast() first is not needed (and is
// ignored).
//
// Like Process, each subtask gets its own shallow copy of fn when fn is a
// pointer to a struct. Set a UID on the result: its keyed state, broadcast
// state and operator state are found under it.
func ConnectBroadcast[K comparable, IN, B, OUT any](keyed KeyedStream[K, IN], bc Stream[B], fn KeyedBroadcastProcessFunction[K, IN, B, OUT]) Stream[OUT] {
	env := keyed.s.env
	bc = broadcastSide(bc)
	key, codec := keyed.key, keyed.codec
	main := tagInput[IN, connected[IN, B]](keyed.s, "Connect keyed side", func(r IN) connected[IN, B] { return connected[IN, B]{in: r} })
	side := tagInput[B, connected[IN, B]](bc, "Connect broadcast side", func(b B) connected[IN, B] { return connected[IN, B]{fromBroadcast: true, b: b} })
	newHash := func() func(connected[IN, B]) uint32 {
		h := state.HasherFor(codec)
		return func(r connected[IN, B]) uint32 { return h(key(r.in)) }
	}
	n := addNode[OUT](env, "KeyedBroadcastProcess", []plan.Input{
		{From: main, Partitioning: runtime.Hash, Type: connectedType[IN, B](newHash)},
		{From: side, Partitioning: runtime.Broadcast, Type: connectedType[IN, B](nil)},
	})
	if bc.env != env {
		env.setErr(fmt.Errorf("operator %s: ConnectBroadcast of streams from different environments", n.Name))
	}
	if fn == nil {
		env.setErr(fmt.Errorf("operator %s: ConnectBroadcast needs a function, got nil", n.Name))
	}
	backend := env.cfg.stateBackend
	n.NewOperator = func(_ int, out any) (any, runtime.Operator, runtime.SourceDriver, error) {
		l := &keyedBroadcastLogic[K, IN, B, OUT]{fn: perSubtask(fn), out: out.(runtime.Collector[OUT])}
		op := &keyedBroadcastOp[K, IN, B, OUT]{
			keyedOp: &keyedOp[K, connected[IN, B]]{
				key:     func(r connected[IN, B]) K { return key(r.in) },
				codec:   codec,
				backend: backend,
				logic:   l,
				out:     out,
			},
			logic: l,
		}
		return runtime.Collector[connected[IN, B]](op), op, nil, nil
	}
	return Stream[OUT]{env, n}
}

// ConnectBroadcastNonKeyed connects a non-keyed stream with a broadcast
// stream: every element of bc reaches every subtask, where
// fn.ProcessBroadcastElement may store it in broadcast state; the records
// of s go to the subtasks as any input does (forward at equal parallelism,
// round robin otherwise), where fn.ProcessElement reads broadcast state.
// See ConnectBroadcast.
func ConnectBroadcastNonKeyed[IN, B, OUT any](s Stream[IN], bc Stream[B], fn BroadcastProcessFunction[IN, B, OUT]) Stream[OUT] {
	env := s.env
	bc = broadcastSide(bc)
	main := tagInput[IN, connected[IN, B]](s, "Connect main side", func(r IN) connected[IN, B] { return connected[IN, B]{in: r} })
	side := tagInput[B, connected[IN, B]](bc, "Connect broadcast side", func(b B) connected[IN, B] { return connected[IN, B]{fromBroadcast: true, b: b} })
	n := addNode[OUT](env, "BroadcastProcess", []plan.Input{
		{From: main, Partitioning: runtime.Forward, Auto: true, Type: connectedType[IN, B](nil)},
		{From: side, Partitioning: runtime.Broadcast, Type: connectedType[IN, B](nil)},
	})
	if bc.env != env {
		env.setErr(fmt.Errorf("operator %s: ConnectBroadcastNonKeyed of streams from different environments", n.Name))
	}
	if fn == nil {
		env.setErr(fmt.Errorf("operator %s: ConnectBroadcastNonKeyed needs a function, got nil", n.Name))
	}
	n.NewOperator = func(_ int, out any) (any, runtime.Operator, runtime.SourceDriver, error) {
		op := &broadcastOp[IN, B, OUT]{fn: perSubtask(fn), out: out.(runtime.Collector[OUT])}
		return runtime.Collector[connected[IN, B]](op), op, nil, nil
	}
	return Stream[OUT]{env, n}
}

// broadcastSide returns the stream a broadcast side reads: the input of an
// explicit Broadcast(), which would otherwise deliver every element to
// each subtask once per subtask of that Broadcast operator.
func broadcastSide[B any](bc Stream[B]) Stream[B] {
	n := bc.n
	if n.Kind == "Broadcast" && !n.IsSource && len(n.Inputs) == 1 && n.Inputs[0].Partitioning == runtime.Broadcast && !n.Inputs[0].Auto {
		return Stream[B]{bc.env, n.Inputs[0].From}
	}
	return bc
}

// tagInput adds the internal operator that wraps the records of s into the
// connected type. It takes the parallelism of s, so it is always chained
// to it (no extra network hop).
func tagInput[T, C any](s Stream[T], name string, wrap func(T) C) *plan.Node {
	n := addNode[C](s.env, "Tag", []plan.Input{forwardInput(s)})
	n.Name = name
	n.ParallelismOf = s.n
	n.NewOperator = func(_ int, out any) (any, runtime.Operator, runtime.SourceDriver, error) {
		op := &mapOp[T, C]{f: wrap, emits: emits[C]{out.(runtime.Collector[C])}}
		return runtime.Collector[T](op), op, nil, nil
	}
	return n
}

// keyedBroadcastOp is a keyed operator (keyed state, restore, snapshots of
// keyedOp) whose input also carries broadcast elements, which are handled
// without a current key, and whose snapshot adds broadcast and operator
// state.
type keyedBroadcastOp[K comparable, IN, B, OUT any] struct {
	*keyedOp[K, connected[IN, B]]
	logic *keyedBroadcastLogic[K, IN, B, OUT]
}

func (o *keyedBroadcastOp[K, IN, B, OUT]) Collect(r connected[IN, B]) {
	if !r.fromBroadcast {
		o.keyedOp.Collect(r)
		return
	}
	if err := o.logic.processBroadcast(r.b); err != nil {
		o.logic.fail(err)
	}
}

func (o *keyedBroadcastOp[K, IN, B, OUT]) SnapshotState(id checkpoint.ID) (runtime.OperatorSnapshot, error) {
	return o.SnapshotStateFor(checkpoint.Barrier{ID: id})
}

func (o *keyedBroadcastOp[K, IN, B, OUT]) SnapshotStateFor(b checkpoint.Barrier) (runtime.OperatorSnapshot, error) {
	lists, err := o.logic.snapshotLists(b.ID)
	if err != nil {
		return runtime.OperatorSnapshot{}, err
	}
	s, err := o.keyedOp.SnapshotStateFor(b)
	if err != nil {
		return s, err
	}
	s.List = append(s.List, lists...)
	return s, nil
}

type keyedBroadcastLogic[K comparable, IN, B, OUT any] struct {
	fn   KeyedBroadcastProcessFunction[K, IN, B, OUT]
	out  runtime.Collector[OUT]
	core *broadcastCore
	bctx BroadcastContext
	st   functionState
	fail func(error)
}

func (l *keyedBroadcastLogic[K, IN, B, OUT]) open(ctx *KeyedContext[K]) error {
	oc := ctx.op
	l.fail = oc.Fail
	core, rest := newBroadcastCore(oc)
	l.core, l.bctx = core, BroadcastContext{core: core}
	if err := l.st.open(oc, l.fn, rest); err != nil {
		return err
	}
	if o, ok := l.fn.(KeyedBroadcastOpener[K]); ok {
		err := o.Open(ctx, &l.bctx)
		if m := core.takeMisuse(); m != nil {
			return m
		}
		return err
	}
	return nil
}

func (l *keyedBroadcastLogic[K, IN, B, OUT]) process(ctx *KeyedContext[K], r connected[IN, B]) error {
	err := l.fn.ProcessElement(ctx, &l.bctx, r.in, l.out)
	if m := l.core.takeMisuse(); m != nil {
		return m
	}
	return err
}

func (l *keyedBroadcastLogic[K, IN, B, OUT]) processBroadcast(b B) error {
	l.core.writable = true
	err := l.fn.ProcessBroadcastElement(&l.bctx, b, l.out)
	l.core.writable = false
	return err
}

func (l *keyedBroadcastLogic[K, IN, B, OUT]) snapshotLists(id checkpoint.ID) ([]checkpoint.ListStateSnapshot, error) {
	return snapshotLists(&l.st, l.core, id)
}

func (l *keyedBroadcastLogic[K, IN, B, OUT]) operator() any { return l.fn }

func snapshotLists(st *functionState, core *broadcastCore, id checkpoint.ID) ([]checkpoint.ListStateSnapshot, error) {
	lists, err := st.snapshot(id)
	if m := core.takeMisuse(); m != nil { // a write in SnapshotState
		return nil, m
	}
	if err != nil {
		return nil, err
	}
	bcs, err := core.snapshot()
	if err != nil {
		return nil, err
	}
	return append(lists, bcs...), nil
}

// broadcastOp runs a BroadcastProcessFunction.
type broadcastOp[IN, B, OUT any] struct {
	fn   BroadcastProcessFunction[IN, B, OUT]
	out  runtime.Collector[OUT]
	core *broadcastCore
	bctx BroadcastContext
	st   functionState
	fail func(error)
}

func (o *broadcastOp[IN, B, OUT]) Open(oc *runtime.OperatorContext) error {
	o.fail = oc.Fail
	core, rest := newBroadcastCore(oc)
	o.core, o.bctx = core, BroadcastContext{core: core}
	if err := o.st.open(oc, o.fn, rest); err != nil {
		return err
	}
	if op, ok := o.fn.(BroadcastOpener); ok {
		err := op.Open(&o.bctx)
		if m := core.takeMisuse(); m != nil {
			return m
		}
		return err
	}
	return nil
}

func (o *broadcastOp[IN, B, OUT]) Collect(r connected[IN, B]) {
	var err error
	if r.fromBroadcast {
		o.core.writable = true
		err = o.fn.ProcessBroadcastElement(&o.bctx, r.b, o.out)
		o.core.writable = false
	} else {
		err = o.fn.ProcessElement(&o.bctx, r.in, o.out)
		if m := o.core.takeMisuse(); m != nil {
			err = m
		}
	}
	if err != nil {
		o.fail(err)
	}
}

func (o *broadcastOp[IN, B, OUT]) SnapshotState(id checkpoint.ID) (runtime.OperatorSnapshot, error) {
	lists, err := snapshotLists(&o.st, o.core, id)
	return runtime.OperatorSnapshot{List: lists}, err
}

func (o *broadcastOp[IN, B, OUT]) NotifyCheckpointComplete(id checkpoint.ID) error {
	if l, ok := o.fn.(CheckpointListener); ok {
		return l.NotifyCheckpointComplete(id)
	}
	return nil
}

func (o *broadcastOp[IN, B, OUT]) NotifyCheckpointAborted(id checkpoint.ID) error {
	if l, ok := o.fn.(CheckpointListener); ok {
		return l.NotifyCheckpointAborted(id)
	}
	return nil
}

func (o *broadcastOp[IN, B, OUT]) Finish() error { return nil }
func (o *broadcastOp[IN, B, OUT]) Close() error  { return nil }
