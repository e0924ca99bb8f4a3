package socket

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir"
)

// A reader whose job does not take its lines stops reading the socket
// after MaxBufferedLines (the server's writes then block, TCP flow
// control) instead of buffering everything the server sends; taking the
// lines resumes the reading, and every line arrives once, in order.
// Before the bound the reader held every line the server wrote.
func TestReaderBoundsItsBuffer(t *testing.T) {
	const n = 100_000 // 10 MB, more than the kernel buffers of a loopback connection
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	written := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			written <- err
			return
		}
		defer c.Close()
		w := bufio.NewWriter(c)
		pad := strings.Repeat("x", 90)
		for i := range n {
			if _, err := fmt.Fprintf(w, "%08d %s\n", i, pad); err != nil {
				written <- err
				return
			}
		}
		written <- w.Flush()
	}()
	sr, err := Source{Addr: l.Addr().String()}.CreateReader(weir.SourceContext{})
	if err != nil {
		t.Fatal(err)
	}
	r := sr.(*socketReader)
	defer r.Close()
	buffered := func() int {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.mu.lines)
	}
	// Wait until the reader filled its buffer, or the server wrote
	// everything (which only happens without the bound).
	deadline := time.Now().Add(time.Minute)
	for buffered() < MaxBufferedLines {
		select {
		case err := <-written:
			t.Fatalf("the server wrote all %d lines (%v) into a reader nobody read: %d lines buffered", n, err, buffered())
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reader buffered only %d lines", buffered())
		}
	}
	next := 0
	buf := make([]string, 0, 1000)
	for {
		if b := buffered(); b > MaxBufferedLines {
			t.Fatalf("the reader buffered %d lines, more than %d", b, MaxBufferedLines)
		}
		out, status, err := r.Read(buf[:0])
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range out {
			if want := fmt.Sprintf("%08d ", next); !strings.HasPrefix(line, want) {
				t.Fatalf("line %d is %.20q", next, line)
			}
			next++
		}
		if status == weir.EndOfInput {
			break
		}
		if status == weir.NothingAvailable {
			select {
			case <-r.Available():
			case <-time.After(time.Minute):
				t.Fatalf("no lines after %d", next)
			}
		}
	}
	if next != n {
		t.Fatalf("read %d lines, want %d", next, n)
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}
}

// Close returns while the reader waits for room in its buffer.
func TestCloseWhileBufferFull(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(c, "%d\n", i); err != nil {
				return
			}
		}
	}()
	sr, err := Source{Addr: l.Addr().String()}.CreateReader(weir.SourceContext{})
	if err != nil {
		t.Fatal(err)
	}
	r := sr.(*socketReader)
	for {
		r.mu.Lock()
		full := len(r.mu.lines) >= MaxBufferedLines
		r.mu.Unlock()
		if full {
			break
		}
		<-r.Available()
	}
	done := make(chan error, 1)
	go func() { done <- r.Close() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("Close hangs while the buffer is full")
	}
}
