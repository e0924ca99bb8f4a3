package network

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/state"
)

// frameType is the second field of every frame.
type frameType uint8

const (
	frameRecords frameType = 1 // sender -> receiver: a batch of records
	frameEvent   frameType = 2 // sender -> receiver: one in-band event
	frameOpen    frameType = 3 // sender -> receiver: the sender opened the channel
	frameCredit  frameType = 4 // receiver -> sender: more credit
	frameClose   frameType = 5 // either way: the channel is closed, with a reason
)

func (t frameType) String() string {
	switch t {
	case frameRecords:
		return "records"
	case frameEvent:
		return "event"
	case frameOpen:
		return "open"
	case frameCredit:
		return "credit"
	case frameClose:
		return "close"
	}
	return fmt.Sprintf("frame type %d", uint8(t))
}

const (
	lengthLen  = 4                    // the length field
	bodyHead   = 1 + 8                // type and channel id, counted in the length
	headerLen  = lengthLen + bodyHead // bytes before the payload
	eventLen   = 1 + 8 + 8 + 4 + 1    // payload of an event frame
	creditLen  = 4                    // payload of a credit frame
	maxReason  = 1024                 // longest close reason sent
	maxTypeLen = 1024                 // longest type name in an open frame
	recordsMin = 4                    // payload of a records frame: the count
	maxCredits = 1 << 20              // most credit one frame (or one channel) grants
)

// ErrProtocol marks input from a peer that does not follow the frame format.
var ErrProtocol = errors.New("data plane protocol violation")

// beginFrame appends the header of a frame with a zero length; finishFrame
// fills the length in once the payload is appended.
func beginFrame(dst []byte, t frameType, id ChannelID) (out []byte, start int) {
	start = len(dst)
	dst = append(dst, 0, 0, 0, 0, byte(t))
	return binary.BigEndian.AppendUint64(dst, uint64(id)), start
}

func finishFrame(frame []byte, start int) {
	binary.BigEndian.PutUint32(frame[start:], uint32(len(frame)-start-lengthLen))
}

// appendRecords appends a records frame holding recs.
func appendRecords[T any](dst []byte, id ChannelID, codec state.Codec[T], recs []T) []byte {
	dst, start := beginFrame(dst, frameRecords, id)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(recs)))
	for _, r := range recs {
		// Reserve one byte for the length, which is enough below 128
		// bytes; move the encoding right when it is longer.
		p := len(dst)
		dst = append(dst, 0)
		dst = codec.Append(dst, r)
		n := len(dst) - p - 1
		if n < 0x80 {
			dst[p] = byte(n)
			continue
		}
		var l [binary.MaxVarintLen64]byte
		k := binary.PutUvarint(l[:], uint64(n))
		dst = append(dst, l[:k-1]...)
		copy(dst[p+k:], dst[p+1:p+1+n])
		copy(dst[p:], l[:k])
	}
	finishFrame(dst, start)
	return dst
}

// decodeRecords decodes the payload of a records frame, appending to
// dst[:0]. A new slice of capacity max(count, minCap) is made when dst is
// too small.
func decodeRecords[T any](payload []byte, codec state.Codec[T], dst []T, minCap int) ([]T, error) {
	if len(payload) < recordsMin {
		return dst, fmt.Errorf("records frame of %d bytes has no record count", len(payload))
	}
	count := binary.BigEndian.Uint32(payload)
	src := payload[recordsMin:]
	// Each record takes at least its length byte: this bounds the count
	// before anything is allocated for it.
	if uint64(count) > uint64(len(src)) {
		return dst, fmt.Errorf("records frame claims %d records in %d bytes", count, len(src))
	}
	if cap(dst) < int(count) {
		dst = make([]T, 0, max(int(count), minCap))
	}
	dst = dst[:0]
	for i := range count {
		var n uint64
		if len(src) > 0 && src[0] < 0x80 {
			n, src = uint64(src[0]), src[1:] // the usual one-byte length
		} else {
			var k int
			if n, k = binary.Uvarint(src); k <= 0 {
				return dst, fmt.Errorf("record %d of %d: bad length", i, count)
			}
			src = src[k:]
		}
		if n > uint64(len(src)) {
			return dst, fmt.Errorf("record %d of %d: length %d exceeds the %d bytes left", i, count, n, len(src))
		}
		v, err := codec.Decode(src[:n])
		if err != nil {
			return dst, fmt.Errorf("record %d of %d: %w", i, count, err)
		}
		dst = append(dst, v)
		src = src[n:]
	}
	if len(src) != 0 {
		return dst, fmt.Errorf("%d bytes after the last of %d records", len(src), count)
	}
	return dst, nil
}

// appendEvent appends an event frame.
func appendEvent(dst []byte, id ChannelID, e runtime.Event) []byte {
	dst, start := beginFrame(dst, frameEvent, id)
	dst = append(dst, byte(e.Kind))
	// The 8 bytes after the kind hold the checkpoint id of a barrier or a
	// cancellation marker, the watermark of a watermark, 1 (idle) or 0
	// (active) of a status.
	switch e.Kind {
	case runtime.EventWatermark:
		dst = binary.BigEndian.AppendUint64(dst, uint64(e.Watermark))
	case runtime.EventStatus:
		var idle uint64
		if e.Idle {
			idle = 1
		}
		dst = binary.BigEndian.AppendUint64(dst, idle)
	default:
		dst = binary.BigEndian.AppendUint64(dst, uint64(e.Barrier.ID))
	}
	var sec int64
	var nsec int32
	if !e.Barrier.Timestamp.IsZero() {
		sec, nsec = e.Barrier.Timestamp.Unix(), int32(e.Barrier.Timestamp.Nanosecond())
	} else {
		nsec = -1 // the zero time, which Unix cannot round-trip
	}
	dst = binary.BigEndian.AppendUint64(dst, uint64(sec))
	dst = binary.BigEndian.AppendUint32(dst, uint32(nsec))
	dst = append(dst, byte(e.Barrier.Kind))
	finishFrame(dst, start)
	return dst
}

func decodeEvent(payload []byte) (runtime.Event, error) {
	if len(payload) != eventLen {
		return runtime.Event{}, fmt.Errorf("event frame payload of %d bytes, want %d", len(payload), eventLen)
	}
	kind := runtime.EventKind(payload[0])
	e := runtime.Event{Kind: kind}
	switch kind {
	case runtime.EventBarrier, runtime.EventCancel, runtime.EventEndOfPartition, runtime.EventEndOfData:
		e.Barrier.ID = checkpoint.ID(binary.BigEndian.Uint64(payload[1:]))
	case runtime.EventWatermark:
		e.Watermark = int64(binary.BigEndian.Uint64(payload[1:]))
		return e, nil
	case runtime.EventStatus:
		switch binary.BigEndian.Uint64(payload[1:]) {
		case 0:
		case 1:
			e.Idle = true
		default:
			return runtime.Event{}, fmt.Errorf("bad status event %d", binary.BigEndian.Uint64(payload[1:]))
		}
		return e, nil
	default:
		return runtime.Event{}, fmt.Errorf("unknown event kind %d", payload[0])
	}
	sec := int64(binary.BigEndian.Uint64(payload[9:]))
	nsec := int32(binary.BigEndian.Uint32(payload[17:]))
	switch {
	case nsec == -1 && sec == 0:
	case nsec >= 0 && nsec < 1e9:
		e.Barrier.Timestamp = time.Unix(sec, int64(nsec))
	default:
		return runtime.Event{}, fmt.Errorf("bad barrier timestamp %d.%d", sec, nsec)
	}
	e.Barrier.Kind = checkpoint.Kind(payload[21])
	return e, nil
}

func appendCredit(dst []byte, id ChannelID, n uint32) []byte {
	dst, start := beginFrame(dst, frameCredit, id)
	dst = binary.BigEndian.AppendUint32(dst, n)
	finishFrame(dst, start)
	return dst
}

func decodeCredit(payload []byte) (uint32, error) {
	if len(payload) != creditLen {
		return 0, fmt.Errorf("credit frame payload of %d bytes, want %d", len(payload), creditLen)
	}
	n := binary.BigEndian.Uint32(payload)
	if n == 0 || n > maxCredits {
		return 0, fmt.Errorf("credit of %d", n)
	}
	return n, nil
}

// appendText appends a frame whose payload is text (open: the record type;
// close: the reason), cut at limit bytes.
func appendText(dst []byte, t frameType, id ChannelID, text string, limit int) []byte {
	if len(text) > limit {
		text = text[:limit]
	}
	dst, start := beginFrame(dst, t, id)
	dst = append(dst, text...)
	finishFrame(dst, start)
	return dst
}

// frameReader reads frames from a connection into one reused buffer.
type frameReader struct {
	r   *bufio.Reader
	hdr [headerLen]byte
	buf []byte
	max int // largest payload accepted
}

func newFrameReader(r io.Reader, maxPayload int) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 64<<10), max: maxPayload}
}

// next reads one frame. The payload is valid until the next call. A clean
// end of the stream between two frames is io.EOF; errors wrapping
// ErrProtocol mean the bytes are not frames.
func (fr *frameReader) next() (t frameType, id ChannelID, payload []byte, err error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:lengthLen]); err != nil {
		return 0, 0, nil, err
	}
	n := binary.BigEndian.Uint32(fr.hdr[:lengthLen])
	if n < bodyHead {
		return 0, 0, nil, fmt.Errorf("%w: frame length %d is shorter than its header", ErrProtocol, n)
	}
	if size := uint64(n) - bodyHead; size > uint64(fr.max) {
		return 0, 0, nil, fmt.Errorf("%w: frame of %d bytes exceeds the limit of %d", ErrProtocol, size, fr.max)
	}
	if _, err := io.ReadFull(fr.r, fr.hdr[lengthLen:]); err != nil {
		return 0, 0, nil, truncated(err)
	}
	t = frameType(fr.hdr[lengthLen])
	id = ChannelID(binary.BigEndian.Uint64(fr.hdr[lengthLen+1:]))
	size := int(n - bodyHead)
	if cap(fr.buf) < size {
		fr.buf = make([]byte, size)
	}
	payload = fr.buf[:size]
	if _, err := io.ReadFull(fr.r, payload); err != nil {
		return 0, 0, nil, truncated(err)
	}
	return t, id, payload, nil
}

// truncated turns the end of the stream inside a frame into an error that
// says so.
func truncated(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
