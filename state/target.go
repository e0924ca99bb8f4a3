package state

import "github.com/weirstream/weir/checkpoint"

// SnapshotTarget is where a native snapshot (HandleWriter) writes the
// blobs of one checkpoint: package storage's Target. State does not depend
// on checkpoint storage beyond this.
type SnapshotTarget interface {
	// CheckpointID is the checkpoint being written.
	CheckpointID() checkpoint.ID
	// CreateStream opens a blob private to this checkpoint. The target
	// makes name unique among the subtasks and operators of the job.
	CreateStream(name string) (checkpoint.StreamWriter, error)
	// CreateShared opens a blob in the checkpoint storage's shared area
	// (its handle's Path starts with SharedPrefix), which later
	// checkpoints may reference too. The target prefixes name with the
	// checkpoint id, so that the storage's collector knows which
	// checkpoint created it, and makes it unique within the job.
	CreateShared(name string) (checkpoint.StreamWriter, error)
}

// SharedPrefix starts the Path of every handle into checkpoint storage's
// shared area ("shared/7-3-1-0-000012.sst"); it is storage.SharedPrefix.
const SharedPrefix = "shared/"
