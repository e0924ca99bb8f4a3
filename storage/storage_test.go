package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir/checkpoint"
)

var ctx = context.Background()

// sampleMetadata is storagetest.SampleMetadata (which this package's
// internal tests cannot import).
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

// A leftover temp file of an interrupted commit is no checkpoint.
func TestInterruptedCommitIsNotACheckpoint(t *testing.T) {
	dir := t.TempDir()
	s, _ := NewFile(dir)
	os.MkdirAll(filepath.Join(dir, "chk-4"), 0o755)
	os.WriteFile(filepath.Join(dir, "chk-4", "_metadata.tmp-123"), []byte("WEIRMETA partial"), 0o644)
	if c, _ := s.Completed(ctx); len(c) != 0 {
		t.Fatalf("completed %v", c)
	}
	if m, _ := s.MaxID(ctx); m != 4 {
		t.Fatalf("max id %d", m)
	}
	if in, _ := s.Incomplete(ctx); len(in) != 1 || in[0] != 4 {
		t.Fatalf("incomplete %v", in)
	}
	if _, _, err := ResolveRestorePath(ctx, filepath.Join(dir, "chk-4")); err == nil || !strings.Contains(err.Error(), "incomplete") {
		t.Fatalf("restore from incomplete checkpoint: %v", err)
	}
	// The sweep of incomplete checkpoints deletes the debris, directory
	// and all.
	if err := s.Discard(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("left %v", entries)
	}
}

// Commit in a directory: the _metadata appears by a link from a synced
// temporary file, never replaces one, and leaves no temporary file.
func TestFileCommit(t *testing.T) {
	dir := t.TempDir()
	s, _ := NewFile(dir)
	md := sampleMetadata(3, checkpoint.StreamHandle{Path: "chk-3/x", Size: 1})
	if err := s.Commit(ctx, md); err != nil {
		t.Fatal(err)
	}
	other := sampleMetadata(3, checkpoint.StreamHandle{Path: "chk-3/x", Size: 1})
	other.JobName = "other"
	err := s.Commit(ctx, other)
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), filepath.Join(dir, "chk-3", "_metadata")+" already exists with other content") {
		t.Fatalf("second commit: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "chk-3"))
	if len(entries) != 1 || entries[0].Name() != "_metadata" {
		t.Fatalf("chk-3 holds %v", entries)
	}
	want, _ := EncodeMetadata(md)
	if got, _ := os.ReadFile(filepath.Join(dir, "chk-3", "_metadata")); !bytes.Equal(got, want) {
		t.Fatal("the _metadata was replaced")
	}
	// A stream is invisible until Close.
	w, err := s.CreateStream(ctx, 5, "x")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "abc")
	if _, err := os.Stat(filepath.Join(dir, "chk-5", "x")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a stream is visible before Close: %v", err)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	entries, _ = os.ReadDir(filepath.Join(dir, "chk-5"))
	if len(entries) != 1 || entries[0].Name() != "x" {
		t.Fatalf("chk-5 holds %v", entries)
	}
	// Discarding the last checkpoint removes its directory.
	if err := s.Discard(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "chk-5")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("chk-5 is still there: %v", err)
	}
}

// Without package storage/s3 linked, s3:// says which import it needs.
func TestUnregisteredScheme(t *testing.T) {
	want := "storage: s3:// needs github.com/weirstream/weir/storage/s3 imported (jobflags imports it)"
	if _, err := Open(ctx, "s3://bucket/x"); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Open: %v", err)
	}
	if _, _, err := ResolveRestorePath(ctx, "s3://bucket/x/chk-3"); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("ResolveRestorePath: %v", err)
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
	if err := s.Commit(ctx, md); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "chk-7", "_metadata")
	raw, _ := os.ReadFile(path)
	raw[30] ^= 1
	os.Remove(path)
	os.WriteFile(path, raw, 0o644)
	_, err = s.ReadMetadata(ctx, 7)
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
	s.Commit(ctx, sampleMetadata(2, h))
	s.Commit(ctx, sampleMetadata(9, h))
	for _, tc := range []struct {
		path string
		want checkpoint.ID
	}{
		{filepath.Join(dir, "chk-2"), 2},
		{filepath.Join(dir, "chk-2", "_metadata"), 2},
		{dir, 9},
		{"file://" + dir, 9},
	} {
		st, id, err := ResolveRestorePath(ctx, tc.path)
		if err != nil || id != tc.want {
			t.Fatalf("%s: %d %v, want %d", tc.path, id, err, tc.want)
		}
		if _, err := st.ReadMetadata(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := ResolveRestorePath(ctx, filepath.Join(dir, "nope")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing path: %v", err)
	}
	empty := t.TempDir()
	if _, _, err := ResolveRestorePath(ctx, empty); err == nil || !strings.Contains(err.Error(), "no completed checkpoint") {
		t.Fatalf("empty dir: %v", err)
	}
	if _, err := Open(ctx, "s4://bucket"); err == nil || !strings.Contains(err.Error(), "unsupported checkpoint storage scheme") {
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
