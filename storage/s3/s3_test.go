package s3

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/storage"
	"github.com/weirstream/weir/storage/storagetest"
)

var (
	ctx            = context.Background()
	sampleMetadata = storagetest.SampleMetadata
	readAll        = storagetest.ReadAll
)

const testBucket = "weir-test"

// fakeS3 is an in-memory S3 server speaking the real protocol (gofakes3)
// behind TLS: over plain HTTP gofakes3 stores minio-go's aws-chunked
// framing of parts verbatim.
type fakeS3 struct {
	srv    *httptest.Server
	faults *faultTransport
}

func newFakeS3(t *testing.T) *fakeS3 {
	t.Helper()
	return startFakeS3(t, true)
}

func startFakeS3(t *testing.T, tls bool) *fakeS3 {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket(testBucket); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog())).Server())
	// Quiet: gofakes3 writes some error headers twice, and refused TLS
	// handshakes are part of the tests.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	base := http.DefaultTransport.(*http.Transport).Clone()
	if srv.TLS != nil {
		base = srv.Client().Transport.(*http.Transport).Clone()
	}
	t.Cleanup(base.CloseIdleConnections)
	return &fakeS3{srv: srv, faults: &faultTransport{base: base}}
}

func (f *fakeS3) endpoint() string {
	return strings.TrimPrefix(strings.TrimPrefix(f.srv.URL, "https://"), "http://")
}

// open returns the checkpoint storage at prefix, talking through the fault
// injector.
func (f *fakeS3) open(t *testing.T, prefix string, tweak func(*Options)) *storage.Storage {
	t.Helper()
	return storage.New(f.store(t, prefix, tweak))
}

// store returns the blob store at prefix, talking through the fault
// injector.
func (f *fakeS3) store(t *testing.T, prefix string, tweak func(*Options)) *Store {
	t.Helper()
	o := Options{
		Endpoint: f.endpoint(), Bucket: testBucket, Prefix: prefix, Region: "us-east-1",
		Insecure: f.srv.TLS == nil, AccessKey: "test-key", SecretKey: "test-secret",
		Transport: f.faults, RetryBase: time.Millisecond, RetryMax: 10 * time.Millisecond,
	}
	if tweak != nil {
		tweak(&o)
	}
	s, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// raw is a plain client to look at and tamper with the bucket.
func (f *fakeS3) raw(t *testing.T) *minio.Client {
	t.Helper()
	c, err := minio.New(f.endpoint(), &minio.Options{
		Creds: credentials.NewStaticV4("test-key", "test-secret", ""), Secure: f.srv.TLS != nil,
		Transport: f.faults.base, Region: "us-east-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *fakeS3) keys(t *testing.T) []string {
	t.Helper()
	var out []string
	for obj := range f.raw(t).ListObjectsIter(context.Background(), testBucket, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		out = append(out, obj.Key)
	}
	return out
}

func (f *fakeS3) put(t *testing.T, key string, b []byte) {
	t.Helper()
	if _, err := f.raw(t).PutObject(context.Background(), testBucket, key, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
}

// faultTransport injects faults into the HTTP requests of a client: it
// answers requests that match a rule with an error status or a broken
// connection before they reach the server, or cuts response bodies short.
// Everything else goes to the real server.
type faultTransport struct {
	base *http.Transport
	mu   struct {
		sync.Mutex
		rules    []*fault
		requests []string // "METHOD path?query" of every request seen
	}
}

type fault struct {
	match  func(*http.Request) bool // nil: every request
	times  int                      // how many requests it hits; <0: all
	status int                      // answer with this status and code...
	code   string
	reset  bool                // ...or with a connection reset
	cutAt  int64               // ...or pass the request and reset the response body after cutAt bytes (if > 0)
	before func(*http.Request) // run before the request is passed on
	strip  string              // request header to remove
}

func (ft *faultTransport) inject(f *fault) {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	ft.mu.rules = append(ft.mu.rules, f)
}

func (ft *faultTransport) clear() {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	ft.mu.rules = nil
	ft.mu.requests = nil
}

func (ft *faultTransport) requests() []string {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return append([]string(nil), ft.mu.requests...)
}

func (ft *faultTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ft.mu.Lock()
	ft.mu.requests = append(ft.mu.requests, req.Method+" "+req.URL.RequestURI())
	var hit *fault
	for _, f := range ft.mu.rules {
		if f.times != 0 && (f.match == nil || f.match(req)) {
			if f.times > 0 {
				f.times--
			}
			hit = f
			break
		}
	}
	ft.mu.Unlock()
	if hit == nil {
		return ft.base.RoundTrip(req)
	}
	if hit.before != nil {
		hit.before(req)
	}
	if hit.strip != "" {
		req = req.Clone(req.Context())
		req.Header.Del(hit.strip)
	}
	switch {
	case hit.status != 0:
		if req.Body != nil {
			req.Body.Close()
		}
		body := "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>" + hit.code + "</Code><Message>injected " + hit.code + "</Message></Error>"
		return &http.Response{
			StatusCode: hit.status, Status: http.StatusText(hit.status), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{"Content-Type": {"application/xml"}}, Body: io.NopCloser(strings.NewReader(body)),
			ContentLength: int64(len(body)), Request: req,
		}, nil
	case hit.reset:
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	}
	resp, err := ft.base.RoundTrip(req)
	if err == nil && hit.cutAt > 0 {
		resp.Body = &cutBody{ReadCloser: resp.Body, left: hit.cutAt}
	}
	return resp, err
}

// cutBody is a response body whose connection resets after left bytes.
type cutBody struct {
	io.ReadCloser
	left int64
}

func (c *cutBody) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.ReadCloser.Read(p)
	c.left -= int64(n)
	return n, err
}

func isGet(r *http.Request) bool { return r.Method == http.MethodGet && !r.URL.Query().Has("uploads") }
func isPartPut(r *http.Request) bool {
	return r.Method == http.MethodPut && r.URL.Query().Has("partNumber")
}
func keyIs(suffix string) func(*http.Request) bool {
	return func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, suffix) }
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// writeChunks writes b in uneven chunks, as a snapshot writer does.
func writeChunks(t *testing.T, w storage.StreamWriter, b []byte) {
	t.Helper()
	for len(b) > 0 {
		k := min(len(b), 1<<20+7)
		n, err := w.Write(b[:k])
		if err != nil || n != k {
			t.Fatalf("write: %d of %d: %v", n, k, err)
		}
		b = b[k:]
	}
}

// A blob larger than two parts goes up as a multipart upload and comes back
// byte for byte, even when part uploads and reads fail on the way.
func TestS3MultipartRoundTrip(t *testing.T) {
	f := newFakeS3(t)
	s := f.open(t, "jobs/big", nil)
	want := randomBytes(20<<20+12345, 1)
	f.faults.inject(&fault{match: isPartPut, times: 1, status: http.StatusServiceUnavailable, code: "SlowDown"})
	f.faults.inject(&fault{match: isPartPut, times: 1, reset: true})
	w, err := s.CreateStream(ctx, 9, "1-0-0.keyed")
	if err != nil {
		t.Fatal(err)
	}
	writeChunks(t, w, want)
	h, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if h.Path != "chk-9/1-0-0.keyed" || h.Size != int64(len(want)) {
		t.Fatalf("handle %+v", h)
	}
	var parts, completes int
	for _, r := range f.faults.requests() {
		if strings.HasPrefix(r, "PUT ") && strings.Contains(r, "partNumber=") {
			parts++
		}
		if strings.HasPrefix(r, "POST ") && strings.Contains(r, "uploadId=") {
			completes++
		}
	}
	if parts != 3+2 || completes != 1 {
		t.Fatalf("%d part uploads (want 3 parts + 2 retries) and %d completes:\n%s", parts, completes, strings.Join(f.faults.requests(), "\n"))
	}
	// Reading survives a connection reset in the middle of the body.
	f.faults.clear()
	f.faults.inject(&fault{match: isGet, times: 2, cutAt: 3 << 20})
	if got := readAll(t, s, h); !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes, differing from the %d written", len(got), len(want))
	}
	ranged := 0
	for _, r := range f.faults.requests() {
		if strings.HasPrefix(r, "GET ") {
			ranged++
		}
	}
	if ranged != 3 {
		t.Fatalf("%d GETs for a read cut twice, want 3", ranged)
	}
}

// The objects are laid out like the file storage under the key prefix.
func TestS3Layout(t *testing.T) {
	f := newFakeS3(t)
	s := f.open(t, "/jobs/a/", nil)
	if s.String() != "s3://"+testBucket+"/jobs/a?endpoint="+f.endpoint()+"&region=us-east-1" {
		t.Fatalf("String() = %s", s)
	}
	w, _ := s.CreateStream(ctx, 3, "3-1-0.keyed")
	io.WriteString(w, "keyed")
	h, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	w, _ = s.CreateShared(ctx, "3-1-0-000001.sst")
	io.WriteString(w, "sst")
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, sampleMetadata(3, h)); err != nil {
		t.Fatal(err)
	}
	want := []string{"jobs/a/chk-3/3-1-0.keyed", "jobs/a/chk-3/_metadata", "jobs/a/shared/3-1-0-000001.sst"}
	if got := f.keys(t); !reflect.DeepEqual(got, want) {
		t.Fatalf("keys %v, want %v", got, want)
	}
	// Another prefix in the same bucket is another storage; "chk-30" is
	// not "chk-3".
	other := f.open(t, "jobs/b", nil)
	if c, err := other.Completed(ctx); err != nil || len(c) != 0 {
		t.Fatalf("other prefix sees %v %v", c, err)
	}
	w, _ = s.CreateStream(ctx, 30, "x")
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Discard(ctx, 3); err != nil {
		t.Fatal(err)
	}
	want = []string{"jobs/a/chk-30/x", "jobs/a/shared/3-1-0-000001.sst"}
	if got := f.keys(t); !reflect.DeepEqual(got, want) {
		t.Fatalf("after discard: keys %v, want %v", got, want)
	}
	// Debris that is not a checkpoint is ignored.
	f.put(t, "jobs/a/chk-x/y", []byte("?"))
	f.put(t, "jobs/a/chk-0/y", []byte("?"))
	f.put(t, "jobs/a/chk-31", []byte("?"))
	if m, err := s.MaxID(ctx); err != nil || m != 30 {
		t.Fatalf("max id %d %v", m, err)
	}
}

// Discard removes the commit point before anything else.
func TestS3DiscardDeletesMetadataFirst(t *testing.T) {
	f := newFakeS3(t)
	s := f.open(t, "", nil)
	for _, n := range []string{"a", "b"} {
		w, _ := s.CreateStream(ctx, 4, n)
		if _, err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(ctx, sampleMetadata(4, checkpoint.StreamHandle{Path: "chk-4/a"})); err != nil {
		t.Fatal(err)
	}
	f.faults.clear()
	if err := s.Discard(ctx, 4); err != nil {
		t.Fatal(err)
	}
	var deletes []string
	for _, r := range f.faults.requests() {
		if strings.HasPrefix(r, "DELETE ") {
			deletes = append(deletes, strings.TrimPrefix(r, "DELETE /"+testBucket+"/"))
		}
	}
	if len(deletes) != 3 || deletes[0] != "chk-4/_metadata" {
		t.Fatalf("deletes %v, want chk-4/_metadata first", deletes)
	}
	// A discard that fails after removing _metadata leaves no checkpoint.
	w, _ := s.CreateStream(ctx, 5, "a")
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, sampleMetadata(5, checkpoint.StreamHandle{Path: "chk-5/a"})); err != nil {
		t.Fatal(err)
	}
	f.faults.inject(&fault{match: keyIs("chk-5/a"), times: -1, status: http.StatusForbidden, code: "AccessDenied"})
	if err := s.Discard(ctx, 5); err == nil || !strings.Contains(err.Error(), "chk-5/a") {
		t.Fatalf("failed discard: %v", err)
	}
	if c, _ := s.Completed(ctx); len(c) != 0 {
		t.Fatalf("half-discarded checkpoint still completed: %v", c)
	}
}

// _metadata is created, never overwritten: on servers that honour
// If-None-Match the create is atomic, elsewhere a stat guards it.
func TestS3CommitIsConditional(t *testing.T) {
	f := newFakeS3(t)
	s := f.open(t, "jobs/c", nil)
	h := checkpoint.StreamHandle{Path: "chk-7/x", Size: 1}
	md := sampleMetadata(7, h)
	if err := s.Commit(ctx, md); err != nil {
		t.Fatal(err)
	}
	other := sampleMetadata(7, h)
	other.JobName = "another job"
	err := s.Commit(ctx, other)
	if !errors.Is(err, storage.ErrExists) || !strings.Contains(err.Error(), "s3://"+testBucket+"/jobs/c/chk-7/_metadata") {
		t.Fatalf("second commit of checkpoint 7: %v", err)
	}
	if back, err := s.ReadMetadata(ctx, 7); err != nil || back.JobName != "job" {
		t.Fatalf("metadata after refused overwrite: %+v %v", back, err)
	}

	// A concurrent committer slips in between the stat and the PUT: the
	// conditional PUT refuses to overwrite.
	sneaky := sampleMetadata(8, h)
	sneaky.JobName = "another job"
	var sneakOnce sync.Once
	sneak := func(*http.Request) {
		sneakOnce.Do(func() {
			b, err := storage.EncodeMetadata(sneaky)
			if err != nil {
				t.Error(err)
				return
			}
			f.put(t, "jobs/c/chk-8/_metadata", b)
		})
	}
	f.faults.inject(&fault{match: func(r *http.Request) bool {
		return r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "chk-8/_metadata")
	}, times: 1, before: sneak})
	err = s.Commit(ctx, sampleMetadata(8, h))
	if !errors.Is(err, storage.ErrExists) {
		t.Fatalf("commit racing another committer: %v", err)
	}
	if back, err := s.ReadMetadata(ctx, 8); err != nil || back.JobName != "another job" {
		t.Fatalf("the first committer's metadata was overwritten: %+v %v", back, err)
	}

	// A server that ignores If-None-Match: the stat still refuses.
	f.faults.inject(&fault{times: -1, strip: "If-None-Match"})
	if err := s.Commit(ctx, other); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("commit without If-None-Match support: %v", err)
	}

	// A commit whose answer was lost is retried and finds its own
	// _metadata: success.
	f.faults.clear()
	lost := &lostAnswer{ft: f.faults.base, key: "chk-9/_metadata"}
	s9 := f.open(t, "jobs/c", func(o *Options) { o.Transport = lost })
	if err := s9.Commit(ctx, sampleMetadata(9, h)); err != nil {
		t.Fatalf("commit retried after a lost answer: %v", err)
	}
	if lost.lost != 1 {
		t.Fatalf("%d answers lost", lost.lost)
	}
}

// lostAnswer passes the first PUT of key to the server and then reports a
// connection reset instead of the server's answer.
type lostAnswer struct {
	ft   http.RoundTripper
	key  string
	mu   sync.Mutex
	lost int
}

func (l *lostAnswer) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.ft.RoundTrip(req)
	if err != nil || req.Method != http.MethodPut || !strings.HasSuffix(req.URL.Path, l.key) {
		return resp, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost > 0 {
		return resp, err
	}
	l.lost++
	resp.Body.Close()
	return nil, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
}

// A blob that is missing, shorter, longer or otherwise replaced is an
// error naming its key, never wrong state.
func TestS3DetectsDamagedBlobs(t *testing.T) {
	f := newFakeS3(t)
	s := f.open(t, "jobs/d", nil)
	w, _ := s.CreateStream(ctx, 2, "0-0-0.keyed")
	io.WriteString(w, "0123456789")
	h, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	const key = "s3://" + testBucket + "/jobs/d/chk-2/0-0-0.keyed"
	for _, tc := range []struct {
		content []byte
		want    string
	}{
		{[]byte("01234"), "has 5 bytes, the checkpoint recorded 10 (truncated or replaced)"},
		{[]byte("0123456789ABC"), "has 13 bytes, the checkpoint recorded 10 (truncated or replaced)"},
		{nil, "missing"},
	} {
		if tc.content == nil {
			if err := f.raw(t).RemoveObject(context.Background(), testBucket, "jobs/d/chk-2/0-0-0.keyed", minio.RemoveObjectOptions{}); err != nil {
				t.Fatal(err)
			}
		} else {
			f.put(t, "jobs/d/chk-2/0-0-0.keyed", tc.content)
		}
		r, err := s.OpenStream(ctx, h)
		if err == nil {
			r.Close()
		}
		if err == nil || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%q: %v, want an error naming %s and saying %q", tc.content, err, key, tc.want)
		}
	}
	for _, p := range []string{"../chk-2/x", "/etc/passwd", "chk-2//x", "chk-2/./x", `chk-2\x`} {
		if _, err := s.OpenStream(ctx, checkpoint.StreamHandle{Path: p, Size: 1}); err == nil || !strings.Contains(err.Error(), "leaves the checkpoint storage") {
			t.Fatalf("handle path %q: %v", p, err)
		}
	}
	// Damaged metadata names its object.
	if err := s.Commit(ctx, sampleMetadata(3, h)); err != nil {
		t.Fatal(err)
	}
	b, err := storage.EncodeMetadata(sampleMetadata(3, h))
	if err != nil {
		t.Fatal(err)
	}
	b[30] ^= 1
	f.put(t, "jobs/d/chk-3/_metadata", b)
	if _, err := s.ReadMetadata(ctx, 3); err == nil || !strings.Contains(err.Error(), "s3://"+testBucket+"/jobs/d/chk-3/_metadata") || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("damaged metadata: %v", err)
	}
	if _, err := s.ReadMetadata(ctx, 4); err == nil || !strings.Contains(err.Error(), "checkpoint 4 has no s3://"+testBucket+"/jobs/d/chk-4/_metadata") {
		t.Fatalf("absent metadata: %v", err)
	}
}

// Transient failures are retried with backoff, a bounded number of times;
// permanent ones are not; the error names the operation and the object.
func TestS3Retries(t *testing.T) {
	f := newFakeS3(t)
	s := f.open(t, "jobs/r", nil)

	f.faults.inject(&fault{times: 2, status: http.StatusServiceUnavailable, code: "SlowDown"})
	f.faults.inject(&fault{times: 1, reset: true})
	f.faults.inject(&fault{times: 1, status: http.StatusInternalServerError, code: "InternalError"})
	w, err := s.CreateStream(ctx, 1, "a")
	if err != nil {
		t.Fatalf("create with 4 transient failures: %v", err)
	}
	io.WriteString(w, "abc")
	h, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, sampleMetadata(1, h)); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, h); string(got) != "abc" {
		t.Fatalf("read back %q", got)
	}
	if r := f.faults.requests(); len(r) < 5 || !strings.HasPrefix(r[4], "HEAD ") {
		t.Fatalf("the create was not retried 4 times: %v", r)
	}

	// Every call gives up after MaxAttempts.
	for name, call := range map[string]func() error{
		"commit":  func() error { return s.Commit(ctx, sampleMetadata(2, h)) },
		"read":    func() error { _, err := s.ReadMetadata(ctx, 1); return err },
		"list":    func() error { _, err := s.Completed(ctx); return err },
		"discard": func() error { return s.Discard(ctx, 1) },
		"shared":  func() error { _, err := s.ListShared(ctx); return err },
		"delete":  func() error { return s.DeleteShared(ctx, "x") },
		"open":    func() error { _, err := s.OpenStream(ctx, h); return err },
		"create":  func() error { _, err := s.CreateStream(ctx, 3, "b"); return err },
		"upload": func() error {
			w, err := s.CreateStream(ctx, 3, "c")
			if err != nil {
				return err
			}
			f.faults.inject(&fault{times: -1, reset: true})
			_, err = w.Close()
			return err
		},
	} {
		f.faults.clear()
		if name != "upload" {
			f.faults.inject(&fault{times: -1, status: http.StatusServiceUnavailable, code: "SlowDown"})
		}
		err := call()
		if err == nil || !strings.Contains(err.Error(), "gave up after 5 attempts") || !strings.Contains(err.Error(), "s3://"+testBucket+"/jobs/r/") {
			t.Fatalf("%s against a server that always fails: %v", name, err)
		}
		if name != "upload" && !strings.Contains(err.Error(), "SlowDown, HTTP 503") {
			t.Fatalf("%s: error does not say what the server answered: %v", name, err)
		}
		if n := len(f.faults.requests()); n != 5 && name != "upload" {
			t.Fatalf("%s: %d requests, want 5", name, n)
		}
	}

	// A permanent error is not retried.
	f.faults.clear()
	f.faults.inject(&fault{times: -1, status: http.StatusForbidden, code: "AccessDenied"})
	err = s.Commit(ctx, sampleMetadata(2, h))
	if err == nil || !strings.Contains(err.Error(), "AccessDenied, HTTP 403") || !strings.Contains(err.Error(), "chk-2/_metadata") {
		t.Fatalf("commit denied: %v", err)
	}
	if n := len(f.faults.requests()); n != 1 {
		t.Fatalf("a permanent error was tried %d times", n)
	}
}

// Abort leaves nothing behind: no object, no pending multipart upload.
func TestS3Abort(t *testing.T) {
	f := newFakeS3(t)
	s := f.open(t, "jobs/x", func(o *Options) { o.PartSize = 5 << 20 })
	w, _ := s.CreateStream(ctx, 1, "small")
	io.WriteString(w, "abc")
	w.Abort()
	w, _ = s.CreateStream(ctx, 1, "big")
	writeChunks(t, w, randomBytes(11<<20, 2))
	w.Abort()
	if _, err := w.Write([]byte("x")); err == nil {
		t.Fatal("wrote to an aborted stream")
	}
	if _, err := w.Close(); err == nil {
		t.Fatal("closed an aborted stream")
	}
	w, _ = s.CreateShared(ctx, "1-closed")
	io.WriteString(w, "abc")
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w.Abort()
	if keys := f.keys(t); len(keys) != 0 {
		t.Fatalf("left behind %v", keys)
	}
	res, err := minio.Core{Client: f.raw(t)}.ListMultipartUploads(context.Background(), testBucket, "jobs/x/chk-1/big", "", "", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Uploads) != 0 {
		t.Fatalf("pending multipart uploads %+v", res.Uploads)
	}
	// A failing upload cleans up after itself too.
	w, _ = s.CreateStream(ctx, 1, "failing")
	writeChunks(t, w, randomBytes(6<<20, 3))
	f.faults.inject(&fault{match: func(r *http.Request) bool { return r.Method == http.MethodPost }, times: -1, status: http.StatusBadRequest, code: "InvalidPart"})
	if _, err := w.Close(); err == nil || !strings.Contains(err.Error(), "complete multipart upload of s3://"+testBucket+"/jobs/x/chk-1/failing") {
		t.Fatalf("close with a failing complete: %v", err)
	}
	res, err = minio.Core{Client: f.raw(t)}.ListMultipartUploads(context.Background(), testBucket, "jobs/x/chk-1/failing", "", "", "", 100)
	if err != nil || len(res.Uploads) != 0 {
		t.Fatalf("pending multipart uploads after a failed close %+v %v", res.Uploads, err)
	}
}

func TestS3Options(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	for _, tc := range []struct{ loc, want string }{
		{"s3://", "no bucket"},
		{"s3:///prefix", "no bucket"},
		{"s3://no..dots/x", "bucket name"},
		{"s3://bkt?endpoint=http://x:9000", "must be host[:port] without a scheme"},
		{"s3://bkt?endpoint=x:99999", "bad port"},
		{"s3://bkt?endpoint=", "empty endpoint"},
		{"s3://bkt?insecure=maybe", `insecure="maybe" is not a boolean`},
		{"s3://bkt?regoin=eu", `unknown parameter "regoin"`},
		{"s3://bkt?region=a&region=b", "given 2 times"},
		{"s3://key:secret@bkt/x", "credentials do not go in the URL"},
		{"s3://bkt/a//b", "bad key prefix"},
		{"s3://bkt/a/../b", "bad key prefix"},
		{"s3://bkt/x#frag", "unexpected fragment"},
	} {
		_, err := parseLocation(tc.loc, getenv)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: %v, want %q", tc.loc, err, tc.want)
		}
		if strings.Contains(tc.loc, "secret") && strings.Contains(err.Error(), "secret") {
			t.Fatalf("%s: the error repeats the secret: %v", tc.loc, err)
		}
	}
	env["AWS_ACCESS_KEY_ID"] = "aws-id"
	if _, err := parseLocation("s3://bkt", getenv); err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not") {
		t.Fatalf("half the credentials: %v", err)
	}
	env["AWS_SECRET_ACCESS_KEY"] = "aws-secret"
	o, err := parseLocation("s3://bkt/p/q/?endpoint=minio:9000&region=eu-1&insecure=true", getenv)
	if err != nil {
		t.Fatal(err)
	}
	if o.Bucket != "bkt" || o.Prefix != "p/q" || o.Endpoint != "minio:9000" || o.Region != "eu-1" || !o.Insecure || o.AccessKey != "aws-id" || o.SecretKey != "aws-secret" {
		t.Fatalf("options %+v", o)
	}
	env["WEIR_S3_ACCESS_KEY"], env["WEIR_S3_SECRET_KEY"] = "weir-id", "weir-secret"
	if o, err := parseLocation("s3://bkt", getenv); err != nil || o.AccessKey != "weir-id" || o.Endpoint != DefaultEndpoint {
		t.Fatalf("weir credentials: %+v %v", o, err)
	}
	if _, err := New(context.Background(), Options{Bucket: "bkt", PartSize: 1 << 20}); err == nil || !strings.Contains(err.Error(), "part size") {
		t.Fatalf("tiny part size: %v", err)
	}
}

// Open speaks s3:// with the credentials of the environment; a missing
// bucket or an untrusted certificate fail at open with a clear error.
func TestOpenS3(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "test-key")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
	t.Setenv("WEIR_S3_ACCESS_KEY", "")
	t.Setenv("WEIR_S3_SECRET_KEY", "")

	// Plain HTTP: payloads are signed, not aws-chunked, so multipart
	// uploads arrive intact even at gofakes3.
	f := startFakeS3(t, false)
	loc := "s3://" + testBucket + "/jobs/open?endpoint=" + f.endpoint() + "&region=us-east-1&insecure=true"
	st, err := storage.Open(ctx, loc)
	if err != nil {
		t.Fatal(err)
	}
	if st.String() != loc {
		t.Fatalf("String() = %s, want %s", st, loc)
	}
	want := randomBytes(17<<20, 4)
	w, err := st.CreateStream(ctx, 1, "big")
	if err != nil {
		t.Fatal(err)
	}
	writeChunks(t, w, want)
	h, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, st, h); !bytes.Equal(got, want) {
		t.Fatalf("multipart blob over plain HTTP: %d bytes read back differ", len(got))
	}

	// A restore path names a checkpoint in S3 (query parameters kept).
	if err := st.Commit(ctx, sampleMetadata(1, h)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		"s3://" + testBucket + "/jobs/open/chk-1?endpoint=" + f.endpoint() + "&region=us-east-1&insecure=true",
		"s3://" + testBucket + "/jobs/open/chk-1/_metadata?endpoint=" + f.endpoint() + "&region=us-east-1&insecure=true",
		loc, // the storage root: its latest checkpoint
	} {
		rs, id, err := storage.ResolveRestorePath(ctx, p)
		if err != nil || id != 1 || rs.String() != loc {
			t.Fatalf("ResolveRestorePath(%s) = %v, %d, %v", p, rs, id, err)
		}
	}
	if _, _, err := storage.ResolveRestorePath(ctx, "s3://"+testBucket+"/jobs/open/chk-9?endpoint="+f.endpoint()+"&region=us-east-1&insecure=true"); err == nil || !strings.Contains(err.Error(), "checkpoint 9") {
		t.Fatalf("restore path of a missing checkpoint: %v", err)
	}

	// Without a region the server is asked for it.
	st2, err := storage.Open(ctx, "s3://"+testBucket+"/jobs/open?endpoint="+f.endpoint()+"&insecure=1")
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, st2, h); !bytes.Equal(got, want) {
		t.Fatal("a storage opened without a region reads other bytes")
	}

	if _, err := storage.Open(ctx, "s3://no-such-bucket/x?endpoint="+f.endpoint()+"&region=us-east-1&insecure=true"); err == nil || !strings.Contains(err.Error(), `bucket "no-such-bucket" does not exist`) {
		t.Fatalf("missing bucket: %v", err)
	}
	// TLS by default: a server whose certificate nobody trusts is refused
	// at once, not retried.
	tf := newFakeS3(t)
	start := time.Now()
	_, err = storage.Open(ctx, "s3://"+testBucket+"?endpoint="+tf.endpoint()+"&region=us-east-1")
	if err == nil || !strings.Contains(err.Error(), "certificate") || strings.Contains(err.Error(), "attempts") {
		t.Fatalf("untrusted certificate: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("refusing an untrusted certificate took %s", d)
	}
	// Nobody listening.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	if _, err := New(context.Background(), Options{Endpoint: addr, Bucket: testBucket, Region: "us-east-1", RetryBase: time.Millisecond}); err == nil || !strings.Contains(err.Error(), "gave up after 5 attempts") || !strings.Contains(err.Error(), "s3://"+testBucket) {
		t.Fatalf("nobody listening: %v", err)
	}
}

func TestS3ListIsSorted(t *testing.T) {
	f := newFakeS3(t)
	s := f.open(t, "l", nil)
	for _, id := range []checkpoint.ID{10, 9, 100, 2} {
		if err := s.Commit(ctx, sampleMetadata(id, checkpoint.StreamHandle{Path: "x", Size: 1})); err != nil {
			t.Fatal(err)
		}
	}
	c, err := s.Completed(ctx)
	if err != nil || !sort.SliceIsSorted(c, func(i, j int) bool { return c[i] < c[j] }) || !reflect.DeepEqual(c, []checkpoint.ID{2, 9, 10, 100}) {
		t.Fatalf("completed %v %v", c, err)
	}
	if id, ok, err := s.Latest(ctx); err != nil || !ok || id != 100 {
		t.Fatalf("latest %d %v %v", id, ok, err)
	}
}

// TestConformance runs the checkpoint storage conformance suite on S3.
func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) *storage.Storage { return newFakeS3(t).open(t, "jobs/conformance", nil) })
}

// hangingS3 serves gofakes3 until told to hang: then every request (or, with
// midBody, every GET after the first bytes of its body) blocks until its
// client goes away.
type hangingS3 struct {
	next    http.Handler
	hang    atomic.Bool
	midBody atomic.Bool
	release chan struct{}
}

func (h *hangingS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case h.hang.Load():
		select {
		case <-r.Context().Done():
		case <-h.release:
		}
	case h.midBody.Load() && r.Method == http.MethodGet && !r.URL.Query().Has("list-type"):
		h.next.ServeHTTP(&stallingWriter{ResponseWriter: w, left: 1 << 10, r: r, release: h.release}, r)
	default:
		h.next.ServeHTTP(w, r)
	}
}

// stallingWriter passes left bytes of a body and then blocks.
type stallingWriter struct {
	http.ResponseWriter
	left    int
	r       *http.Request
	release chan struct{}
}

func (w *stallingWriter) Write(p []byte) (int, error) {
	if len(p) <= w.left {
		w.left -= len(p)
		return w.ResponseWriter.Write(p)
	}
	n, _ := w.ResponseWriter.Write(p[:w.left])
	w.left = 0
	w.ResponseWriter.(http.Flusher).Flush()
	select {
	case <-w.r.Context().Done():
	case <-w.release:
	}
	return n, errors.New("stalled")
}

// A server that stops answering holds no call whose context ends: every
// call returns promptly with the context's error (the attempt timeout is
// minutes), and leaves no goroutine behind.
func TestS3CancelWhileServerHangs(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() { storagetest.CheckGoroutines(t, before) })
	backend := s3mem.New()
	if err := backend.CreateBucket(testBucket); err != nil {
		t.Fatal(err)
	}
	h := &hangingS3{next: gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog())).Server(), release: make(chan struct{})}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(h.release) }) // before srv.Close: it waits for the handlers
	transport := srv.Client().Transport.(*http.Transport).Clone()
	t.Cleanup(transport.CloseIdleConnections)
	store, err := New(ctx, Options{
		Endpoint: strings.TrimPrefix(srv.URL, "https://"), Bucket: testBucket, Prefix: "hang", Region: "us-east-1",
		AccessKey: "test-key", SecretKey: "test-secret", Transport: transport, PartSize: 5 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := storage.New(store)
	w, err := s.CreateStream(ctx, 1, "a")
	if err != nil {
		t.Fatal(err)
	}
	blob := randomBytes(1<<20, 5)
	w.Write(blob)
	hd, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, sampleMetadata(1, hd)); err != nil {
		t.Fatal(err)
	}

	calls := map[string]func(ctx context.Context) error{
		"Commit":       func(ctx context.Context) error { return s.Commit(ctx, sampleMetadata(2, hd)) },
		"ReadMetadata": func(ctx context.Context) error { _, err := s.ReadMetadata(ctx, 1); return err },
		"Completed":    func(ctx context.Context) error { _, err := s.Completed(ctx); return err },
		"Discard":      func(ctx context.Context) error { return s.Discard(ctx, 7) },
		"ListShared":   func(ctx context.Context) error { _, err := s.ListShared(ctx); return err },
		"DeleteShared": func(ctx context.Context) error { return s.DeleteShared(ctx, "1-x") },
		"CreateStream": func(ctx context.Context) error { _, err := s.CreateStream(ctx, 2, "b"); return err },
		"OpenStream":   func(ctx context.Context) error { _, err := s.OpenStream(ctx, hd); return err },
		"Open": func(ctx context.Context) error {
			_, err := New(ctx, Options{Endpoint: strings.TrimPrefix(srv.URL, "https://"), Bucket: testBucket, Prefix: "hang",
				Region: "us-east-1", AccessKey: "test-key", SecretKey: "test-secret", Transport: transport})
			return err
		},
		"Close": func(ctx context.Context) error {
			h.hang.Store(false)
			w, err := s.CreateStream(ctx, 3, "small")
			h.hang.Store(true)
			if err != nil {
				return err
			}
			w.Write([]byte("abc"))
			_, err = w.Close()
			return err
		},
		"Multipart": func(ctx context.Context) error {
			h.hang.Store(false)
			w, err := s.CreateStream(ctx, 3, "big")
			h.hang.Store(true)
			if err != nil {
				return err
			}
			if _, err := w.Write(randomBytes(6<<20, 6)); err != nil {
				return err
			}
			_, err = w.Close()
			return err
		},
		"Read": func(ctx context.Context) error {
			h.hang.Store(false)
			h.midBody.Store(true)
			defer h.midBody.Store(false)
			r, err := s.OpenStream(ctx, hd)
			if err != nil {
				return err
			}
			defer r.Close()
			_, err = io.Copy(io.Discard, r)
			return err
		},
	}
	for name, call := range calls {
		h.hang.Store(true)
		c, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- call(c) }()
		time.Sleep(50 * time.Millisecond)
		start := time.Now()
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s: %v, want the context's error", name, err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("%s returned %s after its context ended", name, d)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still waits for a hanging server 10 s after its context ended", name)
		}
	}
	h.hang.Store(false)
	// The store still works.
	if got := readAll(t, s, hd); !bytes.Equal(got, blob) {
		t.Fatal("read back other bytes")
	}
}
