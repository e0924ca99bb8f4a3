// Package checkpoint holds the vocabulary shared by every part of weir's
// asynchronous barrier snapshot: checkpoint ids, barriers, subtask identities
// and the state handles a subtask acknowledges a checkpoint with.
//
// The protocol logic itself lives in two sub-packages, both pure state
// machines with no goroutines, no I/O and no clock reads:
//
//   - checkpoint/coordinator: the jobmanager side (trigger, ack, decline,
//     expiry, completion, subsumption, retention).
//   - checkpoint/barrier: the subtask side (aligned and at-least-once barrier
//     handlers over a task's input channels).
//
// Drivers in the runtime own the goroutines, timers and storage I/O.
package checkpoint

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// Errors a restore wraps, so that the runtime can tell a checkpoint that
// can never be restored from a transient failure to read it.
var (
	// ErrIncompatible: the checkpoint's state does not fit the job (another
	// kind of state, another key or value type or codec, another max
	// parallelism). Restarting cannot help.
	ErrIncompatible = errors.New("incompatible state")
	// ErrCorrupt: the checkpoint's state cannot be read (a checksum
	// mismatch, a truncated, missing or undecodable file).
	ErrCorrupt = errors.New("corrupted state")
)

// ID identifies a checkpoint. IDs grow monotonically within a job, also
// across process restarts (the driver seeds the next id from storage).
type ID int64

// Mode selects the consistency guarantee of checkpoints.
type Mode uint8

const (
	// ExactlyOnce aligns barriers: each record affects the state exactly once.
	ExactlyOnce Mode = iota
	// AtLeastOnce never blocks input channels: after a restore some records
	// may affect the state twice, none is lost.
	AtLeastOnce
)

func (m Mode) String() string {
	switch m {
	case ExactlyOnce:
		return "exactly-once"
	case AtLeastOnce:
		return "at-least-once"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// ParseMode parses "exactly-once" or "at-least-once".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "exactly-once", "exactly_once", "EXACTLY_ONCE":
		return ExactlyOnce, nil
	case "at-least-once", "at_least_once", "AT_LEAST_ONCE":
		return AtLeastOnce, nil
	}
	return 0, fmt.Errorf("unknown checkpointing mode %q (want exactly-once or at-least-once)", s)
}

// Kind tells a checkpoint from a savepoint.
type Kind uint8

const (
	KindCheckpoint Kind = iota
	KindSavepoint
)

func (k Kind) String() string {
	if k == KindSavepoint {
		return "savepoint"
	}
	return "checkpoint"
}

// Barrier is the marker a source injects into its output streams for
// checkpoint ID. Every record before it belongs to the snapshot, every record
// after it does not.
type Barrier struct {
	ID        ID
	Timestamp time.Time // when the coordinator triggered the checkpoint
	Kind      Kind
}

// TaskID identifies one parallel subtask of one vertex (chain) of the job
// graph.
type TaskID struct {
	Vertex  int // index of the job vertex (chain)
	Subtask int // 0 <= Subtask < parallelism of the vertex
}

func (t TaskID) String() string { return fmt.Sprintf("%d.%d", t.Vertex, t.Subtask) }

// StreamHandle points at a blob of snapshot bytes in checkpoint storage.
// Exactly one of Path and Inline is set: Path names a blob relative to the
// storage root ("chk-7/3-1-0.keyed", "shared/7-3-1-0-000012.sst"); Inline
// holds the bytes themselves (no storage of this build writes it, and
// every storage reads it).
type StreamHandle struct {
	Path   string `json:"path,omitempty"`
	Inline []byte `json:"inline,omitempty"`
	Size   int64  `json:"size"`
}

// StreamWriter writes one blob of snapshot bytes into checkpoint storage.
// It is used by one goroutine at a time. The blob becomes visible, whole,
// and durable when Close returns its handle; after a failed Close or an
// Abort it never becomes visible.
type StreamWriter interface {
	io.Writer
	// Close makes the blob durable and returns its handle.
	Close() (StreamHandle, error)
	// Abort discards what was written (after a successful Close: the blob
	// itself, best effort).
	Abort()
}

// KeyGroupRange is the inclusive range [Start, End] of key groups a keyed
// state snapshot covers. An empty range has End < Start.
type KeyGroupRange struct {
	Start int `json:"start"`
	End   int `json:"end"`
}

// Len is the number of key groups in the range.
func (r KeyGroupRange) Len() int {
	if r.End < r.Start {
		return 0
	}
	return r.End - r.Start + 1
}

// Contains tells whether key group kg is in the range.
func (r KeyGroupRange) Contains(kg int) bool { return kg >= r.Start && kg <= r.End }

// Intersect returns the overlap of r and o (possibly empty).
func (r KeyGroupRange) Intersect(o KeyGroupRange) KeyGroupRange {
	return KeyGroupRange{Start: max(r.Start, o.Start), End: min(r.End, o.End)}
}

func (r KeyGroupRange) String() string { return fmt.Sprintf("[%d,%d]", r.Start, r.End) }

// KeyedStateHandle is the snapshot of one subtask's keyed state: one stream
// with the key groups of Range written one after the other; Offsets[i] is the
// byte offset of key group Range.Start+i inside the stream.
//
// A backend with native incremental snapshots (pebble) writes Incremental
// instead of Stream and Offsets.
type KeyedStateHandle struct {
	Range   KeyGroupRange `json:"range"`
	Stream  StreamHandle  `json:"stream"`
	Offsets []int64       `json:"offsets"`
	// Incremental is set for a native incremental snapshot.
	Incremental *IncrementalHandle `json:"incremental,omitempty"`
	// States is the schema of the keyed states in the snapshot, sorted by
	// name (metadata version 2). A state missing here (every state of a
	// version 1 checkpoint) restores without a schema check.
	States []StateMeta `json:"states,omitempty"`
}

// StateMeta is the schema of one keyed state in a snapshot: what a
// restore checks before it decodes the state's keys and values with the
// codecs the job registers it with (see package state, "State schema").
type StateMeta struct {
	Name string `json:"name"`
	// Kind is the state's kind as the key-group stream records it:
	// "value" or "value-with-ttl". List, map, reducing and aggregating
	// states are value states of their encoded form, told apart by Codec.
	Kind string `json:"kind"`
	// Codec identifies the encoding of the values ("varint:int64",
	// "string", "json:main.Order", "list(varint:int64)", or what a user
	// codec declares) and CodecVersion its version.
	Codec        string `json:"codec"`
	CodecVersion int    `json:"codecVersion,omitempty"`
	// KeyCodec identifies the encoding of the keys: the operator's key
	// type. KeyCodecVersion is its version.
	KeyCodec        string `json:"keyCodec"`
	KeyCodecVersion int    `json:"keyCodecVersion,omitempty"`
}

// IncrementalHandle is a native snapshot of a keyed state backend made of
// files: the files of the backend's local database at the checkpoint, each
// either uploaded by this checkpoint or reused from an earlier one. Shared
// files (immutable data files) live in the storage's shared area and are
// referenced by every checkpoint that contains them; private files
// (manifests, options) are written per checkpoint.
type IncrementalHandle struct {
	// Backend names the format of the files ("pebble-v1").
	Backend string `json:"backend"`
	// Files maps each file's local name to where it is stored.
	Files []NamedStream `json:"files"`
	// Uploaded is the number of bytes this checkpoint wrote (new files
	// only); the sizes of all Files add up to the full size.
	Uploaded int64 `json:"uploaded"`
}

// NamedStream is one file of an incremental snapshot.
type NamedStream struct {
	Name   string       `json:"name"`
	Stream StreamHandle `json:"stream"`
	// CRC is the CRC-32C (Castagnoli) of the file, checked on restore.
	CRC uint32 `json:"crc32c"`
}

// Redistribution says how operator list state is spread over subtasks when a
// job restores at a different parallelism.
type Redistribution uint8

const (
	// SplitEvenly splits the union of all entries evenly over the new subtasks.
	SplitEvenly Redistribution = iota
	// Union gives every new subtask all entries of all old subtasks.
	Union
)

// ListStateSnapshot is one named operator list state of one subtask. Entries
// are small (source positions, transaction handles) and stored inline in the
// checkpoint metadata.
type ListStateSnapshot struct {
	Name    string         `json:"name"`
	Mode    Redistribution `json:"mode"`
	Entries [][]byte       `json:"entries"`
}

// OperatorSubtaskState is everything one operator of one subtask wrote for a
// checkpoint.
type OperatorSubtaskState struct {
	Keyed    []KeyedStateHandle  `json:"keyed,omitempty"`
	Operator []ListStateSnapshot `json:"operator,omitempty"`
}

// IsEmpty reports whether the operator wrote no state at all.
func (s OperatorSubtaskState) IsEmpty() bool { return len(s.Keyed) == 0 && len(s.Operator) == 0 }

// TaskSnapshot is what one subtask acknowledges a checkpoint with: the state
// of each operator of its chain, by operator UID.
type TaskSnapshot struct {
	Operators map[string]OperatorSubtaskState `json:"operators,omitempty"`
	// Alignment metrics of this subtask for this checkpoint.
	AlignmentDuration time.Duration `json:"alignmentDuration,omitempty"`
	StartDelay        time.Duration `json:"startDelay,omitempty"`
	SyncDuration      time.Duration `json:"syncDuration,omitempty"`
	AsyncDuration     time.Duration `json:"asyncDuration,omitempty"`
	StateSize         int64         `json:"stateSize,omitempty"`
}

// MetadataVersion is the version of the checkpoint metadata format written
// by this build. Readers accept every version up to it. Version 2 added
// KeyedStateHandle.States.
const MetadataVersion = 2

// Metadata is the content of a completed checkpoint's _metadata file: the
// commit point of the checkpoint. A checkpoint without a readable _metadata
// does not exist. The byte format (magic, version, checksum) is documented in
// package storage.
type Metadata struct {
	Version      int       `json:"version"`
	JobName      string    `json:"job"`
	CheckpointID ID        `json:"checkpointId"`
	Kind         Kind      `json:"kind"`
	TriggeredAt  time.Time `json:"triggeredAt"`
	CompletedAt  time.Time `json:"completedAt"`
	// MaxParallelism is the number of key groups of every keyed operator.
	MaxParallelism int             `json:"maxParallelism"`
	Operators      []OperatorState `json:"operators"`
}

// OperatorState is the state of one operator (by UID) over all its subtasks.
type OperatorState struct {
	UID         string `json:"uid"`
	Name        string `json:"name,omitempty"`
	Parallelism int    `json:"parallelism"`
	// Subtasks[i] is subtask i's state; len(Subtasks) == Parallelism.
	Subtasks []OperatorSubtaskState `json:"subtasks"`
}

// Operator returns the state of the operator with the given UID, or nil.
func (m *Metadata) Operator(uid string) *OperatorState {
	for i := range m.Operators {
		if m.Operators[i].UID == uid {
			return &m.Operators[i]
		}
	}
	return nil
}
