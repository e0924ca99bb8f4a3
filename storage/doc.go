// Package storage keeps the checkpoints of a job. It has two layers:
//
//   - A BlobStore keeps immutable blobs of bytes under keys: a directory
//     (FileStore, file:// or a plain path), memory (MemoryStore, memory://),
//     or a bucket of an S3-compatible object store (package storage/s3,
//     s3://). Its contract (below and at the interface) is all the layout
//     relies on.
//   - Storage lays checkpoints out over any BlobStore, written once: the
//     checkpoint directories, the _metadata commit point, the listings, the
//     discards, the shared area and its collector, restore paths.
//
// Every call that touches a store takes a context.Context; a cancelled
// call returns promptly with the context's error, also against an object
// store that stopped answering. Every store passes the conformance suite
// of package storage/storagetest.
//
// # Layout
//
// Under the storage root (a directory, or a key prefix in a bucket):
//
//	chk-<id>/              one directory (key prefix) per checkpoint
//	chk-<id>/<name>        state blobs written by subtasks ("3-1-0.keyed")
//	chk-<id>/_metadata     the commit point, written last
//	shared/<name>          files shared by incremental checkpoints
//
// The Path of a handle is relative to the root ("chk-7/3-1-0.keyed",
// "shared/7-3-1-0-000012.sst"), so a storage root can be copied or moved
// as a whole. A single checkpoint directory with no shared files (every
// savepoint) can be too, under any name: ResolveRestorePath reads a
// directory whose _metadata names another id than its own chk-<id> as
// that checkpoint, its blobs in the directory itself (read only); a
// moved one that references shared files is refused, naming them. Names of shared blobs start with the id of the checkpoint
// that uploaded them (SharedName); the collector (CollectShared) deletes a
// shared blob when no completed checkpoint references it and its creator
// is not in flight. OpenStream checks on every store that a blob has the
// size its handle recorded (handles with Inline bytes, which no storage of
// this build writes, are read from the handle).
//
// # The blob store contract
//
// Keys are relative '/'-separated paths with no empty, "." or ".."
// segment (CheckKey). A key exists once Put, or the Close of a Create's
// writer, returned nil, until Delete; a blob never changes. A blob is
// visible whole or not at all, and durable when that call returns. Put is
// the atomic create-if-absent: it fails with ErrExists if the key exists.
// Create streams a large blob (state files can be GiB) and fails with
// ErrExists if the key exists when it is called. Open returns the blob's
// size and a reader that yields exactly that many bytes or an error.
// List returns the keys with a prefix, sorted; Delete of an absent key is
// no error; a read of an absent key is ErrNotExist.
//
// # The commit point
//
// A checkpoint exists if and only if its _metadata exists. Commit creates
// it with Put: a second commit of the same id with different bytes fails
// with ErrExists on every store, and the same bytes again succeed (a
// commit retried after its answer was lost). In a directory the _metadata
// is written to a temporary file, fsynced, hard-linked to its name (which
// fails if the name exists; on file systems without hard links it is
// checked and renamed) and the directory fsynced; in a bucket it is one
// conditional PUT (see S3). Either way a crash leaves either no checkpoint
// or a complete one. A chk-<id> directory without _metadata is the debris
// of an aborted checkpoint; it still counts for MaxID, so ids stay
// monotonic, and Incomplete lists it for the sweeps. Discard deletes
// _metadata first and then the rest of chk-<id>/: a discard that fails
// half way leaves debris, never a checkpoint that looks complete.
//
// # Files
//
// FileStore writes every blob to a temporary file next to it
// ("<name>.tmp-<random>"), fsyncs it, links it to its name and fsyncs the
// directory (and the parents of directories it created); a crash leaves
// at most a temporary file, which List returns so that the sweeps delete
// it. Delete removes the directories it leaves empty.
//
// A FileStore is a Locker: TryLock takes an flock(2) on <root>/_lock
// (LockName) that a job writing checkpoints holds while it runs, so a
// second writer of the directory fails with ErrLocked naming the holder.
// The lock file is not under chk- or shared/, so no listing sees it.
// MemoryStore and the S3 store cannot lock; Storage.TryLock takes no lock
// on them.
//
// MemoryStore keeps blobs in a map; a memory:// storage lives as long as
// the process that opened it, and only that process sees it.
//
// # Schemes
//
// Open and ResolveRestorePath understand file:// (and plain paths) and
// memory://; other schemes are registered by the packages of their stores
// (RegisterScheme, from init). Package storage/s3 registers s3://; package
// jobflags imports it, so every job binary that uses jobflags reads and
// writes S3. A program that does not import it links no S3 client, and
// s3:// locations fail with "storage: s3:// needs
// github.com/weirstream/weir/storage/s3 imported (jobflags imports it)".
//
// # S3
//
// Open("s3://bucket/prefix?endpoint=host:port&region=r&insecure=true")
// opens the objects <prefix>/chk-<id>/<name>, <prefix>/chk-<id>/_metadata
// and <prefix>/shared/<name> of bucket, which must exist. All parameters
// are optional: endpoint defaults to s3.amazonaws.com, an empty region is
// asked of the server, and TLS is used unless insecure=true. Credentials
// come from WEIR_S3_ACCESS_KEY and WEIR_S3_SECRET_KEY, else from
// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN; with
// none the requests are anonymous. s3.New takes the same settings, and an
// http.RoundTripper, as s3.Options.
//
// Writes. A stream is buffered in memory up to the part size (8 MiB): a
// smaller blob is one PUT at Close, a larger one a multipart upload with
// one part per 8 MiB (so at most 10000 parts, about 78 GiB, per blob),
// completed at Close. An object appears whole or not at all, when the PUT
// or CompleteMultipartUpload succeeds, and S3 acknowledges only durable
// writes: Close returns once the blob is durable. Every PUT carries a
// Content-MD5 the server checks; over plain HTTP the payload is signed
// with its SHA-256 too. Abort, or a failed Close, aborts the multipart
// upload; one that could not be aborted (a crash, the network gone, the
// writer's context ended) stays invisible but takes space, so give the
// bucket an AbortIncompleteMultipartUpload lifecycle rule. Create refuses
// a key whose object exists (one HEAD request); names are unique by
// construction, so this catches reuse but is no lock.
//
// The commit point. Put first checks with HEAD that the object does not
// exist, then PUTs it with If-None-Match: *. On servers that honour
// If-None-Match on PUT (AWS S3, MinIO and others) the create is atomic: of
// two Commits of one id only one wins, the other fails with ErrExists. On
// servers that ignore the header only the HEAD protects the _metadata, and
// two Commits of one id racing between HEAD and PUT both succeed, the last
// one winning; a job has one committing coordinator, so that takes two
// jobs sharing one prefix. Committing the same bytes again (a commit
// retried after its answer was lost) succeeds.
//
// Listing and deleting. Completed, Latest and MaxID list the keys under
// <prefix>/chk-, ListShared those under <prefix>/shared/; S3 listings are
// strongly consistent (AWS since 2020, MinIO), so a checkpoint is listed as
// soon as Commit returned. Discard does not look for multipart uploads left
// under chk-<id>/ (see the lifecycle rule above).
//
// Reading. OpenStream compares the object's size with the handle's and
// fails, naming s3://bucket/key, if the object is missing, shorter or
// longer; an object replaced by one of the same size is not detected here
// (handles carry no checksum; the file list of an incremental snapshot
// carries CRC-32Cs its backend checks). A read cut by a transient error
// resumes with a ranged GET conditional on the first response's ETag
// (If-Match), so it never splices two versions of an object.
//
// Retries. Every request is retried on transient errors (network errors,
// HTTP 5xx, 408 and 429, S3's SlowDown, RequestTimeout, InternalError and
// throttling codes) at most 5 times in all, waiting 100 ms doubled per
// attempt up to 5 s, with jitter; minio-go adds up to 200 ms of its own
// after a failed attempt. An attempt gets 2 minutes until the response
// headers. Other errors (403, 404, 412, an untrusted certificate) fail at
// once, and so does every call once its context ends: the attempt in
// flight is cancelled, no further attempt is made. Errors name the
// operation, the object and the attempts made, e.g. "cannot upload part 3
// of s3://b/p/chk-7/3-1-0.keyed (gave up after 5 attempts): ... (SlowDown,
// HTTP 503)".
//
// # Metadata format (version 2)
//
//	offset  size  field
//	0       8     magic "WEIRMETA"
//	8       4     format version, uint32 big endian (2)
//	12      8     payload length N, uint64 big endian
//	20      N     payload: JSON encoding of checkpoint.Metadata
//	20+N    4     CRC-32C (Castagnoli) of the payload, uint32 big endian
//
// Readers reject a wrong magic, a version newer than they know, a length
// that does not match the file, a checksum mismatch, unknown JSON fields,
// and content that does not make sense (an operator whose subtask count
// differs from its parallelism, key group ranges outside the max
// parallelism).
//
// Version 2 adds "states" to each keyed state handle: the schema of every
// keyed state in the snapshot (checkpoint.StateMeta: name, kind, value
// codec and version, key codec and version), which a restore checks
// before it decodes the state (see package state, "State schema"). This
// build reads version 1 too; a version 1 handle has no "states" and its
// states restore without a check. A build that reads only version 1
// rejects version 2 metadata by its version.
package storage
