package main

import (
	"io"
	"os"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/state"
	"github.com/weirstream/weir/state/pebblestate"
)

// incrementalEntries calls visit with every entry of an incremental
// (native) keyed state handle, h.Incremental, opening its files with open.
// Its contract is state.ReadKeyGroups': entries come in key group order
// (within a key group by state and key), e.Key and e.Value are valid only
// during visit, and an error of visit stops the read and is returned.
// The snapshot's files are downloaded (checksums checked) into a temporary
// directory and opened read-only.
func incrementalEntries(open func(checkpoint.StreamHandle) (io.ReadCloser, error), h checkpoint.KeyedStateHandle, visit func(state.RawEntry) error) error {
	return pebblestate.ReadNative(h, open, os.TempDir(), func(kg int, name string, kind byte, key, val []byte) error {
		return visit(state.RawEntry{KeyGroup: kg, State: name, Kind: state.StateKind(kind), Key: key, Value: val})
	})
}
