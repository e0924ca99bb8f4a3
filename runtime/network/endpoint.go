package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/weirstream/weir/internal/secret"
	"github.com/weirstream/weir/runtime/network/transport"
)

// Config configures an Endpoint. Token is required; everything else has a
// default.
type Config struct {
	// Name names this process in the peers' logs and errors (for example
	// "taskmanager-2").
	Name string
	// Token is the shared secret every process of the job presents in the
	// handshake. A connection offering another token is refused (and
	// logged).
	Token string
	// Logger receives refused connections and connection failures; default
	// slog.Default().
	Logger *slog.Logger
	// OnError is told, at most once per input channel, that the channel
	// failed: its connection dropped, its sender closed it before the end
	// of partition, or the sender sent bad data. The receiving task must
	// fail so that the job fails over. It is called from the endpoint's
	// goroutines and must not block. Default: log the error.
	OnError func(id ChannelID, err error)
	// MaxFrameSize is the largest frame payload this endpoint reads
	// (default 16 MiB); larger frames fail the connection. Senders learn
	// the limit in the handshake, and a record batch that does not fit is
	// an error of Send.
	MaxFrameSize int
	// HandshakeTimeout bounds dialing plus handshakes (the transport's
	// and the data plane's); default 10 s.
	HandshakeTimeout time.Duration
	// WriteTimeout fails a connection on which one write does not finish
	// in time (a peer that stopped reading); default 1 min.
	WriteTimeout time.Duration
	// CloseTimeout bounds how long Close waits for queued frames to reach
	// the peers; default 5 s.
	CloseTimeout time.Duration
}

// DefaultMaxFrameSize is the default of Config.MaxFrameSize.
const DefaultMaxFrameSize = 16 << 20

var (
	// ErrClosed is returned on the channels of an endpoint that was closed.
	ErrClosed = errors.New("data plane endpoint closed")
	// ErrConnectionLost wraps the error of a connection that broke.
	ErrConnectionLost = errors.New("data plane connection lost")
	// ErrChannelClosed means the other end closed the channel.
	ErrChannelClosed = errors.New("channel closed by the peer")
)

// Endpoint is one process's end of the data plane. Over its transport it
// accepts connections from processes that send to it, dials one connection
// to each process it sends to, and multiplexes the logical channels of both
// directions over those connections: output channels (NewOutputChannel)
// and input channels (NewInputChannel).
//
// An Endpoint is safe for concurrent use. Close it to release its
// transport, connections and goroutines.
type Endpoint struct {
	cfg     Config
	log     *slog.Logger
	t       transport.Transport
	closing chan struct{} // closed by Close
	wg      sync.WaitGroup

	mu struct {
		sync.Mutex
		closed      bool
		conns       map[*conn]struct{}          // handshaken connections, both directions
		handshaking map[transport.Conn]struct{} // accepted, handshake running
		dials       map[string]*dial            // outbound connection per address
		inputs      map[ChannelID]inputEnd      // registered input channels
		pending     map[ChannelID]pendingOpen
	}
}

// dial is one outbound connection, or the attempt to make it.
type dial struct {
	ready chan struct{} // closed when c or err is set
	c     *conn
	err   error
}

// pendingOpen is an open frame for a channel not registered yet: a sender
// may start before its receiver.
type pendingOpen struct {
	c        *conn
	typeName string
}

// NewEndpoint returns the endpoint that accepts and dials connections
// through t. The endpoint owns t from then on, also when NewEndpoint fails:
// Close closes it.
func NewEndpoint(t transport.Transport, cfg Config) (*Endpoint, error) {
	if cfg.Token == "" {
		t.Close()
		return nil, errors.New("cannot start data plane endpoint: a token is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxFrameSize <= 0 {
		cfg.MaxFrameSize = DefaultMaxFrameSize
	}
	cfg.MaxFrameSize = max(cfg.MaxFrameSize, 4<<10)
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = time.Minute
	}
	if cfg.CloseTimeout <= 0 {
		cfg.CloseTimeout = 5 * time.Second
	}
	e := &Endpoint{cfg: cfg, log: cfg.Logger.With("component", "dataplane", "endpoint", cfg.Name), t: t, closing: make(chan struct{})}
	e.mu.conns = make(map[*conn]struct{})
	e.mu.handshaking = make(map[transport.Conn]struct{})
	e.mu.dials = make(map[string]*dial)
	e.mu.inputs = make(map[ChannelID]inputEnd)
	e.mu.pending = make(map[ChannelID]pendingOpen)
	e.wg.Add(1)
	go e.acceptLoop()
	return e, nil
}

// Addr is the address the endpoint accepts connections on (its
// transport's); senders pass it to NewOutputChannel.
func (e *Endpoint) Addr() string { return e.t.Addr() }

// Close closes the transport (no more connections are accepted), gives queued frames up to CloseTimeout to reach
// the peers, closes every connection (their channels fail with ErrClosed)
// and waits for the endpoint's goroutines to end.
func (e *Endpoint) Close() error {
	e.mu.Lock()
	if e.mu.closed {
		e.mu.Unlock()
		e.wg.Wait()
		return nil
	}
	e.mu.closed = true
	close(e.closing)
	conns := make([]*conn, 0, len(e.mu.conns))
	for c := range e.mu.conns {
		conns = append(conns, c)
	}
	for raw := range e.mu.handshaking {
		raw.Close()
	}
	inputs := make([]inputEnd, 0, len(e.mu.inputs))
	for _, in := range e.mu.inputs {
		inputs = append(inputs, in)
	}
	e.mu.Unlock()

	err := e.t.Close()
	for _, c := range conns {
		c.drain()
	}
	timer := time.NewTimer(e.cfg.CloseTimeout)
	defer timer.Stop()
wait:
	for _, c := range conns {
		select {
		case <-c.done:
		case <-timer.C:
			break wait
		}
	}
	closed := fmt.Errorf("endpoint %q: %w", e.cfg.Name, ErrClosed)
	for _, c := range conns {
		c.fail(closed)
	}
	for _, in := range inputs {
		in.fail(closed) // channels never opened by a sender
	}
	e.wg.Wait()
	return err
}

func (e *Endpoint) acceptLoop() {
	defer e.wg.Done()
	var delay time.Duration
	for {
		raw, err := e.t.Accept()
		if err != nil {
			if errors.Is(err, transport.ErrClosed) {
				return
			}
			// Out of file descriptors, for example: back off and retry.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			e.log.Warn("cannot accept data plane connection", "err", err, "retry_in", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-e.closing:
				t.Stop()
				return
			}
			continue
		}
		delay = 0
		e.mu.Lock()
		if e.mu.closed {
			e.mu.Unlock()
			raw.Close()
			return
		}
		e.mu.handshaking[raw] = struct{}{}
		e.wg.Add(1)
		e.mu.Unlock()
		go e.serve(raw)
	}
}

// serve runs the handshake of an accepted connection and starts it.
func (e *Endpoint) serve(raw transport.Conn) {
	defer e.wg.Done()
	c, err := e.serverHandshake(raw)
	e.mu.Lock()
	delete(e.mu.handshaking, raw)
	if err == nil && e.mu.closed {
		err = ErrClosed
	}
	if err != nil {
		e.mu.Unlock()
		raw.Close()
		return
	}
	e.mu.conns[c] = struct{}{}
	c.start()
	e.mu.Unlock()
	e.log.Debug("accepted data plane connection", "peer", c.peer)
}

func (e *Endpoint) serverHandshake(raw transport.Conn) (*conn, error) {
	remote := raw.RemoteAddr()
	deadline := time.Now().Add(e.cfg.HandshakeTimeout)
	if err := raw.SetDeadline(deadline); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	err := raw.Handshake(ctx)
	cancel()
	if err != nil {
		e.log.Warn("refused data plane connection", "remote", remote, "reason", "transport handshake failed", "err", err)
		return nil, err
	}
	h, err := readHello(raw)
	if err != nil {
		e.log.Warn("refused data plane connection", "remote", remote, "reason", "bad handshake", "err", err)
		return nil, err
	}
	status, reason := statusOK, ""
	switch {
	case h.version != Version:
		status, reason = statusBadVersion, fmt.Sprintf("protocol version %d, want %d", h.version, Version)
	case !secret.Equal(h.token, e.cfg.Token):
		status, reason = statusBadToken, "wrong token"
	}
	_, werr := raw.Write(appendWelcome(nil, welcome{version: Version, status: status, maxPayload: uint32(e.cfg.MaxFrameSize), name: e.cfg.Name}))
	if status != statusOK {
		e.log.Warn("refused data plane connection", "remote", remote, "claimed_name", h.name, "reason", reason)
		return nil, ErrRefused
	}
	if werr != nil {
		e.log.Warn("cannot complete data plane handshake", "remote", remote, "err", werr)
		return nil, werr
	}
	if err := raw.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return newConn(e, raw, peerName(h.name, remote), true, 0), nil
}

func peerName(name, addr string) string {
	if name == "" {
		return addr
	}
	return name + "@" + addr
}

// connect returns the connection to addr, dialing it unless there is a
// live one (or one being dialed).
func (e *Endpoint) connect(ctx context.Context, addr string) (*conn, error) {
	for {
		e.mu.Lock()
		if e.mu.closed {
			e.mu.Unlock()
			return nil, ErrClosed
		}
		d := e.mu.dials[addr]
		if d == nil {
			d = &dial{ready: make(chan struct{})}
			e.mu.dials[addr] = d
			e.mu.Unlock()
			return e.dialAndStart(ctx, addr, d)
		}
		e.mu.Unlock()
		select {
		case <-d.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if d.err != nil {
			return nil, d.err
		}
		if d.c.alive() {
			return d.c, nil
		}
		// Dead since: forget it (fail may not have done so yet) and dial.
		e.mu.Lock()
		if e.mu.dials[addr] == d {
			delete(e.mu.dials, addr)
		}
		e.mu.Unlock()
	}
}

func (e *Endpoint) dialAndStart(ctx context.Context, addr string, d *dial) (*conn, error) {
	c, err := e.dial(ctx, addr)
	e.mu.Lock()
	if err == nil && e.mu.closed {
		c.c.Close()
		c, err = nil, ErrClosed
	}
	if err != nil {
		delete(e.mu.dials, addr)
		d.err = err
	} else {
		d.c = c
		e.mu.conns[c] = struct{}{}
		c.start()
	}
	e.mu.Unlock()
	close(d.ready)
	return c, err
}

func (e *Endpoint) dial(ctx context.Context, addr string) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.HandshakeTimeout)
	defer cancel()
	raw, err := e.t.Dial(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to %s: %w", addr, err)
	}
	// Cancelling ctx aborts the handshake.
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	c, err := e.clientHandshake(ctx, raw, addr)
	if !stop() && err == nil {
		err = fmt.Errorf("cannot connect to %s: %w", addr, ctx.Err())
	}
	if err == nil {
		err = raw.SetDeadline(time.Time{})
	}
	if err != nil {
		raw.Close()
		return nil, err
	}
	return c, nil
}

func (e *Endpoint) clientHandshake(ctx context.Context, raw transport.Conn, addr string) (*conn, error) {
	if err := raw.Handshake(ctx); err != nil {
		return nil, fmt.Errorf("cannot connect to %s: %w", addr, err)
	}
	if _, err := raw.Write(appendHello(nil, hello{version: Version, token: e.cfg.Token, name: e.cfg.Name})); err != nil {
		return nil, fmt.Errorf("cannot connect to %s: %w", addr, err)
	}
	w, err := readWelcome(raw)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to %s: no handshake answer: %w", addr, err)
	}
	peer := peerName(w.name, addr)
	switch {
	case w.status == statusBadToken:
		return nil, fmt.Errorf("cannot connect to %s: %w: wrong token", peer, ErrRefused)
	case w.status == statusBadVersion || w.version != Version:
		return nil, fmt.Errorf("cannot connect to %s: %w: it speaks protocol version %d, this endpoint %d", peer, ErrRefused, w.version, Version)
	case w.status != statusOK:
		return nil, fmt.Errorf("cannot connect to %s: %w: status %d", peer, ErrRefused, w.status)
	case w.maxPayload < 1<<10:
		return nil, fmt.Errorf("cannot connect to %s: %w: frame limit of %d bytes", peer, ErrProtocol, w.maxPayload)
	}
	return newConn(e, raw, peer, false, int(w.maxPayload)), nil
}

// forget drops a failed connection from the endpoint.
func (e *Endpoint) forget(c *conn) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.mu.conns, c)
	for addr, d := range e.mu.dials {
		if d.c == c {
			delete(e.mu.dials, addr)
		}
	}
	for id, p := range e.mu.pending {
		if p.c == c {
			delete(e.mu.pending, id)
		}
	}
}

// register adds an input channel and binds it when its sender already
// opened it.
func (e *Endpoint) register(in inputEnd) error {
	id := in.channelID()
	e.mu.Lock()
	if e.mu.closed {
		e.mu.Unlock()
		return ErrClosed
	}
	if _, dup := e.mu.inputs[id]; dup {
		e.mu.Unlock()
		return fmt.Errorf("input channel %s is already registered", id)
	}
	e.mu.inputs[id] = in
	p, ok := e.mu.pending[id]
	delete(e.mu.pending, id)
	e.mu.Unlock()
	if ok {
		e.attach(in, p.c, p.typeName)
	}
	return nil
}

func (e *Endpoint) unregister(in inputEnd) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.mu.inputs[in.channelID()] == in {
		delete(e.mu.inputs, in.channelID())
	}
}

// open handles an open frame: the sender on c opened channel id.
func (e *Endpoint) open(c *conn, id ChannelID, typeName string) {
	e.mu.Lock()
	in := e.mu.inputs[id]
	dup := false
	if in == nil {
		if _, dup = e.mu.pending[id]; !dup {
			e.mu.pending[id] = pendingOpen{c: c, typeName: typeName}
		}
	}
	e.mu.Unlock()
	switch {
	case in != nil:
		e.attach(in, c, typeName)
	case dup:
		c.enqueueClose(id, "channel is already open")
	}
}

// cancelOpen forgets the open frame of a channel whose sender closed it
// before its receiver registered.
func (e *Endpoint) cancelOpen(c *conn, id ChannelID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p, ok := e.mu.pending[id]; ok && p.c == c {
		delete(e.mu.pending, id)
	}
}

// attach binds in to the sender's connection c and grants the initial
// credit, or refuses the sender.
func (e *Endpoint) attach(in inputEnd, c *conn, typeName string) {
	fatal, err := in.bind(c, typeName)
	if err != nil {
		c.enqueueClose(in.channelID(), err.Error())
		if fatal {
			in.fail(err)
		}
		return
	}
	if err := c.addInput(in); err != nil {
		in.fail(err)
		return
	}
	c.enqueueCredit(in.channelID(), uint32(in.initialCredits()))
}

// report tells the owner that input channel id failed.
func (e *Endpoint) report(id ChannelID, err error) {
	if e.cfg.OnError != nil {
		e.cfg.OnError(id, err)
		return
	}
	e.log.Warn("input channel failed", "channel", id.String(), "err", err)
}
