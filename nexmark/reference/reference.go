// Package reference computes the Nexmark queries q0–q22 over a slice of
// events with plain loops and maps, following the semantics of the
// reference's SQL (nexmark-flink/src/main/resources/queries/q*.sql), to
// check the results of faster implementations. Windows are on event time
// (the records' DateTime) and aligned to 1970; every event counts (none is
// late). Queries whose SQL result is an updating table (q3, q4, q6, q9,
// q15–q20) return the table as it stands at the end of the input. Every
// query returns its rows sorted by the row type's Compare.
package reference

import (
	"cmp"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/weirstream/weir/nexmark"
)

func sorted[T interface{ Compare(T) int }](rows []T) []T {
	slices.SortStableFunc(rows, func(a, b T) int { return a.Compare(b) })
	return rows
}

func bids(events []nexmark.Event) []nexmark.Bid {
	var out []nexmark.Bid
	for _, e := range events {
		if e.Type == nexmark.BidEvent {
			out = append(out, e.Bid)
		}
	}
	return out
}

func persons(events []nexmark.Event) []nexmark.Person {
	var out []nexmark.Person
	for _, e := range events {
		if e.Type == nexmark.PersonEvent && e.Person != nil {
			out = append(out, *e.Person)
		}
	}
	return out
}

func auctions(events []nexmark.Event) []nexmark.Auction {
	var out []nexmark.Auction
	for _, e := range events {
		if e.Type == nexmark.AuctionEvent && e.Auction != nil {
			out = append(out, *e.Auction)
		}
	}
	return out
}

func utc(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// day is DATE_FORMAT(ts, 'yyyy-MM-dd'); minute is DATE_FORMAT(ts, 'HH:mm').
func day(ms int64) string    { return utc(ms).Format("2006-01-02") }
func minute(ms int64) string { return utc(ms).Format("15:04") }

// floorDiv rounds toward minus infinity.
func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// Q0 passes bids through.
func Q0(events []nexmark.Event) []nexmark.Q0Row {
	var out []nexmark.Q0Row
	for _, b := range bids(events) {
		out = append(out, nexmark.Q0Row{Auction: b.Auction, Bidder: b.Bidder, Price: b.Price, DateTime: b.DateTime, Extra: b.Extra})
	}
	return sorted(out)
}

// Q1 converts bid prices to euros (× 0.908).
func Q1(events []nexmark.Event) []nexmark.Q1Row {
	var out []nexmark.Q1Row
	for _, b := range bids(events) {
		out = append(out, nexmark.Q1Row{Auction: b.Auction, Bidder: b.Bidder, PriceMilli: b.Price * 908, DateTime: b.DateTime, Extra: b.Extra})
	}
	return sorted(out)
}

// Q2 selects the bids of every 123rd auction.
func Q2(events []nexmark.Event) []nexmark.Q2Row {
	var out []nexmark.Q2Row
	for _, b := range bids(events) {
		if b.Auction%123 == 0 {
			out = append(out, nexmark.Q2Row{Auction: b.Auction, Price: b.Price})
		}
	}
	return sorted(out)
}

// Q3 joins auctions of category 10 with their sellers in OR, ID or CA.
func Q3(events []nexmark.Event) []nexmark.Q3Row {
	byID := map[int64][]nexmark.Person{}
	for _, p := range persons(events) {
		byID[p.ID] = append(byID[p.ID], p)
	}
	var out []nexmark.Q3Row
	for _, a := range auctions(events) {
		if a.Category != 10 {
			continue
		}
		for _, p := range byID[a.Seller] {
			if p.State == "OR" || p.State == "ID" || p.State == "CA" {
				out = append(out, nexmark.Q3Row{Name: p.Name, City: p.City, State: p.State, ID: a.ID})
			}
		}
	}
	return sorted(out)
}

// inAuction says whether a bid falls within an auction's time, ends
// included (SQL BETWEEN).
func inAuction(a nexmark.Auction, b nexmark.Bid) bool {
	return b.Auction == a.ID && a.DateTime <= b.DateTime && b.DateTime <= a.Expires
}

// winners are the auctions with a bid within their time, each with its
// winning bid in q9's order: highest price, then
// earliest, then first in the input.
func winners(events []nexmark.Event) []struct {
	a nexmark.Auction
	b nexmark.Bid
} {
	byAuction := map[int64][]nexmark.Bid{}
	for _, b := range bids(events) {
		byAuction[b.Auction] = append(byAuction[b.Auction], b)
	}
	var out []struct {
		a nexmark.Auction
		b nexmark.Bid
	}
	for _, a := range auctions(events) {
		found := false
		var best nexmark.Bid
		for _, b := range byAuction[a.ID] {
			if !inAuction(a, b) {
				continue
			}
			if !found || b.Price > best.Price || (b.Price == best.Price && b.DateTime < best.DateTime) {
				best, found = b, true
			}
		}
		if found {
			out = append(out, struct {
				a nexmark.Auction
				b nexmark.Bid
			}{a, best})
		}
	}
	return out
}

// Q4 averages, per category, the winning prices of its auctions.
func Q4(events []nexmark.Event) []nexmark.Q4Row {
	type auction struct{ id, category int64 }
	final := map[auction]int64{}
	for _, w := range winners(events) {
		k := auction{w.a.ID, w.a.Category}
		final[k] = max(final[k], w.b.Price)
	}
	type agg struct{ sum, n int64 }
	cats := map[int64]agg{}
	for k, price := range final {
		c := cats[k.category]
		cats[k.category] = agg{c.sum + price, c.n + 1}
	}
	var out []nexmark.Q4Row
	for cat, c := range cats {
		out = append(out, nexmark.Q4Row{Category: cat, Avg: c.sum / c.n})
	}
	return sorted(out)
}

// Q5 finds, per sliding window of 10 s every 2 s, the auctions with the
// most bids.
func Q5(events []nexmark.Event) []nexmark.Q5Row {
	const size, slide = 10_000, 2_000
	type win struct{ start, end int64 }
	counts := map[win]map[int64]int64{}
	for _, b := range bids(events) {
		last := floorDiv(b.DateTime, slide) * slide
		for s := last; s > b.DateTime-size; s -= slide {
			w := win{s, s + size}
			if counts[w] == nil {
				counts[w] = map[int64]int64{}
			}
			counts[w][b.Auction]++
		}
	}
	var out []nexmark.Q5Row
	for w, byAuction := range counts {
		var most int64
		for _, n := range byAuction {
			most = max(most, n)
		}
		for a, n := range byAuction {
			if n >= most {
				out = append(out, nexmark.Q5Row{WindowStart: w.start, WindowEnd: w.end, Auction: a, Num: n})
			}
		}
	}
	return sorted(out)
}

// Q6 averages, per seller, the prices of the winning bids of their
// auctions over the rows of the SQL's window, 10 preceding and the
// current, ordered by the winning bid's time (then the auction id): the
// value at the end of the input.
func Q6(events []nexmark.Event) []nexmark.Q6Row {
	type win struct{ auction, price, ts int64 }
	bySeller := map[int64][]win{}
	for _, w := range winners(events) {
		bySeller[w.a.Seller] = append(bySeller[w.a.Seller], win{w.a.ID, w.b.Price, w.b.DateTime})
	}
	var out []nexmark.Q6Row
	for seller, ws := range bySeller {
		slices.SortFunc(ws, func(a, b win) int { return cmp.Or(cmp.Compare(a.ts, b.ts), cmp.Compare(a.auction, b.auction)) })
		last := ws[max(0, len(ws)-11):]
		var sum int64
		for _, w := range last {
			sum += w.price
		}
		out = append(out, nexmark.Q6Row{Seller: seller, AvgPrice: sum / int64(len(last))})
	}
	return sorted(out)
}

// Q7 finds the bids at the highest price of a 10 s tumbling window, made
// between the window's end - 10 s and its end, both included.
func Q7(events []nexmark.Event) []nexmark.Q7Row {
	const size = 10_000
	maxByEnd := map[int64]int64{}
	all := bids(events)
	for _, b := range all {
		end := floorDiv(b.DateTime, size)*size + size
		if m, ok := maxByEnd[end]; !ok || b.Price > m {
			maxByEnd[end] = b.Price
		}
	}
	var out []nexmark.Q7Row
	for _, b := range all {
		for end, m := range maxByEnd {
			if b.Price == m && end-size <= b.DateTime && b.DateTime <= end {
				out = append(out, nexmark.Q7Row{WindowEnd: end, Auction: b.Auction, Price: b.Price, Bidder: b.Bidder, DateTime: b.DateTime, Extra: b.Extra})
			}
		}
	}
	return sorted(out)
}

// Q8 finds the people who opened an auction in the 10 s tumbling window
// in which they were created.
func Q8(events []nexmark.Event) []nexmark.Q8Row {
	const size = 10_000
	type person struct {
		id    int64
		name  string
		start int64
	}
	type seller struct{ id, start int64 }
	people := map[person]bool{}
	for _, p := range persons(events) {
		people[person{p.ID, p.Name, floorDiv(p.DateTime, size) * size}] = true
	}
	sellers := map[seller]bool{}
	for _, a := range auctions(events) {
		sellers[seller{a.Seller, floorDiv(a.DateTime, size) * size}] = true
	}
	var out []nexmark.Q8Row
	for p := range people {
		if sellers[seller{p.id, p.start}] {
			out = append(out, nexmark.Q8Row{ID: p.id, Name: p.name, StartTime: p.start, EndTime: p.start + size})
		}
	}
	return sorted(out)
}

// Q9 finds every auction's winning bid: the highest price within the
// auction's time, the earliest of equal prices.
func Q9(events []nexmark.Event) []nexmark.Q9Row {
	var out []nexmark.Q9Row
	for _, w := range winners(events) {
		out = append(out, nexmark.Q9Row{Auction: w.a, Bidder: w.b.Bidder, Price: w.b.Price, BidDateTime: w.b.DateTime, BidExtra: w.b.Extra})
	}
	return sorted(out)
}

// Q10 adds to every bid the day and minute of the file partition it is
// logged to (the stream part of q10; the file sink is not modelled).
func Q10(events []nexmark.Event) []nexmark.Q10Row {
	var out []nexmark.Q10Row
	for _, b := range bids(events) {
		out = append(out, nexmark.Q10Row{Auction: b.Auction, Bidder: b.Bidder, Price: b.Price, DateTime: b.DateTime, Extra: b.Extra,
			Dt: day(b.DateTime), Hm: minute(b.DateTime)})
	}
	return sorted(out)
}

// Q11 counts the bids of each bidder's sessions: a session ends when no
// bid follows within 10 s (a bid exactly 10 s after the last one still
// belongs to it, as Flink's session windows merge touching windows).
func Q11(events []nexmark.Event) []nexmark.Q11Row {
	const gap = 10_000
	times := map[int64][]int64{}
	for _, b := range bids(events) {
		times[b.Bidder] = append(times[b.Bidder], b.DateTime)
	}
	var out []nexmark.Q11Row
	for bidder, ts := range times {
		slices.Sort(ts)
		cur := nexmark.Q11Row{Bidder: bidder, StartTime: ts[0], EndTime: ts[0] + gap}
		for _, t := range ts {
			if t > cur.EndTime {
				out = append(out, cur)
				cur = nexmark.Q11Row{Bidder: bidder, StartTime: t, EndTime: t + gap}
			}
			cur.BidCount++
			cur.EndTime = max(cur.EndTime, t+gap)
		}
		out = append(out, cur)
	}
	return sorted(out)
}

// Q12 counts the bids of each bidder per 10 s processing-time window;
// procTime(i) is the processing time of events[i] (ms), which a real run
// takes from the clock.
func Q12(events []nexmark.Event, procTime func(i int) int64) []nexmark.Q12Row {
	const size = 10_000
	type key struct{ bidder, start int64 }
	counts := map[key]int64{}
	for i, e := range events {
		if e.Type != nexmark.BidEvent {
			continue
		}
		counts[key{e.Bid.Bidder, floorDiv(procTime(i), size) * size}]++
	}
	var out []nexmark.Q12Row
	for k, n := range counts {
		out = append(out, nexmark.Q12Row{Bidder: k.bidder, BidCount: n, StartTime: k.start, EndTime: k.start + size})
	}
	return sorted(out)
}

// Q13 joins every bid with the side input row of its auction modulo
// 10 000 (see nexmark.SideInput).
func Q13(events []nexmark.Event, side map[int64]string) []nexmark.Q13Row {
	var out []nexmark.Q13Row
	for _, b := range bids(events) {
		if v, ok := side[b.Auction%10_000]; ok {
			out = append(out, nexmark.Q13Row{Auction: b.Auction, Bidder: b.Bidder, Price: b.Price, DateTime: b.DateTime, Value: v})
		}
	}
	return sorted(out)
}

// Q14 keeps bids with a euro price strictly between 1 000 000 and
// 50 000 000, and adds the part of the day (UTC hour 8–18 dayTime, up to
// 6 or from 20 nightTime, else otherTime) and the number of 'c' in extra.
func Q14(events []nexmark.Event) []nexmark.Q14Row {
	var out []nexmark.Q14Row
	for _, b := range bids(events) {
		milli := b.Price * 908
		if !(milli > 1_000_000_000 && milli < 50_000_000_000) {
			continue
		}
		h := utc(b.DateTime).Hour()
		kind := "otherTime"
		switch {
		case h >= 8 && h <= 18:
			kind = "dayTime"
		case h <= 6 || h >= 20:
			kind = "nightTime"
		}
		out = append(out, nexmark.Q14Row{Auction: b.Auction, Bidder: b.Bidder, PriceMilli: milli, BidTimeType: kind,
			DateTime: b.DateTime, Extra: b.Extra, CCounts: int64(strings.Count(b.Extra, "c"))})
	}
	return sorted(out)
}

// stats accumulates the counts of q15 and q16.
type stats struct {
	bids             [4]int64 // [0] all, [r] rank r
	bidders, auction [4]map[int64]bool
}

func newStats() *stats {
	s := &stats{}
	for i := range 4 {
		s.bidders[i], s.auction[i] = map[int64]bool{}, map[int64]bool{}
	}
	return s
}

func (s *stats) add(b nexmark.Bid) {
	for _, i := range []int{0, nexmark.Rank(b.Price)} {
		s.bids[i]++
		s.bidders[i][b.Bidder] = true
		s.auction[i][b.Auction] = true
	}
}

func (s *stats) result() nexmark.BidStats {
	return nexmark.BidStats{
		TotalBids: s.bids[0], Rank1Bids: s.bids[1], Rank2Bids: s.bids[2], Rank3Bids: s.bids[3],
		TotalBidders: int64(len(s.bidders[0])), Rank1Bidders: int64(len(s.bidders[1])), Rank2Bidders: int64(len(s.bidders[2])), Rank3Bidders: int64(len(s.bidders[3])),
		TotalAuctions: int64(len(s.auction[0])), Rank1Auctions: int64(len(s.auction[1])), Rank2Auctions: int64(len(s.auction[2])), Rank3Auctions: int64(len(s.auction[3])),
	}
}

// Q15 reports, per day, the bids, distinct bidders and distinct auctions,
// in all and per price rank.
func Q15(events []nexmark.Event) []nexmark.Q15Row {
	days := map[string]*stats{}
	for _, b := range bids(events) {
		d := day(b.DateTime)
		if days[d] == nil {
			days[d] = newStats()
		}
		days[d].add(b)
	}
	var out []nexmark.Q15Row
	for d, s := range days {
		out = append(out, nexmark.Q15Row{Day: d, BidStats: s.result()})
	}
	return sorted(out)
}

// Q16 is q15 per channel and day, with the latest minute of the bids.
func Q16(events []nexmark.Event) []nexmark.Q16Row {
	type key struct{ channel, day string }
	groups := map[key]*stats{}
	minutes := map[key]string{}
	for _, b := range bids(events) {
		k := key{b.Channel, day(b.DateTime)}
		if groups[k] == nil {
			groups[k] = newStats()
		}
		groups[k].add(b)
		if m := minute(b.DateTime); m > minutes[k] {
			minutes[k] = m
		}
	}
	var out []nexmark.Q16Row
	for k, s := range groups {
		out = append(out, nexmark.Q16Row{Channel: k.channel, Day: k.day, Minute: minutes[k], BidStats: s.result()})
	}
	return sorted(out)
}

// Q17 reports, per auction and day, the bids per price rank and the
// minimum, maximum, (integer) average and sum of their prices.
func Q17(events []nexmark.Event) []nexmark.Q17Row {
	type key struct {
		auction int64
		day     string
	}
	groups := map[key]*nexmark.Q17Row{}
	for _, b := range bids(events) {
		k := key{b.Auction, day(b.DateTime)}
		r := groups[k]
		if r == nil {
			r = &nexmark.Q17Row{Auction: b.Auction, Day: k.day, MinPrice: b.Price, MaxPrice: b.Price}
			groups[k] = r
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
	}
	var out []nexmark.Q17Row
	for _, r := range groups {
		out = append(out, *r)
	}
	return sorted(out)
}

// Q18 keeps the last bid (latest dateTime; of equal ones the later in the
// input) of every bidder in every auction.
func Q18(events []nexmark.Event) []nexmark.Q18Row {
	type key struct{ bidder, auction int64 }
	last := map[key]nexmark.Bid{}
	for _, b := range bids(events) {
		k := key{b.Bidder, b.Auction}
		if prev, ok := last[k]; !ok || b.DateTime >= prev.DateTime {
			last[k] = b
		}
	}
	out := make([]nexmark.Q18Row, 0, len(last))
	for _, b := range last {
		out = append(out, b)
	}
	slices.SortFunc(out, nexmark.CompareBids)
	return out
}

// Q19 keeps the 10 highest bids of every auction, ranked from 1 (of equal
// prices, the earlier in the input ranks higher).
func Q19(events []nexmark.Event) []nexmark.Q19Row {
	byAuction := map[int64][]nexmark.Bid{}
	for _, b := range bids(events) {
		byAuction[b.Auction] = append(byAuction[b.Auction], b)
	}
	var out []nexmark.Q19Row
	for _, bs := range byAuction {
		slices.SortStableFunc(bs, func(a, b nexmark.Bid) int { return cmp.Compare(b.Price, a.Price) })
		for i, b := range bs[:min(10, len(bs))] {
			out = append(out, nexmark.Q19Row{Bid: b, RankNumber: int64(i + 1)})
		}
	}
	return sorted(out)
}

// Q20 joins every bid with its auction, for auctions in category 10.
func Q20(events []nexmark.Event) []nexmark.Q20Row {
	byID := map[int64][]nexmark.Auction{}
	for _, a := range auctions(events) {
		if a.Category == 10 {
			byID[a.ID] = append(byID[a.ID], a)
		}
	}
	var out []nexmark.Q20Row
	for _, b := range bids(events) {
		for _, a := range byID[b.Auction] {
			out = append(out, nexmark.Q20Row{Auction: b.Auction, Bidder: b.Bidder, Price: b.Price, Channel: b.Channel, URL: b.URL,
				BidDateTime: b.DateTime, BidExtra: b.Extra, ItemName: a.ItemName, Description: a.Description, InitialBid: a.InitialBid,
				Reserve: a.Reserve, AuctionDateTime: a.DateTime, Expires: a.Expires, Seller: a.Seller, Category: a.Category, AuctionExtra: a.Extra})
		}
	}
	return sorted(out)
}

var channelIDPattern = regexp.MustCompile(`(&|^)channel_id=([^&]*)`)

// Q21 adds the channel id to bids: 0–3 for the hot channels (by name, any
// case), else the channel_id parameter of the URL; bids with neither are
// dropped.
func Q21(events []nexmark.Event) []nexmark.Q21Row {
	var out []nexmark.Q21Row
	for _, b := range bids(events) {
		var id string
		found := true
		switch strings.ToLower(b.Channel) {
		case "apple":
			id = "0"
		case "google":
			id = "1"
		case "facebook":
			id = "2"
		case "baidu":
			id = "3"
		default:
			m := channelIDPattern.FindStringSubmatch(b.URL)
			if m == nil {
				found = false
			} else {
				id = m[2]
			}
		}
		if found {
			out = append(out, nexmark.Q21Row{Auction: b.Auction, Bidder: b.Bidder, Price: b.Price, Channel: b.Channel, ChannelID: id})
		}
	}
	return sorted(out)
}

// Q22 splits bid URLs at '/' and keeps the parts 3, 4 and 5 (from 0).
func Q22(events []nexmark.Event) []nexmark.Q22Row {
	var out []nexmark.Q22Row
	for _, b := range bids(events) {
		parts := strings.Split(b.URL, "/")
		part := func(i int) string {
			if i < len(parts) {
				return parts[i]
			}
			return ""
		}
		out = append(out, nexmark.Q22Row{Auction: b.Auction, Bidder: b.Bidder, Price: b.Price, Channel: b.Channel,
			Dir1: part(3), Dir2: part(4), Dir3: part(5)})
	}
	return sorted(out)
}
