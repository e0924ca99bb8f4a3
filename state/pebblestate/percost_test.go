package pebblestate_test

import (
	"testing"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/state"
	"github.com/weirstream/weir/state/pebblestate"
	"github.com/weirstream/weir/state/statetest"
)

// countingStore counts the bytes a backend writes to and reads from its
// pebble store, and the entries it scans.
type countingStore struct {
	state.RawStore
	written, read, scanned int64
}

func (c *countingStore) Get(key, dst []byte) ([]byte, bool, error) {
	v, ok, err := c.RawStore.Get(key, dst)
	c.read += int64(len(key) + len(v) - len(dst))
	return v, ok, err
}

func (c *countingStore) Set(key, val []byte) error {
	c.written += int64(len(key) + len(val))
	return c.RawStore.Set(key, val)
}

func (c *countingStore) Delete(key []byte) error {
	c.written += int64(len(key))
	return c.RawStore.Delete(key)
}

func (c *countingStore) Scan(lower, upper []byte, limit int, fn func(k, v []byte) error) error {
	return c.RawStore.Scan(lower, upper, limit, func(k, v []byte) error {
		c.scanned++
		c.read += int64(len(k) + len(v))
		return fn(k, v)
	})
}

// MapState.Put and ListState.Add on pebble write one entry and read at
// most a few, whatever the size of the collection: the bytes written and
// read per operation into a collection of 100k entries are those into one
// of 10 (the keys encode the same widths: values below 2^7 vs 2^17 differ
// by their varint bytes only, so the comparison allows 4 bytes).
func TestPerEntryBytes(t *testing.T) {
	const ops = 2000
	type cost struct {
		put, add struct{ written, read, scanned float64 }
	}
	run := func(size int) cost {
		f := pebblestate.New(pebblestate.Options{Dir: t.TempDir(), Logger: quiet})
		raw, err := f.NewRawStore(state.StoreInfo{Job: "j", OperatorUID: "op"})
		if err != nil {
			t.Fatal(err)
		}
		store := &countingStore{RawStore: raw}
		c := state.CodecFor[int64]()
		kb, err := state.NewRawKeyedBackend[int64](store, c, state.HasherFor(c), statetest.MaxParallelism, statetest.FullRange(), func(err error) { t.Errorf("state failure: %v", err) })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { kb.Close() })
		m, err := state.GetMapState[int64, int64, int64](kb, "m", c, c)
		if err != nil {
			t.Fatal(err)
		}
		l, err := state.GetKeyedListState[int64, int64](kb, "l", c)
		if err != nil {
			t.Fatal(err)
		}
		kb.SetCurrentKey(7)
		for i := range size {
			m.Put(int64(i), 1)
			l.Add(1)
		}
		// A snapshot in between: writes after it cost the same.
		snap, err := kb.SnapshotFor(1, checkpoint.KindCheckpoint)
		if err != nil {
			t.Fatal(err)
		}
		defer snap.Release()
		var out cost
		per := func(dst *struct{ written, read, scanned float64 }, op func(i int)) {
			store.written, store.read, store.scanned = 0, 0, 0
			for i := range ops {
				op(i)
			}
			*dst = struct{ written, read, scanned float64 }{float64(store.written) / ops, float64(store.read) / ops, float64(store.scanned) / ops}
		}
		per(&out.put, func(i int) { m.Put(int64(i%size), 2) })
		per(&out.add, func(int) { l.Add(2) })
		if got := len(l.Get()); got != size+ops {
			t.Fatalf("list holds %d, want %d", got, size+ops)
		}
		return out
	}
	small, big := run(10), run(100_000)
	t.Logf("Put per op: 10 entries %+v; 100k entries %+v", small.put, big.put)
	t.Logf("Add per op: 10 entries %+v; 100k entries %+v", small.add, big.add)
	for _, c := range []struct {
		what   string
		sm, bg struct{ written, read, scanned float64 }
	}{{"MapState.Put", small.put, big.put}, {"ListState.Add", small.add, big.add}} {
		if c.bg.written > c.sm.written+4 || c.bg.read > c.sm.read+4 || c.bg.scanned > c.sm.scanned {
			t.Errorf("%s is not flat: per op into 10 entries %+v, into 100k %+v", c.what, c.sm, c.bg)
		}
		if c.sm.written == 0 {
			t.Errorf("%s wrote nothing: the counting store sees no writes", c.what)
		}
	}
}
