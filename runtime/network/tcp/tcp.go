// Package tcp is the data plane's transport between processes: TCP with
// keep-alive, and TLS when configured. It implements transport.Transport
// for package runtime/network; only the cluster roles (and tests) import
// it, so that a job that runs in one process links no socket or TLS code.
//
//	t, err := tcp.Listen(tcp.Config{ListenAddr: "0.0.0.0:6121", ServerTLS: srv, ClientTLS: cli})
//	ep, err := network.NewEndpoint(t, network.Config{Name: "tm-1", Token: token})
package tcp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/weirstream/weir/runtime/network/transport"
)

// Config configures a Transport. The zero value listens on a free loopback
// port without TLS.
type Config struct {
	// ListenAddr is the address to accept connections on; default
	// "127.0.0.1:0" (loopback, a free port). Listen on another interface
	// only together with ServerTLS, or on a trusted network.
	ListenAddr string
	// ServerTLS, when set, makes the transport accept TLS connections
	// only.
	ServerTLS *tls.Config
	// ClientTLS, when set, makes the transport dial TLS connections. An
	// empty ServerName is taken from the dialed address.
	ClientTLS *tls.Config
}

// keepAlive makes the kernel notice a peer that vanished without closing
// (power loss, partition) within about 30 s of silence: an idle
// connection is otherwise never read from or written to.
var keepAlive = net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 3}

// Transport is a TCP listener and dialer. It is safe for concurrent use.
type Transport struct {
	cfg Config
	ln  net.Listener
}

var _ transport.Transport = (*Transport)(nil)

// Listen listens on cfg.ListenAddr.
func Listen(cfg Config) (*Transport, error) {
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = "127.0.0.1:0"
	}
	lc := net.ListenConfig{KeepAliveConfig: keepAlive}
	ln, err := lc.Listen(context.Background(), "tcp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen for the data plane on %s: %w", cfg.ListenAddr, err)
	}
	return &Transport{cfg: cfg, ln: ln}, nil
}

// Addr is the address the transport accepts connections on.
func (t *Transport) Addr() string { return t.ln.Addr().String() }

// Accept implements transport.Transport. With ServerTLS the TLS handshake
// runs in the connection's Handshake.
func (t *Transport) Accept() (transport.Conn, error) {
	raw, err := t.ln.Accept()
	if err != nil {
		if errors.Is(err, net.ErrClosed) {
			return nil, fmt.Errorf("cannot accept on %s: %w", t.Addr(), transport.ErrClosed)
		}
		return nil, fmt.Errorf("cannot accept on %s: %w", t.Addr(), err)
	}
	c := &conn{raw: raw, nc: raw}
	if t.cfg.ServerTLS != nil {
		c.tls = tls.Server(raw, t.cfg.ServerTLS)
		c.nc = c.tls
	}
	return c, nil
}

// Dial implements transport.Transport. With ClientTLS the TLS handshake
// runs in the connection's Handshake.
func (t *Transport) Dial(ctx context.Context, addr string) (transport.Conn, error) {
	dialer := net.Dialer{KeepAliveConfig: keepAlive}
	raw, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &conn{raw: raw, nc: raw}
	if t.cfg.ClientTLS != nil {
		cfg := t.cfg.ClientTLS.Clone()
		if cfg.ServerName == "" {
			if host, _, err := net.SplitHostPort(addr); err == nil {
				cfg.ServerName = host
			}
		}
		c.tls = tls.Client(raw, cfg)
		c.nc = c.tls
	}
	return c, nil
}

// Close stops accepting. Connections already returned stay open.
func (t *Transport) Close() error {
	err := t.ln.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// conn is one TCP connection, or TLS over one.
type conn struct {
	raw net.Conn  // the TCP connection: closing it aborts everything
	tls *tls.Conn // TLS over raw, or nil
	nc  net.Conn  // tls, or raw
}

func (c *conn) Read(p []byte) (int, error)  { return c.nc.Read(p) }
func (c *conn) Write(p []byte) (int, error) { return c.nc.Write(p) }

func (c *conn) Handshake(ctx context.Context) error {
	if c.tls == nil {
		return nil
	}
	if err := c.tls.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("TLS handshake failed: %w", err)
	}
	return nil
}

func (c *conn) SetDeadline(t time.Time) error      { return c.raw.SetDeadline(t) }
func (c *conn) SetWriteDeadline(t time.Time) error { return c.raw.SetWriteDeadline(t) }

// CloseWrite half-closes the TCP connection; with TLS it sends TLS's
// close_notify alert, which the peer reads as the end of the stream.
func (c *conn) CloseWrite() error {
	if c.tls != nil {
		return c.tls.CloseWrite()
	}
	if cw, ok := c.raw.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("the connection cannot be half-closed")
}

// Close closes the TCP connection without TLS's closing alert, which could
// block on a peer that stopped reading.
func (c *conn) Close() error { return c.raw.Close() }

func (c *conn) RemoteAddr() string { return c.raw.RemoteAddr().String() }
