package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/weirstream/weir"
)

// countingSink discards rows and counts them: each writer counts on its
// own and adds its count to rows when it closes.
type countingSink[T any] struct{ rows *atomic.Int64 }

func (s countingSink[T]) CreateWriter(weir.SinkContext) (weir.SinkWriter[T], error) {
	return &countingWriter[T]{total: s.rows}, nil
}

type countingWriter[T any] struct {
	n     int64
	total *atomic.Int64
}

func (w *countingWriter[T]) Write(T) error { w.n++; return nil }
func (w *countingWriter[T]) Close() error {
	w.total.Add(w.n)
	w.n = 0
	return nil
}

// jsonLines is the file of --output: rows as JSON lines, from every
// subtask, in the order the subtasks write them. It is not
// transactional: after a failover the rows replayed since the last
// checkpoint appear again.
type jsonLines struct {
	mu struct {
		sync.Mutex
		w   *bufio.Writer
		err error
	}
}

func (j *jsonLines) write(line []byte) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.mu.err != nil {
		return j.mu.err
	}
	if _, err := j.mu.w.Write(line); err != nil {
		j.mu.err = fmt.Errorf("cannot write --output: %w", err)
	}
	return j.mu.err
}

// jsonSink writes rows into a jsonLines; each writer encodes into its
// own buffer and hands over whole buffers.
type jsonSink[T any] struct {
	out  *jsonLines
	rows *atomic.Int64
}

func (s jsonSink[T]) CreateWriter(weir.SinkContext) (weir.SinkWriter[T], error) {
	return &jsonWriter[T]{s: s}, nil
}

type jsonWriter[T any] struct {
	s   jsonSink[T]
	buf []byte
	n   int64
}

func (w *jsonWriter[T]) Write(r T) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("cannot encode row %+v as JSON: %w", r, err)
	}
	w.buf = append(append(w.buf, b...), '\n')
	w.n++
	if len(w.buf) >= 64<<10 {
		return w.flush()
	}
	return nil
}

func (w *jsonWriter[T]) flush() error {
	err := w.s.out.write(w.buf)
	w.buf = w.buf[:0]
	return err
}

// Finish writes what is buffered at the end of input.
func (w *jsonWriter[T]) Finish() error { return w.flush() }

func (w *jsonWriter[T]) Close() error {
	w.s.rows.Add(w.n)
	w.n = 0
	return w.flush()
}
