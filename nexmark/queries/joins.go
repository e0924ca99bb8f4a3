package queries

import (
	"github.com/weirstream/weir"
	"github.com/weirstream/weir/nexmark"
)

// Unbounded joins on keyed state: q3 and q20 (inner joins of people or
// bids with auctions), and the winning bids of q9 and q4. The two sides
// travel in one stream of events, keyed by the join key, so one keyed
// function sees both; a record whose partner has not arrived yet waits in
// keyed state (ids are unique, as the generator makes them). The state is
// kept for as long as the job runs, as an unbounded SQL join keeps it.

// q3 joins people in OR, ID and CA with their auctions in category 10.
type q3 struct {
	person  weir.ValueState[nexmark.Person]
	pending weir.ListState[int64] // auctions waiting for their seller
}

func (f *q3) Open(ctx *weir.KeyedContext[int64]) (err error) {
	if f.person, err = weir.GetValueStateWithCodec[nexmark.Person](ctx, "person", personCodec{}); err != nil {
		return err
	}
	f.pending, err = weir.GetListState[int64](ctx, "pending-auctions")
	return err
}

func (f *q3) ProcessElement(_ *weir.KeyedContext[int64], e nexmark.Event, out weir.Collector[nexmark.Q3Row]) error {
	if e.Type == nexmark.PersonEvent {
		p := *e.Person
		f.person.Update(p)
		for _, id := range f.pending.Get() {
			out.Collect(nexmark.Q3Row{Name: p.Name, City: p.City, State: p.State, ID: id})
		}
		f.pending.Clear()
		return nil
	}
	if p, ok := f.person.Value(); ok {
		out.Collect(nexmark.Q3Row{Name: p.Name, City: p.City, State: p.State, ID: e.Auction.ID})
	} else {
		f.pending.Add(e.Auction.ID)
	}
	return nil
}

// Q3 finds the auctions in category 10 of sellers in OR, ID or CA.
func Q3(events weir.Stream[nexmark.Event]) weir.Stream[nexmark.Q3Row] {
	sides := weir.Filter(events, func(e nexmark.Event) bool {
		switch e.Type {
		case nexmark.PersonEvent:
			s := e.Person.State
			return s == "OR" || s == "ID" || s == "CA"
		case nexmark.AuctionEvent:
			return e.Auction.Category == 10
		}
		return false
	}).Name("q3-filter")
	keyed := weir.KeyByWithCodec(sides, func(e nexmark.Event) int64 {
		if e.Type == nexmark.PersonEvent {
			return e.Person.ID
		}
		return e.Auction.Seller
	}, keyCodec[int64](int64Codec{}))
	return weir.Process[int64, nexmark.Event, nexmark.Q3Row](keyed, &q3{}).Name("q3")
}

// auctionSides keeps the bids and auctions of events, keyed by auction id.
func auctionSides(events weir.Stream[nexmark.Event], name string) weir.KeyedStream[int64, nexmark.Event] {
	sides := weir.Filter(events, func(e nexmark.Event) bool { return e.Type != nexmark.PersonEvent }).Name(name)
	return weir.KeyByWithCodec(sides, func(e nexmark.Event) int64 {
		if e.Type == nexmark.AuctionEvent {
			return e.Auction.ID
		}
		return e.Bid.Auction
	}, keyCodec[int64](int64Codec{}))
}

// q20 joins bids with their auctions in category 10.
type q20 struct {
	auction weir.ValueState[nexmark.Auction]
	pending weir.ListState[nexmark.Bid] // bids waiting for their auction
}

func (f *q20) Open(ctx *weir.KeyedContext[int64]) (err error) {
	if f.auction, err = weir.GetValueStateWithCodec[nexmark.Auction](ctx, "auction", auctionCodec{}); err != nil {
		return err
	}
	f.pending, err = weir.GetListStateWithCodec[nexmark.Bid](ctx, "pending-bids", bidCodec{})
	return err
}

func q20Row(b *nexmark.Bid, a *nexmark.Auction) nexmark.Q20Row {
	return nexmark.Q20Row{Auction: b.Auction, Bidder: b.Bidder, Price: b.Price, Channel: b.Channel, URL: b.URL,
		BidDateTime: b.DateTime, BidExtra: b.Extra, ItemName: a.ItemName, Description: a.Description, InitialBid: a.InitialBid,
		Reserve: a.Reserve, AuctionDateTime: a.DateTime, Expires: a.Expires, Seller: a.Seller, Category: a.Category, AuctionExtra: a.Extra}
}

func (f *q20) ProcessElement(_ *weir.KeyedContext[int64], e nexmark.Event, out weir.Collector[nexmark.Q20Row]) error {
	if e.Type == nexmark.AuctionEvent {
		a := e.Auction
		f.auction.Update(*a)
		if a.Category == 10 {
			for _, b := range f.pending.Get() {
				out.Collect(q20Row(&b, a))
			}
		}
		f.pending.Clear()
		return nil
	}
	if a, ok := f.auction.Value(); ok {
		if a.Category == 10 {
			out.Collect(q20Row(&e.Bid, &a))
		}
	} else {
		f.pending.Add(e.Bid)
	}
	return nil
}

// Q20 joins every bid with its auction, for auctions in category 10.
func Q20(events weir.Stream[nexmark.Event]) weir.Stream[nexmark.Q20Row] {
	return weir.Process[int64, nexmark.Event, nexmark.Q20Row](auctionSides(events, "q20-sides"), &q20{}).Name("q20")
}

// WinnerChange is a new winning bid of an auction: the highest price
// within the auction's time (both ends included), the earliest of equal
// prices. HadPrevious says whether the auction had a winner before, at
// PreviousPrice.
type WinnerChange struct {
	Auction       nexmark.Auction
	Bid           nexmark.Bid
	HadPrevious   bool
	PreviousPrice int64
}

type winners struct {
	auction weir.ValueState[nexmark.Auction]
	best    weir.ValueState[nexmark.Bid]
	pending weir.ListState[nexmark.Bid]
}

func (f *winners) Open(ctx *weir.KeyedContext[int64]) (err error) {
	if f.auction, err = weir.GetValueStateWithCodec[nexmark.Auction](ctx, "auction", auctionCodec{}); err != nil {
		return err
	}
	if f.best, err = weir.GetValueStateWithCodec[nexmark.Bid](ctx, "winning-bid", bidCodec{}); err != nil {
		return err
	}
	f.pending, err = weir.GetListStateWithCodec[nexmark.Bid](ctx, "pending-bids", bidCodec{})
	return err
}

// better says whether b beats the current winner (ok: there is one).
func better(a *nexmark.Auction, b, cur *nexmark.Bid, ok bool) bool {
	if b.DateTime < a.DateTime || b.DateTime > a.Expires {
		return false
	}
	return !ok || b.Price > cur.Price || (b.Price == cur.Price && b.DateTime < cur.DateTime)
}

func (f *winners) ProcessElement(_ *weir.KeyedContext[int64], e nexmark.Event, out weir.Collector[WinnerChange]) error {
	var a nexmark.Auction
	var candidates []nexmark.Bid
	if e.Type == nexmark.AuctionEvent {
		a = *e.Auction
		f.auction.Update(a)
		candidates = f.pending.Get()
	} else {
		var ok bool
		if a, ok = f.auction.Value(); !ok {
			f.pending.Add(e.Bid)
			return nil
		}
		candidates = []nexmark.Bid{e.Bid}
	}
	prev, had := f.best.Value()
	best, ok := prev, had
	for i := range candidates {
		if better(&a, &candidates[i], &best, ok) {
			best, ok = candidates[i], true
		}
	}
	if e.Type == nexmark.AuctionEvent {
		f.pending.Clear()
	}
	if ok && (!had || best != prev) {
		f.best.Update(best)
		out.Collect(WinnerChange{Auction: a, Bid: best, HadPrevious: had, PreviousPrice: prev.Price})
	}
	return nil
}

// Winners emits every change of an auction's winning bid.
func Winners(events weir.Stream[nexmark.Event]) weir.Stream[WinnerChange] {
	return weir.Process[int64, nexmark.Event, WinnerChange](auctionSides(events, "winners-sides"), &winners{}).Name("winning-bids")
}

// Q9 emits an auction with its winning bid whenever the winner changes:
// the last row of an auction is its final winner.
func Q9(events weir.Stream[nexmark.Event]) weir.Stream[nexmark.Q9Row] {
	return weir.Map(Winners(events), func(w WinnerChange) nexmark.Q9Row {
		return nexmark.Q9Row{Auction: w.Auction, Bidder: w.Bid.Bidder, Price: w.Bid.Price, BidDateTime: w.Bid.DateTime, BidExtra: w.Bid.Extra}
	}).Name("q9")
}

type categoryAvg struct{ sum weir.ValueState[[2]int64] } // sum, count

func (f *categoryAvg) Open(ctx *weir.KeyedContext[int64]) (err error) {
	f.sum, err = weir.GetValueStateWithCodec[[2]int64](ctx, "sum-count", pairCodec{})
	return err
}

func (f *categoryAvg) ProcessElement(ctx *weir.KeyedContext[int64], w WinnerChange, out weir.Collector[nexmark.Q4Row]) error {
	s, _ := f.sum.Value()
	s[0] += w.Bid.Price
	if w.HadPrevious {
		s[0] -= w.PreviousPrice
	} else {
		s[1]++
	}
	f.sum.Update(s)
	out.Collect(nexmark.Q4Row{Category: ctx.CurrentKey(), Avg: s[0] / s[1]})
	return nil
}

// Q4 keeps per category the average winning price of its auctions and
// emits it whenever it changes: the last row of a category is its final
// value.
func Q4(events weir.Stream[nexmark.Event]) weir.Stream[nexmark.Q4Row] {
	keyed := weir.KeyByWithCodec(Winners(events), func(w WinnerChange) int64 { return w.Auction.Category }, keyCodec[int64](int64Codec{}))
	return weir.Process[int64, WinnerChange, nexmark.Q4Row](keyed, &categoryAvg{}).Name("q4")
}

// Q6Window is the number of winning bids q6 averages: the SQL's 10
// preceding rows and the current one.
const Q6Window = 11

// sellerWin is a winning bid of one of a seller's auctions.
type sellerWin struct{ Auction, Price, DateTime int64 }

type q6 struct{ wins weir.ValueState[[]sellerWin] } // by (DateTime, Auction)

func (f *q6) Open(ctx *weir.KeyedContext[int64]) (err error) {
	f.wins, err = weir.GetValueStateWithCodec[[]sellerWin](ctx, "winning-bids", sellerWinsCodec{})
	return err
}

func (f *q6) ProcessElement(ctx *weir.KeyedContext[int64], w WinnerChange, out weir.Collector[nexmark.Q6Row]) error {
	old, _ := f.wins.Value()
	// A new slice: the stored one may be part of a snapshot being written.
	wins := make([]sellerWin, 0, len(old)+1)
	for _, x := range old {
		if x.Auction != w.Auction.ID {
			wins = append(wins, x)
		}
	}
	nw := sellerWin{w.Auction.ID, w.Bid.Price, w.Bid.DateTime}
	at := len(wins)
	for at > 0 && (wins[at-1].DateTime > nw.DateTime || (wins[at-1].DateTime == nw.DateTime && wins[at-1].Auction > nw.Auction)) {
		at--
	}
	wins = append(wins, sellerWin{})
	copy(wins[at+1:], wins[at:])
	wins[at] = nw
	f.wins.Update(wins)
	var sum int64
	last := wins[max(0, len(wins)-Q6Window):]
	for _, x := range last {
		sum += x.Price
	}
	out.Collect(nexmark.Q6Row{Seller: ctx.CurrentKey(), AvgPrice: sum / int64(len(last))})
	return nil
}

// Q6 keeps per seller the average price of the winning bids of their
// last 11 auctions (by the winning bid's time, then the auction id) and
// emits it whenever a winner changes: the last row of a seller is its
// final value. Flink's SQL runner cannot run q6 (its OVER window takes no
// retractions); this follows the query's text.
func Q6(events weir.Stream[nexmark.Event]) weir.Stream[nexmark.Q6Row] {
	keyed := weir.KeyByWithCodec(Winners(events), func(w WinnerChange) int64 { return w.Auction.Seller }, keyCodec[int64](int64Codec{}))
	return weir.Process[int64, WinnerChange, nexmark.Q6Row](keyed, &q6{}).Name("q6")
}
