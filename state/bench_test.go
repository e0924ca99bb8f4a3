package state

import (
	"fmt"
	"io"
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
