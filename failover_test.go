package weir_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/internal/sinktest"
	"github.com/weirstream/weir/restart"
	"github.com/weirstream/weir/state/pebblestate"
)

// seqRec is record number Seq (1..N) of key Key.
type seqRec struct {
	Key int64
	Seq int64
}

// seqOut is what the keyed counter emits: the record and how many records
// of its key the state had counted when it arrived.
type seqOut struct {
	Key, Seq, Cnt int64
}

// flakySource wraps a source: restores may fail.
type flakySource struct {
	weir.Source[seqRec]
	inj *sinktest.Injector
}

func (s flakySource) CreateReader(ctx weir.SourceContext) (weir.SourceReader[seqRec], error) {
	if ctx.RestoredCheckpoint != 0 {
		if err := s.inj.Maybe("restore", 0.3); err != nil {
			return nil, err
		}
	}
	return s.Source.CreateReader(ctx)
}

// flakySink wraps the collecting sink: snapshots and notifications may fail.
type flakySink struct {
	*weir.CollectSink[seqOut]
	inj *sinktest.Injector
}

func (s flakySink) CreateWriter(ctx weir.SinkContext) (weir.SinkWriter[seqOut], error) {
	w, err := s.CollectSink.CreateWriter(ctx)
	if err != nil {
		return nil, err
	}
	return &flakyWriter{SinkWriter: w, inj: s.inj}, nil
}

type flakyWriter struct {
	weir.SinkWriter[seqOut]
	inj *sinktest.Injector
}

func (w *flakyWriter) SnapshotState(id checkpoint.ID) ([][]byte, error) {
	if err := w.inj.Maybe("snapshot", 0.05); err != nil {
		return nil, err
	}
	return w.SinkWriter.(weir.SnapshottingWriter).SnapshotState(id)
}

func (w *flakyWriter) NotifyCheckpointComplete(id checkpoint.ID) error {
	if err := w.inj.Maybe("notify", 0.05); err != nil {
		return err
	}
	return w.SinkWriter.(weir.CheckpointListener).NotifyCheckpointComplete(id)
}

func (w *flakyWriter) NotifyCheckpointAborted(id checkpoint.ID) error {
	return w.SinkWriter.(weir.CheckpointListener).NotifyCheckpointAborted(id)
}

func (w *flakyWriter) Finish() error { return w.SinkWriter.(weir.Finisher).Finish() }

// counter keeps a per-key count in keyed state.
type counter struct{ cnt weir.ValueState[int64] }

func (c *counter) Open(ctx *weir.KeyedContext[int64]) (err error) {
	c.cnt, err = weir.GetValueState[int64](ctx, "cnt")
	return err
}

func (c *counter) ProcessElement(ctx *weir.KeyedContext[int64], in seqRec, out weir.Collector[seqOut]) error {
	n, _ := c.cnt.Value()
	n++
	c.cnt.Update(n)
	out.Collect(seqOut{Key: in.Key, Seq: in.Seq, Cnt: n})
	return nil
}

// TestFailureInjection runs sequence-numbered sources through a keyBy
// shuffle into a keyed counter, with failures thrown at random in map,
// snapshot, restore and notify, and checks every key's output: nothing lost
// and, in exactly-once mode, nothing duplicated and every count equal to its
// sequence number.
func TestFailureInjection(t *testing.T) {
	for _, mode := range []weir.Mode{weir.ExactlyOnce, weir.AtLeastOnce} {
		for seed := uint64(1); seed <= 3; seed++ {
			t.Run(fmt.Sprintf("%s/seed%d", mode, seed), func(t *testing.T) { runFailureInjection(t, mode, seed) })
		}
	}
	// The same with keyed state in pebble, incremental and full.
	for seed := uint64(1); seed <= 2; seed++ {
		t.Run(fmt.Sprintf("pebble-incremental/seed%d", seed), func(t *testing.T) {
			runFailureInjection(t, weir.ExactlyOnce, seed, weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: t.TempDir()})))
		})
	}
	t.Run("pebble-full/seed1", func(t *testing.T) {
		runFailureInjection(t, weir.ExactlyOnce, 1, weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: t.TempDir(), Full: true})))
	})
}

func runFailureInjection(t *testing.T, mode weir.Mode, seed uint64, opts ...weir.Option) {
	const keys, perKey = 6, 3000
	inj := sinktest.NewInjector(seed, 8)
	sink := flakySink{CollectSink: weir.NewCollectSink[seqOut](), inj: inj}
	env := weir.NewEnvironment(append([]weir.Option{
		weir.Parallelism(2),
		weir.Checkpointing(15*time.Millisecond, mode),
		weir.CheckpointStorage(t.TempDir()),
		weir.RestartStrategy(restart.FixedDelay(100, time.Millisecond)),
		weir.BufferSize(64),
	}, opts...)...)
	// One partition per key, records 1..perKey; a slow-ish rate so that
	// checkpoints and failures interleave with the records.
	gen := weir.Generator(keys, perKey, func(p int, off int64) seqRec { return seqRec{Key: int64(p), Seq: off + 1} }).WithRate(20000)
	src := weir.FromSource[seqRec](env, flakySource{Source: gen, inj: inj}, "seq").UID("src").SetParallelism(3)
	mapped := weir.MapErr(src, func(r seqRec) (seqRec, error) {
		if err := inj.Maybe("map", 0.0005); err != nil {
			return r, err
		}
		return r, nil
	}).UID("map").SetParallelism(3)
	counted := weir.Process(weir.KeyBy(mapped, func(r seqRec) int64 { return r.Key }), &counter{}).UID("count")
	counted.SinkTo(sink).UID("sink")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	job, err := env.Start(ctx, "failure-injection")
	if err != nil {
		t.Fatal(err)
	}
	if err := job.Wait(); err != nil {
		t.Fatalf("job: %v (injected %v)", err, inj.Hits())
	}
	t.Logf("injected %v, restarts %d, checkpoints %d", inj.Hits(), job.Restarts(), len(job.Checkpoints()))
	if job.Restarts() == 0 {
		t.Fatal("no failure was injected: the test proves nothing")
	}

	got := map[int64]map[int64][]int64{} // key -> seq -> counts seen
	for _, o := range sink.Committed() {
		if got[o.Key] == nil {
			got[o.Key] = map[int64][]int64{}
		}
		got[o.Key][o.Seq] = append(got[o.Key][o.Seq], o.Cnt)
	}
	var lost, dups, badCnt int
	for k := int64(0); k < keys; k++ {
		for s := int64(1); s <= perKey; s++ {
			cs := got[k][s]
			switch {
			case len(cs) == 0:
				lost++
			case len(cs) > 1:
				dups += len(cs) - 1
			}
			if len(cs) == 1 && cs[0] != s {
				badCnt++
			}
		}
	}
	if lost != 0 {
		t.Errorf("%s: %d records lost", mode, lost)
	}
	if mode == weir.ExactlyOnce {
		if dups != 0 {
			t.Errorf("exactly once: %d duplicates", dups)
		}
		if badCnt != 0 {
			t.Errorf("exactly once: %d records whose count differs from their sequence number (state affected twice)", badCnt)
		}
	}
}
