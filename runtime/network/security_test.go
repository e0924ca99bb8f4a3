package network

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/internal/secret"
	"github.com/weirstream/weir/internal/tlstest"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/network/tcp"
	"github.com/weirstream/weir/runtime/network/transport"
)

// rawSender dials ep and does the handshake by hand, for tests that send
// what a correct sender never would.
func rawSender(t *testing.T, ep *Endpoint, h hello) (net.Conn, welcome, error) {
	t.Helper()
	nc, err := net.Dial("tcp", ep.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(hang))
	if _, err := nc.Write(appendHello(nil, h)); err != nil {
		t.Fatal(err)
	}
	w, err := readWelcome(nc)
	return nc, w, err
}

// expectClosedByPeer reads until the peer closes nc.
func expectClosedByPeer(t *testing.T, nc net.Conn) {
	t.Helper()
	if _, err := io.Copy(io.Discard, nc); err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("the endpoint did not close the connection: %v", err)
	}
}

// An endpoint without a token does not start, and closes the transport it
// was given.
func TestTokenRequired(t *testing.T) {
	tr, err := tcp.Listen(tcp.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if _, err := NewEndpoint(tr, Config{}); err == nil {
		t.Fatal("an endpoint without a token started")
	}
	if _, err := tr.Accept(); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("the transport is open after the endpoint refused to start: Accept returned %v", err)
	}
}

// A wrong or missing token, another protocol version, or something that
// is not a handshake at all: refused, logged, nothing registered.
func TestHandshakeRefusals(t *testing.T) {
	checkLeaks(t)
	env := newEnv(t, func(s, _ *endpointConfig) { s.Token = "not-the-token" })
	id := NewChannelID(0, 0, 0, 0)
	_, err := NewOutputChannel(context.Background(), env.send, env.recv.Addr(), id, int64Codec, 4)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "wrong token") {
		t.Fatalf("wrong token: %v, want ErrRefused", err)
	}

	nc, w, err := rawSender(t, env.recv, hello{version: Version, name: "tokenless"})
	if err != nil || w.status != statusBadToken {
		t.Fatalf("missing token: status %d, err %v; want status %d", w.status, err, statusBadToken)
	}
	expectClosedByPeer(t, nc)

	nc, w, err = rawSender(t, env.recv, hello{version: 99, token: testToken, name: "future"})
	if err != nil || w.status != statusBadVersion {
		t.Fatalf("other version: status %d, err %v; want status %d", w.status, err, statusBadVersion)
	}
	expectClosedByPeer(t, nc)

	nc, err = net.Dial("tcp", env.recv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(hang))
	if _, err := nc.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if n, _ := io.Copy(io.Discard, nc); n != 0 {
		t.Fatalf("the endpoint answered %d bytes to a non-handshake", n)
	}

	waitFor(t, "four refusals in the log", func() bool {
		return strings.Count(env.recvLog.String(), "refused data plane connection") == 4
	})
	log := env.recvLog.String()
	for _, want := range []string{"wrong token", "claimed_name=tokenless", "protocol version 99", "bad handshake"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	env.recv.mu.Lock()
	n := len(env.recv.mu.conns)
	env.recv.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d refused connections kept", n)
	}
}

func TestTokenComparison(t *testing.T) {
	for _, c := range []struct {
		offered string
		ok      bool
	}{{"s3cret", true}, {"s3cres", false}, {"s3cret\x00", false}, {"", false}, {"S3CRET", false}} {
		if got := secret.Equal(c.offered, "s3cret"); got != c.ok {
			t.Errorf("secret.Equal(%q) = %v", c.offered, got)
		}
	}
}

func TestTLS(t *testing.T) {
	checkLeaks(t)
	cert, pool := tlstest.SelfSigned(t)
	env := newEnv(t, func(s, r *endpointConfig) {
		r.TCP.ServerTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
		s.TCP.ClientTLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	})
	gate := runtime.NewInputGate(1)
	out, in := env.channel(t, NewChannelID(0, 0, 0, 0), gate, 0, 2, 32)
	errc := make(chan error, 1)
	go func() {
		for i := range int64(100) {
			if err := out.Send(context.Background(), runtime.Buffer[int64]{Records: append(out.NewBuffer(), i, -i)}); err != nil {
				errc <- err
				return
			}
		}
		errc <- out.Send(context.Background(), runtime.Buffer[int64]{Event: endOfPartition})
	}()
	got := readAll(t, gate, []*InputChannel[int64]{in})[0]
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if len(got) != 201 || got[198].rec != 99 || got[199].rec != -99 {
		t.Fatalf("got %.200s", itemsString(got))
	}

	quiet := slog.New(slog.DiscardHandler)
	plain, err := listen(endpointConfig{Config: Config{Token: testToken, Logger: quiet}})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	if _, err := NewOutputChannel(ctx, plain, env.recv.Addr(), NewChannelID(0, 0, 1, 0), int64Codec, 4); err == nil || ctx.Err() != nil {
		t.Fatalf("a plain connection to a TLS endpoint: %v", err)
	}
	untrusting, err := listen(endpointConfig{Config: Config{Token: testToken, Logger: quiet}, TCP: tcp.Config{ClientTLS: &tls.Config{}}})
	if err != nil {
		t.Fatal(err)
	}
	defer untrusting.Close()
	_, err = NewOutputChannel(ctx, untrusting, env.recv.Addr(), NewChannelID(0, 0, 2, 0), int64Codec, 4)
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("a client not trusting the certificate: %v", err)
	}
	waitFor(t, "the refusals in the log", func() bool {
		return strings.Count(env.recvLog.String(), "TLS handshake failed") == 2
	})
}

// openRaw opens channels over a raw connection and reads their credit.
func openRaw(t *testing.T, nc net.Conn, ids ...ChannelID) *frameReader {
	t.Helper()
	var buf []byte
	for _, id := range ids {
		buf = appendText(buf, frameOpen, id, "int64", maxTypeLen)
	}
	if _, err := nc.Write(buf); err != nil {
		t.Fatal(err)
	}
	fr := newFrameReader(nc, 1<<20)
	for range ids {
		typ, _, _, err := fr.next()
		if err != nil || typ != frameCredit {
			t.Fatalf("got %s, %v; want credit", typ, err)
		}
	}
	return fr
}

// Malformed frames fail the connection, and all its channels, with an
// error naming the peer; never a panic.
func TestBadFramesFailTheConnection(t *testing.T) {
	a, b := NewChannelID(0, 0, 0, 0), NewChannelID(0, 0, 1, 0)
	badEvent := appendEvent(nil, a, barrier(1))
	badEvent[headerLen] = 9
	for _, c := range []struct {
		name  string
		bytes []byte
		want  string
	}{
		{"garbage", []byte("\x00\x00\x00\x03garbage and more"), "shorter than its header"},
		{"oversize length", []byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3}, "exceeds the limit"},
		{"unknown type", appendText(nil, 99, a, "", 0), "unexpected frame type 99"},
		{"credit from a sender", appendCredit(nil, a, 1), "unexpected credit frame"},
		{"bad event", badEvent, "unknown event kind 9"},
		{"truncated", []byte{0, 0, 1, 0, 1, 0, 0}, "unexpected EOF"},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkLeaks(t)
			env := newEnv(t, nil)
			gate := runtime.NewInputGate(2)
			for i, id := range []ChannelID{a, b} {
				if _, err := NewInputChannel(env.recv, id, int64Codec, gate, i, 1, 4); err != nil {
					t.Fatal(err)
				}
			}
			nc, w, err := rawSender(t, env.recv, hello{version: Version, token: testToken, name: "raw-sender"})
			if err != nil || w.status != statusOK {
				t.Fatalf("handshake: %d %v", w.status, err)
			}
			openRaw(t, nc, a, b)
			if _, err := nc.Write(c.bytes); err != nil {
				t.Fatal(err)
			}
			if c.name == "truncated" {
				nc.(*net.TCPConn).CloseWrite()
			}
			for _, id := range []ChannelID{a, b} {
				err := env.errs.waitError(t, id)
				if !strings.Contains(err.Error(), "raw-sender@127.0.0.1") || !strings.Contains(err.Error(), c.want) {
					t.Errorf("channel %s: error %q does not name the peer and %q", id, err, c.want)
				}
				if c.name != "truncated" && !errors.Is(err, ErrProtocol) {
					t.Errorf("channel %s: error %q is not ErrProtocol", id, err)
				}
			}
			expectClosedByPeer(t, nc)
		})
	}
}

// Bad records, or records beyond the credit, fail their channel only: the
// sender is told with a close frame and the other channels go on.
func TestBadRecordsFailOnlyTheirChannel(t *testing.T) {
	checkLeaks(t)
	env := newEnv(t, nil)
	a, b := NewChannelID(0, 0, 0, 0), NewChannelID(0, 0, 1, 0)
	gate := runtime.NewInputGate(2)
	if _, err := NewInputChannel(env.recv, a, int64Codec, gate, 0, 1, 4); err != nil {
		t.Fatal(err)
	}
	inB, err := NewInputChannel(env.recv, b, int64Codec, gate, 1, 1, 4)
	if err != nil {
		t.Fatal(err)
	}
	nc, _, err := rawSender(t, env.recv, hello{version: Version, token: testToken, name: "raw-sender"})
	if err != nil {
		t.Fatal(err)
	}
	fr := openRaw(t, nc, a, b)

	bad, start := beginFrame(nil, frameRecords, a)
	bad = binary.BigEndian.AppendUint32(bad, 1000)
	bad = append(bad, 1, 2, 3)
	finishFrame(bad, start)
	if _, err := nc.Write(bad); err != nil {
		t.Fatal(err)
	}
	if err := env.errs.waitError(t, a); !strings.Contains(err.Error(), "raw-sender@") || !strings.Contains(err.Error(), "1000 records in 3 bytes") {
		t.Fatalf("channel a: %v", err)
	}
	typ, id, payload, err := fr.next()
	if err != nil || typ != frameClose || id != a || !strings.Contains(string(payload), "1000 records") {
		t.Fatalf("sender got %s for %s (%q), %v; want close of %s", typ, id, payload, err, a)
	}

	good := appendRecords(nil, b, int64Codec, []int64{7, 8})
	if _, err := nc.Write(good); err != nil {
		t.Fatal(err)
	}
	if got := pollWithin(t, gate, inB); len(got.Records) != 2 || got.Records[1] != 8 {
		t.Fatalf("channel b got %+v", got)
	}
	if errs := env.errs.get(b); len(errs) != 0 {
		t.Fatalf("channel b failed: %v", errs)
	}
	// b's only credit is held (not recycled): one more batch breaks the
	// flow control.
	if _, err := nc.Write(good); err != nil {
		t.Fatal(err)
	}
	if err := env.errs.waitError(t, b); !strings.Contains(err.Error(), "beyond the 1 credits") {
		t.Fatalf("channel b: %v", err)
	}
}
