package state

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"testing"

	"github.com/weirstream/weir/checkpoint"
)

// BenchmarkValueStateUpdate is the keyed hot path: set the key, read the
// value, write it back.
func BenchmarkValueStateUpdate(b *testing.B) {
	for _, keys := range []int{10_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			be := newBackend(checkpoint.KeyGroupRange{Start: 0, End: 127})
			st, _ := GetValueState[int64, int64](be, "v", CodecFor[int64]())
			fill(be, st, keys) // steady state: every key has a value
			b.ReportAllocs()
			b.ResetTimer()
			k := int64(0)
			for range b.N {
				be.SetCurrentKey(k)
				v, _ := st.Value()
				st.Update(v + 1)
				k++
				if k == int64(keys) {
					k = 0
				}
			}
		})
	}
}

// BenchmarkSnapshotSync measures the synchronous part of a snapshot (what
// stalls the task) and the first write after it (one key group's clone).
func BenchmarkSnapshotSync(b *testing.B) {
	for _, keys := range []int{10_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			be := newBackend(checkpoint.KeyGroupRange{Start: 0, End: 127})
			st, _ := GetValueState[int64, int64](be, "v", CodecFor[int64]())
			fill(be, st, keys)
			b.ResetTimer()
			for range b.N {
				s := be.Snapshot()
				s.Release()
			}
		})
	}
}

// BenchmarkSnapshotWrite measures the asynchronous part: encoding the state.
func BenchmarkSnapshotWrite(b *testing.B) {
	be := newBackend(checkpoint.KeyGroupRange{Start: 0, End: 127})
	st, _ := GetValueState[int64, int64](be, "v", CodecFor[int64]())
	fill(be, st, 1_000_000)
	b.ResetTimer()
	for range b.N {
		s := be.Snapshot()
		if _, err := s.WriteKeyGroups(io.Discard); err != nil {
			b.Fatal(err)
		}
		s.Release()
	}
	b.ReportMetric(1_000_000, "keys")
}

// BenchmarkTableVsMap compares the per-key-group storage choices on the
// read-modify-write of one key: the open-addressing kgTable the backend
// uses and a Go map per key group. Keys are hashed outside the timed part
// of neither (both pay the same murmur).
func BenchmarkTableVsMap(b *testing.B) {
	h := HasherFor(CodecFor[int64]())
	for _, keys := range []int{10_000, 1_000_000} {
		b.Run(fmt.Sprintf("table/keys=%d", keys), func(b *testing.B) {
			ts := make([]*kgTable[int64, int64], 128)
			for i := range ts {
				ts[i] = newKGTable[int64, int64](1)
			}
			for k := range int64(keys) {
				x := h(k)
				ts[x&127].put(k, x, 0)
			}
			b.ResetTimer()
			k := int64(0)
			for range b.N {
				x := h(k)
				t := ts[x&127]
				i, _ := t.find(k, x)
				t.slots[i].val++
				if k++; k == int64(keys) {
					k = 0
				}
			}
		})
		b.Run(fmt.Sprintf("map/keys=%d", keys), func(b *testing.B) {
			ms := make([]map[int64]int64, 128)
			for i := range ms {
				ms[i] = map[int64]int64{}
			}
			for k := range int64(keys) {
				ms[h(k)&127][k] = 0
			}
			b.ResetTimer()
			k := int64(0)
			for range b.N {
				m := ms[h(k)&127]
				m[k]++
				if k++; k == int64(keys) {
					k = 0
				}
			}
		})
		// Copy-on-write cost: cloning every key group once.
		b.Run(fmt.Sprintf("table-clone-all/keys=%d", keys), func(b *testing.B) {
			ts := make([]*kgTable[int64, int64], 128)
			for i := range ts {
				ts[i] = newKGTable[int64, int64](1)
			}
			for k := range int64(keys) {
				x := h(k)
				ts[x&127].put(k, x, 0)
			}
			b.ResetTimer()
			for range b.N {
				for _, t := range ts {
					_ = t.clone(2)
				}
			}
		})
		b.Run(fmt.Sprintf("map-clone-all/keys=%d", keys), func(b *testing.B) {
			ms := make([]map[int64]int64, 128)
			for i := range ms {
				ms[i] = map[int64]int64{}
			}
			for k := range int64(keys) {
				ms[h(k)&127][k] = 0
			}
			b.ResetTimer()
			for range b.N {
				for _, m := range ms {
					_ = maps.Clone(m)
				}
			}
		})
	}
}

// BenchmarkUpdateWhileSnapshotLive is the hot path while an asynchronous
// snapshot is being written: one snapshot per 1M updates over 1M keys, so
// every key group table is cloned once per snapshot.
func BenchmarkUpdateWhileSnapshotLive(b *testing.B) {
	const keys = 1_000_000
	be := newBackend(checkpoint.KeyGroupRange{Start: 0, End: 127})
	st, _ := GetValueState[int64, int64](be, "v", CodecFor[int64]())
	fill(be, st, keys)
	b.ReportAllocs()
	b.ResetTimer()
	var s KeyedSnapshot
	k := int64(0)
	for range b.N {
		if k == 0 {
			if s != nil {
				s.Release()
			}
			s = be.Snapshot()
		}
		be.SetCurrentKey(k)
		v, _ := st.Value()
		st.Update(v + 1)
		if k++; k == keys {
			k = 0
		}
	}
	b.StopTimer()
	if s != nil {
		s.Release()
	}
}

// BenchmarkRestore reads a 1M-key snapshot back.
func BenchmarkRestore(b *testing.B) {
	r := checkpoint.KeyGroupRange{Start: 0, End: 127}
	be := newBackend(r)
	st, _ := GetValueState[int64, int64](be, "v", CodecFor[int64]())
	fill(be, st, 1_000_000)
	s := be.Snapshot()
	var buf bytes.Buffer
	offs, err := s.WriteKeyGroups(&buf)
	if err != nil {
		b.Fatal(err)
	}
	s.Release()
	h := checkpoint.KeyedStateHandle{Range: r, Offsets: offs, Stream: checkpoint.StreamHandle{Size: int64(buf.Len())}}
	b.ResetTimer()
	for range b.N {
		nb := newBackend(r)
		GetValueState[int64, int64](nb, "v", CodecFor[int64]())
		if err := nb.Restore(bytes.NewReader(buf.Bytes()), h); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(1_000_000, "keys")
}

// BenchmarkMapState measures the heap backend's MapState on one key whose
// map holds 3 (inline), 10, 1k or 100k entries: Get and Put (overwrite) of existing
// entries, and the first Put into the map after a snapshot while the
// snapshot is live (copy-on-write: what that Put copies). The key is set
// once, outside the loop.
func BenchmarkMapState(b *testing.B) {
	for _, size := range []int{3, 10, 1_000, 100_000} {
		setup := func(b *testing.B) (*HeapKeyedBackend[int64], MapState[int64, int64]) {
			be := newBackend(checkpoint.KeyGroupRange{Start: 0, End: 127})
			m, err := GetMapState[int64, int64, int64](be, "m", CodecFor[int64](), CodecFor[int64]())
			if err != nil {
				b.Fatal(err)
			}
			be.SetCurrentKey(1)
			for i := range int64(size) {
				m.Put(i*7919, i)
			}
			return be, m
		}
		b.Run(fmt.Sprintf("get/entries=%d", size), func(b *testing.B) {
			_, m := setup(b)
			b.ReportAllocs()
			b.ResetTimer()
			var sum int64
			for i := range b.N {
				v, _ := m.Get(int64(i%size) * 7919)
				sum += v
			}
			sink = sum
		})
		b.Run(fmt.Sprintf("put/entries=%d", size), func(b *testing.B) {
			_, m := setup(b)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				m.Put(int64(i%size)*7919, int64(i))
			}
		})
		// One snapshot per iteration, then one Put while it is live: the
		// snapshot's synchronous part and the copy the first write makes.
		b.Run(fmt.Sprintf("put-after-snapshot/entries=%d", size), func(b *testing.B) {
			be, m := setup(b)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				s := be.Snapshot()
				m.Put(int64(i%size)*7919, int64(i))
				s.Release()
			}
		})
	}
}

var sink int64

// BenchmarkHashTrieVsMap compares, without the backend around them, the
// storage of a heap MapState's map beyond its inline entries (userMap's
// hash trie) with a Go map, on Get and Put (overwrite) of existing keys:
// the measurement behind userMap having no Go map tier.
func BenchmarkHashTrieVsMap(b *testing.B) {
	hash := hasherOf[int64]()
	for _, size := range []int{10, 100, 1_000, 100_000} {
		u := newUserMap[int64, int64](1)
		m := map[int64]int64{}
		for i := range int64(size) {
			u.put(i*7919, i, hash)
			m[i*7919] = i
		}
		keys := make([]int64, 4096)
		for i := range keys {
			keys[i] = int64((i*31)%size) * 7919
		}
		b.Run(fmt.Sprintf("trie-get/entries=%d", size), func(b *testing.B) {
			var sum int64
			for i := range b.N {
				v, _ := u.get(keys[i&4095], hash)
				sum += v
			}
			sink = sum
		})
		b.Run(fmt.Sprintf("map-get/entries=%d", size), func(b *testing.B) {
			var sum int64
			for i := range b.N {
				sum += m[keys[i&4095]]
			}
			sink = sum
		})
		b.Run(fmt.Sprintf("trie-put/entries=%d", size), func(b *testing.B) {
			for i := range b.N {
				u.put(keys[i&4095], int64(i), hash)
			}
		})
		b.Run(fmt.Sprintf("map-put/entries=%d", size), func(b *testing.B) {
			for i := range b.N {
				m[keys[i&4095]] = int64(i)
			}
		})
	}
}
