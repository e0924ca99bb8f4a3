package queries

import (
	"reflect"
	"testing"

	"github.com/weirstream/weir/nexmark"
	"github.com/weirstream/weir/state"
)

// roundTrip checks that v survives c and that every proper prefix of
// its encoding, and the encoding with a byte more, fail to decode.
func roundTrip[T any](t *testing.T, c state.Codec[T], v T) {
	t.Helper()
	b := c.Append([]byte("prefix"), v)[len("prefix"):]
	back, err := c.Decode(b)
	if err != nil || !reflect.DeepEqual(back, v) {
		t.Fatalf("%T: %+v came back as %+v, %v", c, v, back, err)
	}
	for n := range len(b) {
		if _, err := c.Decode(b[:n]); err == nil {
			t.Fatalf("%T: decoding %d of %d bytes: no error", c, n, len(b))
		}
	}
	if _, err := c.Decode(append(b[:len(b):len(b)], 0)); err == nil {
		t.Fatalf("%T: decoding with a trailing byte: no error", c)
	}
}

// The binary state codecs give back what they were given, and reject
// truncated or overlong input with an error.
func TestStateCodecs(t *testing.T) {
	cfg := testConfig()
	cfg.MaxEvents = 200
	var bids []nexmark.Bid
	for _, e := range generated(t, cfg) {
		switch e.Type {
		case nexmark.PersonEvent:
			roundTrip[nexmark.Person](t, personCodec{}, *e.Person)
		case nexmark.AuctionEvent:
			roundTrip[nexmark.Auction](t, auctionCodec{}, *e.Auction)
		case nexmark.BidEvent:
			roundTrip[nexmark.Bid](t, bidCodec{}, e.Bid)
			bids = append(bids, e.Bid)
		}
	}
	roundTrip[[]nexmark.Bid](t, bidsCodec{}, bids[:TopN])
	roundTrip[[]nexmark.Bid](t, bidsCodec{}, nil)
	roundTrip[nexmark.Q17Row](t, q17Codec{}, nexmark.Q17Row{Auction: 1001, Day: "2015-07-15", TotalBids: 3, Rank1Bids: 1, Rank2Bids: 1,
		Rank3Bids: 1, MinPrice: 5, MaxPrice: 2_000_000, AvgPrice: 700_000, SumPrice: 2_100_000})
	roundTrip[statsAcc](t, statsAccCodec{}, statsAcc{Stats: nexmark.BidStats{TotalBids: 9, Rank3Auctions: -1, TotalBidders: 1 << 40},
		MinuteOfDay: 1439, Label: "2015-07-15"})
	roundTrip[[2]int64](t, pairCodec{}, [2]int64{-7, 1 << 62})
	roundTrip[[]sellerWin](t, sellerWinsCodec{}, []sellerWin{{1000, 50, 1436918400000}, {1001, 7, 1436918400001}})
	if _, err := (bidsCodec{}).Decode([]byte{0xff, 0x01}); err == nil {
		t.Error("a bid list claiming 255 bids in 2 bytes: no error")
	}
}
