package socket_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/connector/socket"
	"github.com/weirstream/weir/restart"
)

// server accepts connections on a loopback port and runs serve on the
// n-th (from 0) in a goroutine of its own.
func server(t *testing.T, serve func(n int, c net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; ; n++ {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(n, c)
			}()
		}
	}()
	return l.Addr().String()
}

// The lines a server sends, split into arbitrary writes, with CRLF line
// ends and a last line without a newline, arrive in order; the source
// ends, and the job finishes, when the server closes the connection.
func TestTextStreamReadsLinesUntilClose(t *testing.T) {
	addr := server(t, func(_ int, c net.Conn) {
		for _, chunk := range []string{"alpha\nbe", "ta\r\n", "", "\n", "gamma with spaces\n", strings.Repeat("z", 100<<10) + "\n", "last"} {
			c.Write([]byte(chunk))
		}
	})
	env := weir.NewEnvironment()
	sink := weir.NewCollectSink[string]()
	socket.TextStream(env, addr).SinkTo(sink)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := env.Execute(ctx, "socket"); err != nil {
		t.Fatal(err)
	}
	want := []string{"alpha", "beta", "", "gamma with spaces", strings.Repeat("z", 100<<10), "last"}
	if got := sink.Committed(); !slices.Equal(got, want) {
		t.Fatalf("got %d lines %.80q, want %.80q", len(got), got, want)
	}
}

// No server: the job fails, naming the address, and does not start.
func TestTextStreamNoServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	env := weir.NewEnvironment()
	socket.TextStream(env, addr).SinkTo(weir.DiscardSink[string]{})
	err = env.Execute(context.Background(), "socket")
	if err == nil || !strings.Contains(err.Error(), "cannot connect to socket source "+addr) {
		t.Fatalf("want an error naming %s, got %v", addr, err)
	}
}

// A line longer than the reader's limit (16 MiB) fails the job with an
// error naming the socket.
func TestTextStreamLineTooLong(t *testing.T) {
	addr := server(t, func(_ int, c net.Conn) {
		c.Write(bytes.Repeat([]byte("x"), 17<<20))
	})
	env := weir.NewEnvironment()
	socket.TextStream(env, addr).SinkTo(weir.DiscardSink[string]{})
	err := env.Execute(context.Background(), "socket")
	if err == nil || !strings.Contains(err.Error(), "cannot read socket source "+addr) || !strings.Contains(err.Error(), "too long") {
		t.Fatalf("want an error naming %s and the long line, got %v", addr, err)
	}
}

// After a failure the job connects again and reads on from the new
// connection; the lines of the old connection received after the restored
// checkpoint are lost, none is read twice (at most once), and the
// restored reader logs a warning saying so.
func TestTextStreamAfterFailure(t *testing.T) {
	boom := make(chan struct{})
	addr := server(t, func(n int, c net.Conn) {
		switch n {
		case 0:
			for i := range 100 {
				fmt.Fprintf(c, "a-%d\n", i)
			}
			<-boom
			c.Write([]byte("boom\n"))
			// The job fails and closes this connection; wait for that.
			c.Read(make([]byte, 1))
		case 1:
			for i := range 10 {
				fmt.Fprintf(c, "b-%d\n", i)
			}
		}
	})
	var logs syncBuffer
	env := weir.NewEnvironment(weir.Checkpointing(10*time.Millisecond, weir.AtLeastOnce), weir.CheckpointStorage(t.TempDir()),
		weir.RestartStrategy(restart.FixedDelay(1, 0)), weir.Logger(slog.New(slog.NewTextHandler(&logs, nil))))
	var failed atomic.Bool
	lines := weir.MapErr(socket.TextStream(env, addr).UID("socket"), func(s string) (string, error) {
		if s == "boom" && failed.CompareAndSwap(false, true) {
			return "", errors.New("boom")
		}
		return s, nil
	})
	sink := weir.NewCollectSink[string]()
	lines.SinkTo(sink).UID("sink")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	job, err := env.Start(ctx, "socket")
	if err != nil {
		t.Fatal(err)
	}
	// A committed line means the tasks heard of a completed checkpoint:
	// the failover restores it.
	for len(sink.Committed()) == 0 {
		select {
		case <-job.Done():
			t.Fatalf("the job ended early: %v", job.Wait())
		case <-time.After(2 * time.Millisecond):
		}
	}
	close(boom)
	if err := job.Wait(); err != nil {
		t.Fatal(err)
	}
	if job.Restarts() != 1 {
		t.Fatalf("restarts %d, want 1", job.Restarts())
	}
	seen := map[string]int{}
	for _, l := range sink.Committed() {
		seen[l]++
		if seen[l] > 1 {
			t.Fatalf("line %q read twice", l)
		}
	}
	for i := range 10 {
		if seen[fmt.Sprintf("b-%d", i)] != 1 {
			t.Fatalf("line b-%d of the new connection is missing: %v", i, sink.Committed())
		}
	}
	if seen["boom"] != 0 {
		t.Fatal("the line the job failed on was committed")
	}
	if !strings.Contains(logs.String(), "at most once") || !strings.Contains(logs.String(), addr) {
		t.Fatalf("no at-most-once warning naming %s after the restore:\n%s", addr, logs.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
