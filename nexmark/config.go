package nexmark

import (
	"errors"
	"fmt"
)

// Ids start at these values (the reference's), so that queries looking
// for particular ids find matches even in small runs.
const (
	FirstPersonID   = 1000
	FirstAuctionID  = 1000
	FirstCategoryID = 10
)

// Fixed shape of the generated data, as in the reference generator.
const (
	// NumCategories is the number of auction categories (ids 10..14).
	NumCategories = 5
	// PersonIDLead and AuctionIDLead: a random person or auction may be
	// up to this many ids ahead of the last one generated.
	PersonIDLead  = 10
	AuctionIDLead = 10
	// HotBatch: a hot seller, bidder or auction is the first (bidder: the
	// second) of the last batch of this many people or auctions.
	HotBatch = 100
	// NumChannels is the number of non-hot bid channels.
	NumChannels = 10_000
)

// HotChannels are the channels half of the bids come from.
var HotChannels = [4]string{"Google", "Facebook", "Baidu", "Apple"}

// DefaultBaseTime is the event time of event 0 by default:
// 2015-07-15 00:00:00 UTC (fixed, so runs are repeatable).
const DefaultBaseTime = 1436918400000

// GeneratorConfig says what a Generator generates. DefaultConfig holds
// the reference's defaults.
type GeneratorConfig struct {
	// Proportions of people, auctions and bids among the events:
	// event n is a person, an auction or a bid by n modulo their sum.
	PersonProportion, AuctionProportion, BidProportion int
	// A bid is for a hot auction with probability 1-1/HotAuctionRatio;
	// an auction's seller is hot with probability 1-1/HotSellersRatio;
	// a bidder is hot with probability 1-1/HotBiddersRatio.
	HotAuctionRatio, HotSellersRatio, HotBiddersRatio int
	// NumInFlightAuctions is the average number of open auctions: a
	// random auction is one of the last NumInFlightAuctions, and auction
	// lengths average the time until that many more are generated.
	NumInFlightAuctions int
	// NumActivePeople bounds the people a random seller or bidder is
	// chosen from (the last NumActivePeople).
	NumActivePeople int
	// Average sizes, in bytes, of a person, an auction and a bid: the
	// Extra field pads each record to about this size.
	AvgPersonByteSize, AvgAuctionByteSize, AvgBidByteSize int
	// EventsPerSecond is the event rate in event time: event n has the
	// timestamp BaseTime + n/EventsPerSecond seconds.
	EventsPerSecond float64
	// BaseTime is the timestamp of event 0, ms since 1970 UTC.
	BaseTime int64
	// MaxEvents is the number of events (event numbers 0..MaxEvents-1);
	// 0 for no end.
	MaxEvents int64
	// Seed picks the random values; equal configurations generate equal
	// events.
	Seed uint64
}

// DefaultConfig returns the reference's defaults: proportions 1:3:46,
// hot ratios 2 (auctions), 4 (sellers), 4 (bidders), 100 auctions in
// flight, 1000 active people, average sizes 200, 500 and 100 bytes,
// 10 000 events per second, no end.
func DefaultConfig() GeneratorConfig {
	return GeneratorConfig{
		PersonProportion:    1,
		AuctionProportion:   3,
		BidProportion:       46,
		HotAuctionRatio:     2,
		HotSellersRatio:     4,
		HotBiddersRatio:     4,
		NumInFlightAuctions: 100,
		NumActivePeople:     1000,
		AvgPersonByteSize:   200,
		AvgAuctionByteSize:  500,
		AvgBidByteSize:      100,
		EventsPerSecond:     10_000,
		BaseTime:            DefaultBaseTime,
		Seed:                1,
	}
}

// TotalProportion is the sum of the three proportions.
func (c GeneratorConfig) TotalProportion() int64 {
	return int64(c.PersonProportion) + int64(c.AuctionProportion) + int64(c.BidProportion)
}

// Validate reports the first setting out of range.
func (c GeneratorConfig) Validate() error {
	var errs []error
	pos := func(name string, v int) {
		if v < 1 {
			errs = append(errs, fmt.Errorf("%s must be at least 1, got %d", name, v))
		}
	}
	pos("person proportion", c.PersonProportion)
	pos("auction proportion", c.AuctionProportion)
	if c.BidProportion < 0 {
		errs = append(errs, fmt.Errorf("bid proportion must not be negative, got %d", c.BidProportion))
	}
	pos("hot auction ratio", c.HotAuctionRatio)
	pos("hot sellers ratio", c.HotSellersRatio)
	pos("hot bidders ratio", c.HotBiddersRatio)
	pos("auctions in flight", c.NumInFlightAuctions)
	pos("active people", c.NumActivePeople)
	for _, s := range []struct {
		name string
		v    int
	}{{"average person size", c.AvgPersonByteSize}, {"average auction size", c.AvgAuctionByteSize}, {"average bid size", c.AvgBidByteSize}} {
		if s.v < 0 || s.v > maxAvgSize {
			errs = append(errs, fmt.Errorf("%s must be in [0, %d], got %d", s.name, maxAvgSize, s.v))
		}
	}
	if !(c.EventsPerSecond > 0) || c.EventsPerSecond > 1e12 {
		errs = append(errs, fmt.Errorf("events per second must be in (0, 1e12], got %v", c.EventsPerSecond))
	}
	if c.MaxEvents < 0 {
		errs = append(errs, fmt.Errorf("max events must not be negative (0 for no end), got %d", c.MaxEvents))
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid nexmark generator config: %w", errors.Join(errs...))
	}
	return nil
}

// maxAvgSize bounds the average sizes: the padding is cut from a shared
// random string of twice this length.
const maxAvgSize = extraPoolSize / 2
