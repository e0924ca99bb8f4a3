// Package socket is a source reading lines of text from a TCP server, for
// demos and experiments: a socket cannot rewind, so it is at most once.
package socket

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/checkpoint"
)

// TextStream adds a source reading newline-separated text from a TCP
// server at addr (like Flink's socketTextStream). It is NOT replayable: a
// socket cannot rewind, so after a restore the lines read since the last
// checkpoint are lost (at-most-once). Use it for demos, not for exactly-once
// jobs. It is a non-parallel source; it ends when the server closes the
// connection.
func TextStream(env *weir.Environment, addr string) weir.Stream[string] {
	return weir.FromSource[string](env, Source{Addr: addr}, "socket "+addr)
}

// Source is the socket text source (see TextStream).
type Source struct{ Addr string }

// NonParallel implements weir.NonParallel: one connection, one subtask.
func (Source) NonParallel() {}

// CreateReader implements weir.Source.
func (s Source) CreateReader(ctx weir.SourceContext) (weir.SourceReader[string], error) {
	conn, err := net.DialTimeout("tcp", s.Addr, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to socket source %s: %w", s.Addr, err)
	}
	r := &socketReader{conn: conn, avail: make(chan struct{}, 1)}
	r.wg.Add(1)
	go r.readLoop()
	return r, nil
}

// socketReader reads lines on its own goroutine (a socket read blocks) and
// hands them to Read.
type socketReader struct {
	conn  net.Conn
	avail chan struct{}
	mu    struct {
		sync.Mutex
		lines []string
		err   error
		eof   bool
	}
	wg sync.WaitGroup
}

func (r *socketReader) readLoop() {
	defer r.wg.Done()
	sc := bufio.NewScanner(r.conn)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		r.mu.Lock()
		r.mu.lines = append(r.mu.lines, sc.Text())
		r.mu.Unlock()
		r.signal()
	}
	r.mu.Lock()
	if err := sc.Err(); err != nil && !errors.Is(err, net.ErrClosed) {
		r.mu.err = fmt.Errorf("cannot read socket source: %w", err)
	}
	r.mu.eof = true
	r.mu.Unlock()
	r.signal()
}

func (r *socketReader) signal() {
	select {
	case r.avail <- struct{}{}:
	default:
	}
}

func (r *socketReader) Read(buf []string) ([]string, weir.ReadStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := min(cap(buf)-len(buf), len(r.mu.lines))
	buf = append(buf, r.mu.lines[:n]...)
	r.mu.lines = r.mu.lines[n:]
	switch {
	case len(r.mu.lines) > 0 || n > 0:
		return buf, weir.MoreAvailable, nil
	case r.mu.err != nil:
		return buf, weir.NothingAvailable, r.mu.err
	case r.mu.eof:
		return buf, weir.EndOfInput, nil
	}
	return buf, weir.NothingAvailable, nil
}

func (r *socketReader) Available() <-chan struct{} { return r.avail }

// Snapshot records nothing: a socket cannot be rewound (at-most-once).
func (r *socketReader) Snapshot(checkpoint.ID) ([][]byte, error) { return nil, nil }

func (r *socketReader) Close() error {
	err := r.conn.Close()
	r.wg.Wait()
	return err
}
