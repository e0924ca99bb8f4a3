package storage

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
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

// The conformance suite every checkpoint storage passes.
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
	} {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			if id, ok, err := s.Latest(); err != nil || ok {
				t.Fatalf("empty storage: latest %d %v %v", id, ok, err)
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
			r, err := s.OpenStream(h)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(r)
			r.Close()
			if string(got) != "hello state" {
				t.Fatalf("read back %q", got)
			}
			if _, err := s.CreateStream(3, "../escape"); err == nil {
				t.Fatal("a blob name with .. was accepted")
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
			if id, ok, _ := s.Latest(); !ok || id != 3 {
				t.Fatalf("latest %d %v", id, ok)
			}
			if err := s.Commit(sampleMetadata(5, h)); err != nil {
				t.Fatal(err)
			}
			if c, _ := s.Completed(); !reflect.DeepEqual(c, []checkpoint.ID{3, 5}) {
				t.Fatalf("completed %v", c)
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
			// Concurrent writers.
			var wg sync.WaitGroup
			errs := make(chan error, 16)
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
					if _, err := w.Close(); err != nil {
						errs <- err
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
		})
	}
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

func FuzzDecodeMetadata(f *testing.F) {
	b, _ := EncodeMetadata(sampleMetadata(1, checkpoint.StreamHandle{Path: "chk-1/x", Size: 1}))
	f.Add(b)
	f.Add([]byte("WEIRMETA"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		md, err := DecodeMetadata(data)
		if err == nil {
			if _, err := EncodeMetadata(md); err != nil {
				t.Fatalf("decoded metadata does not re-encode: %v", err)
			}
		}
	})
}
