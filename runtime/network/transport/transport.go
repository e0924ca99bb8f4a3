// Package transport is the contract between weir's data plane and what
// carries its bytes between processes. Package runtime/network (channels,
// frames, credits, the handshake) runs over a Transport; package
// runtime/network/tcp implements one over TCP, optionally with TLS. This
// package imports no socket or TLS code, so a program that never leaves its
// process links none either.
package transport

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrClosed is returned (wrapped) by Accept and Dial once the transport is
// closed.
var ErrClosed = errors.New("transport closed")

// Transport connects this process with the others. It is safe for
// concurrent use.
type Transport interface {
	// Addr is the address the other processes dial to reach this one.
	Addr() string
	// Dial opens a connection to the process at addr. The connection's
	// Handshake has not run yet. ctx bounds dialing only.
	Dial(ctx context.Context, addr string) (Conn, error)
	// Accept waits for the next connection another process dialed and
	// returns it before its Handshake, so that one slow peer does not hold
	// up the others. After Close it returns an error wrapping ErrClosed;
	// any other error is transient (out of file descriptors, for example):
	// the caller retries after a pause.
	Accept() (Conn, error)
	// Close stops accepting and unblocks Accept. Connections already
	// returned stay open; their owner closes them. Close is idempotent.
	Close() error
}

// Conn is one connection between two processes: a reliable byte stream in
// each direction that keeps the order of the bytes. One goroutine may read
// while another writes; Close and the deadline setters may be called from
// any goroutine.
type Conn interface {
	io.Reader
	// Write writes all of p or returns an error; after an error the
	// connection is unusable.
	io.Writer
	// Handshake runs the transport's own handshake (TLS), if any. The
	// owner calls it once, before the first Read or Write; ctx and the
	// deadline bound it.
	Handshake(ctx context.Context) error
	// SetDeadline bounds every pending and future Read and Write; the zero
	// time removes the bound. A deadline in the past aborts them.
	SetDeadline(t time.Time) error
	// SetWriteDeadline bounds pending and future Writes.
	SetWriteDeadline(t time.Time) error
	// CloseWrite tells the peer that nothing more comes: its Read returns
	// io.EOF once it has read everything written before. Reading goes on.
	CloseWrite() error
	// Close closes the connection at once, without sending what a Write
	// has not written yet; pending Reads and Writes return errors. It does
	// not block.
	Close() error
	// RemoteAddr is the peer's address, for logs and errors.
	RemoteAddr() string
}
