package state

import (
	"math/bits"

	"github.com/weirstream/weir/checkpoint"
)

// DefaultMaxParallelism is the default number of key groups.
const DefaultMaxParallelism = 128

// The murmur3 (x86, 32-bit, seed 0) hash, implemented here, decides which
// key group, and so which subtask, owns a key. It must never change: a
// checkpoint's key groups were computed with it, and a build hashing
// differently would restore keys into subtasks that do not hold their state
// (and reject the checkpoint's sections as holding foreign keys).
// TestHashGolden and TestHashStability pin it.

const (
	m3c1 = 0xcc9e2d51
	m3c2 = 0x1b873593
)

func m3mix(h, k uint32) uint32 {
	k *= m3c1
	k = bits.RotateLeft32(k, 15)
	k *= m3c2
	h ^= k
	h = bits.RotateLeft32(h, 13)
	return h*5 + 0xe6546b64
}

func m3fmix(h uint32) uint32 {
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

// Murmur3Uint64 is murmur3 of the 8 little-endian bytes of v (no
// allocation): the hash of integer keys.
func Murmur3Uint64(v uint64) uint32 {
	h := m3mix(0, uint32(v))
	h = m3mix(h, uint32(v>>32))
	return m3fmix(h ^ 8)
}

// Murmur3Bytes is murmur3 of b.
func Murmur3Bytes(b []byte) uint32 {
	var h uint32
	n := len(b)
	i := 0
	for ; i+4 <= n; i += 4 {
		h = m3mix(h, uint32(b[i])|uint32(b[i+1])<<8|uint32(b[i+2])<<16|uint32(b[i+3])<<24)
	}
	h = m3tail(h, b[i:])
	return m3fmix(h ^ uint32(n))
}

// Murmur3String hashes the bytes of s without copying them.
func Murmur3String(s string) uint32 {
	var h uint32
	n := len(s)
	i := 0
	for ; i+4 <= n; i += 4 {
		h = m3mix(h, uint32(s[i])|uint32(s[i+1])<<8|uint32(s[i+2])<<16|uint32(s[i+3])<<24)
	}
	var k uint32
	switch n - i {
	case 3:
		k ^= uint32(s[i+2]) << 16
		fallthrough
	case 2:
		k ^= uint32(s[i+1]) << 8
		fallthrough
	case 1:
		k ^= uint32(s[i])
		k *= m3c1
		k = bits.RotateLeft32(k, 15)
		k *= m3c2
		h ^= k
	}
	return m3fmix(h ^ uint32(n))
}

func m3tail(h uint32, t []byte) uint32 {
	var k uint32
	switch len(t) {
	case 3:
		k ^= uint32(t[2]) << 16
		fallthrough
	case 2:
		k ^= uint32(t[1]) << 8
		fallthrough
	case 1:
		k ^= uint32(t[0])
		k *= m3c1
		k = bits.RotateLeft32(k, 15)
		k *= m3c2
		h ^= k
	}
	return h
}

// KeyGroupOf maps a key hash (from a HashFunc, already murmur-mixed) to its
// key group, hash % maxParallelism. maxParallelism must be positive.
func KeyGroupOf(hash uint32, maxParallelism int) int {
	return int(hash % uint32(maxParallelism))
}

// RangeForSubtask is the contiguous range of key groups subtask owns among
// parallelism subtasks (Flink's assignment).
func RangeForSubtask(maxParallelism, parallelism, subtask int) checkpoint.KeyGroupRange {
	return checkpoint.KeyGroupRange{
		Start: (subtask*maxParallelism + parallelism - 1) / parallelism,
		End:   ((subtask+1)*maxParallelism - 1) / parallelism,
	}
}

// SubtaskForKeyGroup is the subtask owning keyGroup; it agrees with
// RangeForSubtask.
func SubtaskForKeyGroup(maxParallelism, parallelism, keyGroup int) int {
	return keyGroup * parallelism / maxParallelism
}

// keyGrouper maps key hashes to key groups as KeyGroupOf does, with a mask
// instead of a division when the max parallelism is a power of two (the
// default 128): the per-record step of every keyed state access.
type keyGrouper struct {
	maxP uint32
	mask uint32
	pow2 bool
}

func newKeyGrouper(maxParallelism int) keyGrouper {
	g := keyGrouper{maxP: uint32(maxParallelism)}
	if maxParallelism > 0 && maxParallelism&(maxParallelism-1) == 0 {
		g.pow2, g.mask = true, uint32(maxParallelism-1)
	}
	return g
}

func (g keyGrouper) of(hash uint32) int {
	if g.pow2 {
		return int(hash & g.mask)
	}
	return int(hash % g.maxP)
}
