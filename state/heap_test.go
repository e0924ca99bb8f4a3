package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/weirstream/weir/checkpoint"
)

type userID int64
type label string

func TestCodecsRoundTripAndBadInput(t *testing.T) {
	roundTrip(t, CodecFor[int](), math.MinInt)
	roundTrip(t, CodecFor[int8](), -128)
	roundTrip(t, CodecFor[int16](), math.MaxInt16)
	roundTrip(t, CodecFor[int32](), math.MinInt32)
	roundTrip(t, CodecFor[int64](), math.MaxInt64)
	roundTrip(t, CodecFor[uint](), math.MaxUint)
	roundTrip(t, CodecFor[uint16](), 65535)
	roundTrip(t, CodecFor[uint32](), math.MaxUint32)
	roundTrip(t, CodecFor[uint64](), math.MaxUint64)
	roundTrip(t, CodecFor[float32](), -1.5)
	roundTrip(t, CodecFor[float64](), math.Inf(-1))
	roundTrip(t, CodecFor[bool](), false)
	roundTrip(t, CodecFor[string](), "")
	roundTrip(t, CodecFor[userID](), -42)
	roundTrip(t, CodecFor[label](), "x y")
	if got, err := CodecFor[[]byte]().Decode(CodecFor[[]byte]().Append(nil, []byte{0, 1, 2})); err != nil || !bytes.Equal(got, []byte{0, 1, 2}) {
		t.Fatalf("[]byte round trip: %v %v", got, err)
	}
	// Named integer types use the integer encoding, not JSON.
	if got := CodecFor[userID]().Append(nil, 1); !bytes.Equal(got, CodecFor[int64]().Append(nil, 1)) {
		t.Fatalf("userID encodes as %q", got)
	}
	// Decode keeps nothing of its input.
	src := CodecFor[[]byte]().Append(nil, []byte("abc"))
	got, _ := CodecFor[[]byte]().Decode(src)
	src[0] = 'X'
	if string(got) != "abc" {
		t.Fatal("[]byte Decode aliases its input")
	}

	bad := []struct {
		name string
		err  error
	}{
		{"int8 overflow 256", decodeErr(CodecFor[int8](), CodecFor[int64]().Append(nil, 256))},
		{"int8 overflow 1000", decodeErr(CodecFor[int8](), CodecFor[int64]().Append(nil, 1000))},
		{"int32 overflow", decodeErr(CodecFor[int32](), CodecFor[int64]().Append(nil, 1<<40))},
		{"uint8 overflow", decodeErr(CodecFor[uint8](), CodecFor[uint64]().Append(nil, 256))},
		{"int64 trailing", decodeErr(CodecFor[int64](), []byte{2, 0})},
		{"int64 empty", decodeErr(CodecFor[int64](), nil)},
		{"uint64 unterminated", decodeErr(CodecFor[uint64](), []byte{0x80, 0x80})},
		{"uint64 too long", decodeErr(CodecFor[uint64](), bytes.Repeat([]byte{0xff}, 11))},
		{"float64 short", decodeErr(CodecFor[float64](), []byte{1, 2, 3})},
		{"float32 long", decodeErr(CodecFor[float32](), []byte{1, 2, 3, 4, 5})},
		{"bool 2", decodeErr(CodecFor[bool](), []byte{2})},
		{"bool empty", decodeErr(CodecFor[bool](), nil)},
		{"userID trailing", decodeErr(CodecFor[userID](), []byte{2, 0})},
		{"json", decodeErr(CodecFor[struct{ A int }](), []byte(`{"A":"x"}`))},
	}
	for _, b := range bad {
		if b.err == nil {
			t.Errorf("%s: accepted", b.name)
		}
	}
	// Random input never panics.
	rng := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 12)
	for range 20000 {
		n := rng.IntN(len(buf) + 1)
		for i := range n {
			buf[i] = byte(rng.Uint32())
		}
		in := buf[:n]
		_ = decodeErr(CodecFor[int8](), in)
		_ = decodeErr(CodecFor[int64](), in)
		_ = decodeErr(CodecFor[uint32](), in)
		_ = decodeErr(CodecFor[float64](), in)
		_ = decodeErr(CodecFor[bool](), in)
		_ = decodeErr(CodecFor[userID](), in)
		_ = decodeErr(CodecFor[map[string]int](), in)
	}
}

func decodeErr[T any](c Codec[T], b []byte) error {
	_, err := c.Decode(b)
	return err
}

func TestHashGolden(t *testing.T) {
	u64 := HasherFor(CodecFor[uint64]())
	str := HasherFor(CodecFor[string]())
	got := fmt.Sprintf("%d %d %d %d %d", u64(0), u64(math.MaxUint64), str("a"), str("weir"), str("key-12345"))
	const want = "1669671676 1651860712 1009084850 3215528055 939117788"
	if got != want {
		t.Fatalf("key hashes changed:\n got %s\nwant %s", got, want)
	}
	// Named types hash like their underlying type, narrow integers like
	// the same value widened.
	i64 := HasherFor(CodecFor[int64]())
	if HasherFor(CodecFor[userID]())(-9) != i64(-9) || HasherFor(CodecFor[label]())("x") != str("x") ||
		HasherFor(CodecFor[int8]())(-1) != i64(-1) || HasherFor(CodecFor[uint8]())(255) != i64(255) ||
		HasherFor(CodecFor[uint]())(7) != i64(7) {
		t.Fatal("named or narrow key types hash differently")
	}
	// Other keys: murmur of the codec's encoding.
	f := HasherFor(CodecFor[float64]())
	if f(1.5) != Murmur3Bytes(CodecFor[float64]().Append(nil, 1.5)) {
		t.Fatal("float key hash is not murmur of its encoding")
	}
	// Published murmur3 x86_32 vectors (seed 0), all tail lengths.
	for s, want := range map[string]uint32{"": 0, "a": 0x3c2569b2, "ab": 0x9bbfd75f, "abc": 0xb3dd93fa, "abcd": 0x43ed676a, "Hello, world!": 0xc0363e43} {
		if got := Murmur3Bytes([]byte(s)); got != want {
			t.Errorf("murmur3(%q) = %#x, want %#x", s, got, want)
		}
		if got := Murmur3String(s); got != want {
			t.Errorf("murmur3 string(%q) = %#x, want %#x", s, got, want)
		}
	}
	var le [8]byte
	binary.LittleEndian.PutUint64(le[:], 0x0123456789abcdef)
	if Murmur3Uint64(0x0123456789abcdef) != Murmur3Bytes(le[:]) {
		t.Fatal("Murmur3Uint64 is not murmur3 of the 8 little-endian bytes")
	}
}

func TestHasherDoesNotAllocate(t *testing.T) {
	i64 := HasherFor(CodecFor[int64]())
	str := HasherFor(CodecFor[string]())
	uid := HasherFor(CodecFor[userID]())
	s := strings.Repeat("k", 40)
	if n := testing.AllocsPerRun(100, func() { _, _, _ = i64(12345), str(s), uid(7) }); n != 0 {
		t.Fatalf("%v allocations per hash", n)
	}
	b := newBackend(checkpoint.KeyGroupRange{Start: 0, End: 127})
	st, _ := GetValueState[int64, int64](b, "v", CodecFor[int64]())
	fill(b, st, 1000)
	k := int64(0)
	if n := testing.AllocsPerRun(1000, func() {
		b.SetCurrentKey(k % 1000)
		v, _ := st.Value()
		st.Update(v + 1)
		k++
	}); n != 0 {
		t.Fatalf("%v allocations per keyed update", n)
	}
}

// The power-of-two fast path and the general path agree with KeyGroupOf.
func TestKeyGroupOfBackend(t *testing.T) {
	for _, maxP := range []int{1, 7, 100, 128, 1000, 4096} {
		c := CodecFor[int64]()
		h := HasherFor(c)
		r := checkpoint.KeyGroupRange{Start: 0, End: maxP - 1}
		b := NewHeapKeyedBackend(c, h, maxP, r)
		for k := int64(0); k < 2000; k++ {
			b.SetCurrentKey(k)
			if b.curKG != KeyGroupOf(h(k), maxP) || b.CurrentKey() != k {
				t.Fatalf("maxP %d key %d: key group %d, want %d", maxP, k, b.curKG, KeyGroupOf(h(k), maxP))
			}
		}
	}
	b := newBackend(RangeForSubtask(128, 2, 0))
	defer func() {
		if recover() == nil {
			t.Fatal("a key of another subtask was accepted")
		}
	}()
	for k := int64(0); ; k++ {
		b.SetCurrentKey(k)
	}
}

// The kgTable against a map under random puts, removes and clones.
func TestTableAgainstMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	tab := newKGTable[int64, int64](1)
	ref := map[int64]int64{}
	// A weak hash with many collisions exercises probing and
	// backward-shift deletion across the wrap-around.
	h := func(k int64) uint32 { return uint32(k%37) * 0x01000000 }
	for i := range 200000 {
		k := int64(rng.IntN(3000))
		switch rng.IntN(3) {
		case 0, 1:
			tab.put(k, h(k), int64(i))
			ref[k] = int64(i)
		case 2:
			tab.remove(k, h(k))
			delete(ref, k)
		}
		if i%20000 == 0 {
			tab = tab.clone(2)
		}
	}
	if tab.n != len(ref) {
		t.Fatalf("table has %d entries, want %d", tab.n, len(ref))
	}
	for k, v := range ref {
		if i, ok := tab.find(k, h(k)); !ok || tab.slots[i].val != v {
			t.Fatalf("key %d: %v %v, want %d", k, ok, tab.slots[i].val, v)
		}
	}
	for k := int64(3000); k < 3100; k++ {
		if _, ok := tab.find(k, h(k)); ok {
			t.Fatalf("absent key %d found", k)
		}
	}
}

// Many states, many snapshots in flight, all written on other goroutines
// while the task keeps writing: each snapshot equals the state at the
// moment it was taken. Run with -race.
func TestSnapshotsInFlightUnderWrites(t *testing.T) {
	r := checkpoint.KeyGroupRange{Start: 10, End: 73}
	b := newBackend(r)
	a, _ := GetValueState[int64, int64](b, "a", CodecFor[int64]())
	s, _ := GetValueState[int64, string](b, "s", CodecFor[string]())
	model := map[string]map[int64]string{"a": {}, "s": {}}
	rng := rand.New(rand.NewPCG(7, 8))
	keys := ownedKeys(b, 4000)
	type result struct {
		want map[string]map[int64]string
		data []byte
		h    checkpoint.KeyedStateHandle
	}
	var mu sync.Mutex
	var results []result
	var wg sync.WaitGroup
	for i := range 60000 {
		k := keys[rng.IntN(len(keys))]
		b.SetCurrentKey(k)
		switch rng.IntN(5) {
		case 0:
			a.Clear()
			delete(model["a"], k)
		case 1:
			s.Clear()
			delete(model["s"], k)
		case 2:
			v := fmt.Sprint("s", i)
			s.Update(v)
			model["s"][k] = v
		default:
			v, _ := a.Value()
			a.Update(v + int64(i))
			model["a"][k] = fmt.Sprint(v + int64(i))
		}
		if i%7000 == 6999 {
			snap := b.Snapshot()
			want := map[string]map[int64]string{"a": {}, "s": {}}
			for n, m := range model {
				for k, v := range m {
					want[n][k] = v
				}
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				var buf bytes.Buffer
				offs, err := snap.WriteKeyGroups(&buf)
				snap.Release()
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				results = append(results, result{want, buf.Bytes(), checkpoint.KeyedStateHandle{Range: r, Offsets: offs, Stream: checkpoint.StreamHandle{Size: int64(buf.Len())}}})
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	if len(results) != 8 {
		t.Fatalf("%d snapshots written", len(results))
	}
	for _, res := range results {
		nb := newBackend(r)
		if err := nb.Restore(bytes.NewReader(res.data), res.h); err != nil {
			t.Fatal(err)
		}
		na, _ := GetValueState[int64, int64](nb, "a", CodecFor[int64]())
		ns, _ := GetValueState[int64, string](nb, "s", CodecFor[string]())
		got := map[string]map[int64]string{"a": {}, "s": {}}
		for _, k := range keys {
			nb.SetCurrentKey(k)
			if v, ok := na.Value(); ok {
				got["a"][k] = fmt.Sprint(v)
			}
			if v, ok := ns.Value(); ok {
				got["s"][k] = v
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(res.want) {
			t.Fatalf("a snapshot differs from the state at snapshot time (%d/%d keys vs %d/%d)",
				len(got["a"]), len(got["s"]), len(res.want["a"]), len(res.want["s"]))
		}
	}
	// With every snapshot released, writes adopt tables in place again.
	b.SetCurrentKey(keys[0])
	g := a.(*valueTable[int64, int64]).groups[b.curKG]
	a.Update(1)
	if a.(*valueTable[int64, int64]).groups[b.curKG] != g {
		t.Fatal("a write cloned a table although no snapshot is live")
	}
}

func ownedKeys(b *HeapKeyedBackend[int64], n int) []int64 {
	var keys []int64
	for k := int64(0); len(keys) < n; k++ {
		if b.r.Contains(KeyGroupOf(b.hash(k), b.maxP)) {
			keys = append(keys, k)
		}
	}
	return keys
}

// onlyReader hides Seek: Restore must read and skip.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// countingReader counts the bytes read.
type countingReader struct {
	r *bytes.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}
func (c *countingReader) Seek(off int64, whence int) (int64, error) { return c.r.Seek(off, whence) }

// Restoring a part of a handle's range reads only that part (seekable) or
// skips the rest (not seekable), and both give the same state.
func TestRestorePartialRange(t *testing.T) {
	full := checkpoint.KeyGroupRange{Start: 0, End: 127}
	b := newBackend(full)
	st, _ := GetValueState[int64, int64](b, "v", CodecFor[int64]())
	want := fill(b, st, 20000)
	data, h := snapshotBytes(t, b.Snapshot(), full)
	for _, sizeKnown := range []bool{true, false} {
		hh := h
		if !sizeKnown {
			hh.Stream.Size = 0
		}
		for s := range 5 {
			r := RangeForSubtask(128, 5, s)
			seek := &countingReader{r: bytes.NewReader(data)}
			nb1, nb2 := newBackend(r), newBackend(r)
			if err := nb1.Restore(seek, hh); err != nil {
				t.Fatal(err)
			}
			if err := nb2.Restore(onlyReader{bytes.NewReader(data)}, hh); err != nil {
				t.Fatal(err)
			}
			if sizeKnown && seek.n > len(data)/4 {
				t.Fatalf("subtask %d read %d of %d bytes for a fifth of the key groups", s, seek.n, len(data))
			}
			for _, nb := range []*HeapKeyedBackend[int64]{nb1, nb2} {
				nst, _ := GetValueState[int64, int64](nb, "v", CodecFor[int64]())
				got := readAll(t, nb, nst, 20000)
				for k, v := range want {
					if r.Contains(KeyGroupOf(b.hash(k), 128)) && got[k] != v {
						t.Fatalf("subtask %d: key %d = %d, want %d", s, k, got[k], v)
					}
				}
				if nb.NumKeys("v") != len(got) {
					t.Fatalf("NumKeys %d, read %d", nb.NumKeys("v"), len(got))
				}
			}
		}
	}
}

// Every flipped byte and every truncation fails with an error that names
// the key group; nothing panics.
func TestCorruptionNeverPanics(t *testing.T) {
	full := checkpoint.KeyGroupRange{Start: 0, End: 15}
	c := CodecFor[int64]()
	b := NewHeapKeyedBackend(c, HasherFor(c), 16, full)
	st, _ := GetValueState[int64, string](b, "v", CodecFor[string]())
	for k := int64(0); k < 50; k++ {
		b.SetCurrentKey(k)
		st.Update(strings.Repeat("x", int(k*7%160))) // some values need 2-byte lengths
	}
	data, h := snapshotBytes(t, b.Snapshot(), full)
	restore := func(d []byte, h checkpoint.KeyedStateHandle, register bool) error {
		nb := NewHeapKeyedBackend(c, HasherFor(c), 16, full)
		if register {
			GetValueState[int64, string](nb, "v", CodecFor[string]())
		}
		err := nb.Restore(bytes.NewReader(d), h)
		if err == nil && !register {
			_, err = GetValueState[int64, string](nb, "v", CodecFor[string]())
		}
		return err
	}
	if err := restore(data, h, true); err != nil {
		t.Fatal(err)
	}
	for i := range data {
		for _, register := range []bool{true, false} {
			d := bytes.Clone(data)
			d[i] ^= 1 << (i % 8)
			err := restore(d, h, register)
			if err == nil || !strings.Contains(err.Error(), "key group") {
				t.Fatalf("flipped byte %d: %v", i, err)
			}
		}
	}
	for n := range len(data) {
		if err := restore(data[:n], h, true); err == nil || !strings.Contains(err.Error(), "key group") {
			t.Fatalf("truncated to %d bytes: %v", n, err)
		}
		hh := h
		hh.Stream.Size = 0
		if err := restore(data[:n], hh, true); err == nil {
			t.Fatalf("truncated to %d bytes, size unknown: restored", n)
		}
	}
	// Bad handles.
	bad := h
	bad.Offsets = h.Offsets[1:]
	if err := restore(data, bad, true); err == nil {
		t.Fatal("too few offsets accepted")
	}
	bad.Offsets = append([]int64(nil), h.Offsets...)
	bad.Offsets[3], bad.Offsets[4] = bad.Offsets[4], bad.Offsets[3]+1
	if err := restore(data, bad, true); err == nil {
		t.Fatal("offsets out of order accepted")
	}
	bad.Offsets = append([]int64(nil), h.Offsets...)
	bad.Offsets[5] = 1 << 50
	if err := restore(data, bad, true); err == nil {
		t.Fatal("offset beyond the stream accepted")
	}
}

// resection rewrites key group kg's section with a valid checksum.
func resection(data []byte, h checkpoint.KeyedStateHandle, kg int, edit func([]byte) []byte) ([]byte, checkpoint.KeyedStateHandle) {
	i := kg - h.Range.Start
	end := int64(len(data))
	if i+1 < len(h.Offsets) {
		end = h.Offsets[i+1]
	}
	body := edit(bytes.Clone(data[h.Offsets[i] : end-4]))
	sec := binary.BigEndian.AppendUint32(body, crc32.Checksum(body, castagnoli))
	out := append(append(bytes.Clone(data[:h.Offsets[i]]), sec...), data[end:]...)
	nh := h
	nh.Offsets = append([]int64(nil), h.Offsets...)
	for j := i + 1; j < len(nh.Offsets); j++ {
		nh.Offsets[j] += int64(len(sec)) - (end - h.Offsets[i])
	}
	nh.Stream.Size = int64(len(out))
	return out, nh
}

// Well-formed sections with the wrong content: errors name the state.
func TestRestoreSemanticErrors(t *testing.T) {
	full := checkpoint.KeyGroupRange{Start: 0, End: 127}
	b := newBackend(full)
	st, _ := GetValueState[int64, string](b, "names", CodecFor[string]())
	b.SetCurrentKey(1)
	st.Update("hello")
	kg := KeyGroupOf(b.hash(1), 128)
	data, h := snapshotBytes(t, b.Snapshot(), full)

	// Values that are no int64.
	nb := newBackend(full)
	GetValueState[int64, int64](nb, "names", CodecFor[int64]())
	if err := nb.Restore(bytes.NewReader(data), h); err == nil || !strings.Contains(err.Error(), `state "names"`) || !strings.Contains(err.Error(), fmt.Sprint("key group ", kg)) {
		t.Fatalf("bad value: %v", err)
	}
	// Restored lazily: the error comes at registration.
	nb = newBackend(full)
	if err := nb.Restore(bytes.NewReader(data), h); err != nil {
		t.Fatal(err)
	}
	if _, err := GetValueState[int64, int64](nb, "names", CodecFor[int64]()); err == nil || !strings.Contains(err.Error(), `state "names"`) {
		t.Fatalf("bad value at registration: %v", err)
	}
	// Keys in the wrong key group (restored with another max parallelism).
	many := newBackend(full)
	mst, _ := GetValueState[int64, int64](many, "names", CodecFor[int64]())
	fill(many, mst, 2000)
	mdata, mh := snapshotBytes(t, many.Snapshot(), full)
	c := CodecFor[int64]()
	other := NewHeapKeyedBackend(c, HasherFor(c), 100, checkpoint.KeyGroupRange{Start: 0, End: 99})
	GetValueState[int64, int64](other, "names", CodecFor[int64]())
	h100 := mh
	h100.Range = checkpoint.KeyGroupRange{Start: 0, End: 99}
	h100.Offsets = mh.Offsets[:100]
	h100.Stream.Size = mh.Offsets[100]
	if err := other.Restore(bytes.NewReader(mdata[:h100.Stream.Size]), h100); err == nil || !strings.Contains(err.Error(), "belongs to key group") {
		t.Fatalf("wrong max parallelism: %v", err)
	}
	// Unknown version, unknown kind.
	d, hh := resection(data, h, kg, func(b []byte) []byte { b[0] = 9; return b })
	if err := newBackend(full).Restore(bytes.NewReader(d), hh); err == nil || !strings.Contains(err.Error(), "version 9") {
		t.Fatalf("version: %v", err)
	}
	d, hh = resection(data, h, kg, func(b []byte) []byte { b[3+len("names")] = 4; return b })
	nb = newBackend(full)
	GetValueState[int64, string](nb, "names", CodecFor[string]())
	if err := nb.Restore(bytes.NewReader(d), hh); err == nil || !strings.Contains(err.Error(), "kind 4") {
		t.Fatalf("kind: %v", err)
	}
	nb = newBackend(full)
	if err := nb.Restore(bytes.NewReader(d), hh); err != nil {
		t.Fatal(err)
	}
	if _, err := GetValueState[int64, string](nb, "names", CodecFor[string]()); err == nil || !strings.Contains(err.Error(), "kind 4") {
		t.Fatalf("kind at registration: %v", err)
	}
}

// A codec that panics fails the snapshot with an error, not the process.
func TestSnapshotCodecPanic(t *testing.T) {
	type bad struct{ C chan int }
	b := newBackend(checkpoint.KeyGroupRange{Start: 0, End: 127})
	st, _ := GetValueState[int64, bad](b, "bad", CodecFor[bad]())
	b.SetCurrentKey(3)
	st.Update(bad{C: make(chan int)})
	s := b.Snapshot()
	defer s.Release()
	if _, err := s.WriteKeyGroups(io.Discard); err == nil || !strings.Contains(err.Error(), "key group") {
		t.Fatalf("got %v", err)
	}
	ob := NewOperatorBackend(nil)
	ls, _ := GetListState[bad](ob, "l", checkpoint.Union, CodecFor[bad]())
	ls.Add(bad{})
	if _, err := ob.Snapshot(); err == nil || !strings.Contains(err.Error(), `"l"`) {
		t.Fatalf("list state: %v", err)
	}
}

type failWriter struct{ after int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.after -= len(p); f.after < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestSnapshotWriteError(t *testing.T) {
	b := newBackend(checkpoint.KeyGroupRange{Start: 0, End: 127})
	st, _ := GetValueState[int64, int64](b, "v", CodecFor[int64]())
	fill(b, st, 100000)
	s := b.Snapshot()
	if _, err := s.WriteKeyGroups(&failWriter{after: 300 << 10}); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("got %v", err)
	}
	s.Release()
	s.Release() // idempotent
	if b.live.Load() != 0 {
		t.Fatalf("%d live snapshots after release", b.live.Load())
	}
}

// The stream layout documented in doc.go, byte by byte.
func TestSnapshotFormat(t *testing.T) {
	c := CodecFor[int64]()
	b := NewHeapKeyedBackend(c, HasherFor(c), 4, checkpoint.KeyGroupRange{Start: 0, End: 1})
	st, _ := GetValueState[int64, string](b, "v", CodecFor[string]())
	var k int64
	for k = 0; KeyGroupOf(b.hash(k), 4) != 1; k++ {
	}
	b.SetCurrentKey(k)
	st.Update("hi")
	data, h := snapshotBytes(t, b.Snapshot(), checkpoint.KeyGroupRange{Start: 0, End: 1})
	empty := binary.BigEndian.AppendUint32([]byte{1, 0}, crc32.Checksum([]byte{1, 0}, castagnoli))
	body := append([]byte{1, 1, 1, 'v', 1, 1}, byte(len(c.Append(nil, k))))
	body = append(c.Append(body, k), 2, 'h', 'i')
	want := append(bytes.Clone(empty), binary.BigEndian.AppendUint32(body, crc32.Checksum(body, castagnoli))...)
	if !bytes.Equal(data, want) {
		t.Fatalf("stream\n% x\nwant\n% x", data, want)
	}
	if fmt.Sprint(h.Offsets) != "[0 6]" {
		t.Fatalf("offsets %v", h.Offsets)
	}
}

// Long encodings (length prefixes of several bytes) survive.
func TestLongEntries(t *testing.T) {
	r := checkpoint.KeyGroupRange{Start: 0, End: 127}
	c := CodecFor[string]()
	b := NewHeapKeyedBackend(c, HasherFor(c), 128, r)
	st, _ := GetValueState[string, []byte](b, "blob", CodecFor[[]byte]())
	want := map[string][]byte{}
	for i, n := range []int{0, 1, 127, 128, 200, 16383, 16384, 70000} {
		k := strings.Repeat(fmt.Sprint(i), n/3+1)
		v := bytes.Repeat([]byte{byte(i)}, n)
		b.SetCurrentKey(k)
		st.Update(v)
		want[k] = v
	}
	data, h := snapshotBytes(t, b.Snapshot(), r)
	nb := NewHeapKeyedBackend(c, HasherFor(c), 128, r)
	nst, _ := GetValueState[string, []byte](nb, "blob", CodecFor[[]byte]())
	if err := nb.Restore(onlyReader{bytes.NewReader(data)}, h); err != nil {
		t.Fatal(err)
	}
	for k, v := range want {
		nb.SetCurrentKey(k)
		if got, ok := nst.Value(); !ok || !bytes.Equal(got, v) {
			t.Fatalf("key of %d bytes: %d bytes back (%v)", len(k), len(got), ok)
		}
	}
}

func TestOperatorState(t *testing.T) {
	ob := NewOperatorBackend([]checkpoint.ListStateSnapshot{
		{Name: "z", Mode: checkpoint.Union, Entries: [][]byte{{1}}},
		{Name: "a", Mode: checkpoint.SplitEvenly, Entries: [][]byte{{2}}},
		{Name: "a", Mode: checkpoint.SplitEvenly, Entries: [][]byte{{4}}},
	})
	ls, _ := GetListState[string](ob, "new", checkpoint.SplitEvenly, CodecFor[string]())
	ls.Update([]string{"x", "y"})
	ls.Add("z")
	again, _ := GetListState[string](ob, "new", checkpoint.SplitEvenly, CodecFor[string]())
	if fmt.Sprint(again.Get()) != "[x y z]" {
		t.Fatalf("got %v", again.Get())
	}
	if _, err := GetListState[int](ob, "new", checkpoint.SplitEvenly, CodecFor[int]()); err == nil {
		t.Fatal("re-registered with another type")
	}
	snap, err := ob.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, then unregistered restored states by name.
	var names []string
	for _, l := range snap {
		names = append(names, fmt.Sprint(l.Name, len(l.Entries)))
	}
	if fmt.Sprint(names) != "[new3 a2 z1]" {
		t.Fatalf("snapshot %v", names)
	}
	ls.Clear()
	if len(ls.Get()) != 0 {
		t.Fatal("Clear kept entries")
	}

	// Redistribution: 3 old subtasks to 1, 2, 4, 7 new ones.
	old := make([][]checkpoint.ListStateSnapshot, 3)
	total := 0
	for s := range old {
		var e [][]byte
		for i := range 2 + s {
			e = append(e, []byte{byte(s), byte(i)})
			total++
		}
		old[s] = []checkpoint.ListStateSnapshot{{Name: "off", Mode: checkpoint.SplitEvenly, Entries: e}, {Name: "u", Mode: checkpoint.Union, Entries: [][]byte{{byte(s)}}}}
	}
	for _, p := range []int{1, 2, 4, 7, 20} {
		out := Redistribute(old, p)
		seen := map[string]int{}
		for s, sub := range out {
			if len(sub) != 2 {
				t.Fatalf("p=%d subtask %d: %d states", p, s, len(sub))
			}
			n := len(sub[0].Entries)
			if n < total/p || n > total/p+1 {
				t.Fatalf("p=%d subtask %d: %d of %d entries (uneven)", p, s, n, total)
			}
			for _, e := range sub[0].Entries {
				seen[string(e)]++
			}
			if len(sub[1].Entries) != 3 || sub[1].Mode != checkpoint.Union {
				t.Fatalf("p=%d: union state %v", p, sub[1])
			}
			// Appending to one subtask's list never changes another's.
			sub[1].Entries = append(sub[1].Entries, []byte{99})
		}
		if len(seen) != total {
			t.Fatalf("p=%d: %d distinct entries, want %d", p, len(seen), total)
		}
		for e, c := range seen {
			if c != 1 {
				t.Fatalf("p=%d: entry %v dealt %d times", p, []byte(e), c)
			}
		}
		for s := range out {
			if len(out[s][1].Entries) != 4 || out[s][1].Entries[3][0] != 99 {
				t.Fatalf("p=%d: union lists share storage", p)
			}
		}
	}
	if Redistribute(old, 0) != nil {
		t.Fatal("parallelism 0")
	}
}
