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
// accumulator) expires together.
func WithTTL(c TTLConfig) Option { return func(o *options) { o.ttl = c } }

func getValueState[K comparable, V any](b KeyedBackend[K], name string, c Codec[V], ttl TTLConfig) (ValueState[V], error) {
	if name == "" {
		return nil, fmt.Errorf("keyed state needs a name")
	}
	switch b := b.(type) {
	case *HeapKeyedBackend[K]:
		if ttl.TTL > 0 {
			return getHeapTTLState(b, name, c, ttl)
		}
		return getHeapValueState(b, name, c)
	case *RawKeyedBackend[K]:
		return getRawValueState(b, name, c, ttl)
	case nil:
		return nil, fmt.Errorf("state %q: no keyed state backend (is the stream keyed?)", name)
	}
	return nil, fmt.Errorf("state %q: unsupported keyed state backend %T", name, b)
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
