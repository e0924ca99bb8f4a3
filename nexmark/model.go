// Package nexmark is the Nexmark benchmark's data model and event
// generator: people who open auctions and bid in them. Generator.Event
// computes the event of any event number from the configuration alone, so
// any number of parallel readers, each taking its own share of the event
// numbers, produce the same events as one. Results holds the row types of
// the benchmark's queries q0–q22; the package reference computes them over
// a slice of events, and nexmark/queries with weir.
package nexmark

import "fmt"

// EventType says which record an Event carries; the values are the
// event_type column of the reference's table.
type EventType uint8

const (
	PersonEvent  EventType = 0
	AuctionEvent EventType = 1
	BidEvent     EventType = 2
)

func (t EventType) String() string {
	switch t {
	case PersonEvent:
		return "person"
	case AuctionEvent:
		return "auction"
	case BidEvent:
		return "bid"
	}
	return fmt.Sprintf("EventType(%d)", uint8(t))
}

// Person is a new user of the auction site.
type Person struct {
	ID           int64
	Name         string
	EmailAddress string
	CreditCard   string
	City         string
	State        string
	DateTime     int64 // event time, ms since 1970 UTC
	Extra        string
}

// Auction is a new auction: an item for sale by Seller until Expires.
type Auction struct {
	ID          int64  `json:"id"`
	ItemName    string `json:"itemName"`
	Description string `json:"description"`
	InitialBid  int64  `json:"initialBid"` // cents
	Reserve     int64  `json:"reserve"`    // cents
	DateTime    int64  `json:"dateTime"`   // event time, ms since 1970 UTC
	Expires     int64  `json:"expires"`    // ms since 1970 UTC
	Seller      int64  `json:"seller"`     // a Person.ID
	Category    int64  `json:"category"`
	Extra       string `json:"extra"`
}

// Bid is a bid of Bidder in an auction.
type Bid struct {
	Auction  int64  `json:"auction"` // an Auction.ID
	Bidder   int64  `json:"bidder"`  // a Person.ID
	Price    int64  `json:"price"`   // cents
	Channel  string `json:"channel"`
	URL      string `json:"url"`
	DateTime int64  `json:"dateTime"` // event time, ms since 1970 UTC
	Extra    string `json:"extra"`
}

// Event is one of the three records, tagged by Type: Person is set for a
// PersonEvent, Auction for an AuctionEvent, and Bid holds the bid of a
// BidEvent. Bids, most of the events, are held by value so that making
// one allocates nothing. Timestamp is the event time of the record (its
// DateTime).
type Event struct {
	Type      EventType
	Timestamp int64
	Person    *Person
	Auction   *Auction
	Bid       Bid
}

// NewPersonEvent, NewAuctionEvent and NewBidEvent wrap a record in an
// Event stamped with its DateTime.
func NewPersonEvent(p *Person) Event {
	return Event{Type: PersonEvent, Timestamp: p.DateTime, Person: p}
}

// NewAuctionEvent wraps an auction; see NewPersonEvent.
func NewAuctionEvent(a *Auction) Event {
	return Event{Type: AuctionEvent, Timestamp: a.DateTime, Auction: a}
}

// NewBidEvent wraps a bid; see NewPersonEvent.
func NewBidEvent(b Bid) Event { return Event{Type: BidEvent, Timestamp: b.DateTime, Bid: b} }

// Validate reports whether exactly the record of e's type is set.
func (e Event) Validate() error {
	switch e.Type {
	case PersonEvent:
		if e.Person == nil || e.Auction != nil || e.Bid != (Bid{}) {
			return fmt.Errorf("person event must carry a person and nothing else")
		}
	case AuctionEvent:
		if e.Auction == nil || e.Person != nil || e.Bid != (Bid{}) {
			return fmt.Errorf("auction event must carry an auction and nothing else")
		}
	case BidEvent:
		if e.Person != nil || e.Auction != nil {
			return fmt.Errorf("bid event must carry a bid and nothing else")
		}
	default:
		return fmt.Errorf("unknown event type %d", uint8(e.Type))
	}
	return nil
}

func (e Event) String() string {
	switch e.Type {
	case PersonEvent:
		if e.Person != nil {
			return fmt.Sprintf("Person%+v", *e.Person)
		}
	case AuctionEvent:
		if e.Auction != nil {
			return fmt.Sprintf("Auction%+v", *e.Auction)
		}
	case BidEvent:
		return fmt.Sprintf("Bid%+v", e.Bid)
	}
	return fmt.Sprintf("Event{invalid type %d}", uint8(e.Type))
}
