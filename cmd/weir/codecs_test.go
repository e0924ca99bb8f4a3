package main

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/weirstream/weir/state"
)

// Each codec reads exactly what the built-in codec of package state wrote.
func TestCodecsReadStateEncodings(t *testing.T) {
	type point struct{ X, Y int }
	list := func(xs ...int64) []byte {
		b := []byte{byte(len(xs))}
		for _, x := range xs {
			e := state.CodecFor[int64]().Append(nil, x)
			b = append(append(b, byte(len(e))), e...)
		}
		return b
	}
	for _, tc := range []struct {
		codec      string
		enc        []byte
		text, json string
	}{
		{"int64", state.CodecFor[int64]().Append(nil, -300), "-300", "-300"},
		{"int64", state.CodecFor[int8]().Append(nil, -7), "-7", "-7"},
		{"int64", state.CodecFor[int64]().Append(nil, math.MinInt64), "-9223372036854775808", "-9223372036854775808"},
		{"uint64", state.CodecFor[uint64]().Append(nil, math.MaxUint64), "18446744073709551615", "18446744073709551615"},
		{"float64", state.CodecFor[float64]().Append(nil, 2.5), "2.5", "2.5"},
		{"float64", state.CodecFor[float64]().Append(nil, math.Inf(-1)), "-Inf", `"-Inf"`},
		{"float32", state.CodecFor[float32]().Append(nil, 0.25), "0.25", "0.25"},
		{"bool", state.CodecFor[bool]().Append(nil, true), "true", "true"},
		{"string", state.CodecFor[string]().Append(nil, "héllo"), "héllo", `"héllo"`},
		{"string", []byte("a\tb\"\x01"), `"a\tb\"\x01"`, `"a\tb\"\u0001"`},
		{"json", state.CodecFor[point]().Append(nil, point{1, 2}), `{"X":1,"Y":2}`, `{"X":1,"Y":2}`},
		{"bytes", []byte{0, 0xff}, "00ff", `"00ff"`},
		{"auto", []byte("word"), "word", `"word"`},
		{"auto", []byte{6}, "06", `"06"`},
		{"auto", []byte{}, "", `""`},
		{"list:int64", list(1, -1, 300), "[1,-1,300]", "[1,-1,300]"},
		{"list:string", []byte{0}, "[]", "[]"},
		{"map:string:int64", []byte{2, 1, 'b', 1, 4, 1, 'a', 1, 2}, `{"a":1,"b":2}`, `{"a":1,"b":2}`},
		{"map:int64:list:int64", append([]byte{1, 1, 2, 7}, list(1, 2, 3)...), `{"1":[1,2,3]}`, `{"1":[1,2,3]}`},
	} {
		c, err := parseCodec(tc.codec)
		if err != nil {
			t.Fatal(err)
		}
		text, err := c.text(nil, tc.enc)
		if err != nil || string(text) != tc.text {
			t.Errorf("%s text of %x: %s, %v; want %s", tc.codec, tc.enc, text, err, tc.text)
		}
		js, err := c.json(nil, tc.enc)
		if err != nil || string(js) != tc.json || !json.Valid(js) {
			t.Errorf("%s JSON of %x: %s, %v; want %s", tc.codec, tc.enc, js, err, tc.json)
		}
	}

	// Bad encodings are errors that say what they are not.
	for _, tc := range []struct {
		codec string
		enc   []byte
		want  string
	}{
		{"int64", []byte{0x80}, "not a zig-zag varint"},
		{"int64", []byte{2, 2}, "not a zig-zag varint"},
		{"uint64", nil, "not a uvarint"},
		{"float64", []byte{1, 2, 3}, "not a float64"},
		{"bool", []byte{2}, "bad bool"},
		{"json", []byte("{"), "not JSON"},
		{"list:int64", []byte{3, 1, 2}, "list element 1 is truncated"},
		{"list:int64", []byte{1, 1, 0x80}, "list element 0: "},
		{"map:string:int64", []byte{1, 1, 'a'}, "map entry 0 is truncated"},
	} {
		c, _ := parseCodec(tc.codec)
		if _, err := c.text(nil, tc.enc); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s of %x: want error %q, got %v", tc.codec, tc.enc, tc.want, err)
		}
	}
	for _, bad := range []string{"int", "map:string", "list:nope", ""} {
		if _, err := parseCodec(bad); err == nil {
			t.Errorf("codec %q accepted", bad)
		}
	}

	// Numeric keys sort by value, not by their varint bytes.
	c, _ := parseCodec("int64")
	ic := state.CodecFor[int64]()
	if c.compare(ic.Append(nil, -1), ic.Append(nil, 1)) >= 0 || c.compare(ic.Append(nil, 64), ic.Append(nil, 2)) <= 0 {
		t.Fatal("int64 keys do not sort numerically")
	}
}

// stringJSON writes JSON that decodes back to the string (invalid UTF-8
// as U+FFFD). Inputs over 256 bytes are skipped: they reach nothing
// shorter ones do not, and the fuzz engine minimizes every input that finds
// new coverage at up to n²/2 runs for n bytes, which stalled it for up to
// its 60s -fuzzminimizetime.
func FuzzStringJSON(f *testing.F) {
	f.Add([]byte("plain"))
	f.Add([]byte("tab\t\"quote\"\\ \x00\x7f\xff\u2028"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 256 {
			return
		}
		js, _ := stringJSON(nil, b)
		var s string
		if err := json.Unmarshal(js, &s); err != nil {
			t.Fatalf("%q → %s: %v", b, js, err)
		}
		if want := strings.ToValidUTF8(string(b), "\uFFFD"); s != want {
			// ToValidUTF8 replaces a run of invalid bytes with one
			// U+FFFD, stringJSON each byte: compare without them.
			if strings.ReplaceAll(s, "\uFFFD", "") != strings.ReplaceAll(want, "\uFFFD", "") {
				t.Fatalf("%q → %s → %q", b, js, s)
			}
		}
	})
}

// A recorded codec identity picks the codec that reads it; a job's own
// codec (or one with a version) is left to auto.
func TestCodecForIdentity(t *testing.T) {
	type order struct{ ID int }
	id := func(c any) string {
		switch c := c.(type) {
		case state.Codec[int32]:
			i, _ := state.CodecIdentity(c)
			return i
		case state.Codec[order]:
			i, _ := state.CodecIdentity(c)
			return i
		}
		return ""
	}
	for in, want := range map[string]string{
		id(state.CodecFor[int32]()): "int64",
		"uvarint:uint8":             "uint64",
		"float32":                   "float32",
		"bytes":                     "bytes",
		id(state.CodecFor[order]()): "json",
		"list(string)":              "list:string",
		"list(list(varint:int64))":  "list:list:int64",
		"map(string,list(bool))":    "map:string:list:bool",
		"map(list(string),bool)":    "",
		"list(person@2)":            "",
		"person":                    "",
		"varint":                    "",
	} {
		if got := codecForIdentity(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
		if want != "" {
			if _, err := parseCodec(want); err != nil {
				t.Errorf("%q: %v", want, err)
			}
		}
	}
}
