package main

import (
	"errors"
	"io"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/state"
)

// incrementalEntries calls visit with every entry of an incremental
// (native) keyed state handle, h.Incremental, opening its files with open.
// Its contract is state.ReadKeyGroups': entries come in key group order
// (any order within a key group), e.Key and e.Value are valid only during
// visit, and an error of visit stops the read and is returned (wrapped or
// not: callers use errors.Is). `weir state dump` calls it for incremental
// handles.
//
// Not implemented yet: the reader of pebble snapshots replaces this file.
func incrementalEntries(open func(checkpoint.StreamHandle) (io.ReadCloser, error), h checkpoint.KeyedStateHandle, visit func(state.RawEntry) error) error {
	return errors.New("state dump of incremental (pebble) checkpoints: not supported yet — take a savepoint and dump that")
}
