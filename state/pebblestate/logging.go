package pebblestate

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// maxErrorsPerSecond bounds what a store logs of pebble's errors: pebble
// retries a failed flush or compaction at once, without backoff, and logs
// every failure (thousands a second on a full or failing disk).
const maxErrorsPerSecond = 5

// limitRepeats returns l, dropping the records beyond maxErrorsPerSecond
// each second (never a fatal error); the first record of the next second carries the number
// dropped (attribute "suppressed").
func limitRepeats(l *slog.Logger) *slog.Logger {
	return slog.New(&limitHandler{Handler: l.Handler(), st: &limitState{}})
}

type limitState struct {
	mu      sync.Mutex
	window  time.Time
	n       int
	dropped int
}

type limitHandler struct {
	slog.Handler
	st *limitState
}

func (h *limitHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "pebble fatal") {
		return h.Handler.Handle(ctx, r)
	}
	st := h.st
	st.mu.Lock()
	if now := time.Now(); now.Sub(st.window) >= time.Second {
		st.window, st.n = now, 0
		if st.dropped > 0 {
			r.AddAttrs(slog.Int("suppressed", st.dropped))
			st.dropped = 0
		}
	}
	st.n++
	if st.n > maxErrorsPerSecond {
		st.dropped++
		st.mu.Unlock()
		return nil
	}
	st.mu.Unlock()
	return h.Handler.Handle(ctx, r)
}

func (h *limitHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &limitHandler{Handler: h.Handler.WithAttrs(as), st: h.st}
}

func (h *limitHandler) WithGroup(name string) slog.Handler {
	return &limitHandler{Handler: h.Handler.WithGroup(name), st: h.st}
}
