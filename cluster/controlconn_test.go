package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/weirstream/weir/internal/tlstest"
)

// logBuffer collects log lines from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitLine waits up to 5s for a log line containing all of want.
func (b *logBuffer) waitLine(t *testing.T, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for line := range strings.SplitSeq(b.String(), "\n") {
			all := true
			for _, w := range want {
				all = all && strings.Contains(line, w)
			}
			if all {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q in:\n%s", want, b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startControl serves the control plane of a job manager of job "job"
// (without a job) on a loopback port.
func startControl(t *testing.T, cc Config) (*JobManager, *logBuffer) {
	t.Helper()
	cc.defaults()
	logs := &logBuffer{}
	jm := &JobManager{cfg: cc, log: slog.New(slog.NewTextHandler(logs, nil)), jobName: "job", warnEvery: time.Nanosecond}
	jm.mu.tms = map[string]*tmConn{}
	jm.mu.changed = make(chan struct{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	jm.serveControl(lis)
	t.Cleanup(jm.server.Stop)
	return jm, logs
}

// readUntilClosed reads c until the job manager closes it, at most 5s, and
// returns how long that took.
func readUntilClosed(t *testing.T, c net.Conn) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(5 * time.Second))
	buf := make([]byte, 512)
	for {
		if _, err := c.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("the connection is still open after %s", time.Since(start))
			}
			return time.Since(start)
		}
	}
}

// A connection that sends nothing is closed after the registration bound,
// and the job manager logs it with the peer's address.
func TestControlClosesSilentConnection(t *testing.T) {
	const bound = 300 * time.Millisecond
	jm, logs := startControl(t, Config{RegistrationTimeout: bound})
	c, err := net.Dial("tcp", jm.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	took := readUntilClosed(t, c)
	if took < bound/2 || took > bound+2*time.Second {
		t.Fatalf("closed after %s, want about %s", took, bound)
	}
	logs.waitLine(t, "level=WARN", "did not register", "peer="+c.LocalAddr().String(), "bytes_received=0")
}

// Bytes that are not the control protocol close the connection at once
// (long before the bound), logged with the peer's address and what it sent.
func TestControlRefusesGarbage(t *testing.T) {
	for _, tc := range []struct {
		name, send, want string
	}{
		{"http1", "GET / HTTP/1.1\r\nHost: weir\r\n\r\n", `first_bytes="GET / HTTP/1.1`},
		{"tls", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "hint=\"a TLS client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jm, logs := startControl(t, Config{RegistrationTimeout: time.Minute})
			c, err := net.Dial("tcp", jm.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write([]byte(tc.send)); err != nil {
				t.Fatal(err)
			}
			if took := readUntilClosed(t, c); took > 2*time.Second {
				t.Fatalf("closed after %s", took)
			}
			logs.waitLine(t, "level=WARN", "does not speak the control protocol", "peer="+c.LocalAddr().String(), tc.want)
		})
	}
}

// A TLS handshake that fails (here the client does not trust the job
// manager's certificate) is logged with the peer's address.
func TestControlLogsFailedTLSHandshake(t *testing.T) {
	cert, _ := tlstest.SelfSigned(t)
	jm, logs := startControl(t, Config{RegistrationTimeout: time.Minute,
		ServerTLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	c, err := net.Dial("tcp", jm.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := tls.Client(c, &tls.Config{RootCAs: x509.NewCertPool(), ServerName: "127.0.0.1", NextProtos: []string{"h2"}})
	if err := tc.Handshake(); err == nil {
		t.Fatal("handshake with an untrusted certificate succeeded")
	}
	if took := readUntilClosed(t, c); took > 2*time.Second {
		t.Fatalf("closed after %s", took)
	}
	logs.waitLine(t, "level=WARN", "TLS handshake failed", "peer="+c.LocalAddr().String())
}

// dialControl connects to the job manager as a task manager would and
// reports the local address of its connection.
func dialControl(t *testing.T, addr string) (*grpc.ClientConn, func() string) {
	t.Helper()
	local := make(chan string, 1)
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", a)
			if err == nil {
				select {
				case local <- c.LocalAddr().String():
				default:
				}
			}
			return c, err
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, sync.OnceValue(func() string { return <-local })
}

// openStream opens a control stream with token on conn; it sends nothing.
func openStream(t *testing.T, conn *grpc.ClientConn, token string) grpc.ClientStream {
	t.Helper()
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), tokenHeader, token))
	t.Cleanup(cancel)
	stream, err := conn.NewStream(ctx, &ctlServiceDesc.Streams[0], ctlMethod, grpc.CallContentSubtype(ctlCodecName))
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

// A task manager that registered stays connected past the bound (and a
// further stream on its connection that registers nothing ends at the
// bound); a stream with the wrong token is refused and its connection
// closed at the bound; so is a connection with the right token that
// registers nothing.
func TestControlRegistrationBound(t *testing.T) {
	const bound = 300 * time.Millisecond
	jm, logs := startControl(t, Config{RegistrationTimeout: bound, Token: "s3cret"})

	conn, local := dialControl(t, jm.Addr())
	reg := openStream(t, conn, "s3cret")
	if err := reg.SendMsg(&ctlMsg{Kind: msgRegister, Version: ctlVersion, Name: "tm", Slots: 1, DataAddr: "127.0.0.1:1", Job: "job"}); err != nil {
		t.Fatal(err)
	}
	var m ctlMsg
	if err := reg.RecvMsg(&m); err != nil || m.Kind != msgRegistered {
		t.Fatalf("registration: %v %+v", err, m)
	}
	time.Sleep(3 * bound)
	if err := reg.SendMsg(&ctlMsg{Kind: msgHeartbeat}); err != nil {
		t.Fatalf("the registered task manager's stream broke: %v", err)
	}
	again := openStream(t, conn, "s3cret")
	start := time.Now()
	if err := again.RecvMsg(&m); status.Code(err) != codes.DeadlineExceeded || time.Since(start) > bound+2*time.Second {
		t.Fatalf("a further stream without a registration: %v after %s", err, time.Since(start))
	}
	logs.waitLine(t, "level=WARN", "control stream that did not register", "peer="+local())
	jm.mu.Lock()
	_, ok := jm.mu.tms["tm"]
	jm.mu.Unlock()
	if !ok {
		t.Fatalf("the registered task manager was dropped:\n%s", logs)
	}
	if strings.Contains(logs.String(), "control connection that did not register") {
		t.Fatalf("a connection was closed by the bound:\n%s", logs)
	}

	wrong, wrongAddr := dialControl(t, jm.Addr())
	if err := openStream(t, wrong, "guess").RecvMsg(&m); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("wrong token: %v", err)
	}
	logs.waitLine(t, "level=WARN", "wrong or missing token", "peer="+wrongAddr())
	logs.waitLine(t, "level=WARN", "control connection that did not register", "peer="+wrongAddr())

	silent, silentAddr := dialControl(t, jm.Addr())
	start = time.Now()
	if err := openStream(t, silent, "s3cret").RecvMsg(&m); err == nil || time.Since(start) > bound+2*time.Second {
		t.Fatalf("a connection without a registration: %v after %s", err, time.Since(start))
	}
	logs.waitLine(t, "control connection that did not register", "peer="+silentAddr())
}

func TestWarnLimit(t *testing.T) {
	w := newWarnLimit(time.Second)
	t0 := time.Unix(1000, 0)
	for _, step := range []struct {
		kind   string
		at     time.Duration
		ok     bool
		heldTo int
	}{
		{"garbage", 0, true, 0},
		{"garbage", 100 * time.Millisecond, false, 0},
		{"garbage", 900 * time.Millisecond, false, 0},
		{"token", 900 * time.Millisecond, true, 0}, // another kind passes
		{"garbage", time.Second, true, 2},          // with the count held back
		{"garbage", 1500 * time.Millisecond, false, 0},
		{"garbage", 3 * time.Second, true, 1},
	} {
		ok, held := w.allow(step.kind, t0.Add(step.at))
		if ok != step.ok || held != step.heldTo {
			t.Fatalf("%s at %s: ok=%v held=%d, want %v %d", step.kind, step.at, ok, held, step.ok, step.heldTo)
		}
	}
}

// A task manager of another weir build (another control protocol version)
// is refused with a message that says so.
func TestControlRefusesOtherVersion(t *testing.T) {
	jm, logs := startControl(t, Config{RegistrationTimeout: time.Minute})
	conn, local := dialControl(t, jm.Addr())
	reg := openStream(t, conn, "")
	if err := reg.SendMsg(&ctlMsg{Kind: msgRegister, Version: ctlVersion - 1, Name: "tm", Slots: 1, DataAddr: "127.0.0.1:1", Job: "job"}); err != nil {
		t.Fatal(err)
	}
	var m ctlMsg
	err := reg.RecvMsg(&m)
	if err == nil || !strings.Contains(err.Error(), "control protocol version") {
		t.Fatalf("another version: %v %+v", err, m)
	}
	logs.waitLine(t, "level=WARN", "another control protocol version", "peer="+local())
}
