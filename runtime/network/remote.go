package network

import (
	"context"
	"fmt"

	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/state"
)

// Channels returns the runtime.RemoteChannels of records of type T encoded
// with codec: what runtime.TypeOfRemote needs for an edge that may cross
// processes. The runtime.DataPlane it is given must be an *Endpoint.
func Channels[T any](codec state.Codec[T]) runtime.RemoteChannels[T] { return remote[T]{codec} }

type remote[T any] struct{ codec state.Codec[T] }

func endpointOf(dp runtime.DataPlane) (*Endpoint, error) {
	ep, ok := dp.(*Endpoint)
	if !ok || ep == nil {
		return nil, fmt.Errorf("the data plane is %T, not a network endpoint", dp)
	}
	return ep, nil
}

func (r remote[T]) NewOutput(ctx context.Context, dp runtime.DataPlane, addr string, id uint64, bufSize int) (runtime.OutputChannel[T], error) {
	ep, err := endpointOf(dp)
	if err != nil {
		return nil, err
	}
	return NewOutputChannel[T](ctx, ep, addr, ChannelID(id), r.codec, bufSize)
}

func (r remote[T]) NewInput(dp runtime.DataPlane, id uint64, gate *runtime.InputGate, index, credits, bufSize int) (runtime.InputChannel[T], error) {
	ep, err := endpointOf(dp)
	if err != nil {
		return nil, err
	}
	return NewInputChannel[T](ep, ChannelID(id), r.codec, gate, index, credits, bufSize)
}
