package queries

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/internal/leaktest"
	"github.com/weirstream/weir/nexmark"
	"github.com/weirstream/weir/nexmark/reference"
	"github.com/weirstream/weir/restart"
	"github.com/weirstream/weir/state/pebblestate"
)

func TestMain(m *testing.M) { leaktest.Main(m) }

const (
	testEvents     = 20_000
	testPartitions = 4
)

func testConfig() nexmark.GeneratorConfig {
	c := nexmark.DefaultConfig()
	c.Seed = 42
	c.MaxEvents = testEvents
	return c
}

func generated(t *testing.T, cfg nexmark.GeneratorConfig) []nexmark.Event {
	t.Helper()
	g, err := nexmark.NewGenerator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]nexmark.Event, cfg.MaxEvents)
	for n := range out {
		out[n] = g.Event(int64(n))
	}
	return out
}

// result is one query's sink and how to compare it with the reference.
type result struct {
	name  string
	check func(t *testing.T, events []nexmark.Event)
}

// sinkTo adds q's rows to the job and returns the comparison with want.
func sinkTo[T interface{ Compare(T) int }](name string, s weir.Stream[T], want func([]nexmark.Event) []T, final func([]T) []T) result {
	sink := weir.NewCollectSink[T]()
	s.SinkTo(sink).Name(name + "-sink")
	return result{name, func(t *testing.T, events []nexmark.Event) {
		got := sink.Committed()
		if final != nil {
			got = final(got)
		}
		slices.SortStableFunc(got, func(a, b T) int { return a.Compare(b) })
		w := want(events)
		if len(got) != len(w) {
			t.Errorf("%s: %d rows, the reference has %d", name, len(got), len(w))
		}
		for i := range min(len(got), len(w)) {
			if !reflect.DeepEqual(got[i], w[i]) {
				t.Errorf("%s: row %d is\n %+v\nthe reference's\n %+v", name, i, got[i], w[i])
				return
			}
		}
	}}
}

// finalQ17 keeps the last row of every key (the one counting the most bids).
func finalQ17(rows []nexmark.Q17Row) []nexmark.Q17Row {
	last := map[[2]any]nexmark.Q17Row{}
	for _, r := range rows {
		k := [2]any{r.Auction, r.Day}
		if prev, ok := last[k]; !ok || r.TotalBids > prev.TotalBids {
			last[k] = r
		}
	}
	out := make([]nexmark.Q17Row, 0, len(last))
	for _, r := range last {
		out = append(out, r)
	}
	return out
}

// finalStats keeps the last row of every group: the one with the most
// counts (every change adds to them).
func finalStats[R any](key func(R) (any, nexmark.BidStats)) func([]R) []R {
	total := func(s nexmark.BidStats) int64 {
		return s.TotalBids + s.TotalBidders + s.TotalAuctions + s.Rank1Bids + s.Rank2Bids + s.Rank3Bids + s.Rank1Bidders +
			s.Rank2Bidders + s.Rank3Bidders + s.Rank1Auctions + s.Rank2Auctions + s.Rank3Auctions
	}
	return func(rows []R) []R {
		last := map[any]R{}
		for _, r := range rows {
			k, s := key(r)
			if prev, ok := last[k]; ok {
				if _, ps := key(prev); total(ps) >= total(s) {
					continue
				}
			}
			last[k] = r
		}
		out := make([]R, 0, len(last))
		for _, r := range last {
			out = append(out, r)
		}
		return out
	}
}

// lastBy keeps the last row of every key: a key's rows come from one
// subtask, in the order it emitted them.
func lastBy[R any, K comparable](key func(R) K) func([]R) []R {
	return func(rows []R) []R {
		last := map[K]R{}
		for _, r := range rows {
			last[key(r)] = r
		}
		out := make([]R, 0, len(last))
		for _, r := range last {
			out = append(out, r)
		}
		return out
	}
}

// q9Result checks q9's last row per auction: the reference's price and
// time, and a bid of the input (of bids at equal price and time, which
// one wins depends on arrival order).
func q9Result(s weir.Stream[nexmark.Q9Row]) result {
	sink := weir.NewCollectSink[nexmark.Q9Row]()
	s.SinkTo(sink)
	return result{"q9", func(t *testing.T, events []nexmark.Event) {
		last := map[int64]nexmark.Q9Row{}
		for _, r := range sink.Committed() {
			last[r.ID] = r
		}
		want := reference.Q9(events)
		if len(last) != len(want) {
			t.Errorf("q9: %d auctions, the reference has %d", len(last), len(want))
		}
		type bidKey struct {
			auction, bidder, price, ts int64
			extra                      string
		}
		in := map[bidKey]bool{}
		for b := range bidSet(events) {
			in[bidKey{b.Auction, b.Bidder, b.Price, b.DateTime, b.Extra}] = true
		}
		for _, w := range want {
			g, ok := last[w.ID]
			if !ok || g.Auction != w.Auction || g.Price != w.Price || g.BidDateTime != w.BidDateTime || !in[bidKey{g.ID, g.Bidder, g.Price, g.BidDateTime, g.BidExtra}] {
				t.Errorf("q9: auction %d: %+v, the reference's %+v", w.ID, g, w)
				return
			}
		}
	}}
}

// bidSet is the set of bids of the input.
func bidSet(events []nexmark.Event) map[nexmark.Bid]bool {
	m := map[nexmark.Bid]bool{}
	for _, e := range events {
		if e.Type == nexmark.BidEvent {
			m[e.Bid] = true
		}
	}
	return m
}

// q18Result checks q18's last row per (bidder, auction): the reference's
// time, and a bid of the input (of bids at equal times, which one arrives
// last differs between runs).
func q18Result(s weir.Stream[nexmark.Q18Row]) result {
	sink := weir.NewCollectSink[nexmark.Q18Row]()
	s.SinkTo(sink)
	return result{"q18", func(t *testing.T, events []nexmark.Event) {
		type key struct{ bidder, auction int64 }
		last := map[key]nexmark.Bid{}
		for _, b := range sink.Committed() { // a key's rows are in emission order
			last[key{b.Bidder, b.Auction}] = b
		}
		want := reference.Q18(events)
		if len(last) != len(want) {
			t.Errorf("q18: %d keys, the reference has %d", len(last), len(want))
		}
		in := bidSet(events)
		for _, w := range want {
			g, ok := last[key{w.Bidder, w.Auction}]
			if !ok || g.DateTime != w.DateTime || !in[g] {
				t.Errorf("q18: bidder %d auction %d: last bid %+v, the reference's %+v", w.Bidder, w.Auction, g, w)
				return
			}
		}
	}}
}

// q19Result checks q19's final rows per (auction, rank): the reference's
// price, and a bid of the input for that auction (which of equal prices
// ranks first depends on arrival order).
func q19Result(s weir.Stream[nexmark.Q19Row]) result {
	sink := weir.NewCollectSink[nexmark.Q19Row]()
	s.SinkTo(sink)
	return result{"q19", func(t *testing.T, events []nexmark.Event) {
		type key struct{ auction, rank int64 }
		last := map[key]nexmark.Bid{}
		for _, r := range sink.Committed() {
			last[key{r.Auction, r.RankNumber}] = r.Bid
		}
		want := reference.Q19(events)
		if len(last) != len(want) {
			t.Errorf("q19: %d (auction, rank) rows, the reference has %d", len(last), len(want))
		}
		in := bidSet(events)
		for _, w := range want {
			g, ok := last[key{w.Auction, w.RankNumber}]
			if !ok || g.Price != w.Price || g.Auction != w.Auction || !in[g] {
				t.Errorf("q19: auction %d rank %d: %+v, the reference's %+v", w.Auction, w.RankNumber, g, w.Bid)
				return
			}
		}
	}}
}

// allQueries adds every query of this package to the job.
func allQueries(events weir.Stream[nexmark.Event]) []result {
	side := nexmark.SideInput()
	return []result{
		sinkTo("q0", Q0(events), reference.Q0, nil),
		sinkTo("q1", Q1(events), reference.Q1, nil),
		sinkTo("q2", Q2(events), reference.Q2, nil),
		sinkTo("q3", Q3(events), reference.Q3, nil),
		sinkTo("q4", Q4(events), reference.Q4, lastBy(func(r nexmark.Q4Row) int64 { return r.Category })),
		sinkTo("q5", Q5(events), reference.Q5, nil),
		sinkTo("q6", Q6(events), reference.Q6, lastBy(func(r nexmark.Q6Row) int64 { return r.Seller })),
		sinkTo("q7", Q7(events), reference.Q7, nil),
		sinkTo("q8", Q8(events), reference.Q8, nil),
		q9Result(Q9(events)),
		sinkTo("q10", Q10(events), reference.Q10, nil),
		sinkTo("q11", Q11(events), reference.Q11, nil),
		sinkTo("q13", Q13(events, side), func(e []nexmark.Event) []nexmark.Q13Row { return reference.Q13(e, side) }, nil),
		sinkTo("q14", Q14(events), reference.Q14, nil),
		sinkTo("q15", Q15(events), reference.Q15, finalStats(func(r nexmark.Q15Row) (any, nexmark.BidStats) { return r.Day, r.BidStats })),
		sinkTo("q16", Q16(events), reference.Q16, finalStats(func(r nexmark.Q16Row) (any, nexmark.BidStats) { return [2]string{r.Channel, r.Day}, r.BidStats })),
		sinkTo("q17", Q17(events), reference.Q17, finalQ17),
		q18Result(Q18(events)),
		q19Result(Q19(events)),
		sinkTo("q20", Q20(events), reference.Q20, nil),
		sinkTo("q21", Q21(events), reference.Q21, nil),
		sinkTo("q22", Q22(events), reference.Q22, nil),
	}
}

// Every query gives the reference's rows on generated events, at
// parallelism 1 and 3 (the source has 4 partitions either way), with
// keyed state on the heap and in pebble (on fewer events: every state
// access of pebble goes through the codecs and the LSM).
func TestQueriesMatchReference(t *testing.T) {
	cfg := testConfig()
	all := generated(t, cfg)
	for _, c := range []struct {
		p      int
		pebble bool
	}{{1, false}, {3, false}, {1, true}, {3, true}} {
		t.Run(fmt.Sprintf("parallelism%d-pebble%t", c.p, c.pebble), func(t *testing.T) {
			cfg, events := cfg, all
			if c.pebble {
				cfg.MaxEvents = 6000
				events = all[:cfg.MaxEvents]
			}
			opts := []weir.Option{weir.Parallelism(c.p)}
			if c.pebble {
				opts = append(opts, weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: t.TempDir()})))
			}
			env := weir.NewEnvironment(opts...)
			results := allQueries(Events(env, NewSource(cfg, testPartitions)))
			if err := env.Execute(context.Background(), "nexmark"); err != nil {
				t.Fatal(err)
			}
			for _, r := range results {
				r.check(t, events)
			}
		})
	}
}

// A failure after a checkpoint restores the source's partition offsets
// and the keyed state: with the exactly-once collecting sink, q0, q3, q4,
// q15, q17 and q20 still give the reference's rows.
func TestQueriesAfterFailover(t *testing.T) {
	cfg := testConfig()
	cfg.MaxEvents = 20_000
	cfg.EventsPerSecond = 20_000 // paced: about a second
	events := generated(t, cfg)
	env := weir.NewEnvironment(weir.Parallelism(3),
		weir.Checkpointing(20*time.Millisecond, weir.ExactlyOnce),
		weir.CheckpointStorage(t.TempDir()),
		weir.RestartStrategy(restart.FixedDelay(3, time.Millisecond)))
	src := NewSource(cfg, testPartitions)
	src.Paced = true
	var seen atomic.Int64
	var failed atomic.Bool
	in := weir.MapErr(Events(env, src), func(e nexmark.Event) (nexmark.Event, error) {
		if seen.Add(1) == cfg.MaxEvents/3 && failed.CompareAndSwap(false, true) {
			return e, errors.New("injected failure")
		}
		return e, nil
	})
	results := []result{
		sinkTo("q0", Q0(in), reference.Q0, nil),
		sinkTo("q17", Q17(in), reference.Q17, finalQ17),
		sinkTo("q3", Q3(in), reference.Q3, nil),
		sinkTo("q4", Q4(in), reference.Q4, lastBy(func(r nexmark.Q4Row) int64 { return r.Category })),
		sinkTo("q15", Q15(in), reference.Q15, finalStats(func(r nexmark.Q15Row) (any, nexmark.BidStats) { return r.Day, r.BidStats })),
		sinkTo("q20", Q20(in), reference.Q20, nil),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	job, err := env.Start(ctx, "nexmark-failover")
	if err != nil {
		t.Fatal(err)
	}
	if err := job.Wait(); err != nil {
		t.Fatal(err)
	}
	if job.Restarts() != 1 || len(job.Checkpoints()) == 0 {
		t.Fatalf("%d restarts, %d checkpoints: want 1 restart after a checkpoint", job.Restarts(), len(job.Checkpoints()))
	}
	for _, r := range results {
		r.check(t, events)
	}
}

// A source of 5 partitions read by 2 subtasks restores, at parallelism
// 3, every partition's offset.
func TestSourceSnapshotRestore(t *testing.T) {
	cfg := testConfig()
	cfg.MaxEvents = 1000
	src := NewSource(cfg, 5)
	g, _ := nexmark.NewGenerator(cfg)
	var positions [][]byte
	var first []int64
	for sub := range 2 {
		r, err := src.CreateReader(weir.SourceContext{Subtask: sub, Parallelism: 2})
		if err != nil {
			t.Fatal(err)
		}
		buf, splits, st, err := r.(weir.SplitReader[nexmark.Event]).ReadSplits(make([]nexmark.Event, 0, 100), nil)
		if err != nil || st != weir.MoreAvailable || len(buf) != 100 || len(splits) != 100 {
			t.Fatalf("subtask %d read %d events, %d splits, %v, %v", sub, len(buf), len(splits), st, err)
		}
		for i, e := range buf {
			if splits[i]%2 != sub {
				t.Fatalf("subtask %d read partition %d", sub, splits[i])
			}
			first = append(first, e.Timestamp)
		}
		pos, _ := r.Snapshot(1)
		positions = append(positions, pos...)
	}
	// Read everything left at parallelism 3: together with what was read
	// before, every event exactly once.
	seen := map[string]int{}
	count := func(e nexmark.Event) { seen[string(nexmark.AppendJSON(nil, e))]++ }
	var rest int
	for sub := range 3 {
		r, err := src.CreateReader(weir.SourceContext{Subtask: sub, Parallelism: 3, Restored: positions})
		if err != nil {
			t.Fatal(err)
		}
		for {
			buf, st, err := r.Read(make([]nexmark.Event, 0, 64))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range buf {
				count(e)
			}
			rest += len(buf)
			if st == weir.EndOfInput {
				break
			}
		}
	}
	if rest != 1000-200 {
		t.Fatalf("read %d events after the restore, want 800", rest)
	}
	for n := range int64(1000) {
		seen[string(nexmark.AppendJSON(nil, g.Event(n)))]--
	}
	extra := 0
	for _, c := range seen {
		if c > 0 {
			extra += c
		}
	}
	if extra != 0 {
		t.Fatalf("%d events read after the restore that are not events of the config", extra)
	}
	if _, err := src.CreateReader(weir.SourceContext{Subtask: 0, Parallelism: 1, Restored: [][]byte{{1, 2}}}); err == nil {
		t.Error("restoring a 2-byte position: no error")
	}
}

// Pure helpers against their SQL definitions.
func TestHelpers(t *testing.T) {
	for _, c := range []struct {
		ms     int64
		day, m string
	}{{0, "1970-01-01", "00:00"}, {1_000_000_000_000, "2001-09-09", "01:46"}, {951_825_600_000, "2000-02-29", "12:00"}, {-1, "1969-12-31", "23:59"}} {
		day := floorDiv(c.ms, msPerDay)
		if got := dayString(day); got != c.day {
			t.Errorf("dayString(%d) = %s, want %s", c.ms, got, c.day)
		}
		if got := minuteString(floorDiv(c.ms, msPerMinute) - day*24*60); got != c.m {
			t.Errorf("minuteString(%d) = %s, want %s", c.ms, got, c.m)
		}
	}
	for _, c := range []struct {
		ch, url, id string
		ok          bool
	}{
		{"APPLE", "", "0", true}, {"channel-1", "a&channel_id=5&b", "5", true}, {"c", "channel_id=", "", true},
		{"c", "xchannel_id=1", "", false}, {"c", "xchannel_id=1&channel_id=2", "2", true},
		{"FaceBook", "", "2", true}, {"faceboo\u212a", "", "2", true}, {"BAIDU", "a&channel_id=7", "3", true},
		{"apples", "", "", false}, {"c", "channel_id=1&channel_id=2", "1", true}, {"c", "&channel_id=", "", true},
	} {
		if id, ok := ChannelID(c.ch, c.url); id != c.id || ok != c.ok {
			t.Errorf("ChannelID(%q, %q) = %q, %t", c.ch, c.url, id, ok)
		}
	}
	for _, u := range []string{"https://www.nexmark.com/abc/def/item.htm?query=1", "https://h/a", "https://h/a/", "https://h",
		"https:", "", "a/b/c/d/e/f/g", "///", "////x//"} {
		d1, d2, d3 := urlDirs(u)
		if w1, w2, w3 := splitIndex(u, '/', 3), splitIndex(u, '/', 4), splitIndex(u, '/', 5); d1 != w1 || d2 != w2 || d3 != w3 {
			t.Errorf("urlDirs(%q) = %q, %q, %q; SPLIT_INDEX gives %q, %q, %q", u, d1, d2, d3, w1, w2, w3)
		}
	}
	if got := splitIndex("a/b/c", '/', 2); got != "c" {
		t.Errorf("splitIndex: %q", got)
	}
	if got := splitIndex("a/b/c", '/', 3); got != "" {
		t.Errorf("splitIndex past the end: %q", got)
	}
	k := AuctionDay{Auction: 1_234_567, Day: -3}
	if back, err := (AuctionDayCodec{}).Decode(AuctionDayCodec{}.Append(nil, k)); err != nil || back != k {
		t.Errorf("codec round trip: %v, %v", back, err)
	}
	if _, err := (AuctionDayCodec{}).Decode([]byte{0x80}); err == nil {
		t.Error("decoding a truncated key: no error")
	}
}

// stamp records what a keyed function sees of event time.
type stamp struct{ TS, Watermark, EventTS int64 }

// Records carry their event's timestamp, watermarks advance, and no
// record is behind the watermark: partitions generate in time order and
// the watermark trails by OutOfOrderness.
func TestEventTime(t *testing.T) {
	cfg := testConfig()
	cfg.MaxEvents = 10_000
	cfg.EventsPerSecond = 20_000
	env := weir.NewEnvironment(weir.Parallelism(2), weir.AutoWatermarkInterval(5*time.Millisecond))
	src := NewSource(cfg, 3)
	src.Paced = true
	keyed := weir.KeyBy(Events(env, src), func(e nexmark.Event) int64 { return int64(e.Type) })
	sink := weir.NewCollectSink[stamp]()
	weir.Process(keyed, weir.ProcessFunc[int64, nexmark.Event, stamp](func(ctx *weir.KeyedContext[int64], e nexmark.Event, out weir.Collector[stamp]) error {
		ts, _ := ctx.Timestamp()
		out.Collect(stamp{TS: ts, Watermark: ctx.CurrentWatermark(), EventTS: e.Timestamp})
		return nil
	})).SinkTo(sink)
	if err := env.Execute(context.Background(), "nexmark-event-time"); err != nil {
		t.Fatal(err)
	}
	got := sink.Committed()
	if len(got) != int(cfg.MaxEvents) {
		t.Fatalf("%d records, want %d", len(got), cfg.MaxEvents)
	}
	var maxWM int64 = weir.MinWatermark
	for _, s := range got {
		if s.TS != s.EventTS {
			t.Fatalf("record timestamp %d, event timestamp %d", s.TS, s.EventTS)
		}
		if s.TS <= s.Watermark {
			t.Fatalf("record at %d is behind the watermark %d", s.TS, s.Watermark)
		}
		maxWM = max(maxWM, s.Watermark)
	}
	// The run spans 500 ms of event time; the watermark starts at the
	// base time - 4001 ms and must have moved on by a good part of it.
	if first := cfg.BaseTime - OutOfOrderness.Milliseconds() - 1; maxWM < first+100 {
		t.Errorf("the watermark reached only %d ms past its first value", maxWM-first)
	}
}
