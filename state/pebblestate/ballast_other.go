//go:build !linux

package pebblestate

import "github.com/cockroachdb/pebble/v2/vfs"

// allocate makes f n bytes long by writing zeros.
func allocate(f vfs.File, n int64) error { return writeZeros(f, n) }
