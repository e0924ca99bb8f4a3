package weir_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/restart"
)

// rec is a record of the seeds' source: a partition's own offset.
type rec struct {
	P   int
	Off int64
}

// scriptedSource is the seeds' "topic with 2 partitions whose records are
// their offsets", with the test in control of time: in the first attempt a
// partition emits only the offsets below its release limit, and partition
// 1's first snapshot waits until the test lets it go. After a restore both
// partitions run freely to end.
type scriptedSource struct {
	end   int64
	limit [2]atomic.Int64
	avail [2]chan struct{}
	// polled[p] counts Read calls that found nothing new: a Read after the
	// last record proves that record was flushed downstream.
	polled       [2]atomic.Int64
	snapEntered  chan int // partition whose first snapshot started
	releaseSnap1 chan struct{}
	snapOnce     [2]sync.Once
}

func newScriptedSource(end int64) *scriptedSource {
	s := &scriptedSource{end: end, snapEntered: make(chan int, 2), releaseSnap1: make(chan struct{})}
	for i := range s.avail {
		s.avail[i] = make(chan struct{}, 1)
	}
	return s
}

func (s *scriptedSource) release(p int, limit int64) {
	s.limit[p].Store(limit)
	select {
	case s.avail[p] <- struct{}{}:
	default:
	}
}

func (s *scriptedSource) CreateReader(ctx weir.SourceContext) (weir.SourceReader[rec], error) {
	r := &scriptedReader{s: s, p: ctx.Subtask, free: ctx.RestoredCheckpoint != 0}
	for _, e := range ctx.Restored {
		if int(e[0]) == r.p {
			r.next = int64(e[1])
		}
	}
	return r, nil
}

type scriptedReader struct {
	s    *scriptedSource
	p    int
	next int64
	free bool
}

func (r *scriptedReader) Read(buf []rec) ([]rec, weir.ReadStatus, error) {
	limit := r.s.limit[r.p].Load()
	if r.free {
		limit = r.s.end
	}
	if r.next >= r.s.end {
		return buf, weir.EndOfInput, nil
	}
	if r.next >= limit {
		r.s.polled[r.p].Add(1)
		return buf, weir.NothingAvailable, nil
	}
	for r.next < limit && len(buf) < cap(buf) {
		buf = append(buf, rec{P: r.p, Off: r.next})
		r.next++
	}
	return buf, weir.MoreAvailable, nil
}

func (r *scriptedReader) Available() <-chan struct{} {
	if r.free {
		return closed
	}
	return r.s.avail[r.p]
}

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (r *scriptedReader) Snapshot(checkpoint.ID) ([][]byte, error) {
	if !r.free {
		r.s.snapOnce[r.p].Do(func() {
			r.s.snapEntered <- r.p
			if r.p == 1 {
				<-r.s.releaseSnap1
			}
		})
	}
	return [][]byte{{byte(r.p), byte(r.next)}}, nil
}

func (r *scriptedReader) Close() error { return nil }

// paritySum sums the offsets per parity and tells the test about every
// record it processed.
type paritySum struct {
	sum       weir.ValueState[int64]
	processed chan rec
	failOn    *atomic.Pointer[rec]
}

func (f *paritySum) Open(ctx *weir.KeyedContext[int64]) (err error) {
	f.sum, err = weir.GetValueState[int64](ctx, "sum")
	return err
}

func (f *paritySum) ProcessElement(ctx *weir.KeyedContext[int64], in rec, out weir.Collector[weir.KV[int64, int64]]) error {
	if p := f.failOn.Load(); p != nil && *p == in {
		f.failOn.Store(nil)
		return fmt.Errorf("injected failure at %+v", in)
	}
	s, _ := f.sum.Value()
	s += in.Off
	f.sum.Update(s)
	out.Collect(weir.KV[int64, int64]{Key: ctx.CurrentKey(), Value: s})
	f.processed <- in
	return nil
}

// TestSeedsParitySum replays the seeds' scenario step by step, in a
// synctest bubble (time is fake and synctest.Wait tells when the job can
// make no more progress): Source1
// checkpoints at offset 3 (its next record is 4), Source2 at offset 4;
// Source1's record 4 reaches the even-sum task before Source2's barrier; the
// job fails after the checkpoint and restores it. At least once counts
// record 4 twice (the checkpointed even sum is 12); exactly once does not
// (the checkpointed even sum is 8, record 4 is replayed once).
func TestSeedsParitySum(t *testing.T) {
	for _, mode := range []weir.Mode{weir.ExactlyOnce, weir.AtLeastOnce} {
		t.Run(mode.String(), func(t *testing.T) { synctest.Test(t, func(t *testing.T) { runSeeds(t, mode) }) })
	}
}

func runSeeds(t *testing.T, mode weir.Mode) {
	const end = 10
	src := newScriptedSource(end)
	processed := make(chan rec, 1000)
	var failOn atomic.Pointer[rec]
	sink := weir.NewCollectSink[weir.KV[int64, int64]]()

	env := weir.NewEnvironment(
		weir.Parallelism(2),
		weir.Checkpointing(time.Hour, mode), // triggered by hand below
		weir.CheckpointStorage(t.TempDir()),
		weir.BufferTimeout(0),
		weir.RestartStrategy(restart.FixedDelay(1, 0)),
	)
	nums := weir.FromSource[rec](env, src, "offsets").UID("src")
	sums := weir.Process(weir.KeyBy(nums, func(r rec) int64 { return r.Off % 2 }),
		&paritySum{processed: processed, failOn: &failOn}).UID("sum")
	sums.SinkTo(sink).UID("sink")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	job, err := env.Start(ctx, "seeds")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[rec]int{}
	await := func(what string, recs ...rec) {
		t.Helper()
		for _, r := range recs {
			for seen[r] == 0 {
				select {
				case p := <-processed:
					seen[p]++
				case <-ctx.Done():
					t.Fatalf("timed out waiting for %s (record %+v)", what, r)
				}
			}
		}
	}

	// Source1 emits offsets 0..3, Source2 0..4; both sums process them.
	src.release(0, 4)
	src.release(1, 5)
	await("the records before the checkpoint",
		rec{0, 0}, rec{0, 1}, rec{0, 2}, rec{0, 3}, rec{1, 0}, rec{1, 1}, rec{1, 2}, rec{1, 3}, rec{1, 4})

	// Checkpoint 1: Source1 takes it at once, Source2 is held in its snapshot.
	done := make(chan error, 1)
	go func() { _, err := job.TriggerCheckpoint(ctx); done <- err }()
	for range 2 {
		select {
		case <-src.snapEntered:
		case <-ctx.Done():
			t.Fatal("timed out waiting for the sources to snapshot")
		}
	}
	// Source1's record 4, after its barrier, reaches the even sum before
	// Source2's barrier does.
	polls := src.polled[0].Load()
	src.release(0, 5)
	if mode == weir.AtLeastOnce {
		await("record 4 of Source1 to be summed before Source2's barrier", rec{0, 4})
	} else {
		// Wait until every goroutine of the job is blocked: Source1 has
		// read record 4 and flushed it, and the even sum has processed it
		// or holds it behind the barrier; nothing else can happen until
		// Source2's snapshot is released.
		synctest.Wait()
		if src.polled[0].Load() == polls {
			t.Fatal("Source1 did not read past record 4")
		}
		for len(processed) > 0 {
			seen[<-processed]++
		}
		if seen[rec{0, 4}] != 0 {
			t.Fatal("exactly once: record 4 of Source1 overtook the barrier on a blocked channel")
		}
	}
	close(src.releaseSnap1)
	if err := <-done; err != nil {
		t.Fatalf("checkpoint 1: %v", err)
	}
	evenAtCheckpoint := waitCommitted(t, ctx, sink, 0)
	want := int64(8) // 0+2 from Source1, 0+2+4 from Source2
	if mode == weir.AtLeastOnce {
		want = 12 // ... plus Source1's record 4, which overtook the barrier
	}
	if evenAtCheckpoint != want {
		t.Fatalf("checkpointed sum_even = %d, want %d", evenAtCheckpoint, want)
	}

	// Fail after the checkpoint: the odd sum fails on Source2's record 5.
	failOn.Store(&rec{1, 5})
	src.release(1, 6)
	if err := job.Wait(); err != nil {
		t.Fatalf("job: %v", err)
	}
	if job.Restarts() != 1 {
		t.Fatalf("restarts = %d, want 1", job.Restarts())
	}
	// After the restore both sources replay from their checkpointed offsets.
	// Record 4 of Source1 is processed again in both modes; what differs is
	// whether the restored state already counted it.
	wantEven, wantOdd := int64(2*(0+2+4+6+8)), int64(2*(1+3+5+7+9))
	if mode == weir.AtLeastOnce {
		wantEven += 4 // record 4 counted twice
	}
	last := lastByKey(sink.Committed())
	if last[0] != wantEven || last[1] != wantOdd {
		t.Fatalf("final committed sums: even %d odd %d, want even %d odd %d", last[0], last[1], wantEven, wantOdd)
	}
}

func lastByKey(kvs []weir.KV[int64, int64]) map[int64]int64 {
	m := map[int64]int64{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}

// waitCommitted waits for the first committed sum of key and returns it.
func waitCommitted(t *testing.T, ctx context.Context, sink *weir.CollectSink[weir.KV[int64, int64]], key int64) int64 {
	t.Helper()
	for {
		if v, ok := lastByKey(sink.Committed())[key]; ok {
			return v
		}
		select {
		case <-ctx.Done():
			t.Fatal("timed out waiting for the sink to commit")
		case <-time.After(time.Millisecond):
		}
	}
}
