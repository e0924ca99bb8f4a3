package queries

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/nexmark"
)

// The stateless queries: q0, q1, q2, q10 (the stream part, without the
// file sink), q13 (the side input is a static table), q14, q21, q22. They
// allocate nothing per record beyond what their rows hold. q17 is here
// too: an updating aggregation, it emits the new row of its key after
// every bid. The other keyed queries are in keyed.go.

// bidsOf calls f for every bid of events, in one operator.
func bidsOf[U any](events weir.Stream[nexmark.Event], name string, f func(b nexmark.Bid, out weir.Collector[U])) weir.Stream[U] {
	return weir.FlatMap(events, func(e nexmark.Event, out weir.Collector[U]) {
		if e.Type == nexmark.BidEvent {
			f(e.Bid, out)
		}
	}).Name(name)
}

// Q0 passes bids through.
func Q0(events weir.Stream[nexmark.Event]) weir.Stream[nexmark.Q0Row] {
	return bidsOf(events, "q0", func(b nexmark.Bid, out weir.Collector[nexmark.Q0Row]) {
		out.Collect(nexmark.Q0Row{Auction: b.Auction, Bidder: b.Bidder, Price: b.Price, DateTime: b.DateTime, Extra: b.Extra})
	})
}

// Q1 converts bid prices to euros.
func Q1(events weir.Stream[nexmark.Event]) weir.Stream[nexmark.Q1Row] {
	return bidsOf(events, "q1", func(b nexmark.Bid, out weir.Collector[nexmark.Q1Row]) {
		out.Collect(nexmark.Q1Row{Auction: b.Auction, Bidder: b.Bidder, PriceMilli: b.Price * 908, DateTime: b.DateTime, Extra: b.Extra})
	})
}

// Q2 selects the bids of every 123rd auction.
func Q2(events weir.Stream[nexmark.Event]) weir.Stream[nexmark.Q2Row] {
	return bidsOf(events, "q2", func(b nexmark.Bid, out weir.Collector[nexmark.Q2Row]) {
		if b.Auction%123 == 0 {
			out.Collect(nexmark.Q2Row{Auction: b.Auction, Price: b.Price})
		}
	})
}

const (
	msPerMinute = 60_000
	msPerDay    = 86_400_000
)

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// civil returns the year, month and day of a day number (days since
// 1970-01-01), proleptic Gregorian.
func civil(days int64) (y, m, d int64) {
	z := days + 719468
	era := floorDiv(z, 146097)
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	if mp < 10 {
		m = mp + 3
	} else {
		m = mp - 9
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}

func appendPadded(dst []byte, v int64, width int) []byte {
	var tmp [20]byte
	s := strconv.AppendInt(tmp[:0], v, 10)
	for i := len(s); i < width; i++ {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}

// dayString is DATE_FORMAT(ts, 'yyyy-MM-dd') of a day number.
func dayString(day int64) string {
	y, m, d := civil(day)
	b := appendPadded(nil, y, 4)
	b = append(b, '-')
	b = appendPadded(b, m, 2)
	b = append(b, '-')
	return string(appendPadded(b, d, 2))
}

// minuteString is DATE_FORMAT(ts, 'HH:mm') of a minute of the day.
func minuteString(minuteOfDay int64) string {
	b := appendPadded(nil, minuteOfDay/60, 2)
	b = append(b, ':')
	return string(appendPadded(b, minuteOfDay%60, 2))
}

// q10 keeps the strings of the last day and minute seen: bids come
// nearly in time order, so they are formatted once a minute.
type q10 struct {
	minute int64 // minutes since 1970 of dt and hm; valid if set
	set    bool
	dt, hm string
}

func (f *q10) FlatMap(e nexmark.Event, out weir.Collector[nexmark.Q10Row]) error {
	if e.Type != nexmark.BidEvent {
		return nil
	}
	b := &e.Bid
	if m := floorDiv(b.DateTime, msPerMinute); !f.set || m != f.minute {
		day := floorDiv(m, 24*60)
		f.minute, f.set = m, true
		f.dt, f.hm = dayString(day), minuteString(m-day*24*60)
	}
	out.Collect(nexmark.Q10Row{Auction: b.Auction, Bidder: b.Bidder, Price: b.Price, DateTime: b.DateTime, Extra: b.Extra, Dt: f.dt, Hm: f.hm})
	return nil
}

// Q10 adds to every bid the day and minute of the file partition it would
// be logged to (the file sink itself is not part of it).
func Q10(events weir.Stream[nexmark.Event]) weir.Stream[nexmark.Q10Row] {
	return weir.FlatMapWith[nexmark.Event, nexmark.Q10Row](events, &q10{}).Name("q10")
}

// Q13 joins every bid with the row of side (see nexmark.SideInput) keyed
// by its auction modulo 10 000; side is read only.
func Q13(events weir.Stream[nexmark.Event], side map[int64]string) weir.Stream[nexmark.Q13Row] {
	return bidsOf(events, "q13", func(b nexmark.Bid, out weir.Collector[nexmark.Q13Row]) {
		if v, ok := side[b.Auction%10_000]; ok {
			out.Collect(nexmark.Q13Row{Auction: b.Auction, Bidder: b.Bidder, Price: b.Price, DateTime: b.DateTime, Value: v})
		}
	})
}

// Q14 keeps bids with a euro price strictly between 1 000 000 and
// 50 000 000 and adds the part of the day and the number of 'c' in extra.
func Q14(events weir.Stream[nexmark.Event]) weir.Stream[nexmark.Q14Row] {
	return bidsOf(events, "q14", func(b nexmark.Bid, out weir.Collector[nexmark.Q14Row]) {
		milli := b.Price * 908
		if milli <= 1_000_000_000 || milli >= 50_000_000_000 {
			return
		}
		hour := (b.DateTime - floorDiv(b.DateTime, msPerDay)*msPerDay) / 3_600_000
		kind := "otherTime"
		if hour >= 8 && hour <= 18 {
			kind = "dayTime"
		} else if hour <= 6 || hour >= 20 {
			kind = "nightTime"
		}
		out.Collect(nexmark.Q14Row{Auction: b.Auction, Bidder: b.Bidder, PriceMilli: milli, BidTimeType: kind, DateTime: b.DateTime,
			Extra: b.Extra, CCounts: int64(strings.Count(b.Extra, "c"))})
	})
}

// ChannelID is q21's channel id of a bid: "0"–"3" for Apple, Google,
// Facebook and Baidu (any case), else the value of the first channel_id
// parameter of the URL (at its start or after '&'); ok is false when
// there is none.
func ChannelID(channel, url string) (id string, ok bool) {
	if i := hotChannel(channel); i >= 0 {
		return [...]string{"0", "1", "2", "3"}[i], true
	}
	// The first "channel_id=" at the start or after a '&': searching for
	// "&channel_id=" skips the URL's other 'c's (a third of q21's time
	// went to the plain search and the case folding).
	const param = "channel_id="
	var v string
	if strings.HasPrefix(url, param) {
		v = url[len(param):]
	} else if i := strings.Index(url, "&"+param); i >= 0 {
		v = url[i+1+len(param):]
	} else {
		return "", false
	}
	if j := strings.IndexByte(v, '&'); j >= 0 {
		v = v[:j]
	}
	return v, true
}

var hotChannels = [...]string{"apple", "google", "facebook", "baidu"}

// hotChannel is the index of the hot channel that channel is, ignoring
// case (the reference's lower(channel) = 'apple' ...), or -1. An ASCII
// channel can only be one of its length; others fold by Unicode rules
// (the Kelvin sign folds to 'k').
func hotChannel(channel string) int {
	for i := 0; i < len(channel); i++ {
		if channel[i] >= 0x80 {
			for i, hot := range hotChannels {
				if strings.EqualFold(channel, hot) {
					return i
				}
			}
			return -1
		}
	}
	for i, hot := range hotChannels {
		if len(channel) == len(hot) && strings.EqualFold(channel, hot) {
			return i
		}
	}
	return -1
}

// Q21 adds the channel id to bids and drops bids without one.
func Q21(events weir.Stream[nexmark.Event]) weir.Stream[nexmark.Q21Row] {
	return bidsOf(events, "q21", func(b nexmark.Bid, out weir.Collector[nexmark.Q21Row]) {
		if id, ok := ChannelID(b.Channel, b.URL); ok {
			out.Collect(nexmark.Q21Row{Auction: b.Auction, Bidder: b.Bidder, Price: b.Price, Channel: b.Channel, ChannelID: id})
		}
	})
}

// splitIndex is SPLIT_INDEX(s, sep, i) with "" for the SQL's null.
func splitIndex(s string, sep byte, i int) string {
	for ; i > 0; i-- {
		j := strings.IndexByte(s, sep)
		if j < 0 {
			return ""
		}
		s = s[j+1:]
	}
	if j := strings.IndexByte(s, sep); j >= 0 {
		return s[:j]
	}
	return s
}

// urlDirs is SPLIT_INDEX(url, '/', 3), (.., 4) and (.., 5) in one pass
// over url.
func urlDirs(url string) (d1, d2, d3 string) {
	// One pass over the bytes: a URL is short, and a loop beats six
	// calls of strings.IndexByte (98 ns against 20 ns per URL).
	var dirs [3]string
	slashes, from := 0, 0
	for i := 0; i < len(url); i++ {
		if url[i] != '/' {
			continue
		}
		// Slashes 1 to 3 end "https:", "" and the host; slash 3+k
		// starts directory k.
		if slashes >= 3 {
			dirs[slashes-3] = url[from:i]
			if slashes == 5 {
				return dirs[0], dirs[1], dirs[2]
			}
		}
		slashes++
		from = i + 1
	}
	if slashes < 3 {
		return "", "", ""
	}
	dirs[slashes-3] = url[from:]
	return dirs[0], dirs[1], dirs[2]
}

// Q22 adds the first three directories of the bid's URL.
func Q22(events weir.Stream[nexmark.Event]) weir.Stream[nexmark.Q22Row] {
	return bidsOf(events, "q22", func(b nexmark.Bid, out weir.Collector[nexmark.Q22Row]) {
		d1, d2, d3 := urlDirs(b.URL)
		out.Collect(nexmark.Q22Row{Auction: b.Auction, Bidder: b.Bidder, Price: b.Price, Channel: b.Channel, Dir1: d1, Dir2: d2, Dir3: d3})
	})
}

// AuctionDay is q17's key: an auction and a day (days since 1970, UTC).
type AuctionDay struct{ Auction, Day int64 }

// AuctionDayCodec encodes an AuctionDay as two varints (the key's hash
// and its form in checkpoints).
type AuctionDayCodec struct{}

func (AuctionDayCodec) Append(dst []byte, k AuctionDay) []byte {
	return binary.AppendVarint(binary.AppendVarint(dst, k.Auction), k.Day)
}

func (AuctionDayCodec) Decode(src []byte) (AuctionDay, error) {
	a, n := binary.Varint(src)
	if n <= 0 {
		return AuctionDay{}, fmt.Errorf("cannot decode auction/day key: bad auction varint")
	}
	d, m := binary.Varint(src[n:])
	if m <= 0 || n+m != len(src) {
		return AuctionDay{}, fmt.Errorf("cannot decode auction/day key: bad day varint or %d trailing bytes", len(src)-n-max(m, 0))
	}
	return AuctionDay{a, d}, nil
}

type q17 struct {
	rows weir.ValueState[nexmark.Q17Row]
}

func (f *q17) Open(ctx *weir.KeyedContext[AuctionDay]) (err error) {
	f.rows, err = weir.GetValueStateWithCodec[nexmark.Q17Row](ctx, "q17-row", q17Codec{})
	return err
}

func (f *q17) ProcessElement(ctx *weir.KeyedContext[AuctionDay], b nexmark.Bid, out weir.Collector[nexmark.Q17Row]) error {
	r, ok := f.rows.Value()
	if !ok {
		r = nexmark.Q17Row{Auction: b.Auction, Day: dayString(ctx.CurrentKey().Day), MinPrice: b.Price, MaxPrice: b.Price}
	}
	r.TotalBids++
	switch nexmark.Rank(b.Price) {
	case 1:
		r.Rank1Bids++
	case 2:
		r.Rank2Bids++
	default:
		r.Rank3Bids++
	}
	r.MinPrice = min(r.MinPrice, b.Price)
	r.MaxPrice = max(r.MaxPrice, b.Price)
	r.SumPrice += b.Price
	r.AvgPrice = r.SumPrice / r.TotalBids
	f.rows.Update(r)
	out.Collect(r)
	return nil
}

// Q17 keeps per auction and day the bid counts per price rank and the
// minimum, maximum, average and sum of the prices, and emits the key's
// new row after every bid: the last row of a key is its final value.
func Q17(events weir.Stream[nexmark.Event]) weir.Stream[nexmark.Q17Row] {
	bids := bidsOf(events, "bids", func(b nexmark.Bid, out weir.Collector[nexmark.Bid]) { out.Collect(b) })
	keyed := weir.KeyByWithCodec(bids, func(b nexmark.Bid) AuctionDay {
		return AuctionDay{b.Auction, floorDiv(b.DateTime, msPerDay)}
	}, AuctionDayCodec{})
	return weir.Process[AuctionDay, nexmark.Bid, nexmark.Q17Row](keyed, &q17{}).Name("q17")
}
