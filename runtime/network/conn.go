package network

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/network/transport"
)

// inputEnd is the receiving end of a channel as a connection sees it.
type inputEnd interface {
	channelID() ChannelID
	initialCredits() int
	// bind attaches the channel to the connection of its sender. err
	// refuses the sender; fatal says the channel itself fails too.
	bind(c *conn, typeName string) (fatal bool, err error)
	// deliverRecords decodes a records frame into the channel; an error
	// fails the channel, not the connection.
	deliverRecords(payload []byte) error
	deliverEvent(e runtime.Event)
	remoteClosed(reason string)
	fail(err error)
}

// outputEnd is the sending end of a channel as a connection sees it.
type outputEnd interface {
	grant(n uint32)
	fail(err error)
}

// conn is one transport connection between two endpoints. The dialing end sends
// records and events of its output channels; the accepting end sends
// credit. One goroutine reads, one writes; senders append whole frames to
// an output buffer that the writer swaps out and writes in one call, so
// frames of many channels share system calls.
type conn struct {
	ep       *Endpoint
	c        transport.Conn
	peer     string // for errors and logs
	inbound  bool   // accepted: carries input channels
	maxSend  int    // largest payload the peer reads (outbound)
	wake     chan struct{}
	done     chan struct{} // closed by fail
	spare    []byte        // the writer's second buffer
	failOnce sync.Once

	mu struct {
		sync.Mutex
		out      []byte // frames waiting for the writer
		err      error  // set once, by fail
		draining bool   // Close: write what is queued, then half-close
		outputs  map[ChannelID]outputEnd
		inputs   map[ChannelID]inputEnd
	}
}

func newConn(e *Endpoint, tc transport.Conn, peer string, inbound bool, maxSend int) *conn {
	c := &conn{ep: e, c: tc, peer: peer, inbound: inbound, maxSend: maxSend,
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	c.mu.outputs = make(map[ChannelID]outputEnd)
	c.mu.inputs = make(map[ChannelID]inputEnd)
	return c
}

// start runs the reader and the writer. The caller holds e.mu and has
// checked that the endpoint is open.
func (c *conn) start() {
	c.ep.wg.Add(2)
	go c.readLoop()
	go c.writeLoop()
}

func (c *conn) alive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.err == nil && !c.mu.draining
}

// enqueue appends a whole frame for the writer. It never blocks on the
// network.
func (c *conn) enqueue(frame []byte) error {
	c.mu.Lock()
	if err := c.unusableLocked(); err != nil {
		c.mu.Unlock()
		return err
	}
	wasEmpty := len(c.mu.out) == 0
	c.mu.out = append(c.mu.out, frame...)
	c.mu.Unlock()
	if wasEmpty {
		c.signal()
	}
	return nil
}

func (c *conn) enqueueCredit(id ChannelID, n uint32) {
	c.mu.Lock()
	if c.unusableLocked() != nil {
		c.mu.Unlock()
		return
	}
	wasEmpty := len(c.mu.out) == 0
	c.mu.out = appendCredit(c.mu.out, id, n)
	c.mu.Unlock()
	if wasEmpty {
		c.signal()
	}
}

func (c *conn) enqueueClose(id ChannelID, reason string) {
	c.mu.Lock()
	if c.unusableLocked() != nil {
		c.mu.Unlock()
		return
	}
	wasEmpty := len(c.mu.out) == 0
	c.mu.out = appendText(c.mu.out, frameClose, id, reason, maxReason)
	c.mu.Unlock()
	if wasEmpty {
		c.signal()
	}
}

func (c *conn) unusableLocked() error {
	if c.mu.err != nil {
		return c.mu.err
	}
	if c.mu.draining {
		return fmt.Errorf("connection to %s: %w", c.peer, ErrClosed)
	}
	return nil
}

func (c *conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *conn) addOutput(id ChannelID, o outputEnd) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.unusableLocked(); err != nil {
		return err
	}
	if _, dup := c.mu.outputs[id]; dup {
		return fmt.Errorf("output channel %s to %s is already open", id, c.peer)
	}
	c.mu.outputs[id] = o
	return nil
}

func (c *conn) removeOutput(id ChannelID) outputEnd {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := c.mu.outputs[id]
	delete(c.mu.outputs, id)
	return o
}

func (c *conn) output(id ChannelID) outputEnd {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.outputs[id]
}

func (c *conn) addInput(in inputEnd) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.err != nil {
		return c.mu.err
	}
	c.mu.inputs[in.channelID()] = in
	return nil
}

// removeInput detaches in (if it is still attached) and reports whether it
// was.
func (c *conn) removeInput(in inputEnd) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.inputs[in.channelID()] != in {
		return false
	}
	delete(c.mu.inputs, in.channelID())
	return true
}

func (c *conn) input(id ChannelID) inputEnd {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.inputs[id]
}

// drain makes the writer send what is queued and then half-close; the
// connection ends when the peer closes its side in turn.
func (c *conn) drain() {
	c.mu.Lock()
	c.mu.draining = true
	c.mu.Unlock()
	c.signal()
}

// fail ends the connection: the socket closes, and every channel on it
// fails with err. Only the first call counts.
func (c *conn) fail(err error) {
	c.failOnce.Do(func() {
		c.mu.Lock()
		c.mu.err = err
		draining := c.mu.draining
		outs, ins := c.mu.outputs, c.mu.inputs
		c.mu.outputs, c.mu.inputs = nil, nil
		c.mu.out = nil
		c.mu.Unlock()
		close(c.done)
		c.c.Close()
		c.ep.forget(c)
		for _, o := range outs {
			o.fail(err)
		}
		for _, in := range ins {
			in.fail(err)
		}
		switch {
		case draining || errors.Is(err, ErrClosed):
			c.ep.log.Debug("data plane connection closed", "peer", c.peer)
		case errors.Is(err, io.EOF):
			c.ep.log.Info("data plane connection closed by peer", "peer", c.peer, "channels", len(outs)+len(ins))
		default:
			c.ep.log.Warn("data plane connection failed", "peer", c.peer, "channels", len(outs)+len(ins), "err", err)
		}
	})
}

func (c *conn) writeLoop() {
	defer c.ep.wg.Done()
	for {
		select {
		case <-c.wake:
		case <-c.done:
			return
		}
		c.mu.Lock()
		buf := c.mu.out
		c.mu.out = c.spare[:0]
		draining := c.mu.draining && c.mu.err == nil
		c.mu.Unlock()
		if len(buf) > 0 {
			err := c.c.SetWriteDeadline(time.Now().Add(c.ep.cfg.WriteTimeout))
			if err == nil {
				_, err = c.c.Write(buf)
			}
			if err != nil {
				c.fail(fmt.Errorf("%w: cannot write to %s: %w", ErrConnectionLost, c.peer, err))
				return
			}
		}
		if cap(buf) <= 4<<20 {
			c.spare = buf[:0] // else let a burst's memory go
		}
		if draining {
			// Everything queued before draining began is written: tell
			// the peer there is no more (it closes in turn; the reader
			// sees that).
			if err := c.c.CloseWrite(); err == nil {
				return
			}
			c.fail(fmt.Errorf("connection to %s: %w", c.peer, ErrClosed))
			return
		}
	}
}

func (c *conn) readLoop() {
	defer c.ep.wg.Done()
	fr := newFrameReader(c.c, c.ep.cfg.MaxFrameSize)
	for {
		t, id, payload, err := fr.next()
		if err != nil {
			c.fail(c.readError(err))
			return
		}
		if err := c.dispatch(t, id, payload); err != nil {
			c.fail(err)
			return
		}
	}
}

func (c *conn) readError(err error) error {
	c.mu.Lock()
	prior, draining := c.mu.err, c.mu.draining
	c.mu.Unlock()
	switch {
	case prior != nil:
		return prior
	case draining:
		return fmt.Errorf("connection to %s: %w", c.peer, ErrClosed)
	case errors.Is(err, ErrProtocol):
		return fmt.Errorf("bad data from %s: %w", c.peer, err)
	case err == io.EOF:
		return fmt.Errorf("%w: %s closed the connection: %w", ErrConnectionLost, c.peer, err)
	}
	return fmt.Errorf("%w: cannot read from %s: %w", ErrConnectionLost, c.peer, err)
}

// dispatch hands one frame to its channel. It never blocks: credit bounds
// what a channel holds. Frames for channels closed meanwhile are dropped.
// An error fails the connection.
func (c *conn) dispatch(t frameType, id ChannelID, payload []byte) error {
	if c.inbound {
		switch t {
		case frameRecords:
			if in := c.input(id); in != nil {
				if err := in.deliverRecords(payload); err != nil {
					c.rejectInput(in, fmt.Errorf("bad data from %s: %w", c.peer, err))
				}
			}
			return nil
		case frameEvent:
			e, err := decodeEvent(payload)
			if err != nil {
				return fmt.Errorf("%w: bad event on channel %s from %s: %v", ErrProtocol, id, c.peer, err)
			}
			if in := c.input(id); in != nil {
				in.deliverEvent(e)
			}
			return nil
		case frameOpen:
			if len(payload) > maxTypeLen {
				return fmt.Errorf("%w: open frame of %d bytes on channel %s from %s", ErrProtocol, len(payload), id, c.peer)
			}
			c.ep.open(c, id, string(payload))
			return nil
		case frameClose:
			in := c.input(id)
			switch {
			case in == nil:
				c.ep.cancelOpen(c, id) // closed before its receiver registered
			case c.removeInput(in):
				in.remoteClosed(string(payload))
			}
			return nil
		}
	} else {
		switch t {
		case frameCredit:
			n, err := decodeCredit(payload)
			if err != nil {
				return fmt.Errorf("%w: channel %s from %s: %v", ErrProtocol, id, c.peer, err)
			}
			if o := c.output(id); o != nil {
				o.grant(n)
			}
			return nil
		case frameClose:
			if o := c.removeOutput(id); o != nil {
				o.fail(fmt.Errorf("%w: %s: %q", ErrChannelClosed, c.peer, payload))
			}
			return nil
		}
	}
	return fmt.Errorf("%w: unexpected %s frame on channel %s from %s", ErrProtocol, t, id, c.peer)
}

// rejectInput fails one channel whose sender sent bad data, and tells the
// sender; the other channels of the connection go on.
func (c *conn) rejectInput(in inputEnd, err error) {
	if c.removeInput(in) {
		c.enqueueClose(in.channelID(), "the receiver refused the channel's data: "+err.Error())
	}
	in.fail(err)
}
