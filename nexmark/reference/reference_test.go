package reference

import (
	"reflect"
	"testing"
	"time"

	"github.com/weirstream/weir/nexmark"
)

// Hand-written inputs and the results worked out by hand from the SQL.

// T0 is aligned to 10 s: 2001-09-09 01:46:40 UTC.
const T0 = 1_000_000_000_000

func bid(auction, bidder, price, ts int64) nexmark.Event {
	return nexmark.NewBidEvent(nexmark.Bid{Auction: auction, Bidder: bidder, Price: price, DateTime: ts, Channel: "c", URL: "u", Extra: "x"})
}

func bidCh(auction, bidder, price, ts int64, channel, url, extra string) nexmark.Event {
	return nexmark.NewBidEvent(nexmark.Bid{Auction: auction, Bidder: bidder, Price: price, DateTime: ts, Channel: channel, URL: url, Extra: extra})
}

func person(id int64, name, state string, ts int64) nexmark.Event {
	return nexmark.NewPersonEvent(&nexmark.Person{ID: id, Name: name, City: "City" + state, State: state, DateTime: ts})
}

func auction(id, seller, category, ts, expires int64) nexmark.Event {
	return nexmark.NewAuctionEvent(&nexmark.Auction{ID: id, ItemName: "item", Seller: seller, Category: category, DateTime: ts, Expires: expires})
}

func ms(y int, mo time.Month, d, h, mi, s int) int64 {
	return time.Date(y, mo, d, h, mi, s, 0, time.UTC).UnixMilli()
}

func check[T any](t *testing.T, name string, got, want []T) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got  %+v\n want %+v", name, got, want)
	}
}

func TestQ0Q1Q2(t *testing.T) {
	in := []nexmark.Event{
		bid(246, 7, 1000, T0+2), person(1, "p", "OR", T0), bid(123, 8, 5, T0+1), bid(124, 9, 3, T0+3),
	}
	check(t, "q0", Q0(in), []nexmark.Q0Row{
		{Auction: 123, Bidder: 8, Price: 5, DateTime: T0 + 1, Extra: "x"},
		{Auction: 246, Bidder: 7, Price: 1000, DateTime: T0 + 2, Extra: "x"},
		{Auction: 124, Bidder: 9, Price: 3, DateTime: T0 + 3, Extra: "x"},
	})
	check(t, "q1", Q1(in), []nexmark.Q1Row{
		{Auction: 123, Bidder: 8, PriceMilli: 4540, DateTime: T0 + 1, Extra: "x"},
		{Auction: 246, Bidder: 7, PriceMilli: 908_000, DateTime: T0 + 2, Extra: "x"},
		{Auction: 124, Bidder: 9, PriceMilli: 2724, DateTime: T0 + 3, Extra: "x"},
	})
	check(t, "q2", Q2(in), []nexmark.Q2Row{{Auction: 123, Price: 5}, {Auction: 246, Price: 1000}})
}

func TestQ3(t *testing.T) {
	in := []nexmark.Event{
		auction(10, 1, 10, T0, T0+1), // before its seller: a join, not a lookup
		person(1, "Ann", "OR", T0+1), person(2, "Bob", "WA", T0+1), person(3, "Cid", "CA", T0+2),
		auction(11, 2, 10, T0+3, T0+9), auction(12, 3, 11, T0+3, T0+9), auction(13, 3, 10, T0+4, T0+9), auction(14, 99, 10, T0+4, T0+9),
	}
	check(t, "q3", Q3(in), []nexmark.Q3Row{{Name: "Ann", City: "CityOR", State: "OR", ID: 10}, {Name: "Cid", City: "CityCA", State: "CA", ID: 13}})
}

func TestQ4Q9(t *testing.T) {
	in := []nexmark.Event{
		auction(1, 5, 10, T0, T0+100), auction(2, 5, 10, T0, T0+100), auction(3, 5, 11, T0, T0+50), auction(4, 6, 10, T0, T0+100),
		bid(1, 1, 100, T0+10), bid(1, 2, 300, T0+100), bid(1, 3, 999, T0+101), // expiry included, after it not
		bid(2, 1, 50, T0),                                            // start included
		bid(3, 1, 7, T0-1),                                           // before the auction: no winner in category 11
		bid(4, 1, 2, T0+20), bid(4, 2, 2, T0+10), bid(4, 3, 1, T0+5), // equal prices: the earliest wins
	}
	// Category 10: (300 + 50 + 2) / 3 = 117.33 → 117.
	check(t, "q4", Q4(in), []nexmark.Q4Row{{Category: 10, Avg: 117}})
	a := func(id, seller, cat, exp int64) nexmark.Auction {
		return nexmark.Auction{ID: id, ItemName: "item", Seller: seller, Category: cat, DateTime: T0, Expires: exp}
	}
	check(t, "q9", Q9(in), []nexmark.Q9Row{
		{Auction: a(1, 5, 10, T0+100), Bidder: 2, Price: 300, BidDateTime: T0 + 100, BidExtra: "x"},
		{Auction: a(2, 5, 10, T0+100), Bidder: 1, Price: 50, BidDateTime: T0, BidExtra: "x"},
		{Auction: a(4, 6, 10, T0+100), Bidder: 2, Price: 2, BidDateTime: T0 + 10, BidExtra: "x"},
	})
}

func TestQ5(t *testing.T) {
	in := []nexmark.Event{bid(1, 1, 1, T0+1000), bid(1, 1, 1, T0+3000), bid(2, 1, 1, T0+3000)}
	w := func(start, a, n int64) nexmark.Q5Row {
		return nexmark.Q5Row{WindowStart: T0 + start, WindowEnd: T0 + start + 10_000, Auction: a, Num: n}
	}
	check(t, "q5", Q5(in), []nexmark.Q5Row{
		w(-8000, 1, 1), // only the bid at +1000
		w(-6000, 1, 2), w(-4000, 1, 2), w(-2000, 1, 2), w(0, 1, 2),
		w(2000, 1, 1), w(2000, 2, 1), // a tie: both
	})
}

func TestQ6(t *testing.T) {
	var in []nexmark.Event
	for i := int64(1); i <= 12; i++ {
		in = append(in, auction(100+i, 5, 10, T0, T0+1000), bid(100+i, 1, i*10, T0+i))
	}
	in = append(in, auction(200, 6, 10, T0, T0+1000), bid(200, 1, 5, T0), bid(200, 1, 9, T0+1))
	// Seller 5: the last 11 winning prices 20..120 average 70.
	check(t, "q6", Q6(in), []nexmark.Q6Row{{Seller: 5, AvgPrice: 70}, {Seller: 6, AvgPrice: 9}})
}

func TestQ7(t *testing.T) {
	in := []nexmark.Event{
		bidCh(1, 1, 5, T0+1, "c", "u", "a"), bidCh(2, 2, 9, T0+2, "c", "u", "b"), bidCh(3, 3, 9, T0+5000, "c", "u", "c"),
		bidCh(4, 4, 9, T0+10_000, "c", "u", "d"), // the first window's end and in the second window
		bidCh(5, 5, 3, T0+15_000, "c", "u", "e"),
	}
	e1, e2 := int64(T0+10_000), int64(T0+20_000)
	check(t, "q7", Q7(in), []nexmark.Q7Row{
		{WindowEnd: e1, Auction: 2, Price: 9, Bidder: 2, DateTime: T0 + 2, Extra: "b"},
		{WindowEnd: e1, Auction: 3, Price: 9, Bidder: 3, DateTime: T0 + 5000, Extra: "c"},
		{WindowEnd: e1, Auction: 4, Price: 9, Bidder: 4, DateTime: T0 + 10_000, Extra: "d"},
		{WindowEnd: e2, Auction: 4, Price: 9, Bidder: 4, DateTime: T0 + 10_000, Extra: "d"},
	})
}

func TestQ8(t *testing.T) {
	in := []nexmark.Event{
		person(1, "Ann", "OR", T0+1), person(2, "Bob", "OR", T0+5),
		auction(10, 1, 10, T0+9999, T0+20_000), auction(11, 1, 10, T0+3, T0+20_000), // twice in the window: one row
		auction(12, 2, 10, T0+10_000, T0+20_000), // the next window
	}
	check(t, "q8", Q8(in), []nexmark.Q8Row{{ID: 1, Name: "Ann", StartTime: T0, EndTime: T0 + 10_000}})
}

func TestQ10Q14(t *testing.T) {
	in := []nexmark.Event{bid(1, 2, 3, T0)}
	check(t, "q10", Q10(in), []nexmark.Q10Row{{Auction: 1, Bidder: 2, Price: 3, DateTime: T0, Extra: "x", Dt: "2001-09-09", Hm: "01:46"}})

	const lo, hi = 1_101_322, 55_066_079 // the lowest and highest prices q14 keeps
	in = []nexmark.Event{
		bidCh(1, 1, lo, ms(2020, 1, 1, 8, 0, 0), "c", "u", "abcabc c"),
		bidCh(2, 1, lo-1, ms(2020, 1, 1, 8, 0, 0), "c", "u", ""),
		bidCh(3, 1, hi, ms(2020, 1, 1, 18, 59, 0), "c", "u", ""),
		bidCh(4, 1, hi+1, ms(2020, 1, 1, 18, 59, 0), "c", "u", ""),
		bidCh(5, 1, lo, ms(2020, 1, 1, 19, 0, 0), "c", "u", ""),
		bidCh(6, 1, lo, ms(2020, 1, 1, 7, 30, 0), "c", "u", ""),
		bidCh(7, 1, lo, ms(2020, 1, 1, 6, 59, 0), "c", "u", ""),
		bidCh(8, 1, lo, ms(2020, 1, 1, 20, 0, 0), "c", "u", ""),
	}
	row := func(a, price int64, kind string, ts int64, extra string, c int64) nexmark.Q14Row {
		return nexmark.Q14Row{Auction: a, Bidder: 1, PriceMilli: price * 908, BidTimeType: kind, DateTime: ts, Extra: extra, CCounts: c}
	}
	check(t, "q14", Q14(in), []nexmark.Q14Row{
		row(7, lo, "nightTime", ms(2020, 1, 1, 6, 59, 0), "", 0),
		row(6, lo, "otherTime", ms(2020, 1, 1, 7, 30, 0), "", 0),
		row(1, lo, "dayTime", ms(2020, 1, 1, 8, 0, 0), "abcabc c", 3),
		row(3, hi, "dayTime", ms(2020, 1, 1, 18, 59, 0), "", 0),
		row(5, lo, "otherTime", ms(2020, 1, 1, 19, 0, 0), "", 0),
		row(8, lo, "nightTime", ms(2020, 1, 1, 20, 0, 0), "", 0),
	})
}

func TestQ11(t *testing.T) {
	in := []nexmark.Event{
		bid(1, 1, 1, T0), bid(1, 1, 1, T0+15_000), bid(1, 1, 1, T0+5000), // +15000 is exactly 10 s after +5000: same session
		bid(1, 1, 1, T0+25_001), bid(1, 2, 1, T0+1),
	}
	check(t, "q11", Q11(in), []nexmark.Q11Row{
		{Bidder: 1, BidCount: 3, StartTime: T0, EndTime: T0 + 25_000},
		{Bidder: 1, BidCount: 1, StartTime: T0 + 25_001, EndTime: T0 + 35_001},
		{Bidder: 2, BidCount: 1, StartTime: T0 + 1, EndTime: T0 + 10_001},
	})
}

func TestQ12(t *testing.T) {
	in := []nexmark.Event{bid(1, 1, 1, T0), person(1, "p", "OR", T0), bid(1, 1, 1, T0), bid(1, 1, 1, T0), bid(1, 2, 1, T0)}
	proc := []int64{0, 5, 9999, 10_000, 10_001}
	check(t, "q12", Q12(in, func(i int) int64 { return proc[i] }), []nexmark.Q12Row{
		{Bidder: 1, BidCount: 2, StartTime: 0, EndTime: 10_000},
		{Bidder: 1, BidCount: 1, StartTime: 10_000, EndTime: 20_000},
		{Bidder: 2, BidCount: 1, StartTime: 10_000, EndTime: 20_000},
	})
}

func TestQ13(t *testing.T) {
	in := []nexmark.Event{bid(10_001, 1, 2, T0), bid(123, 1, 2, T0+1)}
	check(t, "q13", Q13(in, nexmark.SideInput()), []nexmark.Q13Row{
		{Auction: 10_001, Bidder: 1, Price: 2, DateTime: T0, Value: "1"},
		{Auction: 123, Bidder: 1, Price: 2, DateTime: T0 + 1, Value: "123"},
	})
	check(t, "q13 with a partial side input", Q13(in, map[int64]string{1: "one"}), []nexmark.Q13Row{
		{Auction: 10_001, Bidder: 1, Price: 2, DateTime: T0, Value: "one"},
	})
}

func TestRank(t *testing.T) {
	for price, want := range map[int64]int{1: 1, 9999: 1, 10_000: 2, 999_999: 2, 1_000_000: 3} {
		if got := nexmark.Rank(price); got != want {
			t.Errorf("Rank(%d) = %d, want %d", price, got, want)
		}
	}
}

func TestQ15Q16(t *testing.T) {
	d1, d2 := ms(2020, 1, 1, 10, 5, 0), ms(2020, 1, 2, 0, 0, 0)
	in := []nexmark.Event{
		bidCh(1, 1, 100, d1+60_000, "A", "u", ""), bidCh(1, 2, 20_000, d1, "A", "u", ""),
		bidCh(2, 1, 5_000_000, d1, "B", "u", ""), bidCh(2, 1, 50, d1+120_000, "A", "u", ""),
		bidCh(3, 3, 10_000, d2, "A", "u", ""),
	}
	s1 := nexmark.BidStats{TotalBids: 4, Rank1Bids: 2, Rank2Bids: 1, Rank3Bids: 1,
		TotalBidders: 2, Rank1Bidders: 1, Rank2Bidders: 1, Rank3Bidders: 1,
		TotalAuctions: 2, Rank1Auctions: 2, Rank2Auctions: 1, Rank3Auctions: 1}
	s2 := nexmark.BidStats{TotalBids: 1, Rank2Bids: 1, TotalBidders: 1, Rank2Bidders: 1, TotalAuctions: 1, Rank2Auctions: 1}
	check(t, "q15", Q15(in), []nexmark.Q15Row{{Day: "2020-01-01", BidStats: s1}, {Day: "2020-01-02", BidStats: s2}})
	a1 := nexmark.BidStats{TotalBids: 3, Rank1Bids: 2, Rank2Bids: 1, TotalBidders: 2, Rank1Bidders: 1, Rank2Bidders: 1,
		TotalAuctions: 2, Rank1Auctions: 2, Rank2Auctions: 1}
	b1 := nexmark.BidStats{TotalBids: 1, Rank3Bids: 1, TotalBidders: 1, Rank3Bidders: 1, TotalAuctions: 1, Rank3Auctions: 1}
	check(t, "q16", Q16(in), []nexmark.Q16Row{
		{Channel: "A", Day: "2020-01-01", Minute: "10:07", BidStats: a1},
		{Channel: "A", Day: "2020-01-02", Minute: "00:00", BidStats: s2},
		{Channel: "B", Day: "2020-01-01", Minute: "10:05", BidStats: b1},
	})
}

func TestQ17(t *testing.T) {
	d1, d2 := ms(2020, 1, 1, 23, 59, 59), ms(2020, 1, 2, 0, 0, 0)
	in := []nexmark.Event{bid(1, 1, 100, d1), bid(1, 2, 20_000, d1), bid(1, 3, 300, d1), bid(1, 1, 5, d2), bid(2, 1, 1_000_000, d1)}
	check(t, "q17", Q17(in), []nexmark.Q17Row{
		{Auction: 1, Day: "2020-01-01", TotalBids: 3, Rank1Bids: 2, Rank2Bids: 1, MinPrice: 100, MaxPrice: 20_000, AvgPrice: 6800, SumPrice: 20_400},
		{Auction: 1, Day: "2020-01-02", TotalBids: 1, Rank1Bids: 1, MinPrice: 5, MaxPrice: 5, AvgPrice: 5, SumPrice: 5},
		{Auction: 2, Day: "2020-01-01", TotalBids: 1, Rank3Bids: 1, MinPrice: 1_000_000, MaxPrice: 1_000_000, AvgPrice: 1_000_000, SumPrice: 1_000_000},
	})
}

func TestQ18(t *testing.T) {
	in := []nexmark.Event{
		bid(1, 1, 10, T0+5), bid(1, 1, 20, T0+3), // out of order: the latest time wins
		bid(1, 2, 1, T0), bid(1, 2, 2, T0), // equal times: the later in the input
		bid(2, 1, 7, T0+1),
	}
	b := func(a, bidder, price, ts int64) nexmark.Bid {
		return nexmark.Bid{Auction: a, Bidder: bidder, Price: price, DateTime: ts, Channel: "c", URL: "u", Extra: "x"}
	}
	check(t, "q18", Q18(in), []nexmark.Q18Row{b(1, 2, 2, T0), b(2, 1, 7, T0+1), b(1, 1, 10, T0+5)})
}

func TestQ19(t *testing.T) {
	var in []nexmark.Event
	for p := int64(1); p <= 12; p++ {
		in = append(in, bid(1, 1, p, T0+p))
	}
	in = append(in, bidCh(2, 1, 5, T0, "c", "u", "a"), bidCh(2, 1, 5, T0, "c", "u", "b"), bidCh(2, 1, 7, T0, "c", "u", "c"))
	var want []nexmark.Q19Row
	for r := int64(1); r <= 10; r++ {
		p := 13 - r
		want = append(want, nexmark.Q19Row{Bid: nexmark.Bid{Auction: 1, Bidder: 1, Price: p, DateTime: T0 + p, Channel: "c", URL: "u", Extra: "x"}, RankNumber: r})
	}
	for i, x := range []struct {
		p     int64
		extra string
	}{{7, "c"}, {5, "a"}, {5, "b"}} {
		want = append(want, nexmark.Q19Row{Bid: nexmark.Bid{Auction: 2, Bidder: 1, Price: x.p, DateTime: T0, Channel: "c", URL: "u", Extra: x.extra}, RankNumber: int64(i + 1)})
	}
	check(t, "q19", Q19(in), want)
}

func TestQ20(t *testing.T) {
	in := []nexmark.Event{bid(1, 7, 3, T0+1), auction(1, 5, 10, T0, T0+9), auction(2, 5, 11, T0, T0+9), bid(2, 7, 3, T0+1), bid(3, 7, 3, T0+1)}
	check(t, "q20", Q20(in), []nexmark.Q20Row{{Auction: 1, Bidder: 7, Price: 3, Channel: "c", URL: "u", BidDateTime: T0 + 1, BidExtra: "x",
		ItemName: "item", AuctionDateTime: T0, Expires: T0 + 9, Seller: 5, Category: 10}})
}

func TestQ21(t *testing.T) {
	in := []nexmark.Event{
		bidCh(1, 1, 1, T0, "Apple", "u", ""), bidCh(2, 1, 1, T0, "GOOGLE", "u", ""), bidCh(3, 1, 1, T0, "facebook", "u", ""),
		bidCh(4, 1, 1, T0, "Baidu", "u", ""),
		bidCh(5, 1, 1, T0, "channel-5", "https://x/item.htm?query=1&channel_id=42", ""),
		bidCh(6, 1, 1, T0, "channel-6", "https://x/item.htm?query=1", ""),
		bidCh(7, 1, 1, T0, "channel-7", "channel_id=7&x=1", ""),
		bidCh(8, 1, 1, T0, "channel-8", "a?xchannel_id=9", ""),
		bidCh(9, 1, 1, T0, "channel-9", "a?q=1&channel_id=&b=2", ""),
		bidCh(10, 1, 1, T0, "channel-10", "a?xchannel_id=1&channel_id=-5&channel_id=6", ""),
	}
	r := func(a int64, ch, id string) nexmark.Q21Row {
		return nexmark.Q21Row{Auction: a, Bidder: 1, Price: 1, Channel: ch, ChannelID: id}
	}
	check(t, "q21", Q21(in), []nexmark.Q21Row{
		r(1, "Apple", "0"), r(2, "GOOGLE", "1"), r(3, "facebook", "2"), r(4, "Baidu", "3"), r(5, "channel-5", "42"),
		r(7, "channel-7", "7"), r(9, "channel-9", ""), r(10, "channel-10", "-5"),
	})
}

func TestQ22(t *testing.T) {
	in := []nexmark.Event{
		bidCh(1, 1, 1, T0, "c", "https://www.nexmark.com/a/b/c/item.htm?query=1", ""),
		bidCh(2, 1, 1, T0, "c", "https://x/y", ""),
	}
	check(t, "q22", Q22(in), []nexmark.Q22Row{
		{Auction: 1, Bidder: 1, Price: 1, Channel: "c", Dir1: "a", Dir2: "b", Dir3: "c"},
		{Auction: 2, Bidder: 1, Price: 1, Channel: "c", Dir1: "y"},
	})
}

// On generated events every query finds rows, and results that two
// queries share agree.
func TestOnGeneratedEvents(t *testing.T) {
	g, err := nexmark.NewGenerator(nexmark.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	var in []nexmark.Event
	for n := range int64(30_000) {
		in = append(in, g.Event(n))
	}
	bids := len(bids(in))
	counts := map[string]int{
		"q0": len(Q0(in)), "q1": len(Q1(in)), "q2": len(Q2(in)), "q3": len(Q3(in)), "q4": len(Q4(in)), "q5": len(Q5(in)),
		"q6": len(Q6(in)), "q7": len(Q7(in)), "q8": len(Q8(in)), "q9": len(Q9(in)), "q10": len(Q10(in)), "q11": len(Q11(in)),
		"q12": len(Q12(in, func(i int) int64 { return int64(i) })), "q13": len(Q13(in, nexmark.SideInput())), "q14": len(Q14(in)),
		"q15": len(Q15(in)), "q16": len(Q16(in)), "q17": len(Q17(in)), "q18": len(Q18(in)), "q19": len(Q19(in)), "q20": len(Q20(in)),
		"q21": len(Q21(in)), "q22": len(Q22(in)),
	}
	for q, n := range counts {
		if n == 0 {
			t.Errorf("%s: no rows from %d events", q, len(in))
		}
	}
	if counts["q0"] != bids || counts["q13"] != bids || counts["q22"] != bids {
		t.Errorf("q0, q13, q22 give %d, %d, %d rows for %d bids", counts["q0"], counts["q13"], counts["q22"], bids)
	}
	if counts["q4"] > nexmark.NumCategories || counts["q15"] != 1 {
		t.Errorf("q4 has %d categories, q15 %d days", counts["q4"], counts["q15"])
	}
	var sum int64
	for _, r := range Q11(in) {
		sum += r.BidCount
	}
	if sum != int64(bids) {
		t.Errorf("q11 sessions hold %d bids of %d", sum, bids)
	}
	t.Logf("rows: %v", counts)
}
