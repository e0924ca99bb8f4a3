package weir_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/restart"
)

// tsRec is record Seq of partition P at event time TS.
type tsRec struct {
	P   int
	Seq int64
	TS  int64
}

// seen is what a keyed function observed for one record.
type seen struct {
	Rec       tsRec
	Timestamp int64
	HasTS     bool
	Watermark int64
}

type observer struct {
	mu  *sync.Mutex
	got *[]seen
}

func (o *observer) ProcessElement(ctx *weir.KeyedContext[int], r tsRec, _ weir.Collector[int]) error {
	ts, ok := ctx.Timestamp()
	o.mu.Lock()
	*o.got = append(*o.got, seen{r, ts, ok, ctx.CurrentWatermark()})
	o.mu.Unlock()
	return nil
}

// Records carry the timestamp their source's strategy gave them through a
// shuffle, and the watermark a keyed operator sees is the minimum over
// its inputs of the sources' per-partition watermarks: never above a
// record's timestamp for in-order partitions, and moving forward.
func TestTimestampsAndWatermarksFlow(t *testing.T) {
	var mu sync.Mutex
	var got []seen
	env := weir.NewEnvironment(weir.Parallelism(2), weir.AutoWatermarkInterval(5*time.Millisecond),
		weir.RestartStrategy(restart.None()))
	gen := weir.Generator(4, 500, func(p int, off int64) tsRec { return tsRec{P: p, Seq: off, TS: 1_000_000 + off*10} }).WithRate(2000)
	ws := weir.ForMonotonousTimestamps[tsRec]().WithTimestampAssigner(func(r tsRec, _ int64) int64 { return r.TS })
	src := weir.FromSourceWithWatermarks(env, gen, ws, "gen")
	weir.Process(weir.KeyBy(src, func(r tsRec) int { return r.P }), &observer{mu: &mu, got: &got}).Print()
	if err := env.Execute(context.Background(), "event-time"); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2000 {
		t.Fatalf("%d records", len(got))
	}
	advanced := 0
	last := map[int]int64{}
	for _, s := range got {
		if !s.HasTS || s.Timestamp != s.Rec.TS {
			t.Fatalf("record %+v arrived with timestamp %d (%v)", s.Rec, s.Timestamp, s.HasTS)
		}
		if s.Watermark >= s.Rec.TS {
			t.Fatalf("record %+v arrived at watermark %d: it would be late", s.Rec, s.Watermark)
		}
		if prev, ok := last[s.Rec.P]; ok && s.Watermark < prev {
			t.Fatalf("the watermark went back from %d to %d", last[s.Rec.P], s.Watermark)
		}
		last[s.Rec.P] = s.Watermark
		if s.Watermark > weir.MinWatermark {
			advanced++
		}
	}
	if advanced == 0 {
		t.Fatal("the watermark never advanced")
	}
}
