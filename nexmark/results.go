package nexmark

import (
	"cmp"
	"strconv"
	"strings"
)

// Row types of the queries, the columns of the reference's result tables
// (nexmark-flink/src/main/resources/queries/q*.sql) in Go's names.
// Timestamps are ms since 1970 UTC. Windowed results carry their window's
// start and/or end. Each type has a Compare giving the order in which
// package reference returns rows.

// Q0Row is a bid passed through: auction, bidder, price, dateTime, extra.
type Q0Row struct {
	Auction, Bidder, Price, DateTime int64
	Extra                            string
}

// Q1Row is a bid with its price in euros: PriceMilli is 0.908 × price in
// thousandths (the reference's DECIMAL(23, 3), exactly).
type Q1Row struct {
	Auction, Bidder, PriceMilli, DateTime int64
	Extra                                 string
}

// Q2Row is the auction and price of a bid for every 123rd auction.
type Q2Row struct{ Auction, Price int64 }

// Q3Row is a seller in OR, ID or CA and an auction of theirs in
// category 10.
type Q3Row struct {
	Name, City, State string
	ID                int64
}

// Q4Row is a category's average winning price (integer average, as the
// reference's AVG over BIGINT).
type Q4Row struct{ Category, Avg int64 }

// Q5Row is an auction with the most bids in a sliding window (10 s, every
// 2 s).
type Q5Row struct{ WindowStart, WindowEnd, Auction, Num int64 }

// Q6Row is a seller's average price over their last winning bids.
type Q6Row struct{ Seller, AvgPrice int64 }

// Q7Row is a bid at the highest price of the 10 s window ending at
// WindowEnd, made within the 10 s up to and including WindowEnd.
type Q7Row struct {
	WindowEnd, Auction, Price, Bidder, DateTime int64
	Extra                                       string
}

// Q8Row is a person who opened an auction in the 10 s window they were
// created in.
type Q8Row struct {
	ID                 int64
	Name               string
	StartTime, EndTime int64
}

// Q9Row is an auction and its winning bid (highest price, then earliest).
type Q9Row struct {
	Auction
	Bidder, Price, BidDateTime int64
	BidExtra                   string
}

// Q10Row is a bid with its day (yyyy-MM-dd) and minute (HH:mm), the
// partition of the file it is logged to.
type Q10Row struct {
	Auction, Bidder, Price, DateTime int64
	Extra, Dt, Hm                    string
}

// Q11Row is the number of bids of a bidder in one session (sessions end
// after 10 s without a bid; EndTime is the last bid + 10 s).
type Q11Row struct{ Bidder, BidCount, StartTime, EndTime int64 }

// Q12Row is the number of bids of a bidder in a 10 s processing-time
// window.
type Q12Row struct{ Bidder, BidCount, StartTime, EndTime int64 }

// Q13Row is a bid with the side input value of its auction modulo 10 000.
type Q13Row struct {
	Auction, Bidder, Price, DateTime int64
	Value                            string
}

// Q14Row is a bid with a euro price in (1 000 000, 50 000 000), the part
// of the day it was made in, and the number of 'c' in its extra.
type Q14Row struct {
	Auction, Bidder, PriceMilli int64
	BidTimeType                 string
	DateTime                    int64
	Extra                       string
	CCounts                     int64
}

// BidStats are the counts of q15 and q16: bids, distinct bidders and
// distinct auctions, in all and by price rank (rank 1: price < 10 000,
// rank 2: < 1 000 000, rank 3: the rest).
type BidStats struct {
	TotalBids, Rank1Bids, Rank2Bids, Rank3Bids                 int64
	TotalBidders, Rank1Bidders, Rank2Bidders, Rank3Bidders     int64
	TotalAuctions, Rank1Auctions, Rank2Auctions, Rank3Auctions int64
}

// Q15Row is a day's bid statistics.
type Q15Row struct {
	Day string
	BidStats
}

// Q16Row is a channel's bid statistics of a day; Minute is the latest
// HH:mm of its bids.
type Q16Row struct {
	Channel, Day, Minute string
	BidStats
}

// Q17Row is an auction's bid statistics of a day (AvgPrice is an integer
// average).
type Q17Row struct {
	Auction                                    int64
	Day                                        string
	TotalBids, Rank1Bids, Rank2Bids, Rank3Bids int64
	MinPrice, MaxPrice, AvgPrice, SumPrice     int64
}

// Q18Row is the last bid of a bidder in an auction.
type Q18Row = Bid

// Q19Row is one of the 10 highest bids of an auction, ranked from 1.
type Q19Row struct {
	Bid
	RankNumber int64
}

// Q20Row is a bid with its auction, for auctions in category 10.
type Q20Row struct {
	Auction, Bidder, Price                                int64
	Channel, URL                                          string
	BidDateTime                                           int64
	BidExtra, ItemName, Description                       string
	InitialBid, Reserve, AuctionDateTime, Expires, Seller int64
	Category                                              int64
	AuctionExtra                                          string
}

// Q21Row is a bid with the id of its channel.
type Q21Row struct {
	Auction, Bidder, Price int64
	Channel, ChannelID     string
}

// Q22Row is a bid with the first three directories of its URL (empty
// where the URL has fewer: the reference's null).
type Q22Row struct {
	Auction, Bidder, Price    int64
	Channel, Dir1, Dir2, Dir3 string
}

// Rank is the price rank of q15–q17: 1 below 10 000, 2 below 1 000 000, else 3.
func Rank(price int64) int {
	switch {
	case price < 10_000:
		return 1
	case price < 1_000_000:
		return 2
	}
	return 3
}

func (a Q0Row) Compare(b Q0Row) int {
	return cmp.Or(cmp.Compare(a.DateTime, b.DateTime), cmp.Compare(a.Auction, b.Auction), cmp.Compare(a.Bidder, b.Bidder),
		cmp.Compare(a.Price, b.Price), strings.Compare(a.Extra, b.Extra))
}

func (a Q1Row) Compare(b Q1Row) int {
	return cmp.Or(cmp.Compare(a.DateTime, b.DateTime), cmp.Compare(a.Auction, b.Auction), cmp.Compare(a.Bidder, b.Bidder),
		cmp.Compare(a.PriceMilli, b.PriceMilli), strings.Compare(a.Extra, b.Extra))
}

func (a Q2Row) Compare(b Q2Row) int {
	return cmp.Or(cmp.Compare(a.Auction, b.Auction), cmp.Compare(a.Price, b.Price))
}

func (a Q3Row) Compare(b Q3Row) int {
	return cmp.Or(cmp.Compare(a.ID, b.ID), strings.Compare(a.Name, b.Name), strings.Compare(a.City, b.City), strings.Compare(a.State, b.State))
}

func (a Q4Row) Compare(b Q4Row) int {
	return cmp.Or(cmp.Compare(a.Category, b.Category), cmp.Compare(a.Avg, b.Avg))
}

func (a Q5Row) Compare(b Q5Row) int {
	return cmp.Or(cmp.Compare(a.WindowStart, b.WindowStart), cmp.Compare(a.WindowEnd, b.WindowEnd), cmp.Compare(a.Auction, b.Auction), cmp.Compare(a.Num, b.Num))
}

func (a Q6Row) Compare(b Q6Row) int {
	return cmp.Or(cmp.Compare(a.Seller, b.Seller), cmp.Compare(a.AvgPrice, b.AvgPrice))
}

func (a Q7Row) Compare(b Q7Row) int {
	return cmp.Or(cmp.Compare(a.WindowEnd, b.WindowEnd), cmp.Compare(a.DateTime, b.DateTime), cmp.Compare(a.Auction, b.Auction),
		cmp.Compare(a.Bidder, b.Bidder), cmp.Compare(a.Price, b.Price), strings.Compare(a.Extra, b.Extra))
}

func (a Q8Row) Compare(b Q8Row) int {
	return cmp.Or(cmp.Compare(a.StartTime, b.StartTime), cmp.Compare(a.ID, b.ID), strings.Compare(a.Name, b.Name), cmp.Compare(a.EndTime, b.EndTime))
}

func (a Q9Row) Compare(b Q9Row) int {
	return cmp.Or(cmp.Compare(a.ID, b.ID), cmp.Compare(a.Price, b.Price), cmp.Compare(a.BidDateTime, b.BidDateTime),
		cmp.Compare(a.Bidder, b.Bidder), strings.Compare(a.BidExtra, b.BidExtra))
}

func (a Q10Row) Compare(b Q10Row) int {
	return cmp.Or(cmp.Compare(a.DateTime, b.DateTime), cmp.Compare(a.Auction, b.Auction), cmp.Compare(a.Bidder, b.Bidder),
		cmp.Compare(a.Price, b.Price), strings.Compare(a.Extra, b.Extra))
}

func (a Q11Row) Compare(b Q11Row) int {
	return cmp.Or(cmp.Compare(a.Bidder, b.Bidder), cmp.Compare(a.StartTime, b.StartTime), cmp.Compare(a.EndTime, b.EndTime), cmp.Compare(a.BidCount, b.BidCount))
}

func (a Q12Row) Compare(b Q12Row) int {
	return cmp.Or(cmp.Compare(a.StartTime, b.StartTime), cmp.Compare(a.Bidder, b.Bidder), cmp.Compare(a.EndTime, b.EndTime), cmp.Compare(a.BidCount, b.BidCount))
}

func (a Q13Row) Compare(b Q13Row) int {
	return cmp.Or(cmp.Compare(a.DateTime, b.DateTime), cmp.Compare(a.Auction, b.Auction), cmp.Compare(a.Bidder, b.Bidder),
		cmp.Compare(a.Price, b.Price), strings.Compare(a.Value, b.Value))
}

func (a Q14Row) Compare(b Q14Row) int {
	return cmp.Or(cmp.Compare(a.DateTime, b.DateTime), cmp.Compare(a.Auction, b.Auction), cmp.Compare(a.Bidder, b.Bidder),
		cmp.Compare(a.PriceMilli, b.PriceMilli), strings.Compare(a.Extra, b.Extra))
}

func (a Q15Row) Compare(b Q15Row) int { return strings.Compare(a.Day, b.Day) }

func (a Q16Row) Compare(b Q16Row) int {
	return cmp.Or(strings.Compare(a.Channel, b.Channel), strings.Compare(a.Day, b.Day))
}

func (a Q17Row) Compare(b Q17Row) int {
	return cmp.Or(cmp.Compare(a.Auction, b.Auction), strings.Compare(a.Day, b.Day))
}

// CompareBids orders bids by time, auction, bidder, price, channel, url, extra.
func CompareBids(a, b Bid) int {
	return cmp.Or(cmp.Compare(a.DateTime, b.DateTime), cmp.Compare(a.Auction, b.Auction), cmp.Compare(a.Bidder, b.Bidder),
		cmp.Compare(a.Price, b.Price), strings.Compare(a.Channel, b.Channel), strings.Compare(a.URL, b.URL), strings.Compare(a.Extra, b.Extra))
}

func (a Q19Row) Compare(b Q19Row) int {
	return cmp.Or(cmp.Compare(a.Auction, b.Auction), cmp.Compare(a.RankNumber, b.RankNumber), CompareBids(a.Bid, b.Bid))
}

func (a Q20Row) Compare(b Q20Row) int {
	return cmp.Or(cmp.Compare(a.BidDateTime, b.BidDateTime), cmp.Compare(a.Auction, b.Auction), cmp.Compare(a.Bidder, b.Bidder),
		cmp.Compare(a.Price, b.Price), strings.Compare(a.Channel, b.Channel), strings.Compare(a.BidExtra, b.BidExtra))
}

func (a Q21Row) Compare(b Q21Row) int {
	return cmp.Or(cmp.Compare(a.Auction, b.Auction), cmp.Compare(a.Bidder, b.Bidder), cmp.Compare(a.Price, b.Price),
		strings.Compare(a.Channel, b.Channel), strings.Compare(a.ChannelID, b.ChannelID))
}

func (a Q22Row) Compare(b Q22Row) int {
	return cmp.Or(cmp.Compare(a.Auction, b.Auction), cmp.Compare(a.Bidder, b.Bidder), cmp.Compare(a.Price, b.Price),
		strings.Compare(a.Channel, b.Channel), strings.Compare(a.Dir1, b.Dir1), strings.Compare(a.Dir2, b.Dir2), strings.Compare(a.Dir3, b.Dir3))
}

// SideInputRows is the size of q13's side input, the reference's
// side_input.txt.
const SideInputRows = 10_000

// SideInput is q13's side input: key i has the value "i", for i in
// [0, SideInputRows).
func SideInput() map[int64]string {
	m := make(map[int64]string, SideInputRows)
	for i := range int64(SideInputRows) {
		m[i] = strconv.FormatInt(i, 10)
	}
	return m
}
