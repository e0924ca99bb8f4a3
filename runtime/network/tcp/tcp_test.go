package tcp

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/leaktest"
	"github.com/weirstream/weir/internal/tlstest"
	"github.com/weirstream/weir/runtime/network/transport"
)

func TestMain(m *testing.M) { leaktest.Main(m) }

const hang = 10 * time.Second

// pair dials from one transport to another and returns both ends, their
// handshakes done (errors of the accepting side go to accErr).
func pair(t *testing.T, from, to *Transport) (dialed, accepted transport.Conn, dialErr, accErr error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	type result struct {
		c   transport.Conn
		err error
	}
	acc := make(chan result, 1)
	go func() {
		c, err := to.Accept()
		if err == nil {
			err = c.Handshake(ctx)
		}
		acc <- result{c, err}
	}()
	d, err := from.Dial(ctx, to.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	dialErr = d.Handshake(ctx)
	if dialErr != nil {
		d.Close() // unblocks a server handshake waiting for more
	}
	r := <-acc
	if r.c != nil {
		t.Cleanup(func() { r.c.Close() })
		if r.err != nil {
			r.c.Close()
		}
	}
	return d, r.c, dialErr, r.err
}

func listen(t *testing.T, cfg Config) *Transport {
	t.Helper()
	tr, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// Bytes travel both ways; CloseWrite ends the stream for the peer, which
// can still answer; Close is idempotent and Accept then says ErrClosed.
func roundTrip(t *testing.T, client, server Config) {
	a, b := listen(t, client), listen(t, server)
	d, acc, err1, err2 := pair(t, a, b)
	if err1 != nil || err2 != nil {
		t.Fatalf("handshakes: %v, %v", err1, err2)
	}
	if !strings.HasPrefix(acc.RemoteAddr(), "127.0.0.1:") || d.RemoteAddr() != b.Addr() {
		t.Fatalf("remote addresses %q and %q", acc.RemoteAddr(), d.RemoteAddr())
	}
	for _, c := range []transport.Conn{d, acc} {
		if err := c.SetDeadline(time.Now().Add(hang)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := d.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(acc)
	if err != nil || string(got) != "hello" {
		t.Fatalf("the accepting end read %q, %v; want hello, then the end of the stream", got, err)
	}
	if _, err := acc.Write([]byte("back")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(d, buf); err != nil || string(buf) != "back" {
		t.Fatalf("the dialing end read %q, %v after its CloseWrite", buf, err)
	}

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := b.Accept(); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want ErrClosed", err)
	}
	// The connection outlives its transport's listener.
	if _, err := acc.Write([]byte("more")); err != nil {
		t.Fatalf("write after the transport closed: %v", err)
	}
}

func TestPlain(t *testing.T) { roundTrip(t, Config{}, Config{}) }

func TestTLS(t *testing.T) {
	cert, pool := tlstest.SelfSigned(t)
	server := Config{ServerTLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}}
	client := Config{ClientTLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}} // ServerName from the address
	roundTrip(t, client, server)

	srv := listen(t, server)
	d, acc, _, _ := pair(t, listen(t, client), srv)
	if _, ok := d.(*conn).nc.(*tls.Conn); !ok {
		t.Errorf("the dialed connection is %T, not TLS", d.(*conn).nc)
	}
	if _, ok := acc.(*conn).nc.(*tls.Conn); !ok {
		t.Errorf("the accepted connection is %T, not TLS", acc.(*conn).nc)
	}

	// A plain client, or one that does not trust the certificate, fails
	// the handshake on both sides.
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	plain, err := listen(t, Config{}).Dial(ctx, srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.Write([]byte("WEIR\x00\x02")); err != nil {
		t.Fatal(err)
	}
	acc, err = srv.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer acc.Close()
	if err := acc.Handshake(ctx); err == nil || !strings.Contains(err.Error(), "TLS handshake failed") {
		t.Errorf("plain client: the server's handshake returned %v", err)
	}
	_, _, err1, err2 := pair(t, listen(t, Config{ClientTLS: &tls.Config{}}), srv)
	if err1 == nil || err2 == nil {
		t.Errorf("untrusting client: handshakes returned %v and %v, want two errors", err1, err2)
	}
}

// A deadline in the past aborts a Read, waiting or not (the data plane
// cancels a handshake this way).
func TestDeadlineAbortsRead(t *testing.T) {
	_, acc, _, _ := pair(t, listen(t, Config{}), listen(t, Config{}))
	errc := make(chan error, 1)
	go func() {
		_, err := acc.Read(make([]byte, 1))
		errc <- err
	}()
	if err := acc.SetDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("Read returned no error")
		}
	case <-time.After(hang):
		t.Fatal("Read still waits past its deadline")
	}
}

func TestListenError(t *testing.T) {
	if _, err := Listen(Config{ListenAddr: "127.0.0.1:notaport"}); err == nil || !strings.Contains(err.Error(), "127.0.0.1:notaport") {
		t.Fatalf("Listen on a bad address: %v", err)
	}
}
