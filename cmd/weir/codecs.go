package main

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// A codec turns the encoding of a key or value (written by one of the
// built-in codecs of package state, see state.CodecFor) into text and JSON.
type codec struct {
	name string
	// text appends the form printed in "key<TAB>value" lines.
	text func(dst, b []byte) ([]byte, error)
	// json appends the value as JSON.
	json func(dst, b []byte) ([]byte, error)
	// compare orders keys: numbers by value, others by their encoding.
	compare func(a, b []byte) int
}

const codecNames = "auto, string, int64, uint64, float64, float32, bool, json, bytes, list:C, map:K:V"

// parseCodec parses a codec name (see codecNames).
func parseCodec(name string) (*codec, error) {
	if elem, ok := strings.CutPrefix(name, "list:"); ok {
		c, err := parseCodec(elem)
		if err != nil {
			return nil, err
		}
		return listCodec(name, c), nil
	}
	if kv, ok := strings.CutPrefix(name, "map:"); ok {
		// Map keys are comparable, so the key codec is a plain one; the
		// value codec may be a list or a map itself.
		k, v, ok := strings.Cut(kv, ":")
		if !ok {
			return nil, fmt.Errorf("codec %q: a map codec is map:KEY:VALUE, e.g. map:string:int64", name)
		}
		kc, err := parseCodec(k)
		if err != nil {
			return nil, err
		}
		vc, err := parseCodec(v)
		if err != nil {
			return nil, err
		}
		return mapCodec(name, kc, vc), nil
	}
	c := &codec{name: name, compare: bytes.Compare}
	switch name {
	case "string":
		c.text, c.json = stringText, stringJSON
	case "bytes":
		c.text = func(dst, b []byte) ([]byte, error) { return hex.AppendEncode(dst, b), nil }
		c.json = func(dst, b []byte) ([]byte, error) {
			return append(hex.AppendEncode(append(dst, '"'), b), '"'), nil
		}
	case "auto":
		c.text = func(dst, b []byte) ([]byte, error) {
			if isText(b) {
				return stringText(dst, b)
			}
			return hex.AppendEncode(dst, b), nil
		}
		c.json = func(dst, b []byte) ([]byte, error) {
			if isText(b) {
				return stringJSON(dst, b)
			}
			return append(hex.AppendEncode(append(dst, '"'), b), '"'), nil
		}
	case "int64":
		c.text = func(dst, b []byte) ([]byte, error) {
			v, err := decodeInt(b)
			return strconv.AppendInt(dst, v, 10), err
		}
		c.json = c.text
		c.compare = numeric(decodeInt)
	case "uint64":
		c.text = func(dst, b []byte) ([]byte, error) {
			v, err := decodeUint(b)
			return strconv.AppendUint(dst, v, 10), err
		}
		c.json = c.text
		c.compare = numeric(decodeUint)
	case "float64", "float32":
		decode := decodeFloat64
		if name == "float32" {
			decode = decodeFloat32
		}
		c.text = func(dst, b []byte) ([]byte, error) {
			v, err := decode(b)
			return strconv.AppendFloat(dst, v, 'g', -1, 64), err
		}
		c.json = func(dst, b []byte) ([]byte, error) {
			v, err := decode(b)
			if math.IsInf(v, 0) || math.IsNaN(v) { // not JSON numbers
				return strconv.AppendQuote(dst, strconv.FormatFloat(v, 'g', -1, 64)), err
			}
			return strconv.AppendFloat(dst, v, 'g', -1, 64), err
		}
		c.compare = numeric(decode)
	case "bool":
		c.text = func(dst, b []byte) ([]byte, error) {
			if len(b) != 1 || b[0] > 1 {
				return dst, fmt.Errorf("bad bool encoding %x (want one byte, 00 or 01)", b)
			}
			return strconv.AppendBool(dst, b[0] == 1), nil
		}
		c.json = c.text
	case "json":
		c.text = func(dst, b []byte) ([]byte, error) {
			var buf bytes.Buffer
			if err := json.Compact(&buf, b); err != nil {
				return dst, fmt.Errorf("not JSON: %w", err)
			}
			return append(dst, buf.Bytes()...), nil
		}
		c.json = c.text
	default:
		return nil, fmt.Errorf("unknown codec %q (known: %s)", name, codecNames)
	}
	return c, nil
}

// codecForIdentity names the codec that decodes what a codec of the
// recorded identity (state.CodecIdentity, "@version" when not 0) wrote:
// "" for an identity dump does not know (a job's own codec).
func codecForIdentity(id string) string {
	switch {
	case strings.HasPrefix(id, "varint:"):
		return "int64"
	case strings.HasPrefix(id, "uvarint:"):
		return "uint64"
	case strings.HasPrefix(id, "json:"):
		return "json"
	case id == "float64", id == "float32", id == "bool", id == "string", id == "bytes":
		return id
	}
	if args, ok := composedArgs(id, "list"); ok && len(args) == 1 {
		if elem := codecForIdentity(args[0]); elem != "" {
			return "list:" + elem
		}
	}
	if args, ok := composedArgs(id, "map"); ok && len(args) == 2 {
		k, v := codecForIdentity(args[0]), codecForIdentity(args[1])
		if k != "" && v != "" && !strings.Contains(k, ":") {
			return "map:" + k + ":" + v
		}
	}
	return ""
}

// composedArgs splits the composed identity "name(a,b,...)" into its
// arguments (commas inside parentheses do not split).
func composedArgs(id, name string) ([]string, bool) {
	rest, ok := strings.CutPrefix(id, name+"(")
	if !ok || !strings.HasSuffix(rest, ")") {
		return nil, false
	}
	rest = rest[:len(rest)-1]
	var args []string
	depth, start := 0, 0
	for i := 0; i < len(rest); i++ {
		switch rest[i] {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				args = append(args, rest[start:i])
				start = i + 1
			}
		}
	}
	return append(args, rest[start:]), true
}

func decodeInt(b []byte) (int64, error) {
	v, n := binary.Varint(b)
	if n <= 0 || n != len(b) {
		return 0, fmt.Errorf("%x is not a zig-zag varint", b)
	}
	return v, nil
}

func decodeUint(b []byte) (uint64, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 || n != len(b) {
		return 0, fmt.Errorf("%x is not a uvarint", b)
	}
	return v, nil
}

func decodeFloat64(b []byte) (float64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%x is not a float64 (8 bytes)", b)
	}
	return math.Float64frombits(binary.BigEndian.Uint64(b)), nil
}

func decodeFloat32(b []byte) (float64, error) {
	if len(b) != 4 {
		return 0, fmt.Errorf("%x is not a float32 (4 bytes)", b)
	}
	return float64(math.Float32frombits(binary.BigEndian.Uint32(b))), nil
}

// numeric orders by decoded value; encodings that do not decode go last,
// by their bytes (printing them reports the error).
func numeric[T cmp.Ordered](decode func([]byte) (T, error)) func(a, b []byte) int {
	return func(a, b []byte) int {
		x, errA := decode(a)
		y, errB := decode(b)
		switch {
		case errA == nil && errB == nil:
			return cmp.Compare(x, y)
		case errA == nil:
			return -1
		case errB == nil:
			return 1
		}
		return bytes.Compare(a, b)
	}
}

// isText reports whether b is UTF-8 text that auto prints as a string.
func isText(b []byte) bool {
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n <= 1 || !strconv.IsPrint(r) && r != '\t' && r != '\n' && r != '\r' {
			return false
		}
		b = b[n:]
	}
	return true
}

// stringText prints printable strings as they are and quotes the others
// (Go syntax), so that a line stays one line with one tab.
func stringText(dst, b []byte) ([]byte, error) {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 || !strconv.IsPrint(r) {
			return strconv.AppendQuote(dst, string(b)), nil
		}
		i += n
	}
	return append(dst, b...), nil
}

// stringJSON appends b as a JSON string (invalid UTF-8 becomes U+FFFD).
func stringJSON(dst, b []byte) ([]byte, error) {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		b = b[n:]
		switch {
		case r == '"' || r == '\\':
			dst = append(dst, '\\', byte(r))
		case r == '\n':
			dst = append(dst, '\\', 'n')
		case r == '\r':
			dst = append(dst, '\\', 'r')
		case r == '\t':
			dst = append(dst, '\\', 't')
		case r < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[r>>4], hexDigits[r&0xF])
		default:
			dst = utf8.AppendRune(dst, r)
		}
	}
	return append(dst, '"'), nil
}

// splitLengthPrefixed returns the first uvarint-length-prefixed item of b
// and the rest.
func splitLengthPrefixed(b []byte) (item, rest []byte, err error) {
	l, n := binary.Uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		return nil, nil, errors.New("truncated")
	}
	return b[n : n+int(l)], b[n+int(l):], nil
}

// listCodec decodes a ListState value: uvarint(count), then each element
// length-prefixed (state's keyed list encoding). Text and JSON are both a
// JSON array.
func listCodec(name string, elem *codec) *codec {
	enc := func(dst, b []byte) ([]byte, error) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)) {
			return dst, fmt.Errorf("%x is not a list (bad length)", b)
		}
		b = b[k:]
		dst = append(dst, '[')
		for i := uint64(0); i < n; i++ {
			item, rest, err := splitLengthPrefixed(b)
			if err != nil {
				return dst, fmt.Errorf("list element %d is truncated", i)
			}
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, err = elem.json(dst, item); err != nil {
				return dst, fmt.Errorf("list element %d: %w", i, err)
			}
			b = rest
		}
		if len(b) != 0 {
			return dst, fmt.Errorf("%d bytes after the last list element", len(b))
		}
		return append(dst, ']'), nil
	}
	return &codec{name: name, text: enc, json: enc, compare: bytes.Compare}
}

// mapCodec decodes a MapState value: uvarint(count), then each key and
// value length-prefixed. Text and JSON are both a JSON object whose
// member names are the keys' text, in key order.
func mapCodec(name string, kc, vc *codec) *codec {
	enc := func(dst, b []byte) ([]byte, error) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)) {
			return dst, fmt.Errorf("%x is not a map (bad length)", b)
		}
		b = b[k:]
		type entry struct{ k, v []byte }
		entries := make([]entry, 0, n)
		for i := uint64(0); i < n; i++ {
			key, rest, err := splitLengthPrefixed(b)
			if err != nil {
				return dst, fmt.Errorf("map entry %d is truncated", i)
			}
			val, rest, err := splitLengthPrefixed(rest)
			if err != nil {
				return dst, fmt.Errorf("map entry %d is truncated", i)
			}
			entries = append(entries, entry{key, val})
			b = rest
		}
		if len(b) != 0 {
			return dst, fmt.Errorf("%d bytes after the last map entry", len(b))
		}
		sort.SliceStable(entries, func(i, j int) bool { return kc.compare(entries[i].k, entries[j].k) < 0 })
		dst = append(dst, '{')
		var name []byte
		for i, e := range entries {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if name, err = kc.text(name[:0], e.k); err != nil {
				return dst, fmt.Errorf("map key: %w", err)
			}
			dst, _ = stringJSON(dst, name)
			dst = append(dst, ':')
			if dst, err = vc.json(dst, e.v); err != nil {
				return dst, fmt.Errorf("map value: %w", err)
			}
		}
		return append(dst, '}'), nil
	}
	return &codec{name: name, text: enc, json: enc, compare: bytes.Compare}
}
