package storage

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

	"github.com/weirstream/weir/checkpoint"
)

// ErrExists marks a create that found its object already there: a state
// blob name that is not new, or a _metadata of a different checkpoint
// under the same id.
var ErrExists = errors.New("already exists")

// Defaults of S3Options.
const (
	DefaultS3Endpoint       = "s3.amazonaws.com"
	DefaultS3PartSize       = 8 << 20
	DefaultS3MaxAttempts    = 5
	DefaultS3RetryBase      = 100 * time.Millisecond
	DefaultS3RetryMax       = 5 * time.Second
	DefaultS3RequestTimeout = 2 * time.Minute

	minS3PartSize = 5 << 20 // S3's smallest part (but the last)
	maxS3PartSize = 5 << 30 // S3's largest part
	maxS3Parts    = 10000   // S3's most parts in one upload
)

// S3Options configure NewS3. Zero fields take the defaults.
type S3Options struct {
	// Endpoint is host[:port] of the S3 API, without a scheme
	// (DefaultS3Endpoint if empty).
	Endpoint string
	// Bucket must exist; NewS3 checks it.
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
	// uploaded as one part of a multipart upload (DefaultS3PartSize,
	// between 5 MiB and 5 GiB). A blob smaller than PartSize is written
	// with one PUT. A blob holds at most 10000 parts.
	PartSize int64
	// MaxAttempts bounds the attempts of every call (DefaultS3MaxAttempts).
	MaxAttempts int
	// RetryBase is the wait before the second attempt, doubled for every
	// further one up to RetryMax, with jitter.
	RetryBase, RetryMax time.Duration
	// RequestTimeout bounds one attempt of one call until the response
	// headers arrive (DefaultS3RequestTimeout).
	RequestTimeout time.Duration
}

// S3 is checkpoint storage in a bucket of an S3-compatible object store,
// with the layout of File under a key prefix (see the package doc). It is
// safe for concurrent use. Every call is retried on transient errors
// (network errors, HTTP 5xx, 429, SlowDown) with exponential backoff, at
// most MaxAttempts times.
type S3 struct {
	client *minio.Client
	core   minio.Core
	opts   S3Options // normalized
}

// NewS3 returns the storage described by o after checking that its bucket
// exists; ctx bounds that check.
func NewS3(ctx context.Context, o S3Options) (*S3, error) {
	if err := normalizeS3Options(&o); err != nil {
		return nil, err
	}
	creds := credentials.NewStaticV4(o.AccessKey, o.SecretKey, o.SessionToken)
	client, err := minio.New(o.Endpoint, &minio.Options{
		Creds:     creds,
		Secure:    !o.Insecure,
		Transport: o.Transport,
		Region:    o.Region,
		// One attempt per minio-go call: S3.retry is the only retry
		// loop, so that every call has the same bounded policy.
		MaxRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("cannot open checkpoint storage s3://%s at %s: %w", o.Bucket, o.Endpoint, err)
	}
	s := &S3{client: client, core: minio.Core{Client: client}, opts: o}
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

func normalizeS3Options(o *S3Options) error {
	if o.Bucket == "" {
		return errors.New("cannot open S3 checkpoint storage: no bucket")
	}
	if err := s3utils.CheckValidBucketName(o.Bucket); err != nil {
		return fmt.Errorf("cannot open S3 checkpoint storage: bucket name %q: %w", o.Bucket, err)
	}
	if o.Endpoint == "" {
		o.Endpoint = DefaultS3Endpoint
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
		o.PartSize = DefaultS3PartSize
	}
	if o.PartSize < minS3PartSize || o.PartSize > maxS3PartSize {
		return fmt.Errorf("cannot open S3 checkpoint storage: part size %d is outside [%d, %d]", o.PartSize, minS3PartSize, maxS3PartSize)
	}
	if o.MaxAttempts < 0 || o.RetryBase < 0 || o.RetryMax < 0 || o.RequestTimeout < 0 {
		return errors.New("cannot open S3 checkpoint storage: negative attempts, retry wait or timeout")
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = DefaultS3MaxAttempts
	}
	if o.RetryBase == 0 {
		o.RetryBase = DefaultS3RetryBase
	}
	if o.RetryMax == 0 {
		o.RetryMax = max(DefaultS3RetryMax, o.RetryBase)
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = DefaultS3RequestTimeout
	}
	return nil
}

// openS3 opens "s3://bucket/prefix?endpoint=host:port&region=r&insecure=true"
// with the credentials of the environment.
func openS3(location string) (*S3, error) {
	o, err := parseS3Location(location, os.Getenv)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return NewS3(ctx, o)
}

// parseS3Location turns an s3:// location into options; credentials come
// from WEIR_S3_ACCESS_KEY/WEIR_S3_SECRET_KEY if either is set, else from
// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN).
func parseS3Location(location string, getenv func(string) string) (S3Options, error) {
	var o S3Options
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
	if err := normalizeS3Options(&o); err != nil {
		return o, err
	}
	return o, nil
}

func redactUser(u *url.URL) string {
	c := *u
	c.User = url.User("REDACTED")
	return c.String()
}

// String is the location of the storage in the form Open accepts.
func (s *S3) String() string {
	loc := "s3://" + s.opts.Bucket
	if s.opts.Prefix != "" {
		loc += "/" + s.opts.Prefix
	}
	// host:port stays readable; anything odd is escaped.
	esc := func(v string) string { return strings.ReplaceAll(url.QueryEscape(v), "%3A", ":") }
	var q []string
	if s.opts.Endpoint != DefaultS3Endpoint {
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

// key is the object key of a path relative to the storage root.
func (s *S3) key(rel string) string {
	if s.opts.Prefix == "" {
		return rel
	}
	return s.opts.Prefix + "/" + rel
}

// where names an object in errors.
func (s *S3) where(key string) string { return "s3://" + s.opts.Bucket + "/" + key }

// s3Error is a failed S3 call: what was done to which object, how often.
type s3Error struct {
	op       string
	where    string
	attempts int
	err      error
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

func (e *s3Error) Unwrap() error { return e.err }

// retry runs call until it succeeds, fails permanently, ctx ends or
// MaxAttempts attempts failed. Each attempt gets RequestTimeout.
func (s *S3) retry(ctx context.Context, op, key string, call func(ctx context.Context) error) error {
	where := "s3://" + s.opts.Bucket
	if key != "" {
		where = s.where(key)
	}
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
		err := call(actx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || !isTransient(err) || attempt >= s.opts.MaxAttempts {
			return &s3Error{op: op, where: where, attempts: attempt, err: err}
		}
		t := time.NewTimer(s.backoff(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return &s3Error{op: op, where: where, attempts: attempt, err: err}
		case <-t.C:
		}
	}
}

// backoff is the wait after the attempt-th failure: RetryBase doubled
// per attempt, capped at RetryMax, with up to half of it as jitter.
func (s *S3) backoff(attempt int) time.Duration {
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
func (s *S3) stat(ctx context.Context, op, key string) (size int64, ok bool, err error) {
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

// getAll reads a whole object; ok=false if it does not exist.
func (s *S3) getAll(ctx context.Context, op, key string) (b []byte, ok bool, err error) {
	err = s.retry(ctx, op, key, func(ctx context.Context) error {
		body, _, _, err := s.core.GetObject(ctx, s.opts.Bucket, key, minio.GetObjectOptions{})
		if err != nil {
			return err
		}
		defer body.Close()
		b, err = io.ReadAll(body)
		return err
	})
	if err != nil {
		if isNotFound(err) {
			return nil, false, nil
		}
		return nil, false, err
	}
	return b, true, nil
}

// putObjectOptions are the options of every single PUT; ifNoneMatch makes
// it a conditional create.
func (s *S3) putObjectOptions(ifNoneMatch bool) minio.PutObjectOptions {
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
func (s *S3) payloadSums(b []byte) (md5b64, sha256hex string) {
	m := md5.Sum(b)
	md5b64 = base64.StdEncoding.EncodeToString(m[:])
	if s.opts.Insecure {
		h := sha256.Sum256(b)
		sha256hex = hex.EncodeToString(h[:])
	}
	return md5b64, sha256hex
}

// put writes b as key with one PUT.
func (s *S3) put(ctx context.Context, op, key string, b []byte, ifNoneMatch bool) error {
	md5b64, sha := s.payloadSums(b)
	opts := s.putObjectOptions(ifNoneMatch)
	return s.retry(ctx, op, key, func(ctx context.Context) error {
		_, err := s.core.PutObject(ctx, s.opts.Bucket, key, bytes.NewReader(b), int64(len(b)), md5b64, sha, opts)
		return err
	})
}

// remove deletes an object; absent is no error.
func (s *S3) remove(ctx context.Context, op, key string) error {
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
func (s *S3) list(ctx context.Context, relPrefix string) ([]string, error) {
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

// CreateStream opens a new state blob chk-<id>/<name>. The blob becomes
// visible when Close returns.
func (s *S3) CreateStream(id checkpoint.ID, name string) (StreamWriter, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if id < 1 {
		return nil, fmt.Errorf("cannot create state blob %s in %s: invalid checkpoint id %d", name, s, id)
	}
	return s.create(chkDir(id) + "/" + name)
}

// CreateShared opens a new blob shared/<name>.
func (s *S3) CreateShared(name string) (StreamWriter, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	return s.create(SharedPrefix + name)
}

func (s *S3) create(rel string) (StreamWriter, error) {
	key := s.key(rel)
	// A guard against reused names (they are unique by construction), not
	// concurrency control: see the package doc.
	_, exists, err := s.stat(context.Background(), "check state blob", key)
	if err != nil {
		return nil, err
	}
	if exists {
		return nil, fmt.Errorf("cannot create state blob %s: %w", s.where(key), ErrExists)
	}
	return &s3Stream{s: s, rel: rel, key: key}, nil
}

// s3Stream buffers up to PartSize bytes; a blob that outgrows it becomes a
// multipart upload with one part per PartSize bytes. Used by one
// goroutine at a time.
type s3Stream struct {
	s        *S3
	rel, key string
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
		return 0, fmt.Errorf("cannot write state blob %s: closed", w.s.where(w.key))
	}
	if w.err != nil {
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
	s, ctx := w.s, context.Background()
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
		return fmt.Errorf("cannot write state blob %s: more than %d parts of %d bytes (raise the part size)", s.where(w.key), maxS3Parts, s.opts.PartSize)
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

// Close uploads what is buffered and returns the handle once the object is
// durable. On failure nothing of the blob remains (but see Abort).
func (w *s3Stream) Close() (checkpoint.StreamHandle, error) {
	if w.done {
		return checkpoint.StreamHandle{}, fmt.Errorf("cannot close state blob %s: already closed or aborted", w.s.where(w.key))
	}
	w.done = true
	if w.err != nil {
		w.abortUpload()
		return checkpoint.StreamHandle{}, w.err
	}
	s, ctx := w.s, context.Background()
	if w.uploadID == "" {
		b := w.buf
		w.buf = nil
		if err := s.put(ctx, "write state blob", w.key, b, false); err != nil {
			return checkpoint.StreamHandle{}, err
		}
	} else {
		if len(w.buf) > 0 {
			if err := w.uploadPart(); err != nil {
				w.abortUpload()
				return checkpoint.StreamHandle{}, err
			}
		}
		if err := w.complete(ctx); err != nil {
			w.abortUpload()
			return checkpoint.StreamHandle{}, err
		}
		w.uploadID = ""
	}
	w.closed = true
	return checkpoint.StreamHandle{Path: w.rel, Size: w.n}, nil
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
		if size, ok, serr := s.stat(ctx, "check state blob", w.key); serr == nil && ok && size == w.n {
			return nil
		}
	}
	return err
}

func (w *s3Stream) abortUpload() {
	if w.uploadID == "" {
		return
	}
	s, id := w.s, w.uploadID
	w.uploadID = ""
	// Best effort: an upload left behind is invisible and reaped by the
	// bucket's AbortIncompleteMultipartUpload lifecycle rule.
	_ = s.retry(context.Background(), "abort multipart upload of", w.key, func(ctx context.Context) error {
		err := s.core.AbortMultipartUpload(ctx, s.opts.Bucket, w.key, id)
		if s3Code(err) == minio.NoSuchUpload {
			return nil
		}
		return err
	})
}

// Abort discards what was written: the pending multipart upload, or the
// object itself after a successful Close.
func (w *s3Stream) Abort() {
	w.done = true
	w.buf = nil
	if w.err == nil {
		w.err = fmt.Errorf("cannot write state blob %s: aborted", w.s.where(w.key))
	}
	w.abortUpload()
	if w.closed {
		w.closed = false
		_ = w.s.remove(context.Background(), "delete state blob", w.key)
	}
}

// handleKey checks that a handle's Path stays inside the storage root and
// returns its object key.
func (s *S3) handleKey(path string) (string, error) {
	if strings.HasPrefix(path, "/") || strings.Contains(path, "\\") {
		return "", fmt.Errorf("state handle path %q leaves the checkpoint storage %s", path, s)
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("state handle path %q leaves the checkpoint storage %s", path, s)
		}
	}
	return s.key(path), nil
}

// OpenStream reads a blob. It fails if the object is missing or its size
// is not the handle's (truncated or replaced). A read interrupted by a
// transient error resumes where it stopped, from the same object version.
func (s *S3) OpenStream(h checkpoint.StreamHandle) (io.ReadCloser, error) {
	if h.Path == "" {
		return io.NopCloser(bytes.NewReader(h.Inline)), nil
	}
	key, err := s.handleKey(h.Path)
	if err != nil {
		return nil, err
	}
	r := &s3Reader{s: s, key: key, size: h.Size}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if err := r.open(); err != nil {
		r.cancel()
		return nil, err
	}
	return r, nil
}

// s3Reader reads one object and resumes after transient errors with a
// ranged GET conditional on the first response's ETag.
type s3Reader struct {
	s      *S3
	key    string
	size   int64 // from the handle
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
	op := "read state blob"
	if r.off > 0 {
		op = "resume reading state blob at offset " + strconv.FormatInt(r.off, 10) + " of"
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
			return fmt.Errorf("cannot read state blob %s: it is missing (NoSuchKey); the checkpoint recorded %d bytes", s.where(r.key), r.size)
		}
		if s3Code(err) == "PreconditionFailed" {
			return fmt.Errorf("cannot read state blob %s: it was replaced while being read", s.where(r.key))
		}
		return err
	}
	if want := r.size - r.off; got != want {
		r.closeBody()
		if r.off == 0 {
			return fmt.Errorf("state blob %s has %d bytes, the checkpoint recorded %d (truncated or replaced): %w", s.where(r.key), got, r.size, errSizeMismatch)
		}
		return fmt.Errorf("state blob %s changed while being read: %d bytes left at offset %d, expected %d: %w", s.where(r.key), got, r.off, want, errSizeMismatch)
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
			r.err = fmt.Errorf("state blob %s is longer than the %d bytes the checkpoint recorded: %w", r.s.where(r.key), r.size, errSizeMismatch)
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
		if !isTransient(err) || r.fails >= r.s.opts.MaxAttempts {
			r.err = &s3Error{op: "read state blob", where: r.s.where(r.key) + " at offset " + strconv.FormatInt(r.off, 10), attempts: r.fails, err: err}
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
		r.err = fmt.Errorf("cannot read state blob %s: closed", r.s.where(r.key))
	}
	return nil
}

// Commit writes chk-<id>/_metadata, the commit point, with a conditional
// create (If-None-Match: *) after a check that it is not there yet. A
// _metadata with the same bytes is success (a retried commit); different
// bytes are ErrExists.
func (s *S3) Commit(md *checkpoint.Metadata) error {
	b, err := EncodeMetadata(md)
	if err != nil {
		return err
	}
	ctx := context.Background()
	key := s.key(chkDir(md.CheckpointID) + "/" + metadataName)
	same := func() error {
		old, ok, err := s.getAll(ctx, "read existing checkpoint metadata", key)
		if err != nil {
			return fmt.Errorf("cannot commit checkpoint %d: %w", md.CheckpointID, err)
		}
		if !ok {
			return fmt.Errorf("cannot commit checkpoint %d: %s was deleted while being committed", md.CheckpointID, s.where(key))
		}
		if bytes.Equal(old, b) {
			return nil // a retried commit of the same checkpoint
		}
		return fmt.Errorf("cannot commit checkpoint %d: %s %w with other content", md.CheckpointID, s.where(key), ErrExists)
	}
	// For servers that ignore If-None-Match.
	if _, exists, err := s.stat(ctx, "check checkpoint metadata", key); err != nil {
		return fmt.Errorf("cannot commit checkpoint %d: %w", md.CheckpointID, err)
	} else if exists {
		return same()
	}
	if err := s.put(ctx, "write checkpoint metadata", key, b, true); err != nil {
		if s3Code(err) == "PreconditionFailed" {
			return same()
		}
		return fmt.Errorf("cannot commit checkpoint %d: %w", md.CheckpointID, err)
	}
	return nil
}

// ReadMetadata reads and decodes chk-<id>/_metadata.
func (s *S3) ReadMetadata(id checkpoint.ID) (*checkpoint.Metadata, error) {
	key := s.key(chkDir(id) + "/" + metadataName)
	b, ok, err := s.getAll(context.Background(), "read checkpoint metadata", key)
	if err != nil {
		return nil, fmt.Errorf("cannot read checkpoint metadata: %w", err)
	}
	if !ok {
		return nil, fmt.Errorf("cannot read checkpoint metadata: checkpoint %d has no %s", id, s.where(key))
	}
	md, err := DecodeMetadata(b)
	if err != nil {
		return nil, fmt.Errorf("cannot read checkpoint metadata %s: %w", s.where(key), err)
	}
	return md, nil
}

// listCheckpoints returns the ids with any object, and those with a
// _metadata, both ascending.
func (s *S3) listCheckpoints() (all, completed []checkpoint.ID, err error) {
	keys, err := s.list(context.Background(), "chk-")
	if err != nil {
		return nil, nil, fmt.Errorf("cannot list checkpoints in %s: %w", s, err)
	}
	seen := map[checkpoint.ID]bool{}
	for _, k := range keys {
		dir, name, ok := strings.Cut(k, "/")
		if !ok {
			continue
		}
		id, ok := parseChkDir(dir)
		if !ok {
			continue
		}
		if !seen[id] {
			seen[id] = true
			all = append(all, id)
		}
		if name == metadataName {
			completed = append(completed, id)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	sort.Slice(completed, func(i, j int) bool { return completed[i] < completed[j] })
	return all, completed, nil
}

// Completed lists the ids with a _metadata, ascending.
func (s *S3) Completed() ([]checkpoint.ID, error) {
	_, c, err := s.listCheckpoints()
	return c, err
}

// Latest is the newest completed checkpoint.
func (s *S3) Latest() (checkpoint.ID, bool, error) {
	_, c, err := s.listCheckpoints()
	if err != nil || len(c) == 0 {
		return 0, false, err
	}
	return c[len(c)-1], true, nil
}

// Incomplete lists the ids with objects under chk-<id>/ but no _metadata.
func (s *S3) Incomplete() ([]checkpoint.ID, error) {
	all, completed, err := s.listCheckpoints()
	return incomplete(all, completed), err
}

// MaxID is the highest id with any object under chk-<id>/.
func (s *S3) MaxID() (checkpoint.ID, error) {
	all, _, err := s.listCheckpoints()
	if err != nil || len(all) == 0 {
		return 0, err
	}
	return all[len(all)-1], nil
}

// Discard deletes chk-<id>/_metadata first, so that a half-deleted
// checkpoint never looks complete, then the rest of chk-<id>/.
func (s *S3) Discard(id checkpoint.ID) error {
	ctx := context.Background()
	dir := chkDir(id) + "/"
	if err := s.remove(ctx, "delete checkpoint metadata", s.key(dir+metadataName)); err != nil {
		return fmt.Errorf("cannot discard checkpoint %d: %w", id, err)
	}
	keys, err := s.list(ctx, dir)
	if err != nil {
		return fmt.Errorf("cannot discard checkpoint %d: %w", id, err)
	}
	for _, k := range keys {
		if err := s.remove(ctx, "delete state blob", s.key(k)); err != nil {
			return fmt.Errorf("cannot discard checkpoint %d: %w", id, err)
		}
	}
	return nil
}

// ListShared lists the names of the blobs in shared/.
func (s *S3) ListShared() ([]string, error) {
	keys, err := s.list(context.Background(), SharedPrefix)
	if err != nil {
		return nil, fmt.Errorf("cannot list shared state in %s: %w", s, err)
	}
	var out []string
	for _, k := range keys {
		name := strings.TrimPrefix(k, SharedPrefix)
		if checkName(name) == nil {
			out = append(out, name)
		}
	}
	return out, nil
}

// DeleteShared deletes shared/<name>; absent is no error.
func (s *S3) DeleteShared(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	return s.remove(context.Background(), "delete shared state blob", s.key(SharedPrefix+name))
}
