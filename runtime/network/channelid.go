package network

import (
	"fmt"

	"github.com/weirstream/weir/runtime"
)

// ChannelID names one logical channel, from one sending subtask to one
// receiving subtask of one edge of one job attempt. Every channel that an
// Endpoint sends or receives at the same time needs its own id; the id is
// what the frames of many channels sharing a connection carry.
//
// NewChannelID packs the four parts in 16 bits each, so an id is readable in
// logs (String) and derived the same way in both processes without any
// exchange.
type ChannelID uint64

// NewChannelID derives the id of the channel of job attempt attempt on edge
// edge from sender subtask sender to receiver subtask receiver. Attempts wrap
// at 2^16: ids only need to differ among channels alive at the same time.
// It is runtime.ChannelID, the id the runtime deploys channels with.
func NewChannelID(attempt, edge, sender, receiver uint16) ChannelID {
	return ChannelID(runtime.ChannelID(int(attempt), int(edge), int(sender), int(receiver)))
}

// Attempt is the job attempt the channel belongs to.
func (id ChannelID) Attempt() uint16 { return uint16(id >> 48) }

// Edge is the edge of the job graph the channel belongs to.
func (id ChannelID) Edge() uint16 { return uint16(id >> 32) }

// Sender is the sending subtask.
func (id ChannelID) Sender() uint16 { return uint16(id >> 16) }

// Receiver is the receiving subtask.
func (id ChannelID) Receiver() uint16 { return uint16(id) }

// String renders the id as attempt/edge/sender->receiver.
func (id ChannelID) String() string {
	return fmt.Sprintf("%d/%d/%d->%d", id.Attempt(), id.Edge(), id.Sender(), id.Receiver())
}
