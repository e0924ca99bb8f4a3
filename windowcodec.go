package weir

import (
	"encoding/binary"
	"fmt"
)

// The window operator's state keys are encoded with fixed-width
// big-endian fields, so they sort by window start in ordered stores.

// windowCodec encodes a window as start and end, 8 bytes each.
type windowCodec struct{}

func (windowCodec) Append(dst []byte, w TimeWindow) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(w.Start))
	return binary.BigEndian.AppendUint64(dst, uint64(w.End))
}

func (windowCodec) Decode(src []byte) (TimeWindow, error) {
	if len(src) != 16 {
		return TimeWindow{}, fmt.Errorf("a window is 16 bytes, got %d", len(src))
	}
	return decodeWindow(src), nil
}

func (windowCodec) CodecID() string   { return "weir.window" }
func (windowCodec) CodecVersion() int { return 0 }

func decodeWindow(src []byte) TimeWindow {
	return TimeWindow{Start: int64(binary.BigEndian.Uint64(src)), End: int64(binary.BigEndian.Uint64(src[8:]))}
}

// bufKey is the key of one record in a window's buffer.
type bufKey struct {
	W   TimeWindow
	Seq uint64
}

// bufKeyCodec encodes the window, then the record's number.
type bufKeyCodec struct{}

func (bufKeyCodec) Append(dst []byte, k bufKey) []byte {
	dst = windowCodec{}.Append(dst, k.W)
	return binary.BigEndian.AppendUint64(dst, k.Seq)
}

func (bufKeyCodec) Decode(src []byte) (bufKey, error) {
	if len(src) != 24 {
		return bufKey{}, fmt.Errorf("a window buffer key is 24 bytes, got %d", len(src))
	}
	return bufKey{W: decodeWindow(src), Seq: binary.BigEndian.Uint64(src[16:])}, nil
}

func (bufKeyCodec) CodecID() string   { return "weir.window-record" }
func (bufKeyCodec) CodecVersion() int { return 0 }

// trigKey is the key of a trigger's value in a window.
type trigKey struct {
	W    TimeWindow
	Name string
}

// trigKeyCodec encodes the window, then the name.
type trigKeyCodec struct{}

func (trigKeyCodec) Append(dst []byte, k trigKey) []byte {
	dst = windowCodec{}.Append(dst, k.W)
	return append(dst, k.Name...)
}

func (trigKeyCodec) Decode(src []byte) (trigKey, error) {
	if len(src) < 16 {
		return trigKey{}, fmt.Errorf("a trigger value key is at least 16 bytes, got %d", len(src))
	}
	return trigKey{W: decodeWindow(src), Name: string(src[16:])}, nil
}

func (trigKeyCodec) CodecID() string   { return "weir.window-trigger" }
func (trigKeyCodec) CodecVersion() int { return 0 }

// windowListCodec encodes a key's active (merging) windows: a count, then
// each window.
type windowListCodec struct{}

func (windowListCodec) Append(dst []byte, ws []TimeWindow) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(ws)))
	for _, w := range ws {
		dst = windowCodec{}.Append(dst, w)
	}
	return dst
}

func (windowListCodec) Decode(src []byte) ([]TimeWindow, error) {
	n, k := binary.Uvarint(src)
	if k <= 0 || uint64(len(src)-k) != n*16 {
		return nil, fmt.Errorf("bad window list of %d bytes", len(src))
	}
	src = src[k:]
	ws := make([]TimeWindow, n)
	for i := range ws {
		ws[i] = decodeWindow(src[i*16:])
	}
	return ws, nil
}

func (windowListCodec) CodecID() string   { return "weir.windows" }
func (windowListCodec) CodecVersion() int { return 0 }
