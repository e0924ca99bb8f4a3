package network

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/internal/leaktest"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/network/tcp"
	"github.com/weirstream/weir/state"
)

// hang bounds waits that only a bug makes long.
const hang = 10 * time.Second

const testToken = "s3cret-token"

// TestMain fails the package when goroutines outlive its tests: every
// endpoint, connection and channel goroutine must be stopped and awaited.
func TestMain(m *testing.M) { leaktest.Main(m) }

// checkLeaks fails the test if goroutines started during it outlive it.
// Call it first, so its cleanup runs after the endpoints' cleanups.
func checkLeaks(t *testing.T) {
	t.Helper()
	before := goruntime.NumGoroutine()
	t.Cleanup(func() {
		if n := leaktest.Leaked(before, 5*time.Second); n > 0 {
			buf := make([]byte, 1<<20)
			t.Errorf("%d goroutines leaked:\n%s", n, buf[:goruntime.Stack(buf, true)])
		}
	})
}

// logBuffer collects an endpoint's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// waitFor polls cond until it holds, failing the test after hang.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hang)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitingForCredit tells whether o's Send is blocked for credit.
func (o *OutputChannel[T]) waitingForCredit() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.mu.waiting
}

// errorSink records what OnError reports.
type errorSink struct {
	mu   sync.Mutex
	errs map[ChannelID][]error
}

func (s *errorSink) onError(id ChannelID, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.errs == nil {
		s.errs = make(map[ChannelID][]error)
	}
	s.errs[id] = append(s.errs[id], err)
}

func (s *errorSink) get(id ChannelID) []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.errs[id]...)
}

func (s *errorSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.errs {
		n += len(e)
	}
	return n
}

// waitError waits for the first error reported for id.
func (s *errorSink) waitError(t *testing.T, id ChannelID) error {
	t.Helper()
	waitFor(t, fmt.Sprintf("OnError of channel %s", id), func() bool { return len(s.get(id)) > 0 })
	return s.get(id)[0]
}

// endpointConfig is an endpoint's configuration with its transport's.
type endpointConfig struct {
	Config
	TCP tcp.Config
}

// listen starts an endpoint over a TCP transport.
func listen(cfg endpointConfig) (*Endpoint, error) {
	tr, err := tcp.Listen(cfg.TCP)
	if err != nil {
		return nil, err
	}
	return NewEndpoint(tr, cfg.Config)
}

type testEnv struct {
	send, recv *Endpoint
	errs       errorSink // of recv
	sendErrs   errorSink
	recvLog    logBuffer
}

// newEnv starts a sending and a receiving endpoint, closed at cleanup.
func newEnv(t *testing.T, adjust func(send, recv *endpointConfig)) *testEnv {
	t.Helper()
	env := &testEnv{}
	sc := endpointConfig{Config: Config{Name: "sender", Token: testToken, OnError: env.sendErrs.onError,
		Logger: slog.New(slog.NewTextHandler(&logBuffer{}, &slog.HandlerOptions{Level: slog.LevelDebug}))}}
	rc := endpointConfig{Config: Config{Name: "receiver", Token: testToken, OnError: env.errs.onError,
		Logger: slog.New(slog.NewTextHandler(&env.recvLog, &slog.HandlerOptions{Level: slog.LevelDebug}))}}
	if adjust != nil {
		adjust(&sc, &rc)
	}
	var err error
	if env.recv, err = listen(rc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.recv.Close() })
	if env.send, err = listen(sc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.send.Close() })
	return env
}

var int64Codec = state.CodecFor[int64]()

// channel opens one int64 channel from env.send to env.recv.
func (env *testEnv) channel(t *testing.T, id ChannelID, gate *runtime.InputGate, index, credits, bufSize int) (*OutputChannel[int64], *InputChannel[int64]) {
	t.Helper()
	in, err := NewInputChannel(env.recv, id, int64Codec, gate, index, credits, bufSize)
	if err != nil {
		t.Fatal(err)
	}
	out, err := NewOutputChannel(context.Background(), env.send, env.recv.Addr(), id, int64Codec, bufSize)
	if err != nil {
		t.Fatal(err)
	}
	return out, in
}

// item is what a receiving task saw: a record or an event.
type item struct {
	rec int64
	ev  runtime.Event
}

func (it item) String() string {
	if it.ev.Kind != 0 {
		return fmt.Sprintf("%s(%d)", it.ev.Kind, it.ev.Barrier.ID)
	}
	return fmt.Sprint(it.rec)
}

func itemsString(items []item) string {
	var b strings.Builder
	for i, it := range items {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(it.String())
	}
	return b.String()
}

// pollWithin polls in until it yields a buffer, failing after hang.
func pollWithin[T any](t *testing.T, gate *runtime.InputGate, in *InputChannel[T]) runtime.Buffer[T] {
	t.Helper()
	timer := time.NewTimer(hang)
	defer timer.Stop()
	for {
		if b, _, ok := in.Poll(); ok {
			return b
		}
		select {
		case <-gate.Signal():
		case <-time.After(time.Millisecond): // the signal is shared by the gate's channels
		case <-timer.C:
			t.Fatalf("channel %s: nothing arrived within %s", in.ID(), hang)
		}
	}
}

// sendWithin sends and fails the test if Send hangs.
func sendWithin[T any](t *testing.T, out *OutputChannel[T], b runtime.Buffer[T]) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	err := out.Send(ctx, b)
	if ctx.Err() != nil {
		t.Fatalf("Send on %s hung", out.ID())
	}
	return err
}

func barrier(id int64) runtime.Event {
	return runtime.Event{Kind: runtime.EventBarrier, Barrier: checkpoint.Barrier{
		ID: checkpoint.ID(id), Timestamp: time.Unix(1_700_000_000+id, id), Kind: checkpoint.KindCheckpoint}}
}

var endOfPartition = runtime.Event{Kind: runtime.EventEndOfPartition}
