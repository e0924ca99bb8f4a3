package runtime

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/storage"
)

// countingSource emits 1..limit, one per Read, and keeps its position in
// operator list state. It records the checkpoint it restored from, and
// fails once when failAt is reached (if set).
type countingSource struct {
	out      Collector[int]
	next     int
	limit    int
	failAt   int
	failed   *atomic.Bool
	restored *atomic.Int64 // the checkpoint restored, then the position in it
}

func (s *countingSource) Open(ctx *OperatorContext) error {
	if ctx.Restored {
		for _, l := range ctx.RestoredList {
			for _, e := range l.Entries {
				s.next = max(s.next, int(binary.BigEndian.Uint64(e)))
			}
		}
		s.restored.Store(int64(ctx.RestoredCheckpoint)<<32 | int64(s.next))
	}
	return nil
}
func (s *countingSource) Read() (ReadStatus, error) {
	if s.next >= s.limit {
		return EndOfInput, nil
	}
	if s.failAt > 0 && s.next == s.failAt && s.failed.CompareAndSwap(false, true) {
		return NothingAvailable, errors.New("injected source failure")
	}
	s.next++
	s.out.Collect(s.next)
	if s.next%50 == 0 {
		time.Sleep(time.Millisecond) // leave room for checkpoints
	}
	return MoreAvailable, nil
}
func (s *countingSource) Available() <-chan struct{} { return nil }
func (s *countingSource) SnapshotState(checkpoint.ID) (OperatorSnapshot, error) {
	return OperatorSnapshot{List: []checkpoint.ListStateSnapshot{{Name: "pos", Entries: [][]byte{binary.BigEndian.AppendUint64(nil, uint64(s.next))}}}}, nil
}
func (s *countingSource) NotifyCheckpointComplete(checkpoint.ID) error { return nil }
func (s *countingSource) NotifyCheckpointAborted(checkpoint.ID) error  { return nil }
func (s *countingSource) Finish() error                                { return nil }
func (s *countingSource) Close() error                                 { return nil }

// summingSink adds up what it receives into a shared total.
type summingSink struct{ total *atomic.Int64 }

func (s summingSink) Collect(r int)               { s.total.Add(int64(r)) }
func (s summingSink) Open(*OperatorContext) error { return nil }
func (s summingSink) SnapshotState(checkpoint.ID) (OperatorSnapshot, error) {
	return OperatorSnapshot{}, nil
}
func (s summingSink) NotifyCheckpointComplete(checkpoint.ID) error { return nil }
func (s summingSink) NotifyCheckpointAborted(checkpoint.ID) error  { return nil }
func (s summingSink) Finish() error                                { return nil }
func (s summingSink) Close() error                                 { return nil }

// sourceToSink is a job graph of a counting source (parallelism sp) and a
// summing sink (parallelism kp) joined by an edge of kind.
func sourceToSink(sp, kp int, kind PartitionKind, limit, failAt int, failed *atomic.Bool, restored, total *atomic.Int64) *JobGraph {
	src := &Vertex{ID: 0, Name: "source", Parallelism: sp, IsSource: true, Operators: []OperatorInfo{{UID: "src", Name: "source"}}}
	sink := &Vertex{ID: 1, Name: "sink", Parallelism: kp, Operators: []OperatorInfo{{UID: "sink", Name: "sink"}}}
	var newHash func() func(int) uint32
	if kind == Hash {
		newHash = func() func(int) uint32 { return func(r int) uint32 { return uint32(r * 2654435761) } }
	}
	e := &Edge{Source: src, Target: sink, Kind: kind, Type: TypeOf[int](newHash)}
	src.Outputs, sink.Inputs = []*Edge{e}, []*Edge{e}
	src.Build = func(_ int, outs []any) (*Chain, error) {
		s := &countingSource{out: outs[0].(Collector[int]), limit: limit, failAt: failAt, failed: failed, restored: restored}
		return &Chain{Operators: []Operator{s}, Source: s}, nil
	}
	sink.Build = func(int, []any) (*Chain, error) {
		k := summingSink{total: total}
		return &Chain{Operators: []Operator{k}, Input: Collector[int](k)}, nil
	}
	return &JobGraph{Name: "executor-test", MaxParallelism: 128, Vertices: []*Vertex{src, sink}}
}

func sumTo(n int) int64 { return int64(n) * int64(n+1) / 2 }

// Deploy wires every partitioning: every record of every source subtask
// reaches the sinks once, and the deployment ends when its tasks finish.
func TestDeployWiresEveryPartitioning(t *testing.T) {
	for _, c := range []struct {
		kind   PartitionKind
		sp, kp int
		copies int64
	}{
		{Forward, 2, 2, 1}, {Rebalance, 2, 3, 1}, {Hash, 3, 2, 1}, {Broadcast, 2, 3, 3},
	} {
		t.Run(c.kind.String(), func(t *testing.T) {
			var total, restored atomic.Int64
			g := sourceToSink(c.sp, c.kp, c.kind, 200, 0, new(atomic.Bool), &restored, &total)
			host := &fakeHost{}
			d, err := Deploy(context.Background(), DeploySpec{Graph: g, Config: DefaultConfig(), Host: host})
			if err != nil {
				t.Fatal(err)
			}
			if d.NumTasks() != c.sp+c.kp {
				t.Fatalf("%d tasks deployed, want %d", d.NumTasks(), c.sp+c.kp)
			}
			// Without a coordinator the sources finish when told.
			go func() {
				for {
					_, _, ended, _ := host.snapshot()
					if ended == c.sp {
						for s := range c.sp {
							d.Mail(checkpoint.TaskID{Vertex: 0, Subtask: s}, Mail{Kind: mailFinishSource})
						}
						return
					}
					time.Sleep(time.Millisecond)
				}
			}()
			if err := d.Run(); err != nil {
				t.Fatal(err)
			}
			if want := int64(c.sp) * sumTo(200) * c.copies; total.Load() != want {
				t.Fatalf("sinks received a sum of %d, want %d", total.Load(), want)
			}
			if _, _, _, fin := host.snapshot(); fin != c.sp+c.kp {
				t.Fatalf("%d tasks reported finished", fin)
			}
		})
	}
}

// A placement that puts the two ends of an edge in different processes
// needs records that can cross them: an edge type without a codec is a
// clear error at deployment, not a failure at the first record.
func TestDeployRemoteEdgeNeedsCodec(t *testing.T) {
	var total, restored atomic.Int64
	g := sourceToSink(1, 1, Forward, 10, 0, new(atomic.Bool), &restored, &total)
	pl := &Placement{Self: 0, Where: map[checkpoint.TaskID]int{{Vertex: 0}: 0, {Vertex: 1}: 1}, Addrs: []string{"a", "b"}}
	_, err := Deploy(context.Background(), DeploySpec{Graph: g, Config: DefaultConfig(), Placement: pl, Host: &fakeHost{}})
	if err == nil || !strings.Contains(err.Error(), "cannot cross processes") {
		t.Fatalf("want a clear error, got %v", err)
	}
}

// A failed attempt restores a completed checkpoint, and the source
// resumes from the position in it: the sink (which only sums, without
// transactions) sees what the first attempt delivered — everything up to
// the checkpoint at least — and then everything after the checkpoint.
func TestFailoverRestoresRestorePoint(t *testing.T) {
	var total, restored atomic.Int64
	failed := new(atomic.Bool)
	g := sourceToSink(1, 1, Forward, 2000, 1200, failed, &restored, &total)
	cfg := DefaultConfig()
	cfg.Checkpointing = true
	cfg.Coordinator.Interval = 5 * time.Millisecond
	cfg.Storage = storage.NewMemory("executor-test")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := Start(ctx, g, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Wait(); err != nil {
		t.Fatal(err)
	}
	if !failed.Load() || j.Restarts() != 1 {
		t.Fatalf("failed %v, restarts %d", failed.Load(), j.Restarts())
	}
	id, pos := checkpoint.ID(restored.Load()>>32), int(restored.Load()&0xFFFFFFFF)
	completed := false
	for _, s := range j.Checkpoints() {
		completed = completed || (s.Completed && s.ID == id)
	}
	if id == 0 || !completed || pos == 0 || pos > 1200 {
		t.Fatalf("restored checkpoint %d (completed: %v) at position %d", id, completed, pos)
	}
	// The second attempt delivered pos+1..2000; the first a prefix 1..k
	// that reaches at least pos (the checkpoint completed only after the
	// sink took every record before its barrier) and at most 1200.
	first := total.Load() - (sumTo(2000) - sumTo(pos))
	k := pos
	for k < 1200 && sumTo(k) < first {
		k++
	}
	if sumTo(k) != first {
		t.Fatalf("the first attempt delivered a sum of %d, not the prefix 1..k for any k in [%d, 1200]", first, pos)
	}
}
