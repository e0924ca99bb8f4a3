package state

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"

	"github.com/weirstream/weir/checkpoint"
)

// KeyedSnapshotVersion is the version of the keyed snapshot stream format
// written by this build (see the package documentation). Each key group
// section starts with it; Restore accepts versions up to it.
const KeyedSnapshotVersion = 1

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// KeyedSnapshot is a frozen view of keyed state: the asynchronous part of a
// checkpoint.
type KeyedSnapshot interface {
	// WriteKeyGroups writes the snapshot stream (format in the package
	// documentation) to w and returns the byte offset of each key group of
	// the backend's range inside it: offsets[i] is where key group
	// Range.Start+i starts. It may run on any goroutine, concurrently with
	// the task updating state, and is meant to be called once.
	WriteKeyGroups(w io.Writer) (offsets []int64, err error)
	// Release frees the view, after WriteKeyGroups or instead of it (an
	// aborted checkpoint). Until every snapshot is released, the first
	// write to a key group table after the snapshot copies that table. Safe
	// to call more than once and from any goroutine.
	Release()
}

type heapSnapshot struct {
	release func()
	r       checkpoint.KeyGroupRange
	names   []string // sorted
	tables  []frozenTable
	metas   []checkpoint.StateMeta // sorted by name
	once    sync.Once
}

func (s *heapSnapshot) Release() { s.once.Do(s.release) }

// states returns the schema of the snapshot's states (SnapshotStates).
func (s *heapSnapshot) states() []checkpoint.StateMeta { return s.metas }

// WriteKeyGroups implements KeyedSnapshot. A panic of a codec (a value the
// JSON codec cannot encode, a bug in a user codec) becomes an error: it
// fails this checkpoint instead of the process.
func (s *heapSnapshot) WriteKeyGroups(w io.Writer) (offsets []int64, err error) {
	bw := bufio.NewWriterSize(w, 256<<10)
	offsets = make([]int64, s.r.Len())
	var pos int64
	var sec []byte
	kg := 0
	defer func() {
		if p := recover(); p != nil {
			offsets, err = nil, fmt.Errorf("cannot encode key group %d of keyed state: %v", kg+s.r.Start, p)
		}
	}()
	for ; kg < s.r.Len(); kg++ {
		offsets[kg] = pos
		sec = append(sec[:0], KeyedSnapshotVersion)
		nStates := 0
		for _, t := range s.tables {
			if t.count(kg) > 0 {
				nStates++
			}
		}
		sec = binary.AppendUvarint(sec, uint64(nStates))
		for i, t := range s.tables {
			n := t.count(kg)
			if n == 0 {
				continue
			}
			sec = binary.AppendUvarint(sec, uint64(len(s.names[i])))
			sec = append(sec, s.names[i]...)
			sec = append(sec, byte(t.kind()))
			sec = binary.AppendUvarint(sec, uint64(n))
			sec = t.appendEntries(sec, kg)
		}
		sec = binary.BigEndian.AppendUint32(sec, crc32.Checksum(sec, castagnoli))
		if _, err := bw.Write(sec); err != nil {
			return nil, fmt.Errorf("cannot write key group %d of keyed state: %w", kg+s.r.Start, err)
		}
		pos += int64(len(sec))
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("cannot write keyed state: %w", err)
	}
	return offsets, nil
}

// fixLength turns dst[start] (a placeholder byte) followed by n encoded
// bytes into uvarint(n) followed by the bytes. Encodings shorter than 128
// bytes, the common case, need no move.
func fixLength(dst []byte, start int) []byte {
	n := len(dst) - start - 1
	if n < 0x80 {
		dst[start] = byte(n)
		return dst
	}
	var scratch [binary.MaxVarintLen64]byte
	l := binary.PutUvarint(scratch[:], uint64(n))
	dst = append(dst, scratch[:l-1]...)
	copy(dst[start+l:], dst[start+1:start+1+n])
	copy(dst[start:], scratch[:l])
	return dst
}

func appendLengthPrefixed(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// Restore adds the key groups of h that fall in the backend's range, read
// from r: the stream h names, positioned at its start. Key groups before
// the first one needed are skipped (by Seek when r is an io.Seeker, by
// reading otherwise) and reading stops after the last one needed. Call it
// once per handle; a job restoring at another parallelism passes every
// handle whose range intersects the backend's.
//
// The schema h records (States) is checked first: the key codec, and the
// value codecs of registered states. Entries of registered states are
// decoded now (migrated, when the state's codec reads the recorded one);
// entries of states not registered yet are kept as bytes, with their
// recorded schema, until GetValueState registers them (and written back
// unchanged by snapshots until then). Corrupted or truncated
// input returns an error naming the key group (and state), never panics;
// the backend may then hold part of the handle's entries and should be
// discarded.
func (b *HeapKeyedBackend[K]) Restore(r io.Reader, h checkpoint.KeyedStateHandle) error {
	if err := checkOffsets(h); err != nil {
		return err
	}
	if err := b.restoreSchema(h.States); err != nil {
		return err
	}
	return forEachSection(r, h, b.r, func(kg int, sec []byte) (bool, error) {
		aliased, err := b.restoreKeyGroup(kg, sec)
		return !aliased, err // raw entries of unregistered states point into sec
	})
}

// restoreSchema checks the schema a handle recorded (states) before its
// entries are read: the key codec now, the value codecs of registered
// states now, those of the others when they are registered.
func (b *HeapKeyedBackend[K]) restoreSchema(states []checkpoint.StateMeta) error {
	if err := checkKeyCodec(states, b.keyID, b.keyVersion); err != nil {
		return err
	}
	byName := make(map[string]checkpoint.StateMeta, len(states))
	var unregistered []checkpoint.StateMeta
	for _, m := range states {
		byName[m.Name] = m
		if _, ok := b.states[m.Name]; !ok {
			unregistered = append(unregistered, m)
		}
	}
	for name, t := range b.states {
		if err := t.useStored(byName[name]); err != nil {
			return err
		}
	}
	return mergeStored(b.stored, unregistered)
}

var errShort = errors.New("section ends early (truncated or corrupted)")

// readSection reads exactly n bytes, reusing buf when it is large enough.
// A stream shorter than n is an error; n beyond 64 MiB is read in steps so
// a corrupted offset cannot make it allocate more than the stream holds.
func readSection(r io.Reader, buf []byte, n int64) (sec, newBuf []byte, err error) {
	if n <= int64(cap(buf)) {
		sec = buf[:n]
		if _, err := io.ReadFull(r, sec); err != nil {
			return nil, buf, truncated(err)
		}
		return sec, buf, nil
	}
	if n <= 64<<20 {
		buf = make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, buf, truncated(err)
		}
		return buf, buf, nil
	}
	sec, err = io.ReadAll(io.LimitReader(r, n))
	if err != nil {
		return nil, nil, err
	}
	if int64(len(sec)) != n {
		return nil, nil, errShort
	}
	return sec, nil, nil
}

func truncated(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errShort
	}
	return err
}

// restoreKeyGroup restores one key group section. aliased reports whether
// entries kept as bytes point into sec.
func (b *HeapKeyedBackend[K]) restoreKeyGroup(kg int, sec []byte) (aliased bool, err error) {
	if len(sec) < 4 {
		return false, errShort
	}
	body := sec[:len(sec)-4]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(sec[len(sec)-4:]) {
		return false, errors.New("checksum mismatch (corrupted or truncated)")
	}
	rd := reader{b: body}
	if v := rd.byte(); rd.err == nil && (v == 0 || v > KeyedSnapshotVersion) {
		return false, fmt.Errorf("unknown keyed snapshot format version %d (this build reads up to %d)", v, KeyedSnapshotVersion)
	}
	nStates := rd.uvarint()
	idx := kg - b.r.Start
	for s := uint64(0); s < nStates && rd.err == nil; s++ {
		name := string(rd.bytes())
		kind := stateKind(rd.byte())
		n := rd.uvarint()
		if rd.err != nil {
			break
		}
		if n > uint64(len(rd.b))/2 { // every entry takes at least 2 bytes
			return aliased, fmt.Errorf("state %q: %d entries in %d bytes: %w", name, n, len(rd.b), errShort)
		}
		if t, ok := b.states[name]; ok {
			restore := t.restoreEntry
			if t.kind() != kind {
				old, ok := t.(interface {
					restoreOld(kg int, key, val []byte) error
				})
				if !ok || kind != kindValue {
					return aliased, fmt.Errorf("state %q was checkpointed as %s state, registered as %s state", name, kind, t.kind())
				}
				restore = old.restoreOld // a map or list checkpointed as one value
			}
			t.reserve(idx, int(n))
			for e := uint64(0); e < n; e++ {
				k, v := rd.bytes(), rd.bytes()
				if rd.err != nil {
					return aliased, fmt.Errorf("state %q: %w", name, rd.err)
				}
				if err := restore(idx, k, v); err != nil {
					return aliased, err
				}
			}
			continue
		}
		raw := b.restored[name]
		if raw == nil {
			raw = &rawState{k: kind, groups: make([][]rawEntry, b.nGroups)}
			b.restored[name] = raw
		} else if raw.k != kind {
			return aliased, fmt.Errorf("state %q is %s state here, %s state in another key group", name, kind, raw.k)
		}
		for e := uint64(0); e < n; e++ {
			k, v := rd.bytes(), rd.bytes()
			if rd.err != nil {
				return aliased, fmt.Errorf("state %q: %w", name, rd.err)
			}
			raw.groups[idx] = append(raw.groups[idx], rawEntry{key: k, val: v})
			aliased = true
		}
	}
	if rd.err != nil {
		return aliased, rd.err
	}
	if len(rd.b) != 0 {
		return aliased, fmt.Errorf("%d unexpected bytes at the end of the section", len(rd.b))
	}
	return aliased, nil
}

// reader decodes a section; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.err = errShort
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errShort
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}
