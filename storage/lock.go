package storage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// ErrLocked is wrapped by the error of TryLock when another job holds the
// checkpoint directory.
var ErrLocked = errors.New("in use by another job")

// ErrLockUnsupported is wrapped by the error of TryLock when the file
// system of a directory cannot lock files; the caller decides whether to
// go on unprotected.
var ErrLockUnsupported = errors.New("file locks are not supported here")

// LockName is the lock file in the root of a directory store.
const LockName = "_lock"

// Locker is a BlobStore that can keep a second writer out: a directory
// (FileStore). An object store cannot (see package storage/s3).
type Locker interface {
	// TryLock takes the exclusive lock of the store without waiting, or
	// fails with an error wrapping ErrLocked that names the store and,
	// as far as it recorded itself, the holder. holder describes the
	// caller for that message ("job count, pid 12, started ..."). The
	// lock is held until the returned Unlock is called or the process
	// ends, however it ends.
	TryLock(holder string) (Unlock, error)
}

// Unlock releases a lock; calling it again is no error.
type Unlock func() error

// TryLock takes the exclusive lock of s for a job that writes
// checkpoints into it (see Locker). A store that cannot lock (memory,
// S3) returns an Unlock that does nothing, and no error. Readers
// (listing, inspecting, restoring from s) need no lock.
func (s *Storage) TryLock(holder string) (Unlock, error) {
	l, ok := s.store.(Locker)
	if !ok {
		return func() error { return nil }, nil
	}
	return l.TryLock(holder)
}

// Holder describes this process, running job, for a lock file: "job
// NAME, pid N on host H, started TIME".
func Holder(job string) string { return HolderDoing("job " + job) }

// HolderDoing describes this process doing what for a lock file: "WHAT,
// pid N on host H, started TIME".
func HolderDoing(what string) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s, pid %d on host %s, started %s", what, os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
}

// TryLock locks the file _lock in the root with flock(2): the kernel
// releases it when the process ends, also on kill -9, so a lock is never
// stale. The holder's description is written into the file for the error
// of the next one who tries. The file is never deleted (deleting it would
// let two processes lock two different files of the same name).
func (f *FileStore) TryLock(holder string) (Unlock, error) {
	p := filepath.Join(f.root, LockName)
	fh, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cannot lock checkpoint directory %s: %w", f.root, err)
	}
	if err := flock(fh); err != nil {
		defer fh.Close()
		if errors.Is(err, ErrLocked) {
			who := "another process"
			if b, rerr := io.ReadAll(io.LimitReader(fh, 512)); rerr == nil && len(bytes.TrimSpace(b)) > 0 {
				who = string(bytes.TrimSpace(b))
			}
			return nil, fmt.Errorf("checkpoint directory %s is %w: locked by %s (lock file %s); give each job its own checkpoint directory, or stop the other one",
				f.root, ErrLocked, who, p)
		}
		return nil, fmt.Errorf("cannot lock checkpoint directory %s (lock file %s): %w", f.root, p, err)
	}
	if err := fh.Truncate(0); err == nil {
		_, _ = fh.WriteAt([]byte(holder+"\n"), 0) // only for the message of another; best effort
	}
	released := false
	return func() error {
		if released {
			return nil
		}
		released = true
		if err := funlock(fh); err != nil {
			fh.Close()
			return fmt.Errorf("cannot unlock checkpoint directory %s: %w", f.root, err)
		}
		return fh.Close()
	}, nil
}
