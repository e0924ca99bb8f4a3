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
// checkpoint are lost (at-most-once), and the restored reader logs a
// warning saying so. Use it for demos, not for exactly-once jobs. It is a
// non-parallel source; it ends when the server closes the connection. It
// connects once per start: after a failure the restarted job connects
// again (it does not reconnect within a run). It buffers at most
// MaxBufferedLines lines the job has not taken yet; then it stops reading
// the socket, so a slow job slows the server down (TCP flow control)
// instead of filling memory.
func TextStream(env *weir.Environment, addr string) weir.Stream[string] {
	return weir.FromSource[string](env, Source{Addr: addr}, "socket "+addr)
}

// MaxBufferedLines is how many lines a reader holds before it stops
// reading the socket until the job takes some.
const MaxBufferedLines = 4096

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
	if ctx.RestoredCheckpoint != 0 && ctx.Logger != nil {
		ctx.Logger.Warn("socket source restarted from a checkpoint: the lines received after it were lost (a socket cannot be replayed: at most once)",
			"socket", s.Addr, "checkpoint", ctx.RestoredCheckpoint)
	}
	r := &socketReader{addr: s.Addr, conn: conn, avail: make(chan struct{}, 1), space: make(chan struct{}, 1), done: make(chan struct{})}
	r.wg.Add(1)
	go r.readLoop()
	return r, nil
}

// socketReader reads lines on its own goroutine (a socket read blocks) and
// hands them to Read.
type socketReader struct {
	addr  string
	conn  net.Conn
	avail chan struct{} // signalled when lines, an error or the end arrived
	space chan struct{} // signalled when Read took lines
	done  chan struct{} // closed by Close
	mu    struct {
		sync.Mutex
		lines []string
		err   error
		eof   bool
	}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

func (r *socketReader) readLoop() {
	defer r.wg.Done()
	sc := bufio.NewScanner(r.conn)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		r.mu.Lock()
		r.mu.lines = append(r.mu.lines, sc.Text())
		full := len(r.mu.lines) >= MaxBufferedLines
		r.mu.Unlock()
		r.signal()
		for full {
			select {
			case <-r.space:
			case <-r.done:
				return
			}
			r.mu.Lock()
			full = len(r.mu.lines) >= MaxBufferedLines
			r.mu.Unlock()
		}
	}
	r.mu.Lock()
	if err := sc.Err(); err != nil && !errors.Is(err, net.ErrClosed) {
		r.mu.err = fmt.Errorf("cannot read socket source %s: %w", r.addr, err)
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
	clear(r.mu.lines[:n])
	r.mu.lines = r.mu.lines[n:]
	if n > 0 {
		select {
		case r.space <- struct{}{}:
		default:
		}
	}
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
	var err error
	r.closeOnce.Do(func() {
		close(r.done)
		err = r.conn.Close()
		r.wg.Wait()
	})
	return err
}
