// Package storage keeps the checkpoints of a job: a directory on a file
// system (file://) or memory (memory://). An S3-compatible store comes later
// with the same layout.
//
// # Layout
//
// Under the storage root:
//
//	chk-<id>/              one directory per checkpoint
//	chk-<id>/<name>        state blobs written by subtasks ("3-1-0.keyed")
//	chk-<id>/_metadata     the commit point, written last
//	shared/                reserved for files shared by incremental checkpoints
//
// A checkpoint exists if and only if its _metadata exists: Commit writes it
// to a temporary file, fsyncs it, renames it into place and fsyncs the
// directory, so a crash leaves either the old state or a complete checkpoint.
// A chk-<id> directory without _metadata is the debris of an aborted
// checkpoint; it still counts for MaxID, so ids stay monotonic.
//
// # Metadata format (version 1)
//
//	offset  size  field
//	0       8     magic "WEIRMETA"
//	8       4     format version, uint32 big endian (1)
//	12      8     payload length N, uint64 big endian
//	20      N     payload: JSON encoding of checkpoint.Metadata
//	20+N    4     CRC-32C (Castagnoli) of the payload, uint32 big endian
//
// Readers reject a wrong magic, a version newer than they know, a length
// that does not match the file, a checksum mismatch, and content that does
// not make sense (an operator whose subtask count differs from its
// parallelism, key group ranges outside the max parallelism).
package storage
