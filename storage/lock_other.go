//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package storage

import (
	"fmt"
	"os"
	"runtime"
)

func flock(*os.File) error {
	return fmt.Errorf("%w (on %s)", ErrLockUnsupported, runtime.GOOS)
}

func funlock(*os.File) error { return nil }
