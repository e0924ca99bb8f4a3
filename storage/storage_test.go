package storage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/checkpoint"
)

func sampleMetadata(id checkpoint.ID, h checkpoint.StreamHandle) *checkpoint.Metadata {
	return &checkpoint.Metadata{
		Version: checkpoint.MetadataVersion, JobName: "job", CheckpointID: id, Kind: checkpoint.KindCheckpoint,
		TriggeredAt: time.Unix(100, 0).UTC(), CompletedAt: time.Unix(101, 0).UTC(), MaxParallelism: 128,
		Operators: []checkpoint.OperatorState{
			{UID: "src", Name: "Source", Parallelism: 2, Subtasks: []checkpoint.OperatorSubtaskState{
				{Operator: []checkpoint.ListStateSnapshot{{Name: "pos", Mode: checkpoint.Union, Entries: [][]byte{{1, 2}}}}},
				{},
			}},
			{UID: "sum", Parallelism: 1, Subtasks: []checkpoint.OperatorSubtaskState{
				{Keyed: []checkpoint.KeyedStateHandle{{Range: checkpoint.KeyGroupRange{Start: 0, End: 1}, Stream: h, Offsets: []int64{0, 3}}}},
			}},
		},
	}
}

// TestConformance runs the conformance suite on every checkpoint storage.
func TestConformance(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) Storage{
		"file": func(t *testing.T) Storage {
			s, err := Open("file://" + t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"memory": func(t *testing.T) Storage { return NewMemory("test") },
		"s3":     func(t *testing.T) Storage { return newFakeS3(t).open(t, "jobs/conformance", nil) },
	} {
		t.Run(name, func(t *testing.T) { testStorageConformance(t, open(t)) })
	}
}

// testStorageConformance is the behaviour every checkpoint storage shares.
func testStorageConformance(t *testing.T, s Storage) {
	t.Helper()
	if id, ok, err := s.Latest(); err != nil || ok {
		t.Fatalf("empty storage: latest %d %v %v", id, ok, err)
	}
	if m, err := s.MaxID(); err != nil || m != 0 {
		t.Fatalf("empty storage: max id %d %v", m, err)
	}
	w, err := s.CreateStream(3, "0-0-1.keyed")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "hello state")
	h, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if h.Size != 11 {
		t.Fatalf("size %d", h.Size)
	}
	if got := readAll(t, s, h); string(got) != "hello state" {
		t.Fatalf("read back %q", got)
	}
	if _, err := s.CreateStream(3, "../escape"); err == nil {
		t.Fatal("a blob name with .. was accepted")
	}
	// An empty blob is a blob.
	w, err = s.CreateStream(3, "0-0-2.keyed")
	if err != nil {
		t.Fatal(err)
	}
	eh, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if eh.Size != 0 {
		t.Fatalf("empty blob has size %d", eh.Size)
	}
	if got := readAll(t, s, eh); len(got) != 0 {
		t.Fatalf("empty blob reads back %q", got)
	}
	// Checkpoint 3 has a blob but no metadata: not completed, but
	// counted by MaxID.
	if c, _ := s.Completed(); len(c) != 0 {
		t.Fatalf("completed %v before commit", c)
	}
	if m, _ := s.MaxID(); m != 3 {
		t.Fatalf("max id %d, want 3", m)
	}
	md := sampleMetadata(3, h)
	if err := s.Commit(md); err != nil {
		t.Fatal(err)
	}
	back, err := s.ReadMetadata(3)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, md) {
		t.Fatalf("metadata round trip:\n got %+v\nwant %+v", back, md)
	}
	// Committing the same metadata again (a retried commit) is no error.
	if err := s.Commit(md); err != nil {
		t.Fatalf("recommitting identical metadata: %v", err)
	}
	if id, ok, _ := s.Latest(); !ok || id != 3 {
		t.Fatalf("latest %d %v", id, ok)
	}
	if err := s.Commit(sampleMetadata(5, h)); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Completed(); !reflect.DeepEqual(c, []checkpoint.ID{3, 5}) {
		t.Fatalf("completed %v", c)
	}
	if m, _ := s.MaxID(); m != 5 {
		t.Fatalf("max id %d, want 5", m)
	}
	if err := s.Discard(3); err != nil {
		t.Fatal(err)
	}
	if err := s.Discard(42); err != nil {
		t.Fatalf("discarding an absent checkpoint: %v", err)
	}
	if c, _ := s.Completed(); !reflect.DeepEqual(c, []checkpoint.ID{5}) {
		t.Fatalf("completed after discard %v", c)
	}
	if _, err := s.ReadMetadata(3); err == nil {
		t.Fatal("read a discarded checkpoint")
	}

	// The shared area.
	if names, err := s.ListShared(); err != nil || len(names) != 0 {
		t.Fatalf("empty shared area: %v %v", names, err)
	}
	var shared []checkpoint.StreamHandle
	for _, name := range []string{"6-0-0-000007.sst", "6-0-0-000004.sst"} {
		w, err := s.CreateShared(name)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, "sst "+name)
		sh, err := w.Close()
		if err != nil {
			t.Fatal(err)
		}
		if sh.Path != SharedPrefix+name || sh.Size != int64(len("sst "+name)) {
			t.Fatalf("shared handle %+v", sh)
		}
		if got := readAll(t, s, sh); string(got) != "sst "+name {
			t.Fatalf("shared blob reads back %q", got)
		}
		shared = append(shared, sh)
	}
	if _, err := s.CreateShared("6-0-0-000007.sst"); err == nil {
		t.Fatal("created a shared blob twice")
	}
	if _, err := s.CreateShared("../6-x"); err == nil {
		t.Fatal("a shared blob name with .. was accepted")
	}
	names, err := s.ListShared()
	sort.Strings(names)
	if err != nil || !reflect.DeepEqual(names, []string{"6-0-0-000004.sst", "6-0-0-000007.sst"}) {
		t.Fatalf("list shared: %v %v", names, err)
	}
	if err := s.DeleteShared("6-0-0-000007.sst"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteShared("6-0-0-000007.sst"); err != nil {
		t.Fatalf("deleting an absent shared blob: %v", err)
	}
	if names, err := s.ListShared(); err != nil || !reflect.DeepEqual(names, []string{"6-0-0-000004.sst"}) {
		t.Fatalf("list shared after delete: %v %v", names, err)
	}
	if r, err := s.OpenStream(shared[0]); err == nil {
		r.Close()
		t.Fatal("opened a deleted shared blob")
	}
	if got := readAll(t, s, shared[1]); string(got) != "sst 6-0-0-000004.sst" {
		t.Fatalf("the other shared blob reads back %q", got)
	}

	// Concurrent writers.
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	handles := make([]checkpoint.StreamHandle, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, err := s.CreateStream(6, fmt.Sprintf("b%d", i))
			if err != nil {
				errs <- err
				return
			}
			w.Write(bytes.Repeat([]byte{byte(i)}, 1000))
			h, err := w.Close()
			if err != nil {
				errs <- err
			}
			handles[i] = h
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, h := range handles {
		if got := readAll(t, s, h); !bytes.Equal(got, bytes.Repeat([]byte{byte(i)}, 1000)) {
			t.Fatalf("concurrent blob %d reads back %d wrong bytes", i, len(got))
		}
	}
}

func readAll(t *testing.T, s Storage, h checkpoint.StreamHandle) []byte {
	t.Helper()
	r, err := s.OpenStream(h)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A leftover temp file of an interrupted commit is no checkpoint.
func TestInterruptedCommitIsNotACheckpoint(t *testing.T) {
	dir := t.TempDir()
	s, _ := NewFile(dir)
	os.MkdirAll(filepath.Join(dir, "chk-4"), 0o755)
	os.WriteFile(filepath.Join(dir, "chk-4", ".metadata-123.tmp"), []byte("WEIRMETA partial"), 0o644)
	if c, _ := s.Completed(); len(c) != 0 {
		t.Fatalf("completed %v", c)
	}
	if m, _ := s.MaxID(); m != 4 {
		t.Fatalf("max id %d", m)
	}
	if _, _, err := ResolveRestorePath(filepath.Join(dir, "chk-4")); err == nil || !strings.Contains(err.Error(), "incomplete") {
		t.Fatalf("restore from incomplete checkpoint: %v", err)
	}
}

// Every truncation and every flipped byte of a metadata file is an error,
// never a panic and never different content.
func TestCorruptedMetadata(t *testing.T) {
	md := sampleMetadata(7, checkpoint.StreamHandle{Path: "chk-7/x", Size: 9})
	b, err := EncodeMetadata(md)
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(b); n++ {
		if _, err := DecodeMetadata(b[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: no error", n)
		}
	}
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 0x20
		got, err := DecodeMetadata(c)
		if err == nil && !reflect.DeepEqual(got, md) {
			t.Fatalf("flipped byte %d: decoded different content without error", i)
		}
		if err == nil {
			t.Fatalf("flipped byte %d: no error", i)
		}
	}
	c := bytes.Clone(b)
	copy(c, "NOTMETA!")
	if _, err := DecodeMetadata(c); err == nil || !strings.Contains(err.Error(), "not a weir checkpoint metadata file") {
		t.Fatalf("wrong magic: %v", err)
	}
	c = bytes.Clone(b)
	c[11] = 9
	if _, err := DecodeMetadata(c); err == nil || !strings.Contains(err.Error(), "version 9 is not supported") {
		t.Fatalf("future version: %v", err)
	}
	// Through the file storage the error names the file.
	dir := t.TempDir()
	s, _ := NewFile(dir)
	if err := s.Commit(md); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "chk-7", "_metadata")
	raw, _ := os.ReadFile(path)
	raw[30] ^= 1
	os.WriteFile(path, raw, 0o644)
	_, err = s.ReadMetadata(7)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("corrupted file: %v", err)
	}
}

func TestInvalidContentRejected(t *testing.T) {
	md := sampleMetadata(7, checkpoint.StreamHandle{Path: "chk-7/x", Size: 9})
	md.Operators[0].Parallelism = 3
	if _, err := EncodeMetadata(md); err == nil || !strings.Contains(err.Error(), "parallelism 3 but 2 subtasks") {
		t.Fatalf("got %v", err)
	}
	md = sampleMetadata(7, checkpoint.StreamHandle{Path: "chk-7/x", Size: 9})
	md.Operators[1].Subtasks[0].Keyed[0].Range.End = 200
	if _, err := EncodeMetadata(md); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Fatalf("got %v", err)
	}
}

func TestResolveRestorePath(t *testing.T) {
	dir := t.TempDir()
	s, _ := NewFile(dir)
	h := checkpoint.StreamHandle{Path: "chk-2/x", Size: 1}
	s.Commit(sampleMetadata(2, h))
	s.Commit(sampleMetadata(9, h))
	for _, tc := range []struct {
		path string
		want checkpoint.ID
	}{
		{filepath.Join(dir, "chk-2"), 2},
		{filepath.Join(dir, "chk-2", "_metadata"), 2},
		{dir, 9},
		{"file://" + dir, 9},
	} {
		st, id, err := ResolveRestorePath(tc.path)
		if err != nil || id != tc.want {
			t.Fatalf("%s: %d %v, want %d", tc.path, id, err, tc.want)
		}
		if _, err := st.ReadMetadata(id); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := ResolveRestorePath(filepath.Join(dir, "nope")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing path: %v", err)
	}
	empty := t.TempDir()
	if _, _, err := ResolveRestorePath(empty); err == nil || !strings.Contains(err.Error(), "no completed checkpoint") {
		t.Fatalf("empty dir: %v", err)
	}
	if _, err := Open("s4://bucket"); err == nil || !strings.Contains(err.Error(), "unsupported checkpoint storage scheme") {
		t.Fatalf("unknown scheme: %v", err)
	}
}

// FuzzDecodeMetadata feeds damaged _metadata files to DecodeMetadata: it
// errs, never panics, and what it accepts encodes again. With frame, data is
// the JSON payload and the target adds a valid header and checksum, so that
// mutations reach the JSON decoding and the validation instead of all
// stopping at the checksum. Inputs over 1 KiB are skipped: they reach
// nothing shorter ones do not, and the fuzz engine minimizes every input
// that finds new coverage at up to n²/2 runs for n bytes, which stalls it.
func FuzzDecodeMetadata(f *testing.F) {
	b, _ := EncodeMetadata(sampleMetadata(1, checkpoint.StreamHandle{Path: "chk-1/x", Size: 1}))
	f.Add(b, false)
	f.Add(b[metaHeaderLen:len(b)-metaTrailer], true)
	f.Add([]byte("WEIRMETA"), false)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, data []byte, frame bool) {
		if len(data) > 1024 {
			return
		}
		if frame {
			payload := data
			data = append([]byte(metaMagic), 0, 0, 0, 0)
			binary.BigEndian.PutUint32(data[len(metaMagic):], checkpoint.MetadataVersion)
			data = binary.BigEndian.AppendUint64(data, uint64(len(payload)))
			data = append(data, payload...)
			data = binary.BigEndian.AppendUint32(data, crc32.Checksum(payload, castagnoli))
		}
		md, err := DecodeMetadata(data)
		if err == nil {
			if _, err := EncodeMetadata(md); err != nil {
				t.Fatalf("decoded metadata does not re-encode: %v", err)
			}
		}
	})
}
