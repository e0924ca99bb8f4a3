// Package s3test serves an in-memory S3 API (gofakes3) over TLS for tests,
// and opens weir checkpoint storage on it. TLS matters: served over plain
// HTTP, gofakes3 stores minio-go's aws-chunked multipart framing as data.
package s3test

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/weirstream/weir/storage"
	"github.com/weirstream/weir/storage/s3"
)

// Bucket is the bucket the server holds.
const Bucket = "weir-test"

// Start serves a fresh S3 API with Bucket until t ends and returns the
// checkpoint storage at prefix in it.
func Start(t testing.TB, prefix string) *storage.Storage {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket(Bucket); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog())).Server())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	transport := srv.Client().Transport.(*http.Transport).Clone()
	t.Cleanup(transport.CloseIdleConnections)
	s, err := s3.New(context.Background(), s3.Options{
		Endpoint: strings.TrimPrefix(srv.URL, "https://"), Bucket: Bucket, Prefix: prefix, Region: "us-east-1",
		AccessKey: "test-key", SecretKey: "test-secret", Transport: transport,
		RetryBase: time.Millisecond, RetryMax: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return storage.New(s)
}
