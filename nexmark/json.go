package nexmark

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"
)

// The JSON encoding is the reference's (Flink's json format over the
// nexmark table): one object per event with the fields event_type (0
// person, 1 auction, 2 bid), person, auction and bid, the two absent ones
// null; records use the reference's field names (emailAddress, itemName,
// initialBid, dateTime, ...); timestamps are SQL timestamps in UTC,
// "2015-07-15 00:00:00.000". Decoding also takes timestamps as numbers
// of milliseconds since 1970 or RFC 3339 strings.

// SQLTimestampLayout is how timestamps are written.
const SQLTimestampLayout = "2006-01-02 15:04:05.000"

// AppendJSON appends e as one JSON object (no newline).
func AppendJSON(dst []byte, e Event) []byte {
	dst = append(dst, `{"event_type":`...)
	dst = strconv.AppendInt(dst, int64(e.Type), 10)
	dst = append(dst, `,"person":`...)
	if e.Type == PersonEvent && e.Person != nil {
		p := e.Person
		dst = append(dst, `{"id":`...)
		dst = strconv.AppendInt(dst, p.ID, 10)
		dst = appendField(dst, "name", p.Name)
		dst = appendField(dst, "emailAddress", p.EmailAddress)
		dst = appendField(dst, "creditCard", p.CreditCard)
		dst = appendField(dst, "city", p.City)
		dst = appendField(dst, "state", p.State)
		dst = appendTime(dst, "dateTime", p.DateTime)
		dst = appendField(dst, "extra", p.Extra)
		dst = append(dst, '}')
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, `,"auction":`...)
	if e.Type == AuctionEvent && e.Auction != nil {
		a := e.Auction
		dst = append(dst, `{"id":`...)
		dst = strconv.AppendInt(dst, a.ID, 10)
		dst = appendField(dst, "itemName", a.ItemName)
		dst = appendField(dst, "description", a.Description)
		dst = appendInt(dst, "initialBid", a.InitialBid)
		dst = appendInt(dst, "reserve", a.Reserve)
		dst = appendTime(dst, "dateTime", a.DateTime)
		dst = appendTime(dst, "expires", a.Expires)
		dst = appendInt(dst, "seller", a.Seller)
		dst = appendInt(dst, "category", a.Category)
		dst = appendField(dst, "extra", a.Extra)
		dst = append(dst, '}')
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, `,"bid":`...)
	if e.Type == BidEvent {
		b := &e.Bid
		dst = append(dst, `{"auction":`...)
		dst = strconv.AppendInt(dst, b.Auction, 10)
		dst = appendInt(dst, "bidder", b.Bidder)
		dst = appendInt(dst, "price", b.Price)
		dst = appendField(dst, "channel", b.Channel)
		dst = appendField(dst, "url", b.URL)
		dst = appendTime(dst, "dateTime", b.DateTime)
		dst = appendField(dst, "extra", b.Extra)
		dst = append(dst, '}')
	} else {
		dst = append(dst, "null"...)
	}
	return append(dst, '}')
}

func appendInt(dst []byte, name string, v int64) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return strconv.AppendInt(dst, v, 10)
}

func appendTime(dst []byte, name string, ms int64) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':', '"')
	dst = time.UnixMilli(ms).UTC().AppendFormat(dst, SQLTimestampLayout)
	return append(dst, '"')
}

func appendField(dst []byte, name, v string) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return appendString(dst, v)
}

// appendString appends s as a JSON string.
func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// jsonTime reads a timestamp: a number of ms, an SQL timestamp or RFC 3339.
type jsonTime int64

func (t *jsonTime) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] != '"' {
		ms, err := strconv.ParseInt(string(b), 10, 64)
		if err != nil {
			return fmt.Errorf("timestamp %s is neither a string nor an integer of milliseconds", b)
		}
		*t = jsonTime(ms)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	for _, layout := range []string{SQLTimestampLayout, "2006-01-02 15:04:05.999999999", "2006-01-02 15:04:05", time.RFC3339Nano} {
		if ts, err := time.Parse(layout, s); err == nil {
			*t = jsonTime(ts.UnixMilli())
			return nil
		}
	}
	return fmt.Errorf("cannot parse timestamp %q (want %q or RFC 3339)", s, SQLTimestampLayout)
}

type jsonPerson struct {
	ID           int64    `json:"id"`
	Name         string   `json:"name"`
	EmailAddress string   `json:"emailAddress"`
	CreditCard   string   `json:"creditCard"`
	City         string   `json:"city"`
	State        string   `json:"state"`
	DateTime     jsonTime `json:"dateTime"`
	Extra        string   `json:"extra"`
}

type jsonAuction struct {
	ID          int64    `json:"id"`
	ItemName    string   `json:"itemName"`
	Description string   `json:"description"`
	InitialBid  int64    `json:"initialBid"`
	Reserve     int64    `json:"reserve"`
	DateTime    jsonTime `json:"dateTime"`
	Expires     jsonTime `json:"expires"`
	Seller      int64    `json:"seller"`
	Category    int64    `json:"category"`
	Extra       string   `json:"extra"`
}

type jsonBid struct {
	Auction  int64    `json:"auction"`
	Bidder   int64    `json:"bidder"`
	Price    int64    `json:"price"`
	Channel  string   `json:"channel"`
	URL      string   `json:"url"`
	DateTime jsonTime `json:"dateTime"`
	Extra    string   `json:"extra"`
}

type jsonEvent struct {
	EventType *int         `json:"event_type"`
	Person    *jsonPerson  `json:"person"`
	Auction   *jsonAuction `json:"auction"`
	Bid       *jsonBid     `json:"bid"`
}

// UnmarshalEvent decodes one JSON object written by AppendJSON (or by the
// reference). The event_type must name the one record present.
func UnmarshalEvent(data []byte) (Event, error) {
	var j jsonEvent
	if err := json.Unmarshal(data, &j); err != nil {
		return Event{}, fmt.Errorf("cannot decode nexmark event: %w", err)
	}
	if j.EventType == nil {
		return Event{}, fmt.Errorf("cannot decode nexmark event: no event_type")
	}
	var e Event
	switch t := *j.EventType; {
	case t == int(PersonEvent) && j.Person != nil && j.Auction == nil && j.Bid == nil:
		p := j.Person
		e = NewPersonEvent(&Person{ID: p.ID, Name: p.Name, EmailAddress: p.EmailAddress, CreditCard: p.CreditCard,
			City: p.City, State: p.State, DateTime: int64(p.DateTime), Extra: p.Extra})
	case t == int(AuctionEvent) && j.Auction != nil && j.Person == nil && j.Bid == nil:
		a := j.Auction
		e = NewAuctionEvent(&Auction{ID: a.ID, ItemName: a.ItemName, Description: a.Description, InitialBid: a.InitialBid,
			Reserve: a.Reserve, DateTime: int64(a.DateTime), Expires: int64(a.Expires), Seller: a.Seller, Category: a.Category, Extra: a.Extra})
	case t == int(BidEvent) && j.Bid != nil && j.Person == nil && j.Auction == nil:
		b := j.Bid
		e = NewBidEvent(Bid{Auction: b.Auction, Bidder: b.Bidder, Price: b.Price, Channel: b.Channel, URL: b.URL,
			DateTime: int64(b.DateTime), Extra: b.Extra})
	default:
		return Event{}, fmt.Errorf("cannot decode nexmark event: event_type %d with person %t, auction %t, bid %t: want exactly the record of the type",
			t, j.Person != nil, j.Auction != nil, j.Bid != nil)
	}
	return e, nil
}

// WriteJSONLines writes events as JSON lines.
func WriteJSONLines(w io.Writer, events []Event) error {
	bw := bufio.NewWriter(w)
	var buf []byte
	for _, e := range events {
		buf = append(AppendJSON(buf[:0], e), '\n')
		if _, err := bw.Write(buf); err != nil {
			return fmt.Errorf("cannot write nexmark events: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("cannot write nexmark events: %w", err)
	}
	return nil
}

// ReadJSONLines reads JSON lines of events; blank lines are skipped. An
// error names the line.
func ReadJSONLines(r io.Reader) ([]Event, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	var out []Event
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		e, err := UnmarshalEvent(b)
		if err != nil {
			return out, fmt.Errorf("line %d: %w", line, err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("cannot read nexmark events: %w", err)
	}
	return out, nil
}
