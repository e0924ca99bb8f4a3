package queries

import (
	"encoding/binary"
	"fmt"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/nexmark"
)

// Keyed, updating queries: q15, q16 (distinct counts, split in two keyed
// stages as Flink's split-distinct aggregation does), q18 and q19. Each
// emits the new row of its key after every change; the last row of a key
// is its final value.

// keyCodec encodes keys: their hash and their form in checkpoints.
type keyCodec[K any] interface {
	Append(dst []byte, k K) []byte
	Decode(src []byte) (K, error)
}

// int64Codec is a varint.
type int64Codec struct{}

func (int64Codec) Append(dst []byte, k int64) []byte { return binary.AppendVarint(dst, k) }
func (int64Codec) Decode(src []byte) (int64, error) {
	v, n := binary.Varint(src)
	if n <= 0 || n != len(src) {
		return 0, fmt.Errorf("cannot decode key: bad varint")
	}
	return v, nil
}

// ChannelDay is q16's group: a channel and a day (days since 1970, UTC).
type ChannelDay struct {
	Channel string
	Day     int64
}

// ChannelDayCodec encodes a ChannelDay: the day as a varint, then the
// channel's bytes.
type ChannelDayCodec struct{}

func (ChannelDayCodec) Append(dst []byte, k ChannelDay) []byte {
	return append(binary.AppendVarint(dst, k.Day), k.Channel...)
}

func (ChannelDayCodec) Decode(src []byte) (ChannelDay, error) {
	d, n := binary.Varint(src)
	if n <= 0 {
		return ChannelDay{}, fmt.Errorf("cannot decode channel/day key: bad day varint")
	}
	return ChannelDay{Channel: string(src[n:]), Day: d}, nil
}

// Member is a group and one id in it (a bidder or an auction): the key of
// the first stage of a distinct count.
type Member[G comparable] struct {
	Group G
	ID    int64
}

type memberCodec[G comparable] struct{ g keyCodec[G] }

func (c memberCodec[G]) Append(dst []byte, k Member[G]) []byte {
	return c.g.Append(binary.AppendVarint(dst, k.ID), k.Group)
}

func (c memberCodec[G]) Decode(src []byte) (Member[G], error) {
	id, n := binary.Varint(src)
	if n <= 0 {
		return Member[G]{}, fmt.Errorf("cannot decode member key: bad id varint")
	}
	g, err := c.g.Decode(src[n:])
	return Member[G]{Group: g, ID: id}, err
}

// StatsDelta is what a group's statistics grow by: counts indexed [0] for
// all and [r] for price rank r, and the latest minute of the day of a bid
// (-1: none).
type StatsDelta[G comparable] struct {
	Group                   G
	Bids, Bidders, Auctions [4]int64
	MinuteOfDay             int64
}

// rankBits are the counts a bid of price p adds to: all, and its rank.
func rankBits(p int64) uint8 { return 1 | 1<<nexmark.Rank(p) }

func counts(bits uint8) (c [4]int64) {
	for i := range c {
		if bits&(1<<i) != 0 {
			c[i] = 1
		}
	}
	return c
}

// firstSeen is the first stage of a distinct count: per (group, id) the
// ranks it was seen at; a rank seen for the first time emits a delta.
type firstSeen[G comparable] struct {
	auctions bool // count into Auctions, not Bidders
	seen     weir.ValueState[uint8]
}

func (f *firstSeen[G]) Open(ctx *weir.KeyedContext[Member[G]]) (err error) {
	f.seen, err = weir.GetValueState[uint8](ctx, "ranks-seen")
	return err
}

func (f *firstSeen[G]) ProcessElement(ctx *weir.KeyedContext[Member[G]], b nexmark.Bid, out weir.Collector[StatsDelta[G]]) error {
	seen, _ := f.seen.Value()
	bits := rankBits(b.Price) &^ seen
	if bits == 0 {
		return nil
	}
	f.seen.Update(seen | bits)
	d := StatsDelta[G]{Group: ctx.CurrentKey().Group, MinuteOfDay: -1}
	if f.auctions {
		d.Auctions = counts(bits)
	} else {
		d.Bidders = counts(bits)
	}
	out.Collect(d)
	return nil
}

// statsAcc is a group's statistics so far.
type statsAcc struct {
	Stats       nexmark.BidStats
	MinuteOfDay int64
	Label       string // the group's day, formatted once
}

type sumStats[G comparable, R any] struct {
	acc weir.ValueState[statsAcc]
	day func(G) int64
	row func(G, statsAcc) R
}

func (f *sumStats[G, R]) Open(ctx *weir.KeyedContext[G]) (err error) {
	f.acc, err = weir.GetValueStateWithCodec[statsAcc](ctx, "stats", statsAccCodec{})
	return err
}

func (f *sumStats[G, R]) ProcessElement(ctx *weir.KeyedContext[G], d StatsDelta[G], out weir.Collector[R]) error {
	a, ok := f.acc.Value()
	if !ok {
		a = statsAcc{MinuteOfDay: -1, Label: dayString(f.day(d.Group))}
	}
	s := &a.Stats
	s.TotalBids += d.Bids[0]
	s.Rank1Bids += d.Bids[1]
	s.Rank2Bids += d.Bids[2]
	s.Rank3Bids += d.Bids[3]
	s.TotalBidders += d.Bidders[0]
	s.Rank1Bidders += d.Bidders[1]
	s.Rank2Bidders += d.Bidders[2]
	s.Rank3Bidders += d.Bidders[3]
	s.TotalAuctions += d.Auctions[0]
	s.Rank1Auctions += d.Auctions[1]
	s.Rank2Auctions += d.Auctions[2]
	s.Rank3Auctions += d.Auctions[3]
	a.MinuteOfDay = max(a.MinuteOfDay, d.MinuteOfDay)
	f.acc.Update(a)
	out.Collect(f.row(d.Group, a))
	return nil
}

// bidStats builds the two-stage distinct aggregation of q15 and q16 over
// the bids grouped by group.
func bidStats[G comparable, R any](events weir.Stream[nexmark.Event], name string, group func(nexmark.Bid) G, gc keyCodec[G],
	day func(G) int64, row func(G, statsAcc) R) weir.Stream[R] {
	bids := bidsOf(events, name+"-bids", func(b nexmark.Bid, out weir.Collector[nexmark.Bid]) { out.Collect(b) })
	direct := weir.Map(bids, func(b nexmark.Bid) StatsDelta[G] {
		return StatsDelta[G]{Group: group(b), Bids: counts(rankBits(b.Price)), MinuteOfDay: (b.DateTime - floorDiv(b.DateTime, msPerDay)*msPerDay) / msPerMinute}
	}).Name(name + "-bid-counts")
	mc := memberCodec[G]{gc}
	bidders := weir.Process[Member[G], nexmark.Bid, StatsDelta[G]](weir.KeyByWithCodec(bids, func(b nexmark.Bid) Member[G] {
		return Member[G]{group(b), b.Bidder}
	}, mc), &firstSeen[G]{}).Name(name + "-distinct-bidders")
	auctions := weir.Process[Member[G], nexmark.Bid, StatsDelta[G]](weir.KeyByWithCodec(bids, func(b nexmark.Bid) Member[G] {
		return Member[G]{group(b), b.Auction}
	}, mc), &firstSeen[G]{auctions: true}).Name(name + "-distinct-auctions")
	all := weir.Union(direct, bidders, auctions)
	return weir.Process[G, StatsDelta[G], R](weir.KeyByWithCodec(all, func(d StatsDelta[G]) G { return d.Group }, gc),
		&sumStats[G, R]{day: day, row: row}).Name(name)
}

// Q15 counts per day the bids, distinct bidders and distinct auctions, in
// all and per price rank, and emits the day's new row after every change.
func Q15(events weir.Stream[nexmark.Event]) weir.Stream[nexmark.Q15Row] {
	return bidStats(events, "q15", func(b nexmark.Bid) int64 { return floorDiv(b.DateTime, msPerDay) }, keyCodec[int64](int64Codec{}),
		func(day int64) int64 { return day },
		func(_ int64, a statsAcc) nexmark.Q15Row { return nexmark.Q15Row{Day: a.Label, BidStats: a.Stats} })
}

// Q16 is q15 per channel and day, with the latest minute of the bids.
func Q16(events weir.Stream[nexmark.Event]) weir.Stream[nexmark.Q16Row] {
	var minutes [24 * 60]string
	for m := range minutes {
		minutes[m] = minuteString(int64(m))
	}
	return bidStats(events, "q16", func(b nexmark.Bid) ChannelDay {
		return ChannelDay{Channel: b.Channel, Day: floorDiv(b.DateTime, msPerDay)}
	}, keyCodec[ChannelDay](ChannelDayCodec{}),
		func(g ChannelDay) int64 { return g.Day },
		func(g ChannelDay, a statsAcc) nexmark.Q16Row {
			return nexmark.Q16Row{Channel: g.Channel, Day: a.Label, Minute: minutes[max(a.MinuteOfDay, 0)], BidStats: a.Stats}
		})
}

// BidderAuction is q18's key.
type BidderAuction struct{ Bidder, Auction int64 }

// BidderAuctionCodec encodes a BidderAuction as two varints.
type BidderAuctionCodec struct{}

func (BidderAuctionCodec) Append(dst []byte, k BidderAuction) []byte {
	return binary.AppendVarint(binary.AppendVarint(dst, k.Bidder), k.Auction)
}

func (BidderAuctionCodec) Decode(src []byte) (BidderAuction, error) {
	a, n := binary.Varint(src)
	if n <= 0 {
		return BidderAuction{}, fmt.Errorf("cannot decode bidder/auction key: bad bidder varint")
	}
	b, m := binary.Varint(src[n:])
	if m <= 0 || n+m != len(src) {
		return BidderAuction{}, fmt.Errorf("cannot decode bidder/auction key: bad auction varint")
	}
	return BidderAuction{a, b}, nil
}

type q18 struct{ last weir.ValueState[nexmark.Bid] }

func (f *q18) Open(ctx *weir.KeyedContext[BidderAuction]) (err error) {
	f.last, err = weir.GetValueStateWithCodec[nexmark.Bid](ctx, "last-bid", bidCodec{})
	return err
}

func (f *q18) ProcessElement(_ *weir.KeyedContext[BidderAuction], b nexmark.Bid, out weir.Collector[nexmark.Q18Row]) error {
	if prev, ok := f.last.Value(); ok && b.DateTime < prev.DateTime {
		return nil
	}
	f.last.Update(b)
	out.Collect(b)
	return nil
}

// Q18 keeps the last bid (by dateTime; of equal times the later to
// arrive) of every bidder in every auction, and emits it when it changes.
func Q18(events weir.Stream[nexmark.Event]) weir.Stream[nexmark.Q18Row] {
	bids := bidsOf(events, "q18-bids", func(b nexmark.Bid, out weir.Collector[nexmark.Bid]) { out.Collect(b) })
	keyed := weir.KeyByWithCodec(bids, func(b nexmark.Bid) BidderAuction { return BidderAuction{b.Bidder, b.Auction} }, BidderAuctionCodec{})
	return weir.Process[BidderAuction, nexmark.Bid, nexmark.Q18Row](keyed, &q18{}).Name("q18")
}

// TopN is the number of bids q19 keeps per auction.
const TopN = 10

type q19 struct {
	top weir.ValueState[[]nexmark.Bid]
}

func (f *q19) Open(ctx *weir.KeyedContext[int64]) (err error) {
	f.top, err = weir.GetValueStateWithCodec[[]nexmark.Bid](ctx, "top-bids", bidsCodec{})
	return err
}

func (f *q19) ProcessElement(_ *weir.KeyedContext[int64], b nexmark.Bid, out weir.Collector[nexmark.Q19Row]) error {
	top, _ := f.top.Value()
	// After the bids of equal or higher price: earlier bids rank higher.
	at := len(top)
	for at > 0 && top[at-1].Price < b.Price {
		at--
	}
	if at >= TopN {
		return nil
	}
	// A new list: the stored one may be part of a snapshot being written.
	next := make([]nexmark.Bid, 0, min(len(top)+1, TopN))
	next = append(next, top[:at]...)
	next = append(next, b)
	next = append(next, top[at:min(len(top), TopN-1)]...)
	f.top.Update(next)
	for r := at; r < len(next); r++ {
		out.Collect(nexmark.Q19Row{Bid: next[r], RankNumber: int64(r + 1)})
	}
	return nil
}

// Q19 keeps the 10 highest bids of every auction and emits, after a bid
// enters them, the rows of the ranks that changed.
func Q19(events weir.Stream[nexmark.Event]) weir.Stream[nexmark.Q19Row] {
	bids := bidsOf(events, "q19-bids", func(b nexmark.Bid, out weir.Collector[nexmark.Bid]) { out.Collect(b) })
	keyed := weir.KeyByWithCodec(bids, func(b nexmark.Bid) int64 { return b.Auction }, keyCodec[int64](int64Codec{}))
	return weir.Process[int64, nexmark.Bid, nexmark.Q19Row](keyed, &q19{}).Name("q19")
}
