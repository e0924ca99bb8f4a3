package pebblestate

import (
	"errors"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// allocate makes f n bytes long with its blocks allocated: fallocate(2),
// or writing zeros where the file system cannot.
func allocate(f vfs.File, n int64) error {
	if fd := f.Fd(); fd != vfs.InvalidFd {
		err := syscall.Fallocate(int(fd), 0, 0, n)
		if err == nil || !errors.Is(err, syscall.EOPNOTSUPP) && !errors.Is(err, syscall.ENOSYS) {
			return err
		}
	}
	return writeZeros(f, n)
}
