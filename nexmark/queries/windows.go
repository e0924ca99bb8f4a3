package queries

import (
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/nexmark"
)

// The windowed queries: q5 (sliding windows), q7 and q8 (tumbling
// windows), q11 (session windows) and q12 (processing-time windows). Each
// emits its rows of a window when the watermark (the clock for q12)
// passes the window's end; at the end of a bounded input every window
// fires.

const (
	windowSize = 10 * time.Second // q5's size, q7's, q8's and q12's windows, q11's session gap
	q5Slide    = 2 * time.Second
)

// bidCount counts the records of a window; its accumulators merge, as
// session windows need.
type bidCount[T any] struct{}

func (bidCount[T]) CreateAccumulator() int64 { return 0 }
func (bidCount[T]) Add(_ T, acc int64) int64 { return acc + 1 }
func (bidCount[T]) Result(acc int64) int64   { return acc }
func (bidCount[T]) Merge(a, b int64) int64   { return a + b }

// bidsByInt64 keys the bids of events by key.
func bidsByInt64(events weir.Stream[nexmark.Event], name string, key func(nexmark.Bid) int64) weir.KeyedStream[int64, nexmark.Bid] {
	bids := bidsOf(events, name, func(b nexmark.Bid, out weir.Collector[nexmark.Bid]) { out.Collect(b) })
	return weir.KeyByWithCodec(bids, key, keyCodec[int64](int64Codec{}))
}

// hotAuctions is the running result of q5's second stage for one
// window: the largest count and the auctions that have it.
type hotAuctions struct {
	Num      int64
	Auctions []int64
}

// mostBids keeps the auctions with the most bids of a window.
type mostBids struct{}

func (mostBids) CreateAccumulator() hotAuctions { return hotAuctions{} }
func (mostBids) Add(r nexmark.Q5Row, acc hotAuctions) hotAuctions {
	switch {
	case r.Num > acc.Num:
		// A new slice: the stored one may be part of a snapshot being written.
		return hotAuctions{Num: r.Num, Auctions: []int64{r.Auction}}
	case r.Num == acc.Num:
		return hotAuctions{Num: acc.Num, Auctions: append(acc.Auctions[:len(acc.Auctions):len(acc.Auctions)], r.Auction)}
	}
	return acc
}
func (mostBids) Result(acc hotAuctions) hotAuctions { return acc }

// Q5 finds the hot items: per sliding window of 10 s every 2 s, the
// auctions with the most bids. The first stage counts the bids of every
// auction per window; the second keys these counts by window end and, in
// the 2 s tumbling window holding the end (one window per end, as counts
// carry their window's last millisecond as timestamp), keeps the largest.
func Q5(events weir.Stream[nexmark.Event]) weir.Stream[nexmark.Q5Row] {
	byAuction := bidsByInt64(events, "q5-bids", func(b nexmark.Bid) int64 { return b.Auction })
	counts := weir.WindowAggregateProcess(weir.Window(byAuction, weir.SlidingEventTimeWindows(windowSize, q5Slide)),
		weir.Aggregator[nexmark.Bid, int64, int64](bidCount[nexmark.Bid]{}),
		weir.ProcessWindowFunc[int64, int64, nexmark.Q5Row](func(ctx *weir.WindowContext[int64], n []int64, out weir.Collector[nexmark.Q5Row]) error {
			w := ctx.Window()
			out.Collect(nexmark.Q5Row{WindowStart: w.Start, WindowEnd: w.End, Auction: ctx.Key(), Num: n[0]})
			return nil
		})).Name("q5-counts")
	byWindow := weir.KeyByWithCodec(counts, func(r nexmark.Q5Row) int64 { return r.WindowEnd }, keyCodec[int64](int64Codec{}))
	return weir.WindowAggregateProcess(weir.Window(byWindow, weir.TumblingEventTimeWindows(q5Slide)),
		weir.Aggregator[nexmark.Q5Row, hotAuctions, hotAuctions](mostBids{}),
		weir.ProcessWindowFunc[int64, hotAuctions, nexmark.Q5Row](func(ctx *weir.WindowContext[int64], hot []hotAuctions, out weir.Collector[nexmark.Q5Row]) error {
			end := ctx.Key()
			for _, a := range hot[0].Auctions {
				out.Collect(nexmark.Q5Row{WindowStart: end - windowSize.Milliseconds(), WindowEnd: end, Auction: a, Num: hot[0].Num})
			}
			return nil
		})).Name("q5")
}

// q7Bid is a bid offered to the 10 s window ending at the key: Edge if its
// time is that end (SQL's BETWEEN includes it: it may join the window's
// highest price but does not count toward it).
type q7Bid struct {
	Bid  nexmark.Bid
	Edge bool
}

// q7 keeps, per window end, the highest price of the window's bids, the
// bids at that price, and the bids made at the end itself; a timer at the
// end emits the joined rows.
type q7 struct {
	max   weir.ValueState[int64]
	top   weir.ListState[nexmark.Bid]
	edges weir.ListState[nexmark.Bid]
}

func (f *q7) Open(ctx *weir.KeyedContext[int64]) (err error) {
	if f.max, err = weir.GetValueState[int64](ctx, "max-price"); err != nil {
		return err
	}
	if f.top, err = weir.GetListStateWithCodec[nexmark.Bid](ctx, "top-bids", bidCodec{}); err != nil {
		return err
	}
	f.edges, err = weir.GetListStateWithCodec[nexmark.Bid](ctx, "edge-bids", bidCodec{})
	return err
}

func (f *q7) ProcessElement(ctx *weir.KeyedContext[int64], b q7Bid, _ weir.Collector[nexmark.Q7Row]) error {
	end := ctx.CurrentKey()
	if b.Edge {
		f.edges.Add(b.Bid)
		ctx.RegisterEventTimeTimer(end)
		return nil
	}
	m, ok := f.max.Value()
	switch {
	case !ok || b.Bid.Price > m:
		f.max.Update(b.Bid.Price)
		f.top.Clear()
		f.top.Add(b.Bid)
		if !ok {
			ctx.RegisterEventTimeTimer(end)
		}
	case b.Bid.Price == m:
		f.top.Add(b.Bid)
	}
	return nil
}

func (f *q7) OnTimer(ctx *weir.KeyedContext[int64], _ int64, out weir.Collector[nexmark.Q7Row]) error {
	end := ctx.CurrentKey()
	if m, ok := f.max.Value(); ok {
		emit := func(b nexmark.Bid) {
			out.Collect(nexmark.Q7Row{WindowEnd: end, Auction: b.Auction, Price: b.Price, Bidder: b.Bidder, DateTime: b.DateTime, Extra: b.Extra})
		}
		for _, b := range f.top.Get() {
			emit(b)
		}
		for _, b := range f.edges.Get() {
			if b.Price == m {
				emit(b)
			}
		}
	}
	f.max.Clear()
	f.top.Clear()
	f.edges.Clear()
	return nil
}

// Q7 finds, per 10 s tumbling window, the bids at the window's highest
// price made from the window's start to its end, both included. Bids are
// keyed by the end of their window (a bid made exactly at a window's end
// is also offered to that window), and a timer at the end emits the rows
// when the watermark passes it.
func Q7(events weir.Stream[nexmark.Event]) weir.Stream[nexmark.Q7Row] {
	size := windowSize.Milliseconds()
	offered := weir.FlatMap(events, func(e nexmark.Event, out weir.Collector[q7Bid]) {
		if e.Type != nexmark.BidEvent {
			return
		}
		out.Collect(q7Bid{Bid: e.Bid})
		if e.Bid.DateTime%size == 0 {
			out.Collect(q7Bid{Bid: e.Bid, Edge: true})
		}
	}).Name("q7-bids")
	keyed := weir.KeyByWithCodec(offered, func(b q7Bid) int64 {
		if b.Edge {
			return b.Bid.DateTime
		}
		return floorDiv(b.Bid.DateTime, size)*size + size
	}, keyCodec[int64](int64Codec{}))
	return weir.Process[int64, q7Bid, nexmark.Q7Row](keyed, &q7{}).Name("q7")
}

// q8Side is a person created (Person, with Name) or an auction opened
// by person ID.
type q8Side struct {
	ID     int64
	Name   string
	Person bool
}

// newSellers is what q8 keeps of a person id's window: the names of
// people created in it and whether they opened an auction in it.
type newSellers struct {
	Names  []string
	Seller bool
}

type q8Agg struct{}

func (q8Agg) CreateAccumulator() newSellers { return newSellers{} }
func (q8Agg) Add(s q8Side, acc newSellers) newSellers {
	if !s.Person {
		acc.Seller = true
		return acc
	}
	for _, n := range acc.Names {
		if n == s.Name {
			return acc
		}
	}
	// A new slice: the stored one may be part of a snapshot being written.
	acc.Names = append(acc.Names[:len(acc.Names):len(acc.Names)], s.Name)
	return acc
}
func (q8Agg) Result(acc newSellers) newSellers { return acc }

// Q8 finds the new users: the people who opened an auction in the 10 s
// tumbling window they were created in. People and auctions travel in one
// stream keyed by person id and seller; a window holds the names of the
// people created in it and whether an auction was opened in it.
func Q8(events weir.Stream[nexmark.Event]) weir.Stream[nexmark.Q8Row] {
	sides := weir.FlatMap(events, func(e nexmark.Event, out weir.Collector[q8Side]) {
		switch e.Type {
		case nexmark.PersonEvent:
			out.Collect(q8Side{ID: e.Person.ID, Name: e.Person.Name, Person: true})
		case nexmark.AuctionEvent:
			out.Collect(q8Side{ID: e.Auction.Seller})
		}
	}).Name("q8-sides")
	keyed := weir.KeyByWithCodec(sides, func(s q8Side) int64 { return s.ID }, keyCodec[int64](int64Codec{}))
	return weir.WindowAggregateProcess(weir.Window(keyed, weir.TumblingEventTimeWindows(windowSize)),
		weir.Aggregator[q8Side, newSellers, newSellers](q8Agg{}),
		weir.ProcessWindowFunc[int64, newSellers, nexmark.Q8Row](func(ctx *weir.WindowContext[int64], acc []newSellers, out weir.Collector[nexmark.Q8Row]) error {
			if !acc[0].Seller {
				return nil
			}
			w := ctx.Window()
			for _, n := range acc[0].Names {
				out.Collect(nexmark.Q8Row{ID: ctx.Key(), Name: n, StartTime: w.Start, EndTime: w.End})
			}
			return nil
		})).Name("q8")
}

// Q11 counts the bids of every bidder's sessions: a session ends after
// 10 s without a bid (a bid exactly 10 s after the last still belongs to
// it); EndTime is its last bid's time + 10 s.
func Q11(events weir.Stream[nexmark.Event]) weir.Stream[nexmark.Q11Row] {
	byBidder := bidsByInt64(events, "q11-bids", func(b nexmark.Bid) int64 { return b.Bidder })
	return weir.WindowAggregateProcess(weir.Window(byBidder, weir.EventTimeSessionWindows(windowSize)),
		weir.Aggregator[nexmark.Bid, int64, int64](bidCount[nexmark.Bid]{}),
		weir.ProcessWindowFunc[int64, int64, nexmark.Q11Row](func(ctx *weir.WindowContext[int64], n []int64, out weir.Collector[nexmark.Q11Row]) error {
			w := ctx.Window()
			out.Collect(nexmark.Q11Row{Bidder: ctx.Key(), BidCount: n[0], StartTime: w.Start, EndTime: w.End})
			return nil
		})).Name("q11")
}

// endOfInputTrigger is the processing-time trigger that also fires a
// window when a bounded input ends (the maximum watermark), so that the
// windows still open then are emitted, as the event-time windows are.
type endOfInputTrigger struct{}

func (endOfInputTrigger) OnElement(ctx weir.TriggerContext, _ int64, w weir.TimeWindow) weir.TriggerResult {
	ctx.RegisterProcessingTimeTimer(w.MaxTimestamp())
	ctx.RegisterEventTimeTimer(weir.MaxWatermark)
	return weir.Continue
}

func (endOfInputTrigger) OnEventTime(_ weir.TriggerContext, t int64, _ weir.TimeWindow) weir.TriggerResult {
	if t == weir.MaxWatermark {
		return weir.FireAndPurge
	}
	return weir.Continue
}

func (endOfInputTrigger) OnProcessingTime(_ weir.TriggerContext, t int64, w weir.TimeWindow) weir.TriggerResult {
	if t == w.MaxTimestamp() {
		return weir.FireAndPurge
	}
	return weir.Continue
}

func (endOfInputTrigger) OnMerge(weir.TriggerContext, weir.TimeWindow, []weir.TimeWindow) {}

func (endOfInputTrigger) Clear(ctx weir.TriggerContext, w weir.TimeWindow) {
	ctx.DeleteProcessingTimeTimer(w.MaxTimestamp())
	ctx.DeleteEventTimeTimer(weir.MaxWatermark)
}

// Q12 counts the bids of every bidder per 10 s tumbling window of
// processing time (the machine's clock when the window operator receives
// the bid). A window fires when the clock passes its end, or when the
// input ends. Its rows depend on how fast the job runs; the total per
// bidder does not.
func Q12(events weir.Stream[nexmark.Event]) weir.Stream[nexmark.Q12Row] {
	byBidder := bidsByInt64(events, "q12-bids", func(b nexmark.Bid) int64 { return b.Bidder })
	return weir.WindowAggregateProcess(weir.Window(byBidder, weir.TumblingProcessingTimeWindows(windowSize)).Trigger(endOfInputTrigger{}),
		weir.Aggregator[nexmark.Bid, int64, int64](bidCount[nexmark.Bid]{}),
		weir.ProcessWindowFunc[int64, int64, nexmark.Q12Row](func(ctx *weir.WindowContext[int64], n []int64, out weir.Collector[nexmark.Q12Row]) error {
			w := ctx.Window()
			out.Collect(nexmark.Q12Row{Bidder: ctx.Key(), BidCount: n[0], StartTime: w.Start, EndTime: w.End})
			return nil
		})).Name("q12")
}
