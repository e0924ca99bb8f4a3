package state

import (
	"fmt"
	"io"

	"github.com/weirstream/weir/checkpoint"
)

// KeyedBackend is the keyed state of one operator in one subtask: the heap
// backend (HeapKeyedBackend) or a backend that keeps state as bytes in a
// local store (RawKeyedBackend over pebble, see package state/pebblestate).
// Every method runs on the task goroutine.
type KeyedBackend[K comparable] interface {
	// KeyGroupRange is the range of key groups the backend holds.
	KeyGroupRange() checkpoint.KeyGroupRange
	// SetCurrentKeyHashed scopes every state access to k, whose hash (from
	// the backend's HashFunc) the caller already knows.
	SetCurrentKeyHashed(k K, hash uint32)
	// CurrentKey is the key state accesses are scoped to.
	CurrentKey() K
	// SnapshotFor freezes the state for checkpoint id: the synchronous
	// part of a checkpoint. A savepoint (kind KindSavepoint) is always in
	// the canonical key-group stream format, whatever the backend.
	SnapshotFor(id checkpoint.ID, kind checkpoint.Kind) (KeyedSnapshot, error)
	// RestoreHandles restores the key groups of the backend's range from
	// every handle (the ones intersecting the range), reading streams with
	// open. A handle whose recorded key codec is not the backend's is a
	// *SchemaError; value codecs are checked when states are registered.
	RestoreHandles(handles []checkpoint.KeyedStateHandle, open func(checkpoint.StreamHandle) (io.ReadCloser, error)) error
	// NotifyCheckpointComplete and NotifyCheckpointAborted let backends
	// with incremental snapshots know which uploads are durable.
	NotifyCheckpointComplete(id checkpoint.ID)
	NotifyCheckpointAborted(id checkpoint.ID)
	// Close releases the backend (local files of a disk backend).
	Close() error
	// RegisterValueState registers the value state r asks for, or finds
	// the one already registered under r's name and checks that it is the
	// same kind of state with the same codec; r then holds the state
	// GetValueState returns. It runs once per Get*State call (when an
	// operator opens), never per record. Registration is where the schema
	// a restored snapshot recorded for the state is checked (a
	// *SchemaError when r's codec cannot read it) and migrated.
	//
	// A backend of this package passes itself to r, which knows the value
	// type and builds the typed state (see ValueStateRequest); a backend
	// that wraps another one forwards r to it.
	RegisterValueState(r ValueStateRequest[K]) error
}

// ValueStateRequest is a value state to register, made by GetValueState
// (and the list, map, reducing and aggregating states built on it) and
// handed to KeyedBackend.RegisterValueState. Go methods cannot have type
// parameters of their own, so a backend's method cannot name the state's
// value type; the request, which knows it, builds the typed state over the
// backend that registers it: HeapKeyedBackend's typed tables, or
// RawKeyedBackend's encoded entries (the way to plug in another storage
// engine is a RawStore). A request is used for one registration.
type ValueStateRequest[K comparable] interface {
	// Name is the state's name, never empty.
	Name() string
	// TTL is the state's time-to-live; a zero TTL.TTL means none.
	TTL() TTLConfig
	// registerHeap and registerRaw register the state with a backend of
	// this package and keep it.
	registerHeap(b *HeapKeyedBackend[K]) error
	registerRaw(b *RawKeyedBackend[K]) error
}

// HandleWriter is implemented by snapshots that write themselves as a
// whole handle (native incremental snapshots) rather than as a key-group
// stream; the runtime calls WriteHandle instead of WriteKeyGroups.
type HandleWriter interface {
	WriteHandle(t SnapshotTarget) (checkpoint.KeyedStateHandle, error)
}

// GetValueState registers the value state called name, or returns it if it
// is already registered. Registering a name again with another value type
// or codec, or under a name a restored snapshot holds as another kind of
// state, is an error; so is registering a restored state with a codec that
// cannot read what the snapshot recorded (a *SchemaError; see State schema
// in the package documentation). A MigratingCodec that reads the recorded
// codec migrates the restored values here.
func GetValueState[K comparable, V any](b KeyedBackend[K], name string, c Codec[V], opts ...Option) (ValueState[V], error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	return getValueState(b, name, c, o.ttl)
}

// Option configures a keyed state when it is registered.
type Option func(*options)

type options struct{ ttl TTLConfig }

// WithTTL gives the state a time-to-live. For list, map, reducing and
// aggregating state the whole value of a key (the list, the map, the
// accumulator) expires together: a list or map state with a time-to-live
// is stored as one value per key (Put and Add copy it), not per entry.
func WithTTL(c TTLConfig) Option { return func(o *options) { o.ttl = c } }

func getValueState[K comparable, V any](b KeyedBackend[K], name string, c Codec[V], ttl TTLConfig) (ValueState[V], error) {
	if name == "" {
		return nil, fmt.Errorf("keyed state needs a name")
	}
	if b == nil {
		return nil, fmt.Errorf("state %q: no keyed state backend (is the stream keyed?)", name)
	}
	r := &valueStateRequest[K, V]{name: name, codec: c, ttl: ttl}
	if err := b.RegisterValueState(r); err != nil {
		return nil, err
	}
	if r.state == nil {
		return nil, fmt.Errorf("state %q: keyed state backend %T registered nothing", name, b)
	}
	return r.state, nil
}

// valueStateRequest is the ValueStateRequest of GetValueState.
type valueStateRequest[K comparable, V any] struct {
	name  string
	codec Codec[V]
	ttl   TTLConfig
	state ValueState[V] // the registered state
}

func (r *valueStateRequest[K, V]) Name() string   { return r.name }
func (r *valueStateRequest[K, V]) TTL() TTLConfig { return r.ttl }

func (r *valueStateRequest[K, V]) registerHeap(b *HeapKeyedBackend[K]) error {
	if r.ttl.TTL > 0 {
		s, err := getHeapTTLState(b, r.name, r.codec, r.ttl)
		if err == nil {
			r.state = s
		}
		return err
	}
	t, err := getHeapValueState(b, r.name, r.codec)
	if err == nil {
		r.state = t
	}
	return err
}

func (r *valueStateRequest[K, V]) registerRaw(b *RawKeyedBackend[K]) error {
	s, err := getRawValueState(b, r.name, r.codec, r.ttl)
	if err == nil {
		r.state = s
	}
	return err
}

// RegisterValueState implements KeyedBackend.
func (b *HeapKeyedBackend[K]) RegisterValueState(r ValueStateRequest[K]) error {
	return r.registerHeap(b)
}

// SnapshotFor implements KeyedBackend: the heap backend's snapshots are
// always the canonical stream.
func (b *HeapKeyedBackend[K]) SnapshotFor(checkpoint.ID, checkpoint.Kind) (KeyedSnapshot, error) {
	return b.Snapshot(), nil
}

// RestoreHandles implements KeyedBackend.
func (b *HeapKeyedBackend[K]) RestoreHandles(handles []checkpoint.KeyedStateHandle, open func(checkpoint.StreamHandle) (io.ReadCloser, error)) error {
	for _, h := range handles {
		if h.Incremental != nil {
			return fmt.Errorf("cannot restore an incremental %s snapshot into heap state; restore with the same state backend, or take a savepoint (always in the canonical format) and restore that", h.Incremental.Backend)
		}
		if err := restoreStream(h, open, b.Restore); err != nil {
			return err
		}
	}
	return nil
}

// restoreStream restores the key-group stream of h with restore; errors
// name the stream.
func restoreStream(h checkpoint.KeyedStateHandle, open func(checkpoint.StreamHandle) (io.ReadCloser, error), restore func(io.Reader, checkpoint.KeyedStateHandle) error) error {
	rc, err := open(h.Stream)
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", StreamName(h.Stream), err)
	}
	defer rc.Close()
	if err := restore(rc, h); err != nil {
		return fmt.Errorf("cannot read %s: %w", StreamName(h.Stream), err)
	}
	return nil
}

// StreamName names a stream in errors: its path, or "inline keyed state
// stream" when the checkpoint metadata holds the bytes.
func StreamName(s checkpoint.StreamHandle) string {
	if s.Path == "" {
		return "inline keyed state stream"
	}
	return s.Path
}

// NotifyCheckpointComplete implements KeyedBackend (nothing to do).
func (b *HeapKeyedBackend[K]) NotifyCheckpointComplete(checkpoint.ID) {}

// NotifyCheckpointAborted implements KeyedBackend (nothing to do).
func (b *HeapKeyedBackend[K]) NotifyCheckpointAborted(checkpoint.ID) {}

// Close implements KeyedBackend (nothing to release).
func (b *HeapKeyedBackend[K]) Close() error { return nil }
