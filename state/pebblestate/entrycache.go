package pebblestate

import (
	"bytes"
	"hash/maphash"

	"github.com/cockroachdb/pebble/v2"
)

// entryCache keeps the entries the task read and wrote last in memory, in
// front of the database: a keyed count, a window's accumulator or a
// timer lookup reads and writes the same few keys again and again, and a
// Get or Set in Pebble's memtable (a skiplist search over every version
// written since the last flush) costs microseconds where a hash lookup
// costs tens of nanoseconds.
//
// Invariant: the store's contents are the database overlaid with the
// cache. A slot that is not dirty holds what the database holds for its
// key (a value, or found false for none); a dirty slot holds a Set
// (found) or a Delete (not found) the database has not seen yet. Dirty
// slots are written back to the database in one batch before anything
// reads the database other than a Get of a key the cache does not hold:
// before every Scan, View and snapshot (so Pebble snapshots and
// checkpoints see exactly the state at the barrier), when they take more
// than a quarter of the cache (bounding what a checkpoint's synchronous
// part writes), and when the cache is full (after which it is emptied). A restore empties it: the database
// changes under it.
//
// Keys and values are copied into buffers the slots keep, reused after
// the cache is emptied: in a steady state, reads and writes allocate
// nothing. The cache is used by the task goroutine only, like the store's
// Get, Set, Delete and Scan.
type entryCache struct {
	seed  maphash.Seed
	index map[uint64]int32 // hash of a key → its last slot (chained by next)
	slots []cacheSlot
	dirty []int32 // the dirty slots, each once
	size  int64   // bytes of keys and values, plus slotOverhead a slot
	limit int64
	// dirtySize is the bytes of the dirty slots (as size counts them).
	// A checkpoint's synchronous part writes them back, so they are kept
	// under limit/dirtyShare: with 4 MiB of dirty entries the stall was
	// 17 ms at p99 (256 MiB of state), with 1 MiB 1.2 ms, with 256 KiB
	// 0.7 ms, where a windowed count made 7.1-8.3, 4.8-5.3 and 0.73 M
	// events/s (BenchmarkCheckpoint, BenchmarkWindowCount10k/pebble).
	dirtySize int64
	// last is the slot find returned or insert added last (-1: none): a
	// Set mostly follows a Get of the same key.
	last int32
}

// slotOverhead is what a slot costs besides its key and value: the slot,
// its index entry, the dirty list.
const slotOverhead = 64

type cacheSlot struct {
	key, val []byte
	next     int32 // the previous slot with the same hash, -1: none
	found    bool  // the key has a value (else: none, or deleted)
	dirty    bool
}

func newEntryCache(limit int64) *entryCache {
	return &entryCache{seed: maphash.MakeSeed(), index: map[uint64]int32{}, limit: limit, last: -1}
}

// cacheable says whether an entry with a value of n bytes goes through the
// cache: bigger values go straight to the database, so that the buffers
// the slots keep stay small next to the limit.
func (c *entryCache) cacheable(n int) bool { return int64(n) <= c.limit/64 }

// find returns the slot of key, or -1 and key's hash.
func (c *entryCache) find(key []byte) (int32, uint64) {
	if c.last >= 0 && bytes.Equal(c.slots[c.last].key, key) {
		return c.last, 0
	}
	h := maphash.Bytes(c.seed, key)
	i, ok := c.index[h]
	for ok && i >= 0 {
		if bytes.Equal(c.slots[i].key, key) {
			c.last = i
			return i, h
		}
		i = c.slots[i].next
	}
	return -1, h
}

// insert adds a slot for key (hash h, not in the cache) and returns it.
func (c *entryCache) insert(key []byte, h uint64) int32 {
	i := int32(len(c.slots))
	if len(c.slots) < cap(c.slots) {
		c.slots = c.slots[:i+1]
	} else {
		c.slots = append(c.slots, cacheSlot{})
	}
	s := &c.slots[i]
	s.key = append(s.key[:0], key...)
	s.val = s.val[:0]
	s.found, s.dirty = false, false
	s.next = -1
	if prev, ok := c.index[h]; ok {
		s.next = prev
	}
	c.index[h] = i
	c.size += int64(len(key)) + slotOverhead
	c.last = i
	return i
}

// setVal sets s's value (found says whether there is one).
func (c *entryCache) setVal(s *cacheSlot, val []byte, found bool) {
	c.size += int64(len(val) - len(s.val))
	s.val = append(s.val[:0], val...)
	s.found = found
}

// write records a Set (found) or Delete of key that the database has not
// seen yet.
func (c *entryCache) write(key, val []byte, found bool) {
	i, h := c.find(key)
	if i < 0 {
		i = c.insert(key, h)
	}
	s := &c.slots[i]
	if s.dirty {
		c.dirtySize += int64(len(val) - len(s.val))
	} else {
		s.dirty = true
		c.dirty = append(c.dirty, i)
		c.dirtySize += int64(len(key)+len(val)) + slotOverhead
	}
	c.setVal(s, val, found)
}

// dirtyShare is the share of the limit dirty slots may take (1/4).
const dirtyShare = 4

// full says whether the cache holds more than its limit.
func (c *entryCache) full() bool { return c.size > c.limit }

// tooDirty says whether the dirty slots hold more than their share.
func (c *entryCache) tooDirty() bool { return c.dirtySize > c.limit/dirtyShare }

// writeBack writes the dirty slots to db in one batch; they are clean
// afterwards. On an error they stay dirty. track, if not nil, is called
// with every key before the batch is committed.
func (c *entryCache) writeBack(db *pebble.DB, track func(key []byte)) error {
	if len(c.dirty) == 0 {
		return nil
	}
	b := db.NewBatch()
	for _, i := range c.dirty {
		s := &c.slots[i]
		if track != nil {
			track(s.key)
		}
		var err error
		if s.found {
			err = b.Set(s.key, s.val, nil)
		} else {
			err = b.Delete(s.key, nil)
		}
		if err != nil {
			b.Close()
			return err
		}
	}
	err := b.Commit(pebble.NoSync)
	b.Close()
	if err != nil {
		return err
	}
	for _, i := range c.dirty {
		c.slots[i].dirty = false
	}
	c.dirty = c.dirty[:0]
	c.dirtySize = 0
	return nil
}

// reset empties the cache, dropping dirty slots too: callers write them
// back first, or mean to discard them.
func (c *entryCache) reset() {
	clear(c.index)
	c.last = -1
	c.slots = c.slots[:0]
	c.dirty = c.dirty[:0]
	c.size = 0
	c.dirtySize = 0
}
