// Package state holds the state of weir's operators: key groups, codecs and
// key hashing, the heap keyed state backend with asynchronous copy-on-write
// snapshots, and operator (list) state with its redistribution on rescale.
//
// # Key groups
//
// A key's hash (HasherFor: murmur3, 32 bits, seed 0, implemented here) picks
// its key group, hash % maxParallelism (KeyGroupOf); subtask s of p owns the
// contiguous range RangeForSubtask(maxParallelism, p, s), Flink's
// assignment. Keyed state is stored and snapshotted per key group, so a job
// restores at any parallelism up to maxParallelism by handing each new
// subtask the key groups of its range. The hash functions and the
// assignment must never change: a checkpoint's key groups were computed
// with them, and a restore with different ones routes keys to subtasks that
// do not hold their state (TestHashStability pins golden values).
//
// # Keyed snapshot stream, version 1
//
// HeapKeyedBackend's KeyedSnapshot.WriteKeyGroups writes one stream per
// subtask and operator: one section per key group of the backend's range,
// in range order, with no header between or around them. Offsets[i] of the
// checkpoint.KeyedStateHandle is the byte offset of the section of key
// group Range.Start+i; a section ends where the next one starts (the last
// one at the end of the stream, Stream.Size). A restore at another
// parallelism reads only the sections of the key groups it owns.
// ReadKeyGroups reads a stream without the Go types of keys and values,
// for tools (`weir state dump`).
//
// uvarint is encoding/binary's unsigned varint (7 bits per byte, least
// significant group first, high bit set on all but the last byte). A
// section is:
//
//	version    1 byte   KeyedSnapshotVersion (1); readers reject 0 and
//	                    versions newer than theirs
//	nStates    uvarint  number of state blocks that follow
//	nStates × state block, sorted by state name (byte order):
//	  nameLen  uvarint
//	  name     nameLen bytes (UTF-8 state name)
//	  kind     1 byte   1 = value state; 6 = value state with a
//	                    time-to-live, whose values are an 8-byte
//	                    big-endian expiry (unix milliseconds) followed by
//	                    the value's encoding (2 list, 3 map, 4 reducing
//	                    and 5 timers are reserved for later kinds)
//	  count    uvarint  number of entries, at least 1 (states without
//	                    entries in this key group are left out)
//	  count × entry, in no particular order:
//	    keyLen uvarint
//	    key    keyLen bytes: the key's Codec encoding
//	    valLen uvarint
//	    value  valLen bytes: the value's Codec encoding
//	crc        4 bytes  CRC-32C (Castagnoli) of every byte of the section
//	                    before it, big-endian
//
// An empty key group is 6 bytes: 01 00 and its checksum. Restore checks the
// checksum, the version, that the section holds exactly its blocks, that
// each key decodes and hashes into the section's key group, and that a
// state's kind matches the kind it is registered as; any failure is an error
// naming the key group (and state), never a panic.
//
// The built-in codecs (CodecFor) are part of the format: varint for
// integers, big-endian IEEE 754 bits for floats, one byte 0/1 for bool, raw
// bytes for string and []byte, encoding/json for other types.
//
// A later version adds sections' kinds or fields by bumping the version;
// readers keep reading every older version.
//
// List, map, reducing and aggregating states are written as value states
// whose value is the encoded list, map or accumulator, so every backend
// reads them back by name.
//
// This stream is the canonical format: the heap backend writes it for
// every checkpoint, the pebble backend (package state/pebblestate) for
// savepoints and for checkpoints in full mode. A savepoint therefore
// restores into either backend. WalkKeyGroups reads it without knowing the
// Go types.
//
// # Backends
//
// KeyedBackend is the interface the operators use. HeapKeyedBackend keeps
// typed values in per-key-group hash tables (copy-on-write snapshots,
// sub-microsecond synchronous part). RawKeyedBackend keeps encoded values
// in a RawStore — an ordered key-value store such as Pebble — under keys
// laid out as key group (2 bytes), state name, 0x00, key encoding, so that
// a key group, and a state within it, are contiguous ranges in the order
// the canonical stream needs them. A RawStore may also make native
// snapshots (checkpoint.IncrementalHandle): files uploaded once to the
// storage's shared area and referenced by every later checkpoint that
// still contains them.
//
// # Time-to-live
//
// WithTTL gives a state a time-to-live (see TTLConfig): reads never return
// an expired value; expired entries are removed on access, by an
// incremental cleanup that checks a few entries per access, and by full
// snapshots, which leave them out.
//
// # Operator state
//
// Operator list states are small and travel inline in the checkpoint
// metadata as checkpoint.ListStateSnapshot, one entry per element, each the
// element's Codec encoding.
package state
