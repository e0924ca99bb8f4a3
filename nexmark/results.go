package nexmark

import (
	"cmp"
	"strconv"
	"strings"
)

// Row types of the queries, the columns of the reference's result tables
// (nexmark-flink/src/main/resources/queries/q*.sql) in Go's names.
// Timestamps are ms since 1970 UTC. Windowed results carry their window's
// start and/or end. The JSON field names are the reference's column names
// (with window_end, etime and the _milli prices where weir's row says more
// than the reference's). Each type has a Compare giving the order in which
// package reference returns rows.

// Q0Row is a bid passed through: auction, bidder, price, dateTime, extra.
type Q0Row struct {
	Auction  int64  `json:"auction"`
	Bidder   int64  `json:"bidder"`
	Price    int64  `json:"price"`
	DateTime int64  `json:"dateTime"`
	Extra    string `json:"extra"`
}

// Q1Row is a bid with its price in euros: PriceMilli is 0.908 × price in
// thousandths (the reference's DECIMAL(23, 3), exactly).
type Q1Row struct {
	Auction    int64  `json:"auction"`
	Bidder     int64  `json:"bidder"`
	PriceMilli int64  `json:"price_milli"`
	DateTime   int64  `json:"dateTime"`
	Extra      string `json:"extra"`
}

// Q2Row is the auction and price of a bid for every 123rd auction.
type Q2Row struct {
	Auction int64 `json:"auction"`
	Price   int64 `json:"price"`
}

// Q3Row is a seller in OR, ID or CA and an auction of theirs in
// category 10.
type Q3Row struct {
	Name  string `json:"name"`
	City  string `json:"city"`
	State string `json:"state"`
	ID    int64  `json:"id"`
}

// Q4Row is a category's average winning price (integer average, as the
// reference's AVG over BIGINT).
type Q4Row struct {
	Category int64 `json:"id"`
	Avg      int64 `json:"final"`
}

// Q5Row is an auction with the most bids in a sliding window (10 s, every
// 2 s).
type Q5Row struct {
	WindowStart int64 `json:"starttime"`
	WindowEnd   int64 `json:"endtime"`
	Auction     int64 `json:"auction"`
	Num         int64 `json:"num"`
}

// Q6Row is a seller's average price over their last winning bids.
type Q6Row struct {
	Seller   int64 `json:"seller"`
	AvgPrice int64 `json:"avg_price"`
}

// Q7Row is a bid at the highest price of the 10 s window ending at
// WindowEnd, made within the 10 s up to and including WindowEnd.
type Q7Row struct {
	WindowEnd int64  `json:"window_end"`
	Auction   int64  `json:"auction"`
	Price     int64  `json:"price"`
	Bidder    int64  `json:"bidder"`
	DateTime  int64  `json:"dateTime"`
	Extra     string `json:"extra"`
}

// Q8Row is a person who opened an auction in the 10 s window they were
// created in.
type Q8Row struct {
	ID        int64  `json:"id"`
	Name      string `json:"name"`
	StartTime int64  `json:"stime"`
	EndTime   int64  `json:"etime"`
}

// Q9Row is an auction and its winning bid (highest price, then earliest).
type Q9Row struct {
	Auction
	Bidder      int64  `json:"bidder"`
	Price       int64  `json:"price"`
	BidDateTime int64  `json:"bid_dateTime"`
	BidExtra    string `json:"bid_extra"`
}

// Q10Row is a bid with its day (yyyy-MM-dd) and minute (HH:mm), the
// partition of the file it is logged to.
type Q10Row struct {
	Auction  int64  `json:"auction"`
	Bidder   int64  `json:"bidder"`
	Price    int64  `json:"price"`
	DateTime int64  `json:"dateTime"`
	Extra    string `json:"extra"`
	Dt       string `json:"dt"`
	Hm       string `json:"hm"`
}

// Q11Row is the number of bids of a bidder in one session (sessions end
// after 10 s without a bid; EndTime is the last bid + 10 s).
type Q11Row struct {
	Bidder    int64 `json:"bidder"`
	BidCount  int64 `json:"bid_count"`
	StartTime int64 `json:"starttime"`
	EndTime   int64 `json:"endtime"`
}

// Q12Row is the number of bids of a bidder in a 10 s processing-time
// window.
type Q12Row struct {
	Bidder    int64 `json:"bidder"`
	BidCount  int64 `json:"bid_count"`
	StartTime int64 `json:"starttime"`
	EndTime   int64 `json:"endtime"`
}

// Q13Row is a bid with the side input value of its auction modulo 10 000.
type Q13Row struct {
	Auction  int64  `json:"auction"`
	Bidder   int64  `json:"bidder"`
	Price    int64  `json:"price"`
	DateTime int64  `json:"dateTime"`
	Value    string `json:"value"`
}

// Q14Row is a bid with a euro price in (1 000 000, 50 000 000), the part
// of the day it was made in, and the number of 'c' in its extra.
type Q14Row struct {
	Auction     int64  `json:"auction"`
	Bidder      int64  `json:"bidder"`
	PriceMilli  int64  `json:"price_milli"`
	BidTimeType string `json:"bidTimeType"`
	DateTime    int64  `json:"dateTime"`
	Extra       string `json:"extra"`
	CCounts     int64  `json:"c_counts"`
}

// BidStats are the counts of q15 and q16: bids, distinct bidders and
// distinct auctions, in all and by price rank (rank 1: price < 10 000,
// rank 2: < 1 000 000, rank 3: the rest).
type BidStats struct {
	TotalBids     int64 `json:"total_bids"`
	Rank1Bids     int64 `json:"rank1_bids"`
	Rank2Bids     int64 `json:"rank2_bids"`
	Rank3Bids     int64 `json:"rank3_bids"`
	TotalBidders  int64 `json:"total_bidders"`
	Rank1Bidders  int64 `json:"rank1_bidders"`
	Rank2Bidders  int64 `json:"rank2_bidders"`
	Rank3Bidders  int64 `json:"rank3_bidders"`
	TotalAuctions int64 `json:"total_auctions"`
	Rank1Auctions int64 `json:"rank1_auctions"`
	Rank2Auctions int64 `json:"rank2_auctions"`
	Rank3Auctions int64 `json:"rank3_auctions"`
}

// Q15Row is a day's bid statistics.
type Q15Row struct {
	Day string `json:"day"`
	BidStats
}

// Q16Row is a channel's bid statistics of a day; Minute is the latest
// HH:mm of its bids.
type Q16Row struct {
	Channel string `json:"channel"`
	Day     string `json:"day"`
	Minute  string `json:"minute"`
	BidStats
}

// Q17Row is an auction's bid statistics of a day (AvgPrice is an integer
// average).
type Q17Row struct {
	Auction   int64  `json:"auction"`
	Day       string `json:"day"`
	TotalBids int64  `json:"total_bids"`
	Rank1Bids int64  `json:"rank1_bids"`
	Rank2Bids int64  `json:"rank2_bids"`
	Rank3Bids int64  `json:"rank3_bids"`
	MinPrice  int64  `json:"min_price"`
	MaxPrice  int64  `json:"max_price"`
	AvgPrice  int64  `json:"avg_price"`
	SumPrice  int64  `json:"sum_price"`
}

// Q18Row is the last bid of a bidder in an auction.
type Q18Row = Bid

// Q19Row is one of the 10 highest bids of an auction, ranked from 1.
type Q19Row struct {
	Bid
	RankNumber int64 `json:"rank_number"`
}

// Q20Row is a bid with its auction, for auctions in category 10.
type Q20Row struct {
	Auction         int64  `json:"auction"`
	Bidder          int64  `json:"bidder"`
	Price           int64  `json:"price"`
	Channel         string `json:"channel"`
	URL             string `json:"url"`
	BidDateTime     int64  `json:"bid_dateTime"`
	BidExtra        string `json:"bid_extra"`
	ItemName        string `json:"itemName"`
	Description     string `json:"description"`
	InitialBid      int64  `json:"initialBid"`
	Reserve         int64  `json:"reserve"`
	AuctionDateTime int64  `json:"auction_dateTime"`
	Expires         int64  `json:"expires"`
	Seller          int64  `json:"seller"`
	Category        int64  `json:"category"`
	AuctionExtra    string `json:"auction_extra"`
}

// Q21Row is a bid with the id of its channel.
type Q21Row struct {
	Auction   int64  `json:"auction"`
	Bidder    int64  `json:"bidder"`
	Price     int64  `json:"price"`
	Channel   string `json:"channel"`
	ChannelID string `json:"channel_id"`
}

// Q22Row is a bid with the first three directories of its URL (empty
// where the URL has fewer: the reference's null).
type Q22Row struct {
	Auction int64  `json:"auction"`
	Bidder  int64  `json:"bidder"`
	Price   int64  `json:"price"`
	Channel string `json:"channel"`
	Dir1    string `json:"dir1"`
	Dir2    string `json:"dir2"`
	Dir3    string `json:"dir3"`
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
