package queries

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/weirstream/weir/nexmark"
)

// Binary state codecs of the queries' keyed state: varints for numbers,
// a uvarint length before every string. The built-in codec of struct
// types is JSON, several times slower to write and to read; with the
// pebble backend every state access goes through the codec, and with the
// heap backend every checkpoint does. Each Decode checks that it used its
// input exactly.

var errTruncated = errors.New("truncated")

// decoder reads varints and strings from a buffer and remembers the
// first error.
type decoder struct {
	src []byte
	err error
}

func (d *decoder) int() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.src)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.src = d.src[n:]
	return v
}

func (d *decoder) uint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.src)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.src = d.src[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.src)) {
		d.err = errTruncated
		return ""
	}
	s := string(d.src[:n])
	d.src = d.src[n:]
	return s
}

// done returns the error of decoding what, if any, or of bytes left over.
func (d *decoder) done(what string) error {
	if d.err == nil && len(d.src) > 0 {
		d.err = fmt.Errorf("%d bytes left over", len(d.src))
	}
	if d.err != nil {
		return fmt.Errorf("cannot decode %s state: %w", what, d.err)
	}
	return nil
}

func appendString(dst []byte, s string) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(s))), s...)
}

func appendBid(dst []byte, b *nexmark.Bid) []byte {
	dst = binary.AppendVarint(dst, b.Auction)
	dst = binary.AppendVarint(dst, b.Bidder)
	dst = binary.AppendVarint(dst, b.Price)
	dst = binary.AppendVarint(dst, b.DateTime)
	dst = appendString(dst, b.Channel)
	dst = appendString(dst, b.URL)
	return appendString(dst, b.Extra)
}

func (d *decoder) bid() nexmark.Bid {
	return nexmark.Bid{Auction: d.int(), Bidder: d.int(), Price: d.int(), DateTime: d.int(),
		Channel: d.string(), URL: d.string(), Extra: d.string()}
}

// bidCodec encodes a nexmark.Bid.
type bidCodec struct{}

func (bidCodec) Append(dst []byte, b nexmark.Bid) []byte { return appendBid(dst, &b) }
func (bidCodec) Decode(src []byte) (nexmark.Bid, error) {
	d := decoder{src: src}
	b := d.bid()
	return b, d.done("bid")
}

// bidsCodec encodes a slice of bids: their number, then each.
type bidsCodec struct{}

func (bidsCodec) Append(dst []byte, bs []nexmark.Bid) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(bs)))
	for i := range bs {
		dst = appendBid(dst, &bs[i])
	}
	return dst
}

func (bidsCodec) Decode(src []byte) ([]nexmark.Bid, error) {
	d := decoder{src: src}
	n := d.uint()
	if n > uint64(len(src)) { // every bid takes bytes
		return nil, fmt.Errorf("cannot decode bid list state: %d bids in %d bytes", n, len(src))
	}
	var bs []nexmark.Bid
	if n > 0 {
		bs = make([]nexmark.Bid, 0, n)
	}
	for range n {
		bs = append(bs, d.bid())
	}
	return bs, d.done("bid list")
}

// auctionCodec encodes a nexmark.Auction.
type auctionCodec struct{}

func (auctionCodec) Append(dst []byte, a nexmark.Auction) []byte {
	dst = binary.AppendVarint(dst, a.ID)
	dst = appendString(dst, a.ItemName)
	dst = appendString(dst, a.Description)
	dst = binary.AppendVarint(dst, a.InitialBid)
	dst = binary.AppendVarint(dst, a.Reserve)
	dst = binary.AppendVarint(dst, a.DateTime)
	dst = binary.AppendVarint(dst, a.Expires)
	dst = binary.AppendVarint(dst, a.Seller)
	dst = binary.AppendVarint(dst, a.Category)
	return appendString(dst, a.Extra)
}

func (auctionCodec) Decode(src []byte) (nexmark.Auction, error) {
	d := decoder{src: src}
	a := nexmark.Auction{ID: d.int(), ItemName: d.string(), Description: d.string(), InitialBid: d.int(), Reserve: d.int(),
		DateTime: d.int(), Expires: d.int(), Seller: d.int(), Category: d.int(), Extra: d.string()}
	return a, d.done("auction")
}

// personCodec encodes a nexmark.Person.
type personCodec struct{}

func (personCodec) Append(dst []byte, p nexmark.Person) []byte {
	dst = binary.AppendVarint(dst, p.ID)
	dst = appendString(dst, p.Name)
	dst = appendString(dst, p.EmailAddress)
	dst = appendString(dst, p.CreditCard)
	dst = appendString(dst, p.City)
	dst = appendString(dst, p.State)
	dst = binary.AppendVarint(dst, p.DateTime)
	return appendString(dst, p.Extra)
}

func (personCodec) Decode(src []byte) (nexmark.Person, error) {
	d := decoder{src: src}
	p := nexmark.Person{ID: d.int(), Name: d.string(), EmailAddress: d.string(), CreditCard: d.string(), City: d.string(),
		State: d.string(), DateTime: d.int(), Extra: d.string()}
	return p, d.done("person")
}

// q17Codec encodes q17's row of a key.
type q17Codec struct{}

func (q17Codec) Append(dst []byte, r nexmark.Q17Row) []byte {
	dst = binary.AppendVarint(dst, r.Auction)
	dst = appendString(dst, r.Day)
	for _, v := range [...]int64{r.TotalBids, r.Rank1Bids, r.Rank2Bids, r.Rank3Bids, r.MinPrice, r.MaxPrice, r.AvgPrice, r.SumPrice} {
		dst = binary.AppendVarint(dst, v)
	}
	return dst
}

func (q17Codec) Decode(src []byte) (nexmark.Q17Row, error) {
	d := decoder{src: src}
	r := nexmark.Q17Row{Auction: d.int(), Day: d.string(), TotalBids: d.int(), Rank1Bids: d.int(), Rank2Bids: d.int(),
		Rank3Bids: d.int(), MinPrice: d.int(), MaxPrice: d.int(), AvgPrice: d.int(), SumPrice: d.int()}
	return r, d.done("q17 row")
}

// statsAccCodec encodes a group's statistics of q15 and q16.
type statsAccCodec struct{}

func (statsAccCodec) Append(dst []byte, a statsAcc) []byte {
	s := &a.Stats
	for _, v := range [...]int64{s.TotalBids, s.Rank1Bids, s.Rank2Bids, s.Rank3Bids, s.TotalBidders, s.Rank1Bidders,
		s.Rank2Bidders, s.Rank3Bidders, s.TotalAuctions, s.Rank1Auctions, s.Rank2Auctions, s.Rank3Auctions, a.MinuteOfDay} {
		dst = binary.AppendVarint(dst, v)
	}
	return appendString(dst, a.Label)
}

func (statsAccCodec) Decode(src []byte) (statsAcc, error) {
	d := decoder{src: src}
	a := statsAcc{Stats: nexmark.BidStats{TotalBids: d.int(), Rank1Bids: d.int(), Rank2Bids: d.int(), Rank3Bids: d.int(),
		TotalBidders: d.int(), Rank1Bidders: d.int(), Rank2Bidders: d.int(), Rank3Bidders: d.int(),
		TotalAuctions: d.int(), Rank1Auctions: d.int(), Rank2Auctions: d.int(), Rank3Auctions: d.int()},
		MinuteOfDay: d.int(), Label: d.string()}
	return a, d.done("bid statistics")
}

// pairCodec encodes two int64s.
type pairCodec struct{}

func (pairCodec) Append(dst []byte, p [2]int64) []byte {
	return binary.AppendVarint(binary.AppendVarint(dst, p[0]), p[1])
}

func (pairCodec) Decode(src []byte) ([2]int64, error) {
	d := decoder{src: src}
	p := [2]int64{d.int(), d.int()}
	return p, d.done("pair")
}

// sellerWinsCodec encodes q6's winning bids of a seller.
type sellerWinsCodec struct{}

func (sellerWinsCodec) Append(dst []byte, ws []sellerWin) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(ws)))
	for _, w := range ws {
		dst = binary.AppendVarint(binary.AppendVarint(binary.AppendVarint(dst, w.Auction), w.Price), w.DateTime)
	}
	return dst
}

func (sellerWinsCodec) Decode(src []byte) ([]sellerWin, error) {
	d := decoder{src: src}
	n := d.uint()
	if n > uint64(len(src)) {
		return nil, fmt.Errorf("cannot decode winning bids state: %d bids in %d bytes", n, len(src))
	}
	ws := make([]sellerWin, 0, n)
	for range n {
		ws = append(ws, sellerWin{Auction: d.int(), Price: d.int(), DateTime: d.int()})
	}
	return ws, d.done("winning bids")
}
