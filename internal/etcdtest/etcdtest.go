// Package etcdtest starts an embedded etcd server for tests
// (go.etcd.io/etcd/server/v3/embed): a real etcd, in process, on free
// loopback ports, with its data in a temporary directory.
package etcdtest

import (
	"net"
	"net/url"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Start starts an etcd server that stops when t ends and returns its client
// address (host:port).
func Start(t testing.TB) string {
	t.Helper()
	var lastErr error
	for range 5 { // a free port may be taken between probing and binding
		cfg := embed.NewConfig()
		cfg.Name = "etcdtest"
		cfg.Dir = t.TempDir()
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cfg.UnsafeNoFsync = true
		client := url.URL{Scheme: "http", Host: freeAddr(t)}
		peer := url.URL{Scheme: "http", Host: freeAddr(t)}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			lastErr = err
			continue
		}
		t.Cleanup(e.Close)
		select {
		case <-e.Server.ReadyNotify():
			return client.Host
		case <-time.After(10 * time.Second):
			t.Fatal("embedded etcd not ready after 10 s")
		}
	}
	t.Fatalf("cannot start embedded etcd: %v", lastErr)
	return ""
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
