package jobflags

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// NewLogger returns the logger of --log-format format ("text", the
// default, or "json": one JSON object per line) at level, writing to w.
//
// In text, a record's "stack" attribute (the goroutine stack of a panic
// in user code) is written after the record's line, one line of the stack
// per line, indented, so it reads like a Go traceback; in JSON it is a
// string field like any other.
func NewLogger(w io.Writer, format string, level slog.Level) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "", "text":
		return slog.New(&stackHandler{inner: slog.NewTextHandler(w, opts), w: w, mu: &sync.Mutex{}}), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("invalid value %q for --log-format: want text or json", format)
}

// stackHandler is a text handler that writes a record's "stack" attribute
// on the lines after it.
type stackHandler struct {
	inner slog.Handler
	w     io.Writer
	// mu keeps a record's line and its stack together in the output.
	mu *sync.Mutex
}

func (h *stackHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *stackHandler) Handle(ctx context.Context, r slog.Record) error {
	var stack string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "stack" {
			stack = a.Value.String()
			return false
		}
		return true
	})
	if stack == "" {
		return h.inner.Handle(ctx, r)
	}
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "stack" {
			out.AddAttrs(a)
		}
		return true
	})
	var b strings.Builder
	for line := range strings.SplitSeq(strings.TrimRight(stack, "\n"), "\n") {
		b.WriteString("    ")
		b.WriteString(line)
		b.WriteByte('\n')
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.inner.Handle(ctx, out); err != nil {
		return err
	}
	_, err := io.WriteString(h.w, b.String())
	return err
}

func (h *stackHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &stackHandler{inner: h.inner.WithAttrs(as), w: h.w, mu: h.mu}
}

func (h *stackHandler) WithGroup(name string) slog.Handler {
	return &stackHandler{inner: h.inner.WithGroup(name), w: h.w, mu: h.mu}
}
