package state_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/restart"
	"github.com/weirstream/weir/state"
	"github.com/weirstream/weir/state/pebblestate"
	"github.com/weirstream/weir/storage"
)

// finishedJob runs a keyed count at parallelism 2 to its end, checkpointing
// into a new directory, and returns the directory and the metadata of the
// checkpoint it left.
func finishedJob(t *testing.T, opts ...weir.Option) (string, *checkpoint.Metadata) {
	t.Helper()
	dir := t.TempDir()
	base := []weir.Option{weir.Parallelism(2), weir.Checkpointing(10*time.Millisecond, weir.ExactlyOnce),
		weir.CheckpointStorage(dir), weir.RestartStrategy(restart.None())}
	env := weir.NewEnvironment(append(base, opts...)...)
	words := []string{"apple", "banana", "apple", "cherry", "banana", "apple", "date", "elder", "fig"}
	in := weir.FromSource(env, &weir.SliceSource[string]{Elements: words}, "words").UID("words")
	weir.Count(weir.KeyBy(in, func(w string) string { return w })).UID("count").
		SinkTo(weir.DiscardSink[weir.KV[string, int64]]{}).UID("sink")
	if err := env.Execute(context.Background(), "verify"); err != nil {
		t.Fatal(err)
	}
	st, err := storage.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	id, _, err := st.Latest(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	md, err := st.ReadMetadata(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return dir, md
}

// openers are the ways a test reads streams: through the file storage
// (which also compares a file's size with the handle's), and as plain
// files (so that only the verifier's own checks apply).
func openers(t *testing.T, dir string) map[string]func(checkpoint.StreamHandle) (io.ReadCloser, error) {
	st, err := storage.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]func(checkpoint.StreamHandle) (io.ReadCloser, error){
		"storage": st.Opener(t.Context()),
		"plain": func(h checkpoint.StreamHandle) (io.ReadCloser, error) {
			return os.Open(filepath.Join(dir, filepath.FromSlash(h.Path)))
		},
	}
}

// damage describes a way to break one file.
type damage struct {
	name  string
	apply func(t *testing.T, path string)
	want  string // in the error, besides the place
	is    error  // errors.Is, if not nil
}

var damages = []damage{
	{"flipped byte", func(t *testing.T, path string) {
		b := readFile(t, path)
		b[len(b)/2] ^= 0x55
		writeFile(t, path, b)
	}, "", nil},
	{"truncated", func(t *testing.T, path string) {
		b := readFile(t, path)
		writeFile(t, path, b[:len(b)-3])
	}, "", nil},
	{"appended to", func(t *testing.T, path string) {
		writeFile(t, path, append(readFile(t, path), 0))
	}, "", nil},
	{"missing", func(t *testing.T, path string) {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}, "", fs.ErrNotExist},
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// checkFails runs VerifyCheckpoint and checks that it fails naming the
// operator, the subtask and the file.
func checkFails(t *testing.T, md *checkpoint.Metadata, open func(checkpoint.StreamHandle) (io.ReadCloser, error), d damage, op string, subtask int, path string) {
	t.Helper()
	err := state.VerifyCheckpoint(md, open)
	var ve *state.VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("%s: want a *VerifyError, got %v", d.name, err)
	}
	if ve.Operator != op || ve.Subtask != subtask || ve.Path != path {
		t.Fatalf("%s: error names operator %q subtask %d file %q, want %q %d %q: %v", d.name, ve.Operator, ve.Subtask, ve.Path, op, subtask, path, err)
	}
	for _, w := range []string{`operator "` + op + `"`, "subtask ", path, d.want} {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("%s: error %q does not say %q", d.name, err, w)
		}
	}
	if d.is != nil && !errors.Is(err, d.is) {
		t.Fatalf("%s: error %v is not %v", d.name, err, d.is)
	}
}

// A checkpoint with key-group streams: intact it passes; a damaged .keyed
// file fails, naming the operator, the subtask and the file.
func TestVerifyCheckpoint(t *testing.T) {
	dir, md := finishedJob(t)
	for name, open := range openers(t, dir) {
		if err := state.VerifyCheckpoint(md, open); err != nil {
			t.Fatalf("%s: intact checkpoint: %v", name, err)
		}
	}
	op := md.Operator("count")
	if op == nil || len(op.Subtasks) != 2 || len(op.Subtasks[1].Keyed) != 1 || op.Subtasks[1].Keyed[0].Stream.Path == "" {
		t.Fatalf("want a keyed stream file of subtask 1 of operator count: %+v", op)
	}
	h := op.Subtasks[1].Keyed[0]
	path := filepath.Join(dir, filepath.FromSlash(h.Stream.Path))
	orig := readFile(t, path)
	for _, d := range damages {
		for name, open := range openers(t, dir) {
			writeFile(t, path, orig)
			d.apply(t, path)
			dd := d
			dd.name = name + ": " + d.name
			checkFails(t, md, open, dd, "count", 1, h.Stream.Path)
		}
	}
	// The plain opener: a flipped byte fails the section's checksum.
	writeFile(t, path, orig)
	damages[0].apply(t, path)
	checkFails(t, md, openers(t, dir)["plain"], damage{name: "checksum", want: "checksum mismatch"}, "count", 1, h.Stream.Path)
	writeFile(t, path, orig)

	// A handle whose key groups leave the max parallelism.
	bad := *md
	bad.MaxParallelism = h.Range.End
	checkFails(t, &bad, openers(t, dir)["storage"], damage{name: "key groups", want: "not within"}, "count", 1, h.Stream.Path)
}

// An incremental (pebble) checkpoint: intact it passes; a file with a bad
// CRC-32C, a truncated or missing file fails, naming the operator, the
// subtask and the file.
func TestVerifyIncrementalCheckpoint(t *testing.T) {
	dir, md := finishedJob(t, weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: t.TempDir()})))
	for name, open := range openers(t, dir) {
		if err := state.VerifyCheckpoint(md, open); err != nil {
			t.Fatalf("%s: intact checkpoint: %v", name, err)
		}
	}
	op := md.Operator("count")
	if op == nil || len(op.Subtasks) != 2 || len(op.Subtasks[0].Keyed) != 1 || op.Subtasks[0].Keyed[0].Incremental == nil {
		t.Fatalf("want an incremental snapshot of subtask 0 of operator count: %+v", op)
	}
	// Damage each file in turn: shared data files and private ones.
	for _, f := range op.Subtasks[0].Keyed[0].Incremental.Files {
		if f.Stream.Size == 0 {
			continue
		}
		path := filepath.Join(dir, filepath.FromSlash(f.Stream.Path))
		orig := readFile(t, path)
		for _, d := range damages {
			for name, open := range openers(t, dir) {
				writeFile(t, path, orig)
				d.apply(t, path)
				dd := d
				dd.name = name + ": " + d.name + " " + f.Name
				checkFails(t, md, open, dd, "count", 0, f.Stream.Path)
			}
		}
		writeFile(t, path, orig)
	}
	// The plain opener sees a flipped byte only through the CRC.
	var f checkpoint.NamedStream
	for _, f = range op.Subtasks[0].Keyed[0].Incremental.Files {
		if strings.HasSuffix(f.Name, ".sst") {
			break
		}
	}
	path := filepath.Join(dir, filepath.FromSlash(f.Stream.Path))
	damages[0].apply(t, path)
	checkFails(t, md, openers(t, dir)["plain"], damage{name: "crc", want: "CRC-32C"}, "count", 0, f.Stream.Path)
}
