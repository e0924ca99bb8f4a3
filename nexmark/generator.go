package nexmark

import (
	"math"
	"math/bits"
	"strconv"
)

var (
	usStates   = [...]string{"AZ", "CA", "ID", "OR", "WA", "WY"}
	usCities   = [...]string{"Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle", "Kent", "Cheyenne"}
	firstNames = [...]string{"Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter"}
	lastNames  = [...]string{"Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris"}
)

// fullNames holds every "First Last", so a person's name costs no
// allocation.
var fullNames = func() []string {
	out := make([]string, 0, len(firstNames)*len(lastNames))
	for _, f := range firstNames {
		for _, l := range lastNames {
			out = append(out, f+" "+l)
		}
	}
	return out
}()

// extraPoolSize is the length of the random string the Extra fields are
// cut from (1 MiB, the reference's).
const extraPoolSize = 1 << 20

// minStringLength is the shortest random name before trimming.
const minStringLength = 3

// Generator generates the events of a GeneratorConfig. Event(n) depends on
// the configuration and n only, so a Generator may be shared by any number
// of goroutines, and readers of disjoint sets of event numbers together
// generate exactly the events of one reader of all of them. (The
// reference draws from an unseeded random generator; here the random
// values of event n come from a generator seeded with Config.Seed and n,
// and the channel URLs and the padding text from one seeded with
// Config.Seed.) Bids have bidder ids offset once by FirstPersonID; the
// reference's Flink generator adds the offset twice, so its bidders are
// 1000 above every person id.
type Generator struct {
	cfg     GeneratorConfig
	total   int64
	delayUs float64
	seed    uint64
	// extraPool is the random text Extra fields are substrings of.
	extraPool string
	hotURLs   [len(HotChannels)]string
	channels  [NumChannels]string
	urls      [NumChannels]string
}

// NewGenerator checks cfg and returns its generator.
func NewGenerator(cfg GeneratorConfig) (*Generator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := &Generator{cfg: cfg, total: cfg.TotalProportion(), delayUs: 1e6 / cfg.EventsPerSecond, seed: mix64(cfg.Seed + 0x632be59bd9b4e019)}
	r := rng{s: mix64(cfg.Seed ^ 0x2545f4914f6cdd1d)}
	pool := make([]byte, extraPoolSize)
	for i := range pool {
		pool[i] = byte('a' + r.intn(26))
	}
	g.extraPool = string(pool)
	for i := range g.hotURLs {
		g.hotURLs[i] = string(baseURL(nil, &r))
	}
	for i := range NumChannels {
		g.channels[i] = "channel-" + strconv.Itoa(i)
		u := baseURL(nil, &r)
		if r.intn(10) > 0 {
			// The reference's channel id: the absolute value of the bit
			// reversed 32-bit channel number (Java's Math.abs, which
			// leaves MinInt32 negative).
			id := int32(bits.Reverse32(uint32(i)))
			if id < 0 && id != math.MinInt32 {
				id = -id
			}
			u = append(u, "&channel_id="...)
			u = strconv.AppendInt(u, int64(id), 10)
		}
		g.urls[i] = string(u)
	}
	return g, nil
}

// baseURL appends a random item URL.
func baseURL(dst []byte, r *rng) []byte {
	dst = append(dst, "https://www.nexmark.com/"...)
	for range 3 {
		dst = nextString(dst, r, 5, '_')
		dst = append(dst, '/')
	}
	return append(dst, "item.htm?query=1"...)
}

// Config returns the generator's configuration.
func (g *Generator) Config() GeneratorConfig { return g.cfg }

// Timestamp is the event time of event n, ms since 1970 UTC.
func (g *Generator) Timestamp(n int64) int64 {
	return g.cfg.BaseTime + int64(float64(n)*g.delayUs)/1000
}

// TypeOf is the type of event n.
func (g *Generator) TypeOf(n int64) EventType {
	rem := n % g.total
	switch {
	case rem < int64(g.cfg.PersonProportion):
		return PersonEvent
	case rem < int64(g.cfg.PersonProportion+g.cfg.AuctionProportion):
		return AuctionEvent
	}
	return BidEvent
}

// Event returns event n (n ≥ 0). Bids allocate nothing; people and
// auctions allocate their record and one string holding their random text.
func (g *Generator) Event(n int64) Event {
	n = max(n, 0)
	ts := g.Timestamp(n)
	r := rng{s: mix64(uint64(n) ^ g.seed)}
	// One division gives the event's type and the last person and
	// auction before it (a 64-bit division is tens of cycles).
	p := g.pos(n)
	switch p.typ {
	case PersonEvent:
		return Event{Type: PersonEvent, Timestamp: ts, Person: g.person(p, ts, &r)}
	case AuctionEvent:
		return Event{Type: AuctionEvent, Timestamp: ts, Auction: g.auction(n, p, ts, &r)}
	}
	return Event{Type: BidEvent, Timestamp: ts, Bid: g.bid(p, ts, &r)}
}

// position is where an event number falls: its type and the last person
// and auction ids (from 0) generated at or before it.
type position struct {
	typ                     EventType
	lastPerson, lastAuction int64
}

func (g *Generator) pos(n int64) position {
	epoch, off := n/g.total, n%g.total
	pp, ap := int64(g.cfg.PersonProportion), int64(g.cfg.AuctionProportion)
	switch {
	case off < pp:
		return position{PersonEvent, epoch*pp + off, (epoch-1)*ap + ap - 1}
	case off < pp+ap:
		return position{AuctionEvent, epoch*pp + pp - 1, epoch*ap + off - pp}
	}
	return position{BidEvent, epoch*pp + pp - 1, epoch*ap + ap - 1}
}

// LastPersonID is the id of the last person generated at or before event n.
func (g *Generator) LastPersonID(n int64) int64 { return g.pos(max(n, 0)).lastPerson + FirstPersonID }

// LastAuctionID is the id of the last auction generated at or before
// event n (FirstAuctionID-1 before the first auction).
func (g *Generator) LastAuctionID(n int64) int64 {
	return g.pos(max(n, 0)).lastAuction + FirstAuctionID
}

// randomPerson picks one of the active people, or one up to PersonIDLead
// ahead of the last (id from 0).
func (g *Generator) randomPerson(p position, r *rng) int64 {
	people := p.lastPerson + 1
	active := min(people, int64(g.cfg.NumActivePeople))
	return people - active + r.int63n(active+PersonIDLead)
}

// randomAuction picks one of the auctions likely still open, or one up to
// AuctionIDLead ahead of the last (id from 0).
func (g *Generator) randomAuction(p position, r *rng) int64 {
	last := p.lastAuction
	first := max(last-int64(g.cfg.NumInFlightAuctions), 0)
	return first + r.int63n(last-first+1+AuctionIDLead)
}

func (g *Generator) person(at position, ts int64, r *rng) *Person {
	p := &Person{ID: at.lastPerson + FirstPersonID, DateTime: ts}
	p.Name = fullNames[r.intn(len(firstNames))*len(lastNames)+r.intn(len(lastNames))]
	var arr [64]byte
	buf := nextString(arr[:0], r, 7, ' ')
	buf = append(buf, '@')
	buf = nextString(buf, r, 5, ' ')
	buf = append(buf, ".com"...)
	emailEnd := len(buf)
	for i := range 4 {
		if i > 0 {
			buf = append(buf, ' ')
		}
		d := r.intn(10000)
		buf = append(buf, byte('0'+d/1000), byte('0'+d/100%10), byte('0'+d/10%10), byte('0'+d%10))
	}
	s := string(buf)
	p.EmailAddress, p.CreditCard = s[:emailEnd], s[emailEnd:]
	p.City = usCities[r.intn(len(usCities))]
	p.State = usStates[r.intn(len(usStates))]
	size := 8 + len(p.Name) + len(p.EmailAddress) + len(p.CreditCard) + len(p.City) + len(p.State)
	p.Extra = g.extra(r, size, g.cfg.AvgPersonByteSize)
	return p
}

func (g *Generator) auction(n int64, at position, ts int64, r *rng) *Auction {
	a := &Auction{ID: at.lastAuction + FirstAuctionID, DateTime: ts}
	if r.intn(g.cfg.HotSellersRatio) > 0 {
		a.Seller = at.lastPerson / HotBatch * HotBatch
	} else {
		a.Seller = g.randomPerson(at, r)
	}
	a.Seller += FirstPersonID
	a.Category = FirstCategoryID + int64(r.intn(NumCategories))
	a.InitialBid = nextPrice(r)
	a.Expires = ts + g.auctionLength(n, ts, r)
	var arr [128]byte
	buf := nextString(arr[:0], r, 20, ' ')
	nameEnd := len(buf)
	buf = nextString(buf, r, 100, ' ')
	s := string(buf)
	a.ItemName, a.Description = s[:nameEnd], s[nameEnd:]
	a.Reserve = a.InitialBid + nextPrice(r)
	size := 8 + len(a.ItemName) + len(a.Description) + 8 + 8 + 8 + 8 + 8
	a.Extra = g.extra(r, size, g.cfg.AvgAuctionByteSize)
	return a
}

// auctionLength is a random auction length averaging the time until
// NumInFlightAuctions more auctions are generated.
func (g *Generator) auctionLength(n, ts int64, r *rng) int64 {
	eventsForAuctions := int64(g.cfg.NumInFlightAuctions) * g.total / int64(g.cfg.AuctionProportion)
	horizon := g.Timestamp(n+eventsForAuctions) - ts
	return 1 + r.int63n(max(horizon*2, 1))
}

func (g *Generator) bid(at position, ts int64, r *rng) Bid {
	b := Bid{DateTime: ts}
	if r.intn(g.cfg.HotAuctionRatio) > 0 {
		b.Auction = at.lastAuction / HotBatch * HotBatch
	} else {
		b.Auction = g.randomAuction(at, r)
	}
	b.Auction += FirstAuctionID
	if r.intn(g.cfg.HotBiddersRatio) > 0 {
		// The second person of the batch, so hot bidders are not hot sellers.
		b.Bidder = at.lastPerson/HotBatch*HotBatch + 1
	} else {
		b.Bidder = g.randomPerson(at, r)
	}
	b.Bidder += FirstPersonID
	b.Price = nextPrice(r)
	if r.intn(2) > 0 {
		i := r.intn(len(HotChannels))
		b.Channel, b.URL = HotChannels[i], g.hotURLs[i]
	} else {
		i := r.intn(NumChannels)
		b.Channel, b.URL = g.channels[i], g.urls[i]
	}
	b.Extra = g.extra(r, 8+8+8+8, g.cfg.AvgBidByteSize)
	return b
}

// extra returns padding that makes a record of size bytes average avg
// bytes: uniform in avg-size ± 20%, cut from the shared random text.
func (g *Generator) extra(r *rng, size, avg int) string {
	if size > avg {
		return ""
	}
	avg -= size
	delta := (avg + 2) / 5 // 20 % of avg, rounded
	want := avg - delta
	if delta > 0 {
		want += r.intn(2 * delta)
	}
	off := r.intn(len(g.extraPool) - want)
	return g.extraPool[off : off+want]
}

// nextPrice is a log-uniform price in cents between 1 dollar and 1
// million dollars: round(100·e^x), x uniform in [0, 6·ln 10).
func nextPrice(r *rng) int64 {
	// e^x = e^(i·step) · e^y with i the top 8 bits of x's fraction of
	// the range and y < step: a table and a short polynomial, about a
	// fifth of math.Exp's time (which was a third of a bid's), and within
	// 1e-10 of it relatively (TestNextPrice).
	u := r.next()
	i := u >> 56
	y := float64(u<<8>>11) * (priceStep / (1 << 53))
	e := 1 + y*(1+y*(1.0/2+y*(1.0/6+y*(1.0/24+y*(1.0/120)))))
	return int64(priceTable[i]*e + 0.5)
}

// priceStep is the width of a priceTable step of the exponent.
const priceStep = 6 * math.Ln10 / 256

// priceTable[i] is 100·e^(i·priceStep).
var priceTable = func() (t [256]float64) {
	for i := range t {
		t[i] = 100 * math.Exp(float64(i)*priceStep)
	}
	return t
}()

// nextString appends a random string of minStringLength up to maxLen-1
// letters, about one in 13 of them special; a space as special is
// trimmed from both ends.
func nextString(dst []byte, r *rng, maxLen int, special byte) []byte {
	start := len(dst)
	for n := minStringLength + r.intn(maxLen-minStringLength); n > 0; n-- {
		if r.intn(13) == 0 {
			dst = append(dst, special)
		} else {
			dst = append(dst, byte('a'+r.intn(26)))
		}
	}
	if special != ' ' {
		return dst
	}
	for len(dst) > start && dst[len(dst)-1] == ' ' {
		dst = dst[:len(dst)-1]
	}
	lead := 0
	for start+lead < len(dst) && dst[start+lead] == ' ' {
		lead++
	}
	if lead > 0 {
		dst = append(dst[:start], dst[start+lead:]...)
	}
	return dst
}

// rng is wyrand: one 128-bit multiply per value, seeded per event
// through mix64 (SplitMix64's finalizer).
type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s += 0xa0761d6478bd642f
	hi, lo := bits.Mul64(r.s, r.s^0xe7037ed1a0b428db)
	return hi ^ lo
}

func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// intn is uniform in [0, n) (0 if n ≤ 0).
func (r *rng) intn(n int) int { return int(r.int63n(int64(n))) }

// int63n is uniform in [0, n) (0 if n ≤ 0), by multiply and shift.
func (r *rng) int63n(n int64) int64 {
	if n <= 0 {
		return 0
	}
	hi, _ := bits.Mul64(r.next(), uint64(n))
	return int64(hi)
}

// float64 is uniform in [0, 1).
func (r *rng) float64() float64 { return float64(r.next()>>11) / (1 << 53) }
