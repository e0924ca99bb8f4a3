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
//	                    the value's encoding; 5 = timer queue, one entry
//	                    per timer, whose value is the timestamp (8 bytes,
//	                    big-endian two's complement, milliseconds since
//	                    1970) followed by the namespace's bytes (a key
//	                    has one entry per timer); 3 = map state, one
//	                    entry per map entry, whose value is uvarint
//	                    length of the map key's encoding, the map key's
//	                    encoding and the map value's encoding; 2 = list
//	                    state, one entry per element (the element's
//	                    encoding), a key's elements contiguous and in
//	                    list order; 4 reducing is reserved
//	  count    uvarint  number of entries, at least 1 (states without
//	                    entries in this key group are left out)
//	  count × entry, in no particular order (but list elements):
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
// naming the stream (its path in the checkpoint storage) and the key group
// (and state), never a panic. The schema of each state (codecs and their
// versions) is not in the stream but in its handle: see State schema.
//
// The built-in codecs (CodecFor) are part of the format: varint for
// integers, big-endian IEEE 754 bits for floats, one byte 0/1 for bool, raw
// bytes for string and []byte, encoding/json for other types.
//
// A later version adds sections' kinds or fields by bumping the version;
// readers keep reading every older version.
//
// Reducing and aggregating states, and list and map states with a
// time-to-live, are written as value states whose value is the encoded
// accumulator, list or map, so every backend reads them back by name.
// Snapshots written before kinds 2 and 3 hold every list and map state
// that way (kind 1, codec "list(...)" or "map(...)"); registering it as a
// list or map state converts it.
//
// This stream is the canonical format: the heap backend writes it for
// every checkpoint, the pebble backend (package state/pebblestate) for
// savepoints and for checkpoints in full mode. A savepoint therefore
// restores into either backend. WalkKeyGroups reads it without knowing the
// Go types.
//
// # State schema
//
// Every snapshot records the schema of each keyed state in its handle
// (checkpoint.KeyedStateHandle.States, JSON in the checkpoint's
// _metadata, metadata version 2; see package storage): the state's kind
// ("value", "value-with-ttl"), the identity and version of its value
// codec, and the identity and version of the operator's key codec. The
// canonical stream (heap checkpoints, pebble full checkpoints, every
// savepoint) and pebble's native incremental snapshots record it alike;
// the stream format itself is unchanged. A native snapshot (HandleWriter)
// puts the schema into the handle it writes; for a key-group stream the
// writer of the handle (the runtime) copies SnapshotStates into it.
//
// A codec's identity (CodecIdentity) is what it declares as a
// VersionedCodec, else its Go type; the built-in codecs are identified by
// encoding and type ("varint:int64", "string", "json:main.Order"; a named
// type over a basic type has the identity of the basic type), and list
// and map states compose their element codecs ("list(varint:int64)",
// "map(string,json:main.Order)", "id@version" for elements of a version
// other than 0). List and map states record kind "list" and "map" (with
// a time-to-live, "value-with-ttl"); reducing and aggregating states are
// value states of their encoded form, so their kind is "value".
//
// Restore checks the schema without any per-record cost:
//
//   - the key codec when the handles are restored: keys decide key
//     groups, so a changed key type is an error naming both key codecs;
//   - the value codec when the state is registered (GetValueState and the
//     other kinds): the registered codec must have the recorded identity
//     and version. The heap backend keeps the entries of states nobody
//     registered yet as bytes and checks them at registration; a restored
//     state nobody registers keeps its recorded schema in later snapshots.
//     A mismatch is a *SchemaError naming the state and both codecs
//     (package weir adds the operator and the checkpoint), never values
//     decoded with the wrong codec.
//   - a codec that reads the recorded identity and version
//     (MigratingCodec) migrates the state: the heap backend decodes the
//     restored entries with DecodeFrom, a RawKeyedBackend (pebble)
//     rewrites every entry of the state in its key groups when the state
//     is registered, so later reads and snapshots use the current
//     encoding, and the schema recorded from then on is the new one.
//
// A state whose handle records no schema (a checkpoint written before
// version 2 of the metadata, or a restored state that was written without
// one and never registered since) restores without a check: nothing says
// what its bytes were written with.
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
// States are registered through the interface (RegisterValueState with a
// ValueStateRequest, which builds the typed state for the backend), so a
// KeyedBackend that wraps another one works wherever the two above do.
// Package statetest is the conformance suite every backend runs.
//
// # Timers
//
// A timer queue (TimerService, GetTimerQueue) is keyed state of kind
// "timers": timers (key, timestamp, namespace), deduplicated, per key
// group, polled earliest first over all the backend's key groups. The heap
// backend keeps per key group a binary heap indexed by timer (Add, Delete
// and Poll in O(log n), Delete without a scan), copy-on-write like its
// tables, and orders the key groups by their earliest timer. A
// RawKeyedBackend stores one key per timer, ordered by key group, queue,
// timestamp, key and namespace, and keeps each key group's 64 earliest
// timers in memory, refilled from the store when they run out. Timers are
// in every snapshot (the canonical stream writes one entry per timer) and
// restore into either backend and any key group range. A timer queue and
// another kind of state cannot share a name.
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
