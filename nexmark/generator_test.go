package nexmark

import (
	"bytes"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func newGen(t testing.TB, mod func(*GeneratorConfig)) *Generator {
	t.Helper()
	c := DefaultConfig()
	if mod != nil {
		mod(&c)
	}
	g, err := NewGenerator(c)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// The event of an event number depends on the configuration only: two
// generators of one config agree, another seed differs.
func TestDeterminism(t *testing.T) {
	a, b := newGen(t, nil), newGen(t, nil)
	c := newGen(t, func(c *GeneratorConfig) { c.Seed = 2 })
	differ := 0
	for n := range int64(5000) {
		ea, eb := a.Event(n), b.Event(n)
		if !reflect.DeepEqual(ea, eb) {
			t.Fatalf("event %d: %v and %v from equal configs", n, ea, eb)
		}
		if err := ea.Validate(); err != nil {
			t.Fatalf("event %d: %v", n, err)
		}
		if !reflect.DeepEqual(ea, a.Event(n)) {
			t.Fatalf("event %d differs when generated again", n)
		}
		if !reflect.DeepEqual(ea, c.Event(n)) {
			differ++
		}
	}
	if differ < 4900 {
		t.Errorf("only %d of 5000 events differ with another seed", differ)
	}
}

// Events come in the proportions person:auction:bid = 1:3:46, in the
// reference's order within each group of 50.
func TestProportions(t *testing.T) {
	g := newGen(t, nil)
	var counts [3]int
	for n := range int64(50 * 200) {
		e := g.Event(n)
		if e.Type != g.TypeOf(n) {
			t.Fatalf("event %d is a %v, TypeOf says %v", n, e.Type, g.TypeOf(n))
		}
		counts[e.Type]++
		want := BidEvent
		switch n % 50 {
		case 0:
			want = PersonEvent
		case 1, 2, 3:
			want = AuctionEvent
		}
		if e.Type != want {
			t.Fatalf("event %d is a %v, want %v", n, e.Type, want)
		}
	}
	if counts != [3]int{200, 600, 9200} {
		t.Errorf("counts %v, want [200 600 9200]", counts)
	}
}

// Ids: people and auctions are numbered from 1000 without gaps; sellers,
// bidders and auctions of bids are ids already generated or at most the
// reference's lead ahead; the other fields stay in their ranges.
func TestIDRanges(t *testing.T) {
	g := newGen(t, nil)
	nextPerson, nextAuction := int64(FirstPersonID), int64(FirstAuctionID)
	hotBids, bids := 0, 0
	for n := range int64(200_000) {
		e := g.Event(n)
		if e.Timestamp != g.Timestamp(n) {
			t.Fatalf("event %d: timestamp %d, want %d", n, e.Timestamp, g.Timestamp(n))
		}
		lastP, lastA := g.LastPersonID(n), g.LastAuctionID(n)
		switch e.Type {
		case PersonEvent:
			p := e.Person
			if p.ID != nextPerson || p.ID != lastP {
				t.Fatalf("event %d: person id %d, want %d", n, p.ID, nextPerson)
			}
			nextPerson++
			if p.DateTime != e.Timestamp || !strings.Contains(p.EmailAddress, "@") || len(p.CreditCard) != 19 || p.Name == "" {
				t.Fatalf("event %d: bad person %+v", n, *p)
			}
		case AuctionEvent:
			a := e.Auction
			if a.ID != nextAuction || a.ID != lastA {
				t.Fatalf("event %d: auction id %d, want %d", n, a.ID, nextAuction)
			}
			nextAuction++
			if a.Seller < FirstPersonID || a.Seller > lastP+PersonIDLead {
				t.Fatalf("event %d: seller %d outside [%d, %d]", n, a.Seller, FirstPersonID, lastP+PersonIDLead)
			}
			if a.Category < FirstCategoryID || a.Category >= FirstCategoryID+NumCategories {
				t.Fatalf("event %d: category %d", n, a.Category)
			}
			if a.Expires <= a.DateTime || a.Reserve < a.InitialBid || a.InitialBid < 100 || a.DateTime != e.Timestamp {
				t.Fatalf("event %d: bad auction %+v", n, *a)
			}
		case BidEvent:
			b := e.Bid
			bids++
			if b.Auction < FirstAuctionID || b.Auction > lastA+AuctionIDLead {
				t.Fatalf("event %d: bid for auction %d outside [%d, %d]", n, b.Auction, FirstAuctionID, lastA+AuctionIDLead)
			}
			if b.Bidder < FirstPersonID || b.Bidder > lastP+PersonIDLead {
				t.Fatalf("event %d: bidder %d outside [%d, %d]", n, b.Bidder, FirstPersonID, lastP+PersonIDLead)
			}
			if b.Price < 100 || b.Price > 100_000_000 || b.DateTime != e.Timestamp {
				t.Fatalf("event %d: bad bid %+v", n, b)
			}
			if b.Auction == (lastA-FirstAuctionID)/HotBatch*HotBatch+FirstAuctionID {
				hotBids++
			}
		}
	}
	// Hot auction ratio 2: about half the bids (plus a few random ones)
	// are for the hot auction.
	if f := float64(hotBids) / float64(bids); f < 0.48 || f > 0.56 {
		t.Errorf("%.3f of the bids are for the hot auction, want about 0.5", f)
	}
}

// The Extra padding makes records average the configured sizes, counted
// the reference's way.
func TestExtraSizes(t *testing.T) {
	g := newGen(t, nil)
	var sum, cnt [3]float64
	for n := range int64(100_000) {
		e := g.Event(n)
		var size int
		switch e.Type {
		case PersonEvent:
			p := e.Person
			size = 8 + len(p.Name) + len(p.EmailAddress) + len(p.CreditCard) + len(p.City) + len(p.State) + len(p.Extra)
		case AuctionEvent:
			a := e.Auction
			size = 8 + len(a.ItemName) + len(a.Description) + 40 + len(a.Extra)
		case BidEvent:
			size = 32 + len(e.Bid.Extra)
		}
		sum[e.Type] += float64(size)
		cnt[e.Type]++
	}
	for i, want := range []float64{200, 500, 100} {
		if avg := sum[i] / cnt[i]; math.Abs(avg-want) > want*0.02 {
			t.Errorf("%v: average size %.1f, want %v", EventType(i), avg, want)
		}
	}
}

// Timestamps follow the rate: event n is n/rate seconds after the base.
func TestTimestamps(t *testing.T) {
	g := newGen(t, nil) // 10 000 events/s
	for _, c := range []struct{ n, ms int64 }{{0, 0}, {9, 0}, {10, 1}, {10_000, 1000}, {123_456, 12_345}} {
		if got := g.Timestamp(c.n) - DefaultBaseTime; got != c.ms {
			t.Errorf("rate 10000: event %d at +%d ms, want +%d", c.n, got, c.ms)
		}
	}
	g = newGen(t, func(c *GeneratorConfig) { c.EventsPerSecond = 400; c.BaseTime = 5 })
	prev := int64(math.MinInt64)
	for n := range int64(2000) {
		ts := g.Event(n).Timestamp
		if want := 5 + n*5/2; ts != want {
			t.Fatalf("rate 400: event %d at %d, want %d", n, ts, want)
		}
		if ts < prev {
			t.Fatalf("event %d goes back in time", n)
		}
		prev = ts
	}
}

// Readers of the event numbers i ≡ p (mod N) together generate the events
// of one reader of all of them.
func TestPartitioning(t *testing.T) {
	g := newGen(t, nil)
	const total = 10_000
	var one, parts []string
	for n := range int64(total) {
		one = append(one, string(AppendJSON(nil, g.Event(n))))
	}
	const N = 3
	for p := range int64(N) {
		g2 := newGen(t, nil)
		for n := p; n < total; n += N {
			parts = append(parts, string(AppendJSON(nil, g2.Event(n))))
		}
	}
	slices.Sort(one)
	slices.Sort(parts)
	if !slices.Equal(one, parts) {
		t.Fatal("3 partitions generate other events than one")
	}
}

// Half of the bids come from the hot channels; the other channels have a
// channel_id in their URL nine times in ten.
func TestChannels(t *testing.T) {
	g := newGen(t, nil)
	hot, other, withID := 0, 0, 0
	for n := range int64(100_000) {
		e := g.Event(n)
		if e.Type != BidEvent {
			continue
		}
		if slices.Contains(HotChannels[:], e.Bid.Channel) {
			hot++
			if strings.Contains(e.Bid.URL, "channel_id") {
				t.Fatalf("hot channel url %q has a channel id", e.Bid.URL)
			}
			continue
		}
		other++
		if !strings.HasPrefix(e.Bid.Channel, "channel-") || !strings.HasPrefix(e.Bid.URL, "https://www.nexmark.com/") {
			t.Fatalf("bid channel %q url %q", e.Bid.Channel, e.Bid.URL)
		}
		if strings.Contains(e.Bid.URL, "&channel_id=") {
			withID++
		}
	}
	if f := float64(hot) / float64(hot+other); f < 0.48 || f > 0.52 {
		t.Errorf("%.3f of bids from hot channels, want 0.5", f)
	}
	if f := float64(withID) / float64(other); f < 0.87 || f > 0.93 {
		t.Errorf("%.3f of other channels' urls have a channel id, want 0.9", f)
	}
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	c.PersonProportion = 0
	c.EventsPerSecond = 0
	_, err := NewGenerator(c)
	if err == nil || !strings.Contains(err.Error(), "person proportion") || !strings.Contains(err.Error(), "events per second") {
		t.Fatalf("NewGenerator: %v, want errors naming person proportion and events per second", err)
	}
}

// JSON lines round trip, in the reference's field names.
func TestJSONRoundTrip(t *testing.T) {
	g := newGen(t, nil)
	var events []Event
	for n := range int64(500) {
		events = append(events, g.Event(n))
	}
	var buf bytes.Buffer
	if err := WriteJSONLines(&buf, events); err != nil {
		t.Fatal(err)
	}
	first := strings.SplitN(buf.String(), "\n", 2)[0]
	for _, f := range []string{`"event_type":0`, `"emailAddress":`, `"creditCard":`, `"dateTime":"2015-07-15 00:00:00.000"`, `"auction":null`, `"bid":null`} {
		if !strings.Contains(first, f) {
			t.Errorf("first line %s lacks %s", first, f)
		}
	}
	got, err := ReadJSONLines(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, events) {
		t.Fatal("events differ after a JSON round trip")
	}
	// Timestamps as milliseconds; a quote in a string.
	e, err := UnmarshalEvent([]byte(`{"event_type":2,"bid":{"auction":1,"bidder":2,"price":3,"channel":"a\"b","url":"u","dateTime":1436918400005,"extra":""}}`))
	if err != nil || e.Bid.DateTime != DefaultBaseTime+5 || e.Timestamp != DefaultBaseTime+5 || e.Bid.Channel != `a"b` {
		t.Fatalf("decoded %v, %v", e, err)
	}
	if back, err := UnmarshalEvent(AppendJSON(nil, e)); err != nil || back != e {
		t.Fatalf("round trip of %v: %v, %v", e, back, err)
	}
	for _, bad := range []string{
		`{"event_type":0,"bid":{"auction":1}}`,
		`{"person":{"id":1}}`,
		`{"event_type":2,"bid":{"dateTime":"yesterday"}}`,
		`not json`,
	} {
		if _, err := UnmarshalEvent([]byte(bad)); err == nil {
			t.Errorf("decoding %s: no error", bad)
		}
	}
	_, err = ReadJSONLines(strings.NewReader("\n" + string(AppendJSON(nil, e)) + "\n{\n"))
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("reading a bad third line: %v", err)
	}
}

// BenchmarkGenerator generates events of the default configuration (one
// core): events/s and allocations per event.
func BenchmarkGenerator(b *testing.B) {
	g := newGen(b, nil)
	b.ReportAllocs()
	var sink int64
	n := int64(0)
	for b.Loop() {
		e := g.Event(n)
		sink += e.Timestamp
		n++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	_ = sink
}

// BenchmarkGeneratorBids generates bids only: no allocation.
func BenchmarkGeneratorBids(b *testing.B) {
	g := newGen(b, nil)
	b.ReportAllocs()
	var sink int64
	n := int64(4)
	for b.Loop() {
		e := g.Event(n)
		sink += e.Bid.Price
		n++
		if n%50 == 0 {
			n += 4
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	_ = sink
}

// Over 1M events, the hot ratios, the price distribution and the hot
// channels come out as configured, within tolerances far wider than the
// sampling error (about 0.1% here) and far narrower than a wrong ratio.
func TestDistributions(t *testing.T) {
	g := newGen(t, nil)
	const events = 1_000_000
	var bids, auctions, hotAuction, hotBidder, hotSeller, hotChannel int
	var decades [6]int // bids by floor(log10(price / 100))
	for n := range int64(events) {
		switch e := g.Event(n); e.Type {
		case AuctionEvent:
			auctions++
			if e.Auction.Seller-FirstPersonID == (g.LastPersonID(n)-FirstPersonID)/HotBatch*HotBatch {
				hotSeller++
			}
		case BidEvent:
			b := e.Bid
			bids++
			if b.Auction-FirstAuctionID == (g.LastAuctionID(n)-FirstAuctionID)/HotBatch*HotBatch {
				hotAuction++
			}
			if b.Bidder-FirstPersonID == (g.LastPersonID(n)-FirstPersonID)/HotBatch*HotBatch+1 {
				hotBidder++
			}
			for i, hot := range HotChannels {
				if b.Channel == hot {
					hotChannel++
					if b.URL != g.hotURLs[i] {
						t.Fatalf("event %d: channel %s with the URL %s of another", n, hot, b.URL)
					}
				}
			}
			d := int(math.Floor(math.Log10(float64(b.Price) / 100)))
			decades[min(max(d, 0), 5)]++
		}
	}
	within := func(what string, got, n int, want, tol float64) {
		t.Helper()
		if f := float64(got) / float64(n); math.Abs(f-want) > tol {
			t.Errorf("%s: %.4f, want %.4f ± %.3f", what, f, want, tol)
		}
	}
	// A random pick lands on the hot one now and then, hence the
	// one-sided allowance above the configured share.
	within("bids for the hot auction", hotAuction, bids, 0.5+0.01, 0.015)
	within("bids by the hot bidder", hotBidder, bids, 0.75+0.002, 0.01)
	within("auctions of the hot seller", hotSeller, auctions, 0.75+0.002, 0.01)
	within("bids from hot channels", hotChannel, bids, 0.5, 0.01)
	// Log-uniform from $1 to $1M: each decade of the price holds a sixth.
	for d, c := range decades {
		within(fmt.Sprintf("bids priced in [10^%d, 10^%d) dollars", d, d+1), c, bids, 1.0/6, 0.01)
	}
}

// nextPrice's table and polynomial agree with 100·e^x computed by
// math.Exp for the same x, to a cent's rounding, over the whole range.
func TestNextPrice(t *testing.T) {
	r := rng{s: 1}
	for range 1_000_000 {
		probe := r
		u := probe.next()
		x := (float64(u>>56) + float64(u<<8>>11)/(1<<53)) * priceStep
		want := 100 * math.Exp(x)
		got := nextPrice(&r)
		if math.Abs(float64(got)-want) > 0.5+want*1e-10 {
			t.Fatalf("nextPrice for x=%v: %d, want %v rounded", x, got, want)
		}
		if got < 100 || got > 100_000_000 {
			t.Fatalf("nextPrice %d outside $1 to $1M", got)
		}
	}
}
