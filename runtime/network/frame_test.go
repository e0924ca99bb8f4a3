package network

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/state"
)

// Watermarks (any int64, the sentinels included) and statuses cross the
// wire unchanged.
func TestWatermarkEventRoundTrip(t *testing.T) {
	for _, e := range []runtime.Event{
		{Kind: runtime.EventWatermark, Watermark: 1_764_000_000_000},
		{Kind: runtime.EventWatermark, Watermark: math.MinInt64},
		{Kind: runtime.EventWatermark, Watermark: math.MaxInt64},
		{Kind: runtime.EventWatermark, Watermark: -5},
		{Kind: runtime.EventStatus, Idle: true},
		{Kind: runtime.EventStatus},
		{Kind: runtime.EventEndOfData},
	} {
		_, _, payload, err := newFrameReader(bytes.NewReader(appendEvent(nil, 5, e)), 1<<10).next()
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeEvent(payload)
		if err != nil || got != e {
			t.Fatalf("round trip of %+v gave %+v, %v", e, got, err)
		}
	}
}

func TestEventRoundTrip(t *testing.T) {
	for _, e := range []runtime.Event{
		barrier(3),
		{Kind: runtime.EventBarrier}, // zero timestamp
		{Kind: runtime.EventCancel, Barrier: barrier(-1).Barrier},
		endOfPartition,
		{Kind: runtime.EventBarrier, Barrier: barrier(7).Barrier},
	} {
		e.Barrier.Timestamp = e.Barrier.Timestamp.Add(-time.Duration(e.Barrier.ID) * time.Hour * 1e5)
		frame := appendEvent(nil, 5, e)
		typ, id, payload, err := newFrameReader(bytes.NewReader(frame), 1<<10).next()
		if err != nil || typ != frameEvent || id != 5 {
			t.Fatalf("%+v: %s %d %v", e, typ, id, err)
		}
		got, err := decodeEvent(payload)
		if err != nil {
			t.Fatal(err)
		}
		if got.Kind != e.Kind || got.Barrier.ID != e.Barrier.ID || got.Barrier.Kind != e.Barrier.Kind ||
			!got.Barrier.Timestamp.Equal(e.Barrier.Timestamp) || got.Barrier.Timestamp.IsZero() != e.Barrier.Timestamp.IsZero() {
			t.Fatalf("round trip of %+v gave %+v", e, got)
		}
	}
}

var bytesCodec = state.CodecFor[[]byte]()

// FuzzFrameDecoder feeds arbitrary bytes to the frame reader and the
// payload decoders: errors, never panics, and whatever decodes re-encodes
// to the same values. Inputs over 512 bytes are skipped: they reach nothing
// shorter ones do not, and the fuzz engine minimizes every input that finds
// new coverage at up to n²/2 runs for n bytes, which stalls it.
func FuzzFrameDecoder(f *testing.F) {
	var seed []byte
	seed = appendRecords(seed, 1, int64Codec, []int64{0, -1, 1 << 40})
	seed = appendEvent(seed, 2, barrier(9))
	seed = appendCredit(seed, 3, 4)
	seed = appendText(seed, frameOpen, 4, "int64", maxTypeLen)
	seed = appendText(seed, frameClose, 4, "bye", maxReason)
	seed = appendRecords(seed, 5, bytesCodec, [][]byte{nil, []byte("x"), bytes.Repeat([]byte("y"), 130)})
	f.Add(seed)
	f.Add([]byte{0, 0, 0, 9, 1, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte("WEIR\x00\x01garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 512 {
			return
		}
		fr := newFrameReader(bytes.NewReader(data), 1<<16)
		var ints []int64
		var bs [][]byte
		for {
			typ, id, payload, err := fr.next()
			if err != nil {
				return
			}
			if len(payload) > 1<<16 {
				t.Fatalf("payload of %d bytes over the limit", len(payload))
			}
			switch typ {
			case frameRecords:
				if ints, err = decodeRecords(payload, int64Codec, ints, 4); err == nil {
					again, err := decodeRecords(appendRecords(nil, id, int64Codec, ints)[headerLen:], int64Codec, nil, 4)
					if err != nil || len(again) != len(ints) {
						t.Fatalf("re-encoded %v: %v %v", ints, again, err)
					}
					for i := range ints {
						if again[i] != ints[i] {
							t.Fatalf("re-encoded %v gave %v", ints, again)
						}
					}
				}
				if bs, err = decodeRecords(payload, bytesCodec, bs, 4); err == nil {
					again, err := decodeRecords(appendRecords(nil, id, bytesCodec, bs)[headerLen:], bytesCodec, nil, 4)
					if err != nil || len(again) != len(bs) {
						t.Fatalf("re-encoded %q: %q %v", bs, again, err)
					}
					for i := range bs {
						if !bytes.Equal(again[i], bs[i]) {
							t.Fatalf("re-encoded %q gave %q", bs, again)
						}
					}
				}
			case frameEvent:
				if e, err := decodeEvent(payload); err == nil {
					again, err := decodeEvent(appendEvent(nil, id, e)[headerLen:])
					if err != nil || again.Kind != e.Kind || again.Barrier.ID != e.Barrier.ID || !again.Barrier.Timestamp.Equal(e.Barrier.Timestamp) {
						t.Fatalf("re-encoded %+v: %+v %v", e, again, err)
					}
				}
			case frameCredit:
				decodeCredit(payload)
			}
		}
	})
}
