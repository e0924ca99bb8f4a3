package storage

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
)

// MemoryStore is a BlobStore in memory, for tests and small state: it
// lives as long as the process and is seen by this process only.
type MemoryStore struct {
	name string
	mu   struct {
		sync.Mutex
		blobs map[string][]byte
	}
}

// NewMemoryStore returns an empty store; name only tells stores apart in
// messages ("memory://name").
func NewMemoryStore(name string) *MemoryStore {
	m := &MemoryStore{name: name}
	m.mu.blobs = map[string][]byte{}
	return m
}

func (m *MemoryStore) String() string { return "memory://" + m.name }

// Locate is "memory://<name>/<key>".
func (m *MemoryStore) Locate(key string) string {
	return strings.TrimSuffix(m.String(), "/") + "/" + key
}

// Put stores a copy of b under key if key is free.
func (m *MemoryStore) Put(ctx context.Context, key string, b []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := CheckKey(key); err != nil {
		return err
	}
	return m.insert(key, bytes.Clone(b))
}

func (m *MemoryStore) insert(key string, b []byte) error {
	if b == nil {
		b = []byte{}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.mu.blobs[key]; ok {
		return fmt.Errorf("%s %w", m.Locate(key), ErrExists)
	}
	m.mu.blobs[key] = b
	return nil
}

// Create buffers the blob until Close stores it.
func (m *MemoryStore) Create(ctx context.Context, key string) (BlobWriter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	m.mu.Lock()
	_, exists := m.mu.blobs[key]
	m.mu.Unlock()
	if exists {
		return nil, fmt.Errorf("cannot create %s: %w", m.Locate(key), ErrExists)
	}
	return &memWriter{ctx: ctx, m: m, key: key}, nil
}

type memWriter struct {
	ctx  context.Context
	m    *MemoryStore
	key  string
	buf  bytes.Buffer
	done bool
	ok   bool
}

func (w *memWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("cannot write %s: closed", w.m.Locate(w.key))
	}
	if err := w.ctx.Err(); err != nil {
		return 0, fmt.Errorf("cannot write %s: %w", w.m.Locate(w.key), err)
	}
	return w.buf.Write(p)
}

func (w *memWriter) Close() error {
	if w.done {
		return fmt.Errorf("cannot close %s: already closed or aborted", w.m.Locate(w.key))
	}
	w.done = true
	if err := w.ctx.Err(); err != nil {
		return fmt.Errorf("cannot write %s: %w", w.m.Locate(w.key), err)
	}
	b := w.buf.Bytes()
	w.buf = bytes.Buffer{}
	if err := w.m.insert(w.key, b); err != nil {
		return err
	}
	w.ok = true
	return nil
}

func (w *memWriter) Abort() {
	w.done = true
	w.buf = bytes.Buffer{}
	if w.ok {
		w.ok = false
		w.m.mu.Lock()
		delete(w.m.mu.blobs, w.key)
		w.m.mu.Unlock()
	}
}

// Open reads the blob from memory.
func (m *MemoryStore) Open(ctx context.Context, key string) (io.ReadCloser, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	if err := CheckKey(key); err != nil {
		return nil, 0, err
	}
	m.mu.Lock()
	b, ok := m.mu.blobs[key]
	m.mu.Unlock()
	if !ok {
		return nil, 0, &NotExistError{Msg: "cannot read " + m.Locate(key) + ": no such blob"}
	}
	return ctxReader{ctx: ctx, r: bytes.NewReader(b), c: io.NopCloser(nil)}, int64(len(b)), nil
}

// List returns the keys with prefix, sorted.
func (m *MemoryStore) List(ctx context.Context, prefix string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := CheckPrefix(prefix); err != nil {
		return nil, err
	}
	m.mu.Lock()
	var out []string
	for k := range m.mu.blobs {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	m.mu.Unlock()
	sort.Strings(out)
	return out, nil
}

// Delete forgets key.
func (m *MemoryStore) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := CheckKey(key); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.mu.blobs, key)
	m.mu.Unlock()
	return nil
}
