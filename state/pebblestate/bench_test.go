package pebblestate_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/state"
	"github.com/weirstream/weir/state/statetest"
	"github.com/weirstream/weir/storage"
)

func benchKinds() []statetest.Backend {
	return []statetest.Backend{statetest.Heap(), pebbleBackend(false, nil)}
}

func allKinds() []statetest.Backend {
	return []statetest.Backend{statetest.Heap(), pebbleBackend(false, nil), pebbleBackend(true, nil)}
}

// newBench creates a backend with int64 keys for a benchmark.
func newBench(b *testing.B, k statetest.Backend) state.KeyedBackend[int64] {
	b.Helper()
	if k.Name == "heap" {
		c := state.CodecFor[int64]()
		return state.NewHeapKeyedBackend[int64](c, state.HasherFor(c), statetest.MaxParallelism, full())
	}
	return newPebble[int64](b, k.Name == "pebble-full", nil, full())
}

// BenchmarkKeyedCount is the keyed count's state access: read, add one,
// write, for random keys out of a key space; ns/op is per record.
//
//	go test -run X -bench KeyedCount -benchtime 3000000x ./state/pebblestate/
func BenchmarkKeyedCount(b *testing.B) {
	for _, keys := range []int{10_000, 10_000_000} {
		for _, k := range benchKinds() {
			b.Run(fmt.Sprintf("%s/keys=%d", k.Name, keys), func(b *testing.B) {
				be := newBench(b, k)
				v, err := state.GetValueState[int64, int64](be, "count", state.CodecFor[int64]())
				if err != nil {
					b.Fatal(err)
				}
				hash := state.HasherFor(state.CodecFor[int64]())
				rnd := rand.New(rand.NewPCG(1, 1))
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					key := int64(rnd.IntN(keys))
					be.SetCurrentKeyHashed(key, hash(key))
					n, _ := v.Value()
					v.Update(n + 1)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mrec/s")
			})
		}
	}
}

// BenchmarkCheckpoint fills a state of the given size, then repeatedly
// changes 1% of it and takes a checkpoint, reporting the synchronous stall
// (p50/p99/max), the asynchronous write time and the bytes written per
// checkpoint, for heap, pebble with incremental checkpoints and pebble
// with full ones.
//
//	go test -run X -bench Checkpoint -benchtime 10x ./state/pebblestate/
func BenchmarkCheckpoint(b *testing.B) {
	for _, size := range []int{1 << 20, 16 << 20, 256 << 20, 1 << 30} {
		for _, k := range allKinds() {
			b.Run(fmt.Sprintf("%s/state=%dMiB", k.Name, size>>20), func(b *testing.B) {
				const valueSize = 1000
				keys := size / valueSize
				be := newBench(b, k)
				v, err := state.GetValueState[int64, []byte](be, "v", state.CodecFor[[]byte]())
				if err != nil {
					b.Fatal(err)
				}
				hash := state.HasherFor(state.CodecFor[int64]())
				rnd := rand.New(rand.NewPCG(3, 3))
				write := func(key int64) {
					val := make([]byte, valueSize)
					for i := range val {
						val[i] = byte(rnd.Uint32())
					}
					be.SetCurrentKeyHashed(key, hash(key))
					v.Update(val)
				}
				for i := range keys {
					write(int64(i))
				}
				st, err := storage.NewFile(b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				var stalls []time.Duration
				var asyncTotal time.Duration
				var bytes int64
				b.ResetTimer()
				for i := range b.N + 1 {
					for range keys / 100 {
						write(int64(rnd.IntN(keys)))
					}
					id := checkpoint.ID(i + 1)
					t0 := time.Now()
					s, err := be.SnapshotFor(id, checkpoint.KindCheckpoint)
					stall := time.Since(t0)
					if err != nil {
						b.Fatal(err)
					}
					t1 := time.Now()
					h, err := statetest.WriteSnapshot(s, st, id, "x")
					s.Release()
					if err != nil {
						b.Fatal(err)
					}
					be.NotifyCheckpointComplete(id)
					if i == 0 {
						continue // the first checkpoint uploads everything
					}
					stalls = append(stalls, stall)
					asyncTotal += time.Since(t1)
					if h.Incremental != nil {
						bytes += h.Incremental.Uploaded
					} else {
						bytes += h.Stream.Size
					}
				}
				b.StopTimer()
				sort.Slice(stalls, func(i, j int) bool { return stalls[i] < stalls[j] })
				pct := func(p float64) float64 {
					return float64(stalls[min(len(stalls)-1, int(p*float64(len(stalls))))].Microseconds())
				}
				b.ReportMetric(pct(0.5), "sync-p50-µs")
				b.ReportMetric(pct(0.99), "sync-p99-µs")
				b.ReportMetric(float64(asyncTotal.Milliseconds())/float64(b.N), "async-ms/ckpt")
				b.ReportMetric(float64(bytes)/float64(b.N)/(1<<20), "MiB-written/ckpt")
			})
		}
	}
}

// BenchmarkRestore restores a 1 GiB checkpoint of each kind.
//
//	go test -run X -bench Restore -benchtime 1x ./state/pebblestate/
func BenchmarkRestore(b *testing.B) {
	for _, k := range allKinds() {
		b.Run(k.Name, func(b *testing.B) {
			const valueSize, size = 1000, 1 << 30
			be := newBench(b, k)
			v, _ := state.GetValueState[int64, []byte](be, "v", state.CodecFor[[]byte]())
			hash := state.HasherFor(state.CodecFor[int64]())
			rnd := rand.New(rand.NewPCG(5, 5))
			for i := range size / valueSize {
				val := make([]byte, valueSize)
				for j := range val {
					val[j] = byte(rnd.Uint32())
				}
				be.SetCurrentKeyHashed(int64(i), hash(int64(i)))
				v.Update(val)
			}
			st, _ := storage.NewFile(b.TempDir())
			s, err := be.SnapshotFor(1, checkpoint.KindCheckpoint)
			if err != nil {
				b.Fatal(err)
			}
			h, err := statetest.WriteSnapshot(s, st, 1, "x")
			s.Release()
			if err != nil {
				b.Fatal(err)
			}
			h.Range = full()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				nb := newBench(b, k)
				b.StartTimer()
				if err := nb.RestoreHandles([]checkpoint.KeyedStateHandle{h}, st.Opener(context.Background())); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				nb.Close()
				b.StartTimer()
			}
		})
	}
}

// BenchmarkTimers is a window operator's timers: per record one Add for
// the record's key at a timestamp a little ahead of the watermark (keys
// of 10k, window ends on a 100 ms grid), and the watermark advancing every
// 100 records with a Poll of every timer up to it; ns/op is per record
// (one Add, and on average one Poll).
//
//	go test -run X -bench Timers -benchtime 1000000x ./state/pebblestate/
func BenchmarkTimers(b *testing.B) {
	for _, k := range benchKinds() {
		b.Run(k.Name, func(b *testing.B) {
			be := newBench(b, k)
			q, err := state.GetTimerQueue[int64](be, "event-timers")
			if err != nil {
				b.Fatal(err)
			}
			hash := state.HasherFor(state.CodecFor[int64]())
			rnd := rand.New(rand.NewPCG(1, 1))
			wm := int64(0)
			polled := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				key := int64(rnd.IntN(10_000))
				be.SetCurrentKeyHashed(key, hash(key))
				ts := wm + int64(rnd.IntN(1000))
				q.Add(ts-ts%100+99, "")
				if i%100 == 99 {
					wm += 10
					for {
						if _, ok := q.Poll(wm); !ok {
							break
						}
						polled++
					}
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mrec/s")
			b.ReportMetric(float64(q.Len()), "timers")
		})
	}
}

// collectionOpts returns the options of a map or list state stored per
// entry, or as one value per key (what map and list states were before
// per-entry storage, and still are with a time-to-live: the benchmarks
// reach that implementation through a TTL of a day without cleanup).
func collectionOpts(oneValue bool) []state.Option {
	if !oneValue {
		return nil
	}
	return []state.Option{state.WithTTL(state.TTLConfig{TTL: 24 * time.Hour, CleanupPerAccess: -1})}
}

func layouts() []string { return []string{"per-entry", "one-value"} }

// BenchmarkMapPut is a Put into the map of one key that holds n entries
// (overwriting one of them, so the size stays n); ns/op is per Put.
//
//	go test -run X -bench MapPut -benchtime 2000x ./state/pebblestate/
func BenchmarkMapPut(b *testing.B) {
	for _, n := range []int{10, 1_000, 100_000} {
		for _, k := range benchKinds() {
			for _, layout := range layouts() {
				b.Run(fmt.Sprintf("%s/entries=%d/%s", k.Name, n, layout), func(b *testing.B) {
					if layout == "one-value" && n > 1_000 {
						b.Skip("filling 100k entries one Put at a time copies the map each time (quadratic): minutes")
					}
					be := newBench(b, k)
					m, err := state.GetMapState[int64, int64, int64](be, "m", state.CodecFor[int64](), state.CodecFor[int64](), collectionOpts(layout == "one-value")...)
					if err != nil {
						b.Fatal(err)
					}
					hash := state.HasherFor(state.CodecFor[int64]())
					be.SetCurrentKeyHashed(7, hash(7))
					for i := range n {
						m.Put(int64(i), int64(i))
					}
					rnd := rand.New(rand.NewPCG(1, 1))
					b.ReportAllocs()
					b.ResetTimer()
					for i := range b.N {
						m.Put(int64(rnd.IntN(n)), int64(i))
					}
				})
			}
		}
	}
}

// BenchmarkListAdd appends b.N elements to the list of one key: the list
// grows to b.N; ns/op is per Add.
//
//	go test -run X -bench ListAdd -benchtime 10000x ./state/pebblestate/
func BenchmarkListAdd(b *testing.B) {
	for _, k := range benchKinds() {
		for _, layout := range layouts() {
			b.Run(k.Name+"/"+layout, func(b *testing.B) {
				be := newBench(b, k)
				l, err := state.GetKeyedListState[int64, int64](be, "l", state.CodecFor[int64](), collectionOpts(layout == "one-value")...)
				if err != nil {
					b.Fatal(err)
				}
				hash := state.HasherFor(state.CodecFor[int64]())
				be.SetCurrentKeyHashed(7, hash(7))
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					l.Add(int64(i))
				}
			})
		}
	}
}
