package weir_test

import (
	"context"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/restart"
)

// netProxy forwards TCP connections to a target, and can cut the network
// between them: reset closes every connection (both ends see it at once);
// blackhole keeps them open but drops every byte either way, as a
// partition does until TCP gives up, and heal then closes them and
// forwards new connections again.
type netProxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	dark   bool
}

func newNetProxy(t *testing.T, target string) *netProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &netProxy{l: l, target: target}
	t.Cleanup(func() { l.Close(); p.closeAll() })
	go p.serve()
	return p
}

func (p *netProxy) addr() string { return p.l.Addr().String() }

func (p *netProxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		dark := p.dark
		p.conns = append(p.conns, c)
		p.mu.Unlock()
		if dark {
			go io.Copy(io.Discard, c) // connected, and never answered
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, up)
		p.mu.Unlock()
		go p.pipe(up, c)
		go p.pipe(c, up)
	}
}

// pipe copies src to dst while the network is up and drops the bytes
// while it is dark.
func (p *netProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			dark := p.dark
			p.mu.Unlock()
			if !dark {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					src.Close()
					return
				}
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

func (p *netProxy) closeAll() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

func (p *netProxy) reset() { p.closeAll() }

func (p *netProxy) blackhole() {
	p.mu.Lock()
	p.dark = true
	p.mu.Unlock()
}

func (p *netProxy) heal() {
	p.mu.Lock()
	p.dark = false
	p.mu.Unlock()
	p.closeAll()
}

// The network between a task manager and the job manager is cut while
// both keep running: closed at once (reset), or silent for longer than
// the heartbeat timeout (blackhole). The job manager fails the job over;
// the cut-off task manager stops its subtasks instead of running on
// unseen (a zombie that still reads its source and writes its sink), and
// rejoins when the network is back; the output is exactly once.
func TestClusterNetworkCut(t *testing.T) {
	for _, mode := range []string{"reset", "blackhole"} {
		t.Run(mode, func(t *testing.T) {
			const perPartition = 6000
			const hb = time.Second
			dir := t.TempDir()
			jm := freeAddr(t)
			proxy := newNetProxy(t, jm)
			sink := weir.NewCollectSink[int64]()
			// build is one process of the job: source → count → sink,
			// forward edges only, so each task manager's chain runs on
			// its own; emitted counts the records tm-1's chain passed.
			build := func(o clusterOpts, emitted *atomic.Int64) *weir.Environment {
				o.HeartbeatTimeout = 2 * hb
				env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(50*time.Millisecond, weir.ExactlyOnce),
					weir.CheckpointStorage(dir), weir.RestartStrategy(restart.FixedDelay(100, 50*time.Millisecond)), o.option())
				src := weir.FromSource(env, weir.Generator(2, perPartition, func(p int, off int64) int64 { return int64(p)*perPartition + off }).WithRate(1000), "gen").UID("gen")
				weir.Map(src, func(v int64) int64 {
					if emitted != nil {
						emitted.Add(1)
					}
					return v
				}).UID("count").SinkTo(sink).UID("sink")
				return env
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			job, err := build(clusterOpts{Role: roleJM, JobManager: jm}, nil).Start(ctx, "cut")
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			var emitted atomic.Int64
			for _, tm := range []struct {
				name, jm string
				emitted  *atomic.Int64
			}{{"tm-1", proxy.addr(), &emitted}, {"tm-2", jm, nil}} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := build(clusterOpts{Role: roleTM, Name: tm.name, JobManager: tm.jm}, tm.emitted).Execute(ctx, "cut"); err != nil && ctx.Err() == nil {
						t.Errorf("task manager %s: %v", tm.name, err)
					}
				}()
			}
			for job.LatestCheckpoint() < 3 {
				select {
				case <-job.Done():
					t.Fatalf("job ended early: %v", job.Wait())
				case <-time.After(5 * time.Millisecond):
				}
			}
			if mode == "reset" {
				proxy.reset()
			} else {
				proxy.blackhole()
				// Past the heartbeat timeout both sides have given up on
				// each other: tm-1's chain must have stopped.
				time.Sleep(3 * hb)
				before := emitted.Load()
				time.Sleep(hb)
				if after := emitted.Load(); after != before {
					t.Errorf("tm-1 went on processing while cut off from the job manager: %d records in the last second, %v after the cut", after-before, 4*hb)
				}
				proxy.heal()
			}
			if err := job.Wait(); err != nil {
				t.Fatalf("job: %v", err)
			}
			wg.Wait()
			if job.Restarts() == 0 {
				t.Fatal("cutting a task manager off did not fail the job over")
			}
			got := sink.Committed()
			slices.Sort(got)
			for i, v := range got {
				if v != int64(i) {
					t.Fatalf("output not exactly once: at %d got %d (%d rows, want %d)", i, v, len(got), 2*perPartition)
				}
			}
			if len(got) != 2*perPartition {
				t.Fatalf("%d rows, want %d", len(got), 2*perPartition)
			}
		})
	}
}
