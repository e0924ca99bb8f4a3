package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// BlobStore is a flat namespace of immutable blobs of bytes under keys: a
// directory (FileStore), memory (MemoryStore) or a bucket of an object
// store (package storage/s3). Storage lays checkpoints out over it. A
// BlobStore is safe for concurrent use.
//
// Keys are relative, '/'-separated paths ("chk-7/3-1-0.keyed",
// "shared/7-3-1-0-000012.sst"): no empty, "." or ".." segment, no
// backslash, no leading or trailing '/' (CheckKey). A store refuses other
// keys, so no key leaves the store's root.
//
// Exists. A key exists once a Put or the Close of a Create's writer
// returned success, until Delete. A blob never changes after that.
//
// Visibility and durability. A blob is visible whole or not at all: Open
// and List never see a half-written blob under its key. When Put or a
// writer's Close returns nil the blob is durable (on disk after fsync of
// the file and its directory; acknowledged by the object store), and it
// is visible to every later call.
//
// Contexts. Every call takes a context; a call whose context is done
// fails without starting work, and a call in progress returns promptly
// (within the time one syscall takes) once its context ends, with an
// error wrapping the context's error. The context of Create governs the
// writer's whole life, that of Open the reader's.
//
// Errors wrap ErrExists (a create that found its key taken) or
// ErrNotExist (a read of a key that does not exist) where those apply,
// and name the blob (a path, a URL).
type BlobStore interface {
	// String names the store in the form Open accepts
	// ("file:///var/lib/weir/chk", "s3://bucket/prefix?endpoint=...").
	String() string
	// Locate is the address of key for people and for restore paths: an
	// absolute path, or the store's URL with key appended to its path.
	Locate(key string) string
	// Put creates the blob key with the bytes b, atomically, if no blob
	// key exists; if one exists (whatever its bytes) it fails with an
	// error wrapping ErrExists and leaves that blob alone. Of two
	// concurrent Puts of one key at most one succeeds (on S3 servers that
	// ignore If-None-Match, see package storage/s3, the last one wins).
	// The caller may reuse b after Put returns.
	Put(ctx context.Context, key string, b []byte) error
	// Create starts writing the blob key, for blobs too large to hold in
	// memory (state files can be GiB). It fails with an error wrapping
	// ErrExists if key exists. The blob appears when the writer's Close
	// returns nil. Create is no lock: two writers of one key are a bug of
	// the caller (names are unique by construction); the second Close
	// fails (file, memory) or wins (S3).
	Create(ctx context.Context, key string) (BlobWriter, error)
	// Open reads the blob key and returns its size. The reader yields
	// exactly size bytes and then io.EOF, or an error: a blob replaced or
	// cut while being read is an error, never a splice of two versions.
	// The caller closes the reader.
	Open(ctx context.Context, key string) (r io.ReadCloser, size int64, err error)
	// List returns, in lexical order, the keys that start with prefix (a
	// plain string prefix: "chk-" lists "chk-7/a" and "chk-70/b"). It may
	// also return the leftovers of writes a crash interrupted (FileStore:
	// "<key>.tmp-<random>"), so that sweeps find and delete them.
	List(ctx context.Context, prefix string) ([]string, error)
	// Delete deletes the blob key; a key that does not exist is no error.
	Delete(ctx context.Context, key string) error
}

// BlobWriter writes one blob started by BlobStore.Create. It is used by one
// goroutine at a time.
type BlobWriter interface {
	io.Writer
	// Close makes the blob durable and visible under its key. On error
	// the blob does not exist (and a key taken meanwhile wraps ErrExists).
	Close() error
	// Abort discards what was written; after a successful Close it
	// deletes the blob, best effort (a store whose context is done leaves
	// that to the sweeps). Safe to call more than once.
	Abort()
}

var (
	// ErrExists marks a create that found its key taken: a state blob
	// name that is not new, or a _metadata of a different checkpoint
	// under the same id.
	ErrExists = errors.New("already exists")
	// ErrNotExist marks a read of a key that does not exist. It is
	// fs.ErrNotExist, so errors from the os package match it too.
	ErrNotExist = fs.ErrNotExist
)

// CheckKey reports whether key is a valid blob key (see BlobStore).
func CheckKey(key string) error {
	if key == "" || strings.Contains(key, "\\") {
		return fmt.Errorf("invalid blob key %q", key)
	}
	for seg := range strings.SplitSeq(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("invalid blob key %q", key)
		}
	}
	return nil
}

// CheckPrefix reports whether prefix is a valid List prefix: empty, or a
// key, or a key followed by '/'.
func CheckPrefix(prefix string) error {
	if p := strings.TrimSuffix(prefix, "/"); p != "" {
		if err := CheckKey(p); err != nil {
			return fmt.Errorf("invalid blob key prefix %q", prefix)
		}
	} else if prefix != "" {
		return fmt.Errorf("invalid blob key prefix %q", prefix)
	}
	return nil
}

// NotExistError is an error of a store that says in its own words that a
// blob does not exist; it matches ErrNotExist.
type NotExistError struct{ Msg string }

func (e *NotExistError) Error() string { return e.Msg }

// Is reports whether target is ErrNotExist.
func (e *NotExistError) Is(target error) bool { return target == ErrNotExist }

// ctxReader fails reads once its context is done, for stores whose reads
// never block on the network.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
	c   io.Closer
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

func (r ctxReader) Close() error { return r.c.Close() }
