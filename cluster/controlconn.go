package cluster

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// The job manager's control port accepts anyone who can reach it. Before a
// connection has registered a task manager (right token, then a
// registration), it gets RegistrationTimeout: then it is closed. Bytes that
// are not the control protocol (HTTP/2, or TLS when the control plane uses
// TLS) close it at once. Both are logged at Warn with the peer's address,
// rate-limited, as are refused tokens.

// http2Preface is what every HTTP/2 client sends first (RFC 9113 3.4).
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// tlsRecordStart is the start of every TLS client's first record: a
// handshake record (22) of TLS major version 3.
var tlsRecordStart = []byte{22, 3}

var errProtocolGarbage = errors.New("weir: not the control protocol")

// ctlListener is the job manager's control listener; see above.
type ctlListener struct {
	net.Listener
	bound time.Duration
	want  []byte // the first bytes every client sends
	tls   bool
	log   *slog.Logger
	warn  *warnLimit

	mu struct {
		sync.Mutex
		pending map[string]*ctlConn // by remote address: accepted, not registered, open
	}
}

func newCtlListener(l net.Listener, bound time.Duration, tls bool, log *slog.Logger, warnEvery time.Duration) *ctlListener {
	cl := &ctlListener{Listener: l, bound: bound, want: []byte(http2Preface), tls: tls, log: log, warn: newWarnLimit(warnEvery)}
	if tls {
		cl.want = tlsRecordStart
	}
	cl.mu.pending = map[string]*ctlConn{}
	return cl
}

func (l *ctlListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := &ctlConn{Conn: nc, l: l, peer: nc.RemoteAddr().String()}
	l.mu.Lock()
	l.mu.pending[c.peer] = c
	l.mu.Unlock()
	c.timer = time.AfterFunc(l.bound, c.expire)
	return c, nil
}

// registered exempts the connection from peer from the bound: a task
// manager registered on it.
func (l *ctlListener) registered(peer string) {
	l.mu.Lock()
	c := l.mu.pending[peer]
	delete(l.mu.pending, peer)
	l.mu.Unlock()
	if c != nil {
		c.timer.Stop()
	}
}

// take removes c from the pending connections; it reports whether c was
// there (so that of the bound, the registration and the close, one acts).
func (l *ctlListener) take(c *ctlConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.pending[c.peer] != c {
		return false
	}
	delete(l.mu.pending, c.peer)
	return true
}

// ctlConn is an accepted control connection. Read is called by one
// goroutine at a time (gRPC's TLS handshake, then its reader).
type ctlConn struct {
	net.Conn
	l     *ctlListener
	peer  string
	timer *time.Timer
	read  atomic.Int64 // bytes read so far
	// reported is set once the refusal of the connection was logged.
	reported atomic.Bool
	// first holds the first bytes read, up to len(l.want); only Read
	// touches it.
	first []byte
}

func (c *ctlConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	if need := len(c.l.want) - len(c.first); need > 0 && n > 0 {
		c.first = append(c.first, p[:min(n, need)]...)
		if !bytes.HasPrefix(c.l.want, c.first) {
			c.garbage()
			return 0, errProtocolGarbage
		}
	}
	return n, err
}

func (c *ctlConn) Close() error {
	if c.l.take(c) {
		c.timer.Stop()
	}
	return c.Conn.Close()
}

// expire closes the connection if it has not registered in time.
func (c *ctlConn) expire() {
	if !c.l.take(c) {
		return
	}
	c.reported.Store(true)
	c.l.warn.log(c.l.log, "bound", "closed a control connection that did not register a task manager in time",
		"peer", c.peer, "bound", c.l.bound, "bytes_received", c.read.Load())
	c.Conn.Close()
}

// garbage logs and closes a connection whose first bytes are not the
// control protocol (unless the bound closed it just now).
func (c *ctlConn) garbage() {
	defer c.Conn.Close()
	if !c.l.take(c) {
		return
	}
	c.timer.Stop()
	c.reported.Store(true)
	args := []any{"peer", c.peer, "first_bytes", string(c.first)}
	switch {
	case !c.l.tls && bytes.HasPrefix(c.first, tlsRecordStart):
		args = append(args, "hint", "a TLS client, but this job manager's control plane is not TLS")
	case c.l.tls && bytes.HasPrefix([]byte(http2Preface), c.first):
		args = append(args, "hint", "a client without TLS, but this job manager's control plane requires TLS")
	}
	c.l.warn.log(c.l.log, "garbage", "refused a control connection: it does not speak the control protocol", args...)
}

// recvRegistration receives the first message of a control stream, which
// must come within the RegistrationTimeout. (A connection that registers
// nothing is closed by the listener; this bounds a further stream on a
// connection that registered before.)
func (jm *JobManager) recvRegistration(stream grpc.ServerStream) (ctlMsg, error) {
	type result struct {
		m   ctlMsg
		err error
	}
	got := make(chan result, 1)
	go func() {
		var r result
		r.err = stream.RecvMsg(&r.m)
		got <- r // the stream ends when connect returns, so RecvMsg does
	}()
	t := time.NewTimer(jm.cfg.RegistrationTimeout)
	defer t.Stop()
	select {
	case r := <-got:
		return r.m, r.err
	case <-t.C:
		jm.ctlLis.warn.log(jm.log, "stream-bound", "closed a control stream that did not register a task manager in time",
			"peer", peerAddr(stream.Context()), "bound", jm.cfg.RegistrationTimeout)
		return ctlMsg{}, status.Errorf(codes.DeadlineExceeded, "weir: no registration within %s", jm.cfg.RegistrationTimeout)
	}
}

// ctlCreds are the control plane's TLS credentials: a failed handshake is
// logged with the peer's address (gRPC itself only closes the connection),
// unless the peer hung up before saying anything (a TCP probe).
type ctlCreds struct {
	credentials.TransportCredentials
}

func (c ctlCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if cc, ok := raw.(*ctlConn); ok && err != nil && err != io.EOF && !cc.reported.Swap(true) {
		cc.l.warn.log(cc.l.log, "tls", "refused a control connection: TLS handshake failed", "peer", cc.peer, "err", err)
	}
	return conn, info, err
}

func (c ctlCreds) Clone() credentials.TransportCredentials {
	return ctlCreds{c.TransportCredentials.Clone()}
}

// warnLimit passes at most one warning of each kind per interval and
// counts the ones it holds back; the next one that passes says how many.
// A peer that connects in a loop cannot flood the log.
type warnLimit struct {
	every time.Duration
	mu    struct {
		sync.Mutex
		next map[string]time.Time // by kind: when the next warning may pass
		held map[string]int       // by kind: warnings held back since the last one
	}
}

func newWarnLimit(every time.Duration) *warnLimit {
	w := &warnLimit{every: every}
	w.mu.next, w.mu.held = map[string]time.Time{}, map[string]int{}
	return w
}

// allow reports whether a warning of kind may pass at now, and how many
// were held back before it.
func (w *warnLimit) allow(kind string, now time.Time) (ok bool, held int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if now.Before(w.mu.next[kind]) {
		w.mu.held[kind]++
		return false, 0
	}
	w.mu.next[kind] = now.Add(w.every)
	held = w.mu.held[kind]
	delete(w.mu.held, kind)
	return true, held
}

func (w *warnLimit) log(log *slog.Logger, kind, msg string, args ...any) {
	ok, held := w.allow(kind, time.Now())
	if !ok {
		return
	}
	if held > 0 {
		args = append(args, "similar_warnings_suppressed", held)
	}
	log.Warn(msg, args...)
}
