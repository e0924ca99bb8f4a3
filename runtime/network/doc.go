// Package network is weir's data plane between processes: channels that
// carry record batches and in-band events from a subtask in one process to
// a subtask in another, as frames over the connections of a
// transport.Transport. OutputChannel implements runtime.OutputChannel and
// InputChannel implements runtime.InputChannel, with the credit-based flow
// control of runtime.LocalChannel, so a task cannot tell a remote channel
// from a local one.
//
// The package holds the protocol (handshake, frames, credits, the
// multiplexing of channels over connections) and no socket or TLS code:
// package runtime/network/tcp is the transport the cluster roles use. So
// the API package, which instantiates the typed channels of every edge
// (Channels), links no network stack into a job that runs in one process.
//
// # Wiring
//
// Every process runs one Endpoint over its transport, configured with the
// job's shared token (TLS, if the network is not trusted, is the
// transport's). Both processes derive the same ChannelID for a channel
// (NewChannelID: attempt, edge, sender subtask, receiver subtask). The
// receiving process registers the channel with its task's gate; the
// sending process opens it towards the receiver's address:
//
//	t, err := tcp.Listen(tcp.Config{ListenAddr: addr})
//	ep, err := network.NewEndpoint(t, network.Config{Name: "tm-1", Token: token})
//	// receiving process
//	in, err := network.NewInputChannel(ep, id, state.CodecFor[int64](), gate, index, credits, bufSize)
//	// sending process
//	out, err := network.NewOutputChannel(ctx, ep, receiverAddr, id, state.CodecFor[int64](), bufSize)
//
// Either may come first. out then goes into a runtime.RecordWriter like a
// LocalChannel, and in into the task's list of input channels. A channel
// that fails (lost connection, sender gone before its end of partition,
// bad data) is reported once through Config.OnError, so that the job fails
// over instead of waiting; Send on a failed channel returns the error.
//
// # Connections and flow control
//
// An Endpoint dials one connection to each process it sends to and
// multiplexes all its channels to that process over it; the receiving
// process accepts it. The dialing end writes records, events, open and close
// frames; the accepting end writes credit and close frames. A writer
// goroutine per connection coalesces the frames of all channels into large
// writes; a reader goroutine decodes each record batch straight into the
// receiving channel's queue.
//
// The receiver grants each channel its number of credits (one per record
// batch it will hold) when both ends are there, and one more each time its
// task recycles a batch. A record batch takes one credit; Send blocks while
// there is none. Events need none. So the reader never waits for a full
// channel, and a slow or blocked channel holds back only its own sender,
// never the other channels of the connection.
//
// Checkpoint alignment needs nothing from this package: the barrier
// handler blocks a channel at the receiver, the gate stops reading it, its
// credit runs out and its sender blocks (as in Flink). Frames of one
// channel are never reordered, so a barrier never overtakes the records
// sent before it, nor they it.
//
// # Handshake (protocol version 2)
//
// All integers are big-endian. The dialing end opens with:
//
//	offset  size  field
//	0       4     magic "WEIR"
//	4       2     protocol version (2; 1 had no watermark and status events)
//	6       2     token length t (at most 4096)
//	8       t     token
//	8+t     2     name length n (at most 4096)
//	10+t    n     name of the dialing process (for logs)
//
// The accepting end compares the token in constant time and answers:
//
//	offset  size  field
//	0       4     magic "WEIR"
//	4       2     protocol version
//	6       1     status: 0 accepted, 1 wrong token, 2 unsupported version
//	7       4     largest frame payload it reads, in bytes
//	11      2     name length n
//	13      n     name of the accepting process
//
// and closes the connection unless the status is 0 (a refusal is logged).
// The transport's own handshake (TLS) comes first: this one runs inside
// the TLS session.
//
// # Frames
//
// Then both directions carry frames:
//
//	offset  size  field
//	0       4     length L of the rest of the frame; 9 <= L <= 9 + payload limit
//	4       1     type
//	5       8     channel id
//	13      L-9   payload
//
// Frame types and payloads:
//
//	type  name     direction          payload
//	1     records  sender -> receiver  record count c (4), then c times:
//	                                   uvarint length l, l bytes of state.Codec encoding
//	2     event    sender -> receiver  22 bytes: kind (1: 1 barrier, 2 cancellation
//	                                   marker, 3 end of partition, 4 watermark,
//	                                   5 status), then 8 bytes: the checkpoint id
//	                                   (1-3), the watermark (4, two's complement),
//	                                   1 idle or 0 active (5); then for a barrier
//	                                   the trigger time's Unix seconds (8),
//	                                   nanoseconds (4; -1 with seconds 0 is the
//	                                   zero time) and checkpoint kind (1), unused
//	                                   otherwise
//
// In a job with event time, records travel as runtime.Stamped: the
// record's timestamp (zig-zag varint) before its Codec encoding.
//
//	3     open     sender -> receiver  the record type, in Go syntax (at most 1024 bytes)
//	4     credit   receiver -> sender  more credits (4), 1 to 2^20
//	5     close    either way          reason, UTF-8 text (at most 1024 bytes)
//
// A channel's life: the sender sends open (and may already send events);
// once the receiver has registered the channel it answers with credit
// (the initial grant); records follow as credit allows; end of partition
// is the last event; either end may send close. A receiver refuses an open
// of a channel it already has open, or whose record type differs, with a
// close. Bad records of one channel fail that channel only (the receiver
// closes it); anything else malformed fails the connection and with it all
// its channels, with an error naming the peer. Frames for channels closed
// meanwhile are dropped.
package network
