// Package s3 keeps weir checkpoints in a bucket of an S3-compatible object
// store: a storage.BlobStore over minio-go, registered as the s3:// scheme
// of storage.Open and storage.ResolveRestorePath. Import it (package
// jobflags does) to use s3:// locations; a program that does not import it
// links no S3 client. Its requests, retries and errors are described in package
// storage's documentation, section S3.
package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/weirstream/weir/storage"
)

func init() {
	storage.RegisterScheme("s3", func(ctx context.Context, location string) (storage.BlobStore, error) {
		s, err := Open(ctx, location)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return s, nil
	})
}

// Defaults of Options.
const (
	DefaultEndpoint       = "s3.amazonaws.com"
	DefaultPartSize       = 8 << 20
	DefaultMaxAttempts    = 5
	DefaultRetryBase      = 100 * time.Millisecond
	DefaultRetryMax       = 5 * time.Second
	DefaultRequestTimeout = 2 * time.Minute

	minS3PartSize = 5 << 20 // S3's smallest part (but the last)
	maxS3PartSize = 5 << 30 // S3's largest part
	maxS3Parts    = 10000   // S3's most parts in one upload
)

// Options configure New. Zero fields take the defaults.
type Options struct {
	// Endpoint is host[:port] of the S3 API, without a scheme
	// (DefaultEndpoint if empty).
	Endpoint string
	// Bucket must exist; New checks it.
	Bucket string
	// Prefix is the key prefix of the storage root inside the bucket,
	// without leading or trailing '/' ("" is the bucket root).
	Prefix string
	// Region of the bucket; empty asks the server.
	Region string
	// Insecure talks plain HTTP instead of TLS.
	Insecure bool
	// AccessKey, SecretKey and SessionToken sign the requests; an empty
	// AccessKey sends anonymous requests.
	AccessKey, SecretKey, SessionToken string
	// Transport carries the requests (nil: minio-go's default). Tests pass
	// one that trusts their TLS server.
	Transport http.RoundTripper
	// PartSize is how much of a stream is buffered in memory before it is
	// uploaded as one part of a multipart upload (DefaultPartSize,
	// between 5 MiB and 5 GiB). A blob smaller than PartSize is written
	// with one PUT. A blob holds at most 10000 parts.
	PartSize int64
	// MaxAttempts bounds the attempts of every call (DefaultMaxAttempts).
	MaxAttempts int
	// RetryBase is the wait before the second attempt, doubled for every
	// further one up to RetryMax, with jitter.
	RetryBase, RetryMax time.Duration
	// RequestTimeout bounds one attempt of one call until the response
	// headers arrive (DefaultRequestTimeout).
	RequestTimeout time.Duration
}

// Store is a storage.BlobStore in a bucket of an S3-compatible object
// store: key k is the object <prefix>/k. It is safe for concurrent use.
// Every call is retried on transient errors (network errors, HTTP 5xx,
// 429, SlowDown) with exponential backoff, at most MaxAttempts times, and
// gives up at once when its context ends.
type Store struct {
	client *minio.Client
	core   minio.Core
	opts   Options // normalized
}

// New returns the store described by o after checking that its bucket
// exists; ctx bounds that check.
func New(ctx context.Context, o Options) (*Store, error) {
	if err := normalizeOptions(&o); err != nil {
		return nil, err
	}
	creds := credentials.NewStaticV4(o.AccessKey, o.SecretKey, o.SessionToken)
	client, err := minio.New(o.Endpoint, &minio.Options{
		Creds:     creds,
		Secure:    !o.Insecure,
		Transport: o.Transport,
		Region:    o.Region,
		// One attempt per minio-go call: Store.retry is the only retry
		// loop, so that every call has the same bounded policy.
		MaxRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("cannot open checkpoint storage s3://%s at %s: %w", o.Bucket, o.Endpoint, err)
	}
	s := &Store{client: client, core: minio.Core{Client: client}, opts: o}
	var exists bool
	err = s.retry(ctx, "check bucket", "", func(ctx context.Context) error {
		var err error
		exists, err = client.BucketExists(ctx, o.Bucket)
		return err
	})
	if err != nil {
		if o.AccessKey == "" {
			return nil, fmt.Errorf("cannot open checkpoint storage %s (no credentials given, the requests were anonymous): %w", s, err)
		}
		return nil, fmt.Errorf("cannot open checkpoint storage %s: %w", s, err)
	}
	if !exists {
		return nil, fmt.Errorf("cannot open checkpoint storage %s: bucket %q does not exist at %s", s, o.Bucket, o.Endpoint)
	}
	return s, nil
}

func normalizeOptions(o *Options) error {
	if o.Bucket == "" {
		return errors.New("cannot open S3 checkpoint storage: no bucket")
	}
	if err := s3utils.CheckValidBucketName(o.Bucket); err != nil {
		return fmt.Errorf("cannot open S3 checkpoint storage: bucket name %q: %w", o.Bucket, err)
	}
	if o.Endpoint == "" {
		o.Endpoint = DefaultEndpoint
	}
	if strings.Contains(o.Endpoint, "://") || strings.ContainsAny(o.Endpoint, "/?#@ ") {
		return fmt.Errorf("cannot open S3 checkpoint storage: endpoint %q must be host[:port] without a scheme or path (plain HTTP is insecure=true)", o.Endpoint)
	}
	if host, port, err := net.SplitHostPort(o.Endpoint); err == nil {
		if host == "" {
			return fmt.Errorf("cannot open S3 checkpoint storage: endpoint %q has no host", o.Endpoint)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("cannot open S3 checkpoint storage: endpoint %q has a bad port", o.Endpoint)
		}
	}
	p := strings.Trim(o.Prefix, "/")
	if p != "" {
		for _, seg := range strings.Split(p, "/") {
			if seg == "" || seg == "." || seg == ".." || strings.Contains(seg, "\\") {
				return fmt.Errorf("cannot open S3 checkpoint storage: bad key prefix %q (empty, '.' or '..' segment, or a backslash)", o.Prefix)
			}
		}
	}
	o.Prefix = p
	if o.AccessKey == "" && o.SecretKey != "" || o.AccessKey != "" && o.SecretKey == "" {
		return errors.New("cannot open S3 checkpoint storage: an access key needs a secret key and the other way round")
	}
	if o.PartSize == 0 {
		o.PartSize = DefaultPartSize
	}
	if o.PartSize < minS3PartSize || o.PartSize > maxS3PartSize {
		return fmt.Errorf("cannot open S3 checkpoint storage: part size %d is outside [%d, %d]", o.PartSize, minS3PartSize, maxS3PartSize)
	}
	if o.MaxAttempts < 0 || o.RetryBase < 0 || o.RetryMax < 0 || o.RequestTimeout < 0 {
		return errors.New("cannot open S3 checkpoint storage: negative attempts, retry wait or timeout")
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.RetryBase == 0 {
		o.RetryBase = DefaultRetryBase
	}
	if o.RetryMax == 0 {
		o.RetryMax = max(DefaultRetryMax, o.RetryBase)
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	return nil
}

// Open opens "s3://bucket/prefix?endpoint=host:port&region=r&insecure=true"
// with the credentials of the environment (see the documentation of
// package storage); ctx bounds the check that the bucket exists, at most
// a minute.
func Open(ctx context.Context, location string) (*Store, error) {
	o, err := parseLocation(location, os.Getenv)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return New(ctx, o)
}

// parseLocation turns an s3:// location into options; credentials come
// from WEIR_S3_ACCESS_KEY/WEIR_S3_SECRET_KEY if either is set, else from
// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN).
func parseLocation(location string, getenv func(string) string) (Options, error) {
	var o Options
	u, err := url.Parse(location)
	if err != nil {
		return o, fmt.Errorf("bad S3 checkpoint storage location %q: %w", location, err)
	}
	if u.Scheme != "s3" {
		return o, fmt.Errorf("bad S3 checkpoint storage location %q: scheme is not s3://", location)
	}
	if u.User != nil {
		return o, fmt.Errorf("bad S3 checkpoint storage location %q: credentials do not go in the URL; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or WEIR_S3_ACCESS_KEY and WEIR_S3_SECRET_KEY)", redactUser(u))
	}
	if u.Host == "" {
		return o, fmt.Errorf("bad S3 checkpoint storage location %q: no bucket (want s3://bucket/prefix)", location)
	}
	if u.Fragment != "" {
		return o, fmt.Errorf("bad S3 checkpoint storage location %q: unexpected fragment #%s", location, u.Fragment)
	}
	o.Bucket = u.Host
	o.Prefix = u.Path
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return o, fmt.Errorf("bad S3 checkpoint storage location %q: %w", location, err)
	}
	for k, v := range q {
		if len(v) != 1 {
			return o, fmt.Errorf("bad S3 checkpoint storage location %q: parameter %s given %d times", location, k, len(v))
		}
		switch k {
		case "endpoint":
			o.Endpoint = v[0]
			if o.Endpoint == "" {
				return o, fmt.Errorf("bad S3 checkpoint storage location %q: empty endpoint", location)
			}
		case "region":
			o.Region = v[0]
		case "insecure":
			b, err := strconv.ParseBool(v[0])
			if err != nil {
				return o, fmt.Errorf("bad S3 checkpoint storage location %q: insecure=%q is not a boolean", location, v[0])
			}
			o.Insecure = b
		default:
			return o, fmt.Errorf("bad S3 checkpoint storage location %q: unknown parameter %q (known: endpoint, region, insecure)", location, k)
		}
	}
	ak, sk := getenv("WEIR_S3_ACCESS_KEY"), getenv("WEIR_S3_SECRET_KEY")
	akVar, skVar := "WEIR_S3_ACCESS_KEY", "WEIR_S3_SECRET_KEY"
	if ak == "" && sk == "" {
		ak, sk = getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY")
		akVar, skVar = "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"
		o.SessionToken = getenv("AWS_SESSION_TOKEN")
	}
	switch {
	case ak != "" && sk == "":
		return o, fmt.Errorf("S3 checkpoint storage %s: %s is set but %s is not", location, akVar, skVar)
	case ak == "" && sk != "":
		return o, fmt.Errorf("S3 checkpoint storage %s: %s is set but %s is not", location, skVar, akVar)
	}
	o.AccessKey, o.SecretKey = ak, sk
	if err := normalizeOptions(&o); err != nil {
		return o, err
	}
	return o, nil
}

func redactUser(u *url.URL) string {
	c := *u
	c.User = url.User("REDACTED")
	return c.String()
}

// String is the location of the store in the form Open accepts.
func (s *Store) String() string {
	loc := "s3://" + s.opts.Bucket
	if s.opts.Prefix != "" {
		loc += "/" + s.opts.Prefix
	}
	// host:port stays readable; anything odd is escaped.
	esc := func(v string) string { return strings.ReplaceAll(url.QueryEscape(v), "%3A", ":") }
	var q []string
	if s.opts.Endpoint != DefaultEndpoint {
		q = append(q, "endpoint="+esc(s.opts.Endpoint))
	}
	if s.opts.Region != "" {
		q = append(q, "region="+esc(s.opts.Region))
	}
	if s.opts.Insecure {
		q = append(q, "insecure=true")
	}
	if len(q) > 0 {
		loc += "?" + strings.Join(q, "&")
	}
	return loc
}

// key is the object key of a blob key (a path relative to the root).
func (s *Store) key(rel string) string {
	if s.opts.Prefix == "" {
		return rel
	}
	return s.opts.Prefix + "/" + rel
}

// where names an object in errors.
func (s *Store) where(key string) string { return "s3://" + s.opts.Bucket + "/" + key }

// Locate is the URL of the blob key: the store's location with key
// appended to its path and the query kept at the end
// ("s3://bucket/prefix/chk-7?endpoint=minio:9000").
func (s *Store) Locate(key string) string {
	loc, query, hasQuery := strings.Cut(s.String(), "?")
	loc += "/" + key
	if hasQuery {
		loc += "?" + query
	}
	return loc
}

// s3Error is a failed S3 call: what was done to which object, how often.
type s3Error struct {
	op       string
	where    string
	attempts int
	err      error
	ctxErr   error // the caller's context ended
}

func (e *s3Error) Error() string {
	var b strings.Builder
	b.WriteString("cannot ")
	b.WriteString(e.op)
	b.WriteString(" ")
	b.WriteString(e.where)
	if e.attempts > 1 {
		fmt.Fprintf(&b, " (gave up after %d attempts)", e.attempts)
	}
	b.WriteString(": ")
	b.WriteString(e.err.Error())
	var er minio.ErrorResponse
	if errors.As(e.err, &er) && (er.Code != "" || er.StatusCode != 0) {
		fmt.Fprintf(&b, " (%s, HTTP %d)", er.Code, er.StatusCode)
	}
	return b.String()
}

func (e *s3Error) Unwrap() []error {
	if e.ctxErr != nil {
		return []error{e.err, e.ctxErr}
	}
	return []error{e.err}
}

// retry runs call until it succeeds, fails permanently, ctx ends or
// MaxAttempts attempts failed. Each attempt gets RequestTimeout. A ctx
// already done makes no attempt.
func (s *Store) retry(ctx context.Context, op, key string, call func(ctx context.Context) error) error {
	where := "s3://" + s.opts.Bucket
	if key != "" {
		where = s.where(key)
	}
	if err := ctx.Err(); err != nil {
		return &s3Error{op: op, where: where, err: err}
	}
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
		err := call(actx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return &s3Error{op: op, where: where, attempts: attempt, err: err, ctxErr: ctx.Err()}
		}
		if !isTransient(err) || attempt >= s.opts.MaxAttempts {
			return &s3Error{op: op, where: where, attempts: attempt, err: err}
		}
		t := time.NewTimer(s.backoff(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return &s3Error{op: op, where: where, attempts: attempt, err: err, ctxErr: ctx.Err()}
		case <-t.C:
		}
	}
}

// backoff is the wait after the attempt-th failure: RetryBase doubled
// per attempt, capped at RetryMax, with up to half of it as jitter.
func (s *Store) backoff(attempt int) time.Duration {
	d := s.opts.RetryBase
	for i := 1; i < attempt && d < s.opts.RetryMax; i++ {
		d *= 2
	}
	d = min(d, s.opts.RetryMax)
	if half := int64(d / 2); half > 0 {
		d = time.Duration(half + rand.Int64N(half+1))
	}
	return d
}

// retryableS3Codes are the S3 error codes worth another attempt whatever
// their HTTP status.
var retryableS3Codes = map[string]bool{
	"SlowDown": true, "SlowDownRead": true, "SlowDownWrite": true,
	"RequestTimeout": true, "InternalError": true, "ServiceUnavailable": true,
	"Throttling": true, "ThrottlingException": true, "RequestLimitExceeded": true,
	"RequestThrottled": true, "RequestError": true,
}

// isTransient tells a failure worth another attempt (network errors, 5xx,
// 408, 429, SlowDown and friends) from a permanent one (4xx, bad
// certificates, bad arguments).
func isTransient(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true // the attempt's timeout; the caller checks its own context
	}
	var er minio.ErrorResponse
	if errors.As(err, &er) && (er.Code != "" || er.StatusCode != 0) {
		if retryableS3Codes[er.Code] {
			return true
		}
		switch s := er.StatusCode; {
		case s >= 500, s == http.StatusRequestTimeout, s == http.StatusTooManyRequests, s == 499:
			return true
		}
		return false
	}
	var (
		unknownCA x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		certErr   x509.CertificateInvalidError
		verifyErr *tls.CertificateVerificationError
		recordErr tls.RecordHeaderError
	)
	if errors.As(err, &unknownCA) || errors.As(err, &hostErr) || errors.As(err, &certErr) ||
		errors.As(err, &verifyErr) || errors.As(err, &recordErr) {
		return false
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) {
		return true
	}
	var ue *url.Error
	var ne net.Error
	return errors.As(err, &ue) || errors.As(err, &ne)
}

func isNotFound(err error) bool {
	var er minio.ErrorResponse
	if !errors.As(err, &er) {
		return false
	}
	return er.Code == minio.NoSuchKey || er.Code == "NotFound" || er.StatusCode == http.StatusNotFound && er.Code != minio.NoSuchBucket
}

func s3Code(err error) string {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		return er.Code
	}
	return ""
}

// stat returns the size of an object, ok=false if it does not exist.
func (s *Store) stat(ctx context.Context, op, key string) (size int64, ok bool, err error) {
	err = s.retry(ctx, op, key, func(ctx context.Context) error {
		info, err := s.client.StatObject(ctx, s.opts.Bucket, key, minio.StatObjectOptions{})
		size = info.Size
		return err
	})
	if err != nil {
		if isNotFound(err) {
			return 0, false, nil
		}
		return 0, false, err
	}
	return size, true, nil
}

// putObjectOptions are the options of every single PUT; ifNoneMatch makes
// it a conditional create.
func (s *Store) putObjectOptions(ifNoneMatch bool) minio.PutObjectOptions {
	o := minio.PutObjectOptions{
		ContentType: "application/octet-stream",
		// The payload is signed with the SHA-256 computed by payloadSums
		// over plain HTTP, and sent UNSIGNED-PAYLOAD over TLS: never as
		// aws-chunked frames, which some servers store verbatim.
		DisableContentSha256: true,
	}
	if ifNoneMatch {
		o.SetMatchETagExcept("*")
	}
	return o
}

// payloadSums returns the Content-MD5 (checked by the server) and, over
// plain HTTP, the SHA-256 that signs the payload.
func (s *Store) payloadSums(b []byte) (md5b64, sha256hex string) {
	m := md5.Sum(b)
	md5b64 = base64.StdEncoding.EncodeToString(m[:])
	if s.opts.Insecure {
		h := sha256.Sum256(b)
		sha256hex = hex.EncodeToString(h[:])
	}
	return md5b64, sha256hex
}

// put writes b as key with one PUT.
func (s *Store) put(ctx context.Context, op, key string, b []byte, ifNoneMatch bool) error {
	md5b64, sha := s.payloadSums(b)
	opts := s.putObjectOptions(ifNoneMatch)
	return s.retry(ctx, op, key, func(ctx context.Context) error {
		_, err := s.core.PutObject(ctx, s.opts.Bucket, key, bytes.NewReader(b), int64(len(b)), md5b64, sha, opts)
		return err
	})
}

// remove deletes an object; absent is no error.
func (s *Store) remove(ctx context.Context, op, key string) error {
	err := s.retry(ctx, op, key, func(ctx context.Context) error {
		return s.client.RemoveObject(ctx, s.opts.Bucket, key, minio.RemoveObjectOptions{})
	})
	if err != nil && isNotFound(err) {
		return nil
	}
	return err
}

// list returns the keys under the storage root that start with relPrefix,
// relative to the root. A transient failure restarts the listing.
func (s *Store) list(ctx context.Context, relPrefix string) ([]string, error) {
	prefix := s.key(relPrefix)
	var out []string
	err := s.retry(ctx, "list", prefix+"*", func(ctx context.Context) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		out = out[:0]
		for obj := range s.client.ListObjectsIter(ctx, s.opts.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
			if obj.Err != nil {
				return obj.Err
			}
			rel, ok := strings.CutPrefix(obj.Key, prefix)
			if !ok {
				continue
			}
			out = append(out, relPrefix+rel)
		}
		return nil
	})
	return out, err
}

// Put creates the object of key with one PUT conditional on its absence
// (If-None-Match: *), after a HEAD that checks it is not there yet (for
// servers that ignore the header). An object that exists, or appears
// between the HEAD and the PUT, is ErrExists.
func (s *Store) Put(ctx context.Context, key string, b []byte) error {
	if err := storage.CheckKey(key); err != nil {
		return err
	}
	full := s.key(key)
	if _, exists, err := s.stat(ctx, "check object", full); err != nil {
		return err
	} else if exists {
		return fmt.Errorf("%s %w", s.where(full), storage.ErrExists)
	}
	if err := s.put(ctx, "write object", full, b, true); err != nil {
		if s3Code(err) == "PreconditionFailed" {
			return fmt.Errorf("%s %w", s.where(full), storage.ErrExists)
		}
		return err
	}
	return nil
}

// Create starts the object of key after a HEAD that checks it is not
// there yet. The object becomes visible when Close returns.
func (s *Store) Create(ctx context.Context, key string) (storage.BlobWriter, error) {
	if err := storage.CheckKey(key); err != nil {
		return nil, err
	}
	full := s.key(key)
	// A guard against reused names (they are unique by construction), not
	// concurrency control: see the package doc.
	_, exists, err := s.stat(ctx, "check object", full)
	if err != nil {
		return nil, err
	}
	if exists {
		return nil, fmt.Errorf("cannot create %s: %w", s.where(full), storage.ErrExists)
	}
	return &s3Stream{ctx: ctx, s: s, key: full}, nil
}

// s3Stream buffers up to PartSize bytes; a blob that outgrows it becomes a
// multipart upload with one part per PartSize bytes. Used by one
// goroutine at a time; every request runs under ctx.
type s3Stream struct {
	ctx      context.Context
	s        *Store
	key      string // object key
	buf      []byte // bytes not yet uploaded, at most PartSize
	n        int64  // bytes written
	uploadID string // set once the first part is uploaded
	parts    []minio.CompletePart
	err      error // the first failure; the stream is dead after it
	closed   bool  // Close succeeded: the object exists
	done     bool  // Close or Abort was called
}

func (w *s3Stream) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("cannot write %s: closed", w.s.where(w.key))
	}
	if w.err != nil {
		return 0, w.err
	}
	if err := w.ctx.Err(); err != nil {
		w.err = fmt.Errorf("cannot write %s: %w", w.s.where(w.key), err)
		return 0, w.err
	}
	size := int(w.s.opts.PartSize)
	written := 0
	for len(p) > 0 {
		k := min(size-len(w.buf), len(p))
		if need := len(w.buf) + k; need > cap(w.buf) {
			// Grow by doubling, never beyond one part.
			nb := make([]byte, len(w.buf), min(size, max(need, 2*cap(w.buf), 64<<10)))
			copy(nb, w.buf)
			w.buf = nb
		}
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		written += k
		w.n += int64(k)
		if len(w.buf) == size {
			if err := w.uploadPart(); err != nil {
				w.err = err
				return written, err
			}
		}
	}
	return written, nil
}

// uploadPart uploads the buffer as the next part, starting the multipart
// upload if needed. The buffer is handed over, not reused: a transport may
// still read a failed attempt's body after the call returned.
func (w *s3Stream) uploadPart() error {
	s, ctx := w.s, w.ctx
	if w.uploadID == "" {
		err := s.retry(ctx, "start multipart upload of", w.key, func(ctx context.Context) error {
			id, err := s.core.NewMultipartUpload(ctx, s.opts.Bucket, w.key, s.putObjectOptions(false))
			w.uploadID = id
			return err
		})
		if err != nil {
			w.uploadID = ""
			return err
		}
	}
	num := len(w.parts) + 1
	if num > maxS3Parts {
		return fmt.Errorf("cannot write %s: more than %d parts of %d bytes (raise the part size)", s.where(w.key), maxS3Parts, s.opts.PartSize)
	}
	part := w.buf
	w.buf = nil
	md5b64, sha := s.payloadSums(part)
	var etag string
	err := s.retry(ctx, "upload part "+strconv.Itoa(num)+" of", w.key, func(ctx context.Context) error {
		p, err := s.core.PutObjectPart(ctx, s.opts.Bucket, w.key, w.uploadID, num, bytes.NewReader(part), int64(len(part)),
			minio.PutObjectPartOptions{Md5Base64: md5b64, Sha256Hex: sha, DisableContentSha256: true})
		etag = p.ETag
		return err
	})
	if err != nil {
		return err
	}
	w.parts = append(w.parts, minio.CompletePart{PartNumber: num, ETag: etag})
	return nil
}

// Close uploads what is buffered and returns once the object is durable.
// On failure nothing of the blob remains (but see Abort).
func (w *s3Stream) Close() error {
	if w.done {
		return fmt.Errorf("cannot close %s: already closed or aborted", w.s.where(w.key))
	}
	w.done = true
	if w.err != nil {
		w.abortUpload()
		return w.err
	}
	s, ctx := w.s, w.ctx
	if w.uploadID == "" {
		b := w.buf
		w.buf = nil
		if err := s.put(ctx, "write object", w.key, b, false); err != nil {
			return err
		}
	} else {
		if len(w.buf) > 0 {
			if err := w.uploadPart(); err != nil {
				w.abortUpload()
				return err
			}
		}
		if err := w.complete(ctx); err != nil {
			w.abortUpload()
			return err
		}
		w.uploadID = ""
	}
	w.closed = true
	return nil
}

// complete completes the multipart upload. If an attempt completed it but
// its answer was lost, the next one finds no upload: then the object of
// the right size is success.
func (w *s3Stream) complete(ctx context.Context) error {
	s := w.s
	attempts := 0
	err := s.retry(ctx, "complete multipart upload of", w.key, func(ctx context.Context) error {
		attempts++
		_, err := s.core.CompleteMultipartUpload(ctx, s.opts.Bucket, w.key, w.uploadID, w.parts, minio.PutObjectOptions{})
		return err
	})
	if err != nil && attempts > 1 && s3Code(err) == minio.NoSuchUpload {
		if size, ok, serr := s.stat(ctx, "check object", w.key); serr == nil && ok && size == w.n {
			return nil
		}
	}
	return err
}

// abortUpload aborts the pending multipart upload, best effort: one left
// behind (the context ended, the network is gone) is invisible and reaped
// by the bucket's AbortIncompleteMultipartUpload lifecycle rule.
func (w *s3Stream) abortUpload() {
	if w.uploadID == "" {
		return
	}
	s, id := w.s, w.uploadID
	w.uploadID = ""
	_ = s.retry(w.ctx, "abort multipart upload of", w.key, func(ctx context.Context) error {
		err := s.core.AbortMultipartUpload(ctx, s.opts.Bucket, w.key, id)
		if s3Code(err) == minio.NoSuchUpload {
			return nil
		}
		return err
	})
}

// Abort discards what was written: the pending multipart upload, or the
// object itself after a successful Close. With the writer's context done
// it sends no request (the sweeps and the lifecycle rule clean up).
func (w *s3Stream) Abort() {
	w.done = true
	w.buf = nil
	if w.err == nil {
		w.err = fmt.Errorf("cannot write %s: aborted", w.s.where(w.key))
	}
	w.abortUpload()
	if w.closed {
		w.closed = false
		_ = w.s.remove(w.ctx, "delete object", w.key)
	}
}

// Open starts reading the object of key and returns its size. A read
// interrupted by a transient error resumes where it stopped, from the same
// object version; an object that changes meanwhile is an error.
func (s *Store) Open(ctx context.Context, key string) (io.ReadCloser, int64, error) {
	if err := storage.CheckKey(key); err != nil {
		return nil, 0, err
	}
	r := &s3Reader{s: s, key: s.key(key), size: -1}
	r.ctx, r.cancel = context.WithCancel(ctx)
	if err := r.open(); err != nil {
		r.cancel()
		return nil, 0, err
	}
	return r, r.size, nil
}

// s3Reader reads one object and resumes after transient errors with a
// ranged GET conditional on the first response's ETag.
type s3Reader struct {
	s      *Store
	key    string
	size   int64 // from the first response
	off    int64
	etag   string
	ctx    context.Context
	cancel context.CancelFunc
	body   io.ReadCloser
	stop   context.CancelFunc // ends the current GET
	fails  int                // consecutive failed reads
	err    error              // sticky permanent error
}

var errSizeMismatch = errors.New("size mismatch")

// open starts a GET at r.off.
func (r *s3Reader) open() error {
	s := r.s
	op := "read object"
	if r.off > 0 {
		op = "resume reading at offset " + strconv.FormatInt(r.off, 10) + " of"
	}
	var got int64
	err := s.retry(r.ctx, op, r.key, func(context.Context) error {
		// The GET lives on after this call while the body is read, so it
		// gets its own context; the attempt timeout covers the headers.
		ctx, stop := context.WithCancel(r.ctx)
		timer := time.AfterFunc(s.opts.RequestTimeout, stop)
		var opts minio.GetObjectOptions
		if r.off > 0 {
			if err := opts.SetRange(r.off, 0); err != nil {
				timer.Stop()
				stop()
				return err
			}
			if r.etag != "" {
				if err := opts.SetMatchETag(r.etag); err != nil {
					timer.Stop()
					stop()
					return err
				}
			}
		}
		body, info, _, err := s.core.GetObject(ctx, s.opts.Bucket, r.key, opts)
		if !timer.Stop() {
			if err == nil {
				body.Close()
			}
			stop()
			return fmt.Errorf("no response within %s: %w", s.opts.RequestTimeout, context.DeadlineExceeded)
		}
		if err != nil {
			stop()
			return err
		}
		if r.off == 0 {
			r.etag = info.ETag
		}
		r.body, r.stop, got = body, stop, info.Size
		return nil
	})
	if err != nil {
		if isNotFound(err) {
			return &storage.NotExistError{Msg: "cannot read " + s.where(r.key) + ": it is missing (NoSuchKey)"}
		}
		if s3Code(err) == "PreconditionFailed" {
			return fmt.Errorf("cannot read %s: it was replaced while being read", s.where(r.key))
		}
		return err
	}
	if r.size < 0 {
		r.size = got
		return nil
	}
	if want := r.size - r.off; got != want {
		r.closeBody()
		return fmt.Errorf("%s changed while being read: %d bytes left at offset %d, expected %d: %w", s.where(r.key), got, r.off, want, errSizeMismatch)
	}
	return nil
}

func (r *s3Reader) closeBody() {
	if r.body != nil {
		r.body.Close()
		r.stop()
		r.body, r.stop = nil, nil
	}
}

func (r *s3Reader) Read(p []byte) (int, error) {
	for {
		if r.err != nil {
			return 0, r.err
		}
		if err := r.ctx.Err(); err != nil {
			// Bytes the transport holds already would still read.
			r.closeBody()
			r.err = fmt.Errorf("cannot read %s: %w", r.s.where(r.key), err)
			return 0, r.err
		}
		if r.off == r.size {
			return 0, io.EOF
		}
		if r.body == nil {
			if err := r.open(); err != nil {
				r.err = err
				return 0, err
			}
		}
		n, err := r.body.Read(p)
		r.off += int64(n)
		if r.off > r.size {
			r.err = fmt.Errorf("%s is longer than the %d bytes it had when opened: %w", r.s.where(r.key), r.size, errSizeMismatch)
			r.closeBody()
			return 0, r.err
		}
		if n > 0 {
			r.fails = 0
		}
		switch {
		case err == nil:
			return n, nil
		case errors.Is(err, io.EOF) && r.off == r.size:
			r.closeBody()
			return n, io.EOF
		case errors.Is(err, io.EOF):
			err = io.ErrUnexpectedEOF // the body ended early
		}
		r.closeBody()
		r.fails++
		if r.ctx.Err() != nil || !isTransient(err) || r.fails >= r.s.opts.MaxAttempts {
			r.err = &s3Error{op: "read object", where: r.s.where(r.key) + " at offset " + strconv.FormatInt(r.off, 10), attempts: r.fails, err: err, ctxErr: r.ctx.Err()}
			return n, r.err
		}
		if n > 0 {
			return n, nil // the next Read resumes
		}
		t := time.NewTimer(r.s.backoff(r.fails))
		select {
		case <-r.ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

func (r *s3Reader) Close() error {
	r.closeBody()
	r.cancel()
	if r.err == nil {
		r.err = fmt.Errorf("cannot read %s: closed", r.s.where(r.key))
	}
	return nil
}

// List lists the objects under <prefix>/<prefix argument>. S3 listings are
// strongly consistent (AWS since 2020, MinIO): a blob is listed as soon as
// its Put or Close returned.
func (s *Store) List(ctx context.Context, prefix string) ([]string, error) {
	if err := storage.CheckPrefix(prefix); err != nil {
		return nil, err
	}
	keys, err := s.list(ctx, prefix)
	if err != nil {
		return nil, err
	}
	sort.Strings(keys)
	return keys, nil
}

// Delete deletes the object of key; absent is no error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := storage.CheckKey(key); err != nil {
		return err
	}
	return s.remove(ctx, "delete object", s.key(key))
}
