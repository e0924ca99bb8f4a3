package weir

import (
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/network"
	"github.com/weirstream/weir/state"
)

// edgeTypeOf is the runtime type of an edge carrying records of type T:
// local channels within a process, network channels (records encoded with
// state.CodecFor[T]) between processes.
func edgeTypeOf[T any](newHash func() func(T) uint32) runtime.EdgeType {
	c := state.CodecFor[T]()
	return runtime.TypeOfRemote[T](newHash, network.Channels[T](c), network.Channels[runtime.Stamped[T]](runtime.StampedCodec(c)))
}
