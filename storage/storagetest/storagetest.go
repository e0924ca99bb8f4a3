// Package storagetest is the conformance suite of checkpoint storage: the
// behaviour every storage.BlobStore gives the checkpoint layout (streams,
// the commit point, listings, discards, the shared area and its
// collector, contexts), run alike by the file, memory and S3 stores.
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, func(t *testing.T) *storage.Storage { return storage.NewMemory("test") })
//	}
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/storage"
)

// SampleMetadata is the metadata of a small valid checkpoint id whose keyed
// state is the stream h.
func SampleMetadata(id checkpoint.ID, h checkpoint.StreamHandle) *checkpoint.Metadata {
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

// ReadAll reads the blob of h.
func ReadAll(t testing.TB, s *storage.Storage, h checkpoint.StreamHandle) []byte {
	t.Helper()
	r, err := s.OpenStream(context.Background(), h)
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

// Run runs the suite; open returns a new, empty storage for each subtest
// (and cleans it up with t.Cleanup). At the end no goroutine a subtest
// started may be left.
func Run(t *testing.T, open func(t *testing.T) *storage.Storage) {
	before := runtime.NumGoroutine()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, s *storage.Storage)
	}{
		{"Streams", testStreams},
		{"Names", testNames},
		{"Sizes", testSizes},
		{"Commit", testCommit},
		{"ConcurrentCommits", testConcurrentCommits},
		{"Listings", testListings},
		{"Discard", testDiscard},
		{"Shared", testShared},
		{"Collect", testCollect},
		{"Target", testTarget},
		{"ConcurrentWriters", testConcurrentWriters},
		{"Cancelled", testCancelled},
		{"CancelWriter", testCancelWriter},
		{"CancelReader", testCancelReader},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, open(t)) })
	}
	CheckGoroutines(t, before)
}

// CheckGoroutines waits up to 5 seconds for the number of goroutines to
// fall to before, and fails with their stacks if it does not.
func CheckGoroutines(t testing.TB, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var ctx = context.Background()

func write(t *testing.T, w storage.StreamWriter, err error, content string) checkpoint.StreamHandle {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, content); err != nil {
		t.Fatal(err)
	}
	h, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if h.Size != int64(len(content)) {
		t.Fatalf("handle %+v of %d bytes", h, len(content))
	}
	return h
}

func stream(t *testing.T, s *storage.Storage, id checkpoint.ID, name, content string) checkpoint.StreamHandle {
	t.Helper()
	w, err := s.CreateStream(ctx, id, name)
	return write(t, w, err, content)
}

// Streams round-trip, the empty one too, and an inline handle reads its
// own bytes.
func testStreams(t *testing.T, s *storage.Storage) {
	h := stream(t, s, 3, "0-0-1.keyed", "hello state")
	if h.Path != "chk-3/0-0-1.keyed" {
		t.Fatalf("handle path %q", h.Path)
	}
	if got := ReadAll(t, s, h); string(got) != "hello state" {
		t.Fatalf("read back %q", got)
	}
	eh := stream(t, s, 3, "0-0-2.keyed", "")
	if got := ReadAll(t, s, eh); len(got) != 0 {
		t.Fatalf("empty blob reads back %q", got)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10+3)
	w, err := s.CreateStream(ctx, 3, "big")
	if err != nil {
		t.Fatal(err)
	}
	for b := big; len(b) > 0; {
		k := min(len(b), 100_003)
		if n, err := w.Write(b[:k]); err != nil || n != k {
			t.Fatalf("write: %d of %d: %v", n, k, err)
		}
		b = b[k:]
	}
	bh, err := w.Close()
	if err != nil || bh.Size != int64(len(big)) {
		t.Fatalf("big blob: %+v %v", bh, err)
	}
	if got := ReadAll(t, s, bh); !bytes.Equal(got, big) {
		t.Fatalf("big blob reads back %d bytes, differing", len(got))
	}
	if got := ReadAll(t, s, checkpoint.StreamHandle{Inline: []byte("inline"), Size: 6}); string(got) != "inline" {
		t.Fatalf("inline handle reads back %q", got)
	}
	// An aborted stream leaves nothing.
	w, err = s.CreateStream(ctx, 3, "aborted")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "gone")
	w.Abort()
	if _, err := w.Close(); err == nil {
		t.Fatal("closed an aborted stream")
	}
	if keys := list(t, s, "chk-3/"); !slices.Equal(keys, []string{"chk-3/0-0-1.keyed", "chk-3/0-0-2.keyed", "chk-3/big"}) {
		t.Fatalf("chk-3 holds %v", keys)
	}
}

func list(t *testing.T, s *storage.Storage, prefix string) []string {
	t.Helper()
	keys, err := s.Store().List(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// Names are checked; a name is created once.
func testNames(t *testing.T, s *storage.Storage) {
	for _, name := range []string{"", "../escape", "a/b", `a\b`, "..", "_metadata"} {
		if _, err := s.CreateStream(ctx, 1, name); err == nil {
			t.Fatalf("stream name %q was accepted", name)
		}
		if _, err := s.CreateShared(ctx, name); err == nil {
			t.Fatalf("shared name %q was accepted", name)
		}
	}
	if _, err := s.CreateStream(ctx, 0, "x"); err == nil {
		t.Fatal("checkpoint id 0 was accepted")
	}
	stream(t, s, 1, "once", "1")
	if _, err := s.CreateStream(ctx, 1, "once"); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("creating a stream twice: %v", err)
	}
	// Two writers of one name: the second Close must not replace the
	// first blob silently, or fails (S3: the last one wins).
	w1, err1 := s.CreateStream(ctx, 1, "twice")
	w2, err2 := s.CreateStream(ctx, 1, "twice")
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	h1 := write(t, w1, nil, "first")
	io.WriteString(w2, "second")
	if _, err := w2.Close(); err != nil && !errors.Is(err, storage.ErrExists) {
		t.Fatalf("the second writer of a name: %v", err)
	} else if err != nil {
		if got := ReadAll(t, s, h1); string(got) != "first" {
			t.Fatalf("the first blob reads %q", got)
		}
	}
	for _, p := range []string{"../chk-2/x", "/etc/passwd", "chk-2//x", "chk-2/./x", `chk-2\x`} {
		if _, err := s.OpenStream(ctx, checkpoint.StreamHandle{Path: p, Size: 1}); err == nil || !strings.Contains(err.Error(), "leaves the checkpoint storage") {
			t.Fatalf("handle path %q: %v", p, err)
		}
	}
	if _, err := s.Store().List(ctx, "../"); err == nil {
		t.Fatal("listed ../")
	}
}

// A blob whose size is not the handle's is an error naming it; a missing
// one is ErrNotExist.
func testSizes(t *testing.T, s *storage.Storage) {
	h := stream(t, s, 2, "0-0-0.keyed", "0123456789")
	for _, size := range []int64{0, 5, 13} {
		bad := h
		bad.Size = size
		r, err := s.OpenStream(ctx, bad)
		if err == nil {
			r.Close()
		}
		want := fmt.Sprintf("has 10 bytes, the checkpoint recorded %d (truncated or replaced)", size)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "0-0-0.keyed") {
			t.Fatalf("size %d: %v, want an error naming the blob and saying %q", size, err, want)
		}
	}
	missing := checkpoint.StreamHandle{Path: "chk-2/nope", Size: 4}
	if _, err := s.OpenStream(ctx, missing); !errors.Is(err, storage.ErrNotExist) || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("missing blob: %v", err)
	}
}

// The _metadata is the commit point: created once; the same bytes again
// succeed, other bytes fail with ErrExists and change nothing.
func testCommit(t *testing.T, s *storage.Storage) {
	h := stream(t, s, 3, "0-0-1.keyed", "abc")
	md := SampleMetadata(3, h)
	if err := s.Commit(ctx, md); err != nil {
		t.Fatal(err)
	}
	back, err := s.ReadMetadata(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, md) {
		t.Fatalf("metadata round trip:\n got %+v\nwant %+v", back, md)
	}
	if err := s.Commit(ctx, md); err != nil {
		t.Fatalf("recommitting identical metadata: %v", err)
	}
	other := SampleMetadata(3, h)
	other.JobName = "another job"
	if err := s.Commit(ctx, other); !errors.Is(err, storage.ErrExists) || !strings.Contains(err.Error(), "checkpoint 3") {
		t.Fatalf("committing other metadata under id 3: %v", err)
	}
	if back, err := s.ReadMetadata(ctx, 3); err != nil || back.JobName != "job" {
		t.Fatalf("metadata after a refused commit: %+v %v", back, err)
	}
	if _, err := s.ReadMetadata(ctx, 4); err == nil || !strings.Contains(err.Error(), "checkpoint 4") {
		t.Fatalf("reading metadata never committed: %v", err)
	}
	bad := SampleMetadata(5, h)
	bad.Operators[0].Parallelism = 3
	if err := s.Commit(ctx, bad); err == nil {
		t.Fatal("committed invalid metadata")
	}
}

// Of concurrent commits of one id with different bytes exactly one wins.
func testConcurrentCommits(t *testing.T, s *storage.Storage) {
	h := checkpoint.StreamHandle{Inline: []byte("x"), Size: 1}
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			md := SampleMetadata(9, h)
			md.JobName = fmt.Sprint("job ", i)
			errs[i] = s.Commit(ctx, md)
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("commits %d and %d of checkpoint 9 both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, storage.ErrExists):
			t.Fatalf("commit %d: %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no commit succeeded")
	}
	if md, err := s.ReadMetadata(ctx, 9); err != nil || md.JobName != fmt.Sprint("job ", winner) {
		t.Fatalf("metadata %+v %v, want the winner's (%d)", md, err, winner)
	}
}

func ids(v ...checkpoint.ID) []checkpoint.ID { return v }

func checkLists(t *testing.T, s *storage.Storage, completed, incomplete []checkpoint.ID, maxID checkpoint.ID) {
	t.Helper()
	c, err := s.Completed(ctx)
	if err != nil || !slices.Equal(c, completed) {
		t.Fatalf("completed %v %v, want %v", c, err, completed)
	}
	in, err := s.Incomplete(ctx)
	if err != nil || !slices.Equal(in, incomplete) {
		t.Fatalf("incomplete %v %v, want %v", in, err, incomplete)
	}
	m, err := s.MaxID(ctx)
	if err != nil || m != maxID {
		t.Fatalf("max id %d %v, want %d", m, err, maxID)
	}
	l, ok, err := s.Latest(ctx)
	if err != nil || ok != (len(completed) > 0) || ok && l != completed[len(completed)-1] {
		t.Fatalf("latest %d %v %v, want the last of %v", l, ok, err, completed)
	}
}

// Completed, Latest, MaxID and Incomplete agree, sort numerically, and
// ignore what is no checkpoint.
func testListings(t *testing.T, s *storage.Storage) {
	checkLists(t, s, nil, nil, 0)
	h := stream(t, s, 3, "a", "a")
	checkLists(t, s, nil, ids(3), 3)
	if err := s.Commit(ctx, SampleMetadata(3, h)); err != nil {
		t.Fatal(err)
	}
	checkLists(t, s, ids(3), nil, 3)
	for _, id := range []checkpoint.ID{10, 9, 100, 2} {
		if err := s.Commit(ctx, SampleMetadata(id, h)); err != nil {
			t.Fatal(err)
		}
	}
	stream(t, s, 30, "a", "a")
	stream(t, s, 7, "a", "a")
	checkLists(t, s, ids(2, 3, 9, 10, 100), ids(7, 30), 100)
	// Not checkpoints: chk-x, chk-0, chk-007, a blob chk-31 without a
	// directory, and the shared area.
	for _, key := range []string{"chk-x/y", "chk-0/y", "chk-007/y", "chk-31", "chk-/y"} {
		if err := s.Store().Put(ctx, key, []byte("?")); err != nil {
			t.Fatal(err)
		}
	}
	w, err := s.CreateShared(ctx, "200-0-0-0-x")
	write(t, w, err, "s")
	checkLists(t, s, ids(2, 3, 9, 10, 100), ids(7, 30), 100)
}

// recorder records the deletes of a store and fails those fail says.
type recorder struct {
	storage.BlobStore
	mu      sync.Mutex
	deletes []string
	fail    func(key string) bool
}

func (r *recorder) Delete(ctx context.Context, key string) error {
	r.mu.Lock()
	r.deletes = append(r.deletes, key)
	fail := r.fail != nil && r.fail(key)
	r.mu.Unlock()
	if fail {
		return fmt.Errorf("injected: cannot delete %s", key)
	}
	return r.BlobStore.Delete(ctx, key)
}

// Discard deletes _metadata first, then everything else of the
// checkpoint, and nothing of the shared area or other checkpoints.
func testDiscard(t *testing.T, s *storage.Storage) {
	rec := &recorder{BlobStore: s.Store()}
	rs := storage.New(rec)
	a := stream(t, s, 4, "a", "a")
	b := stream(t, s, 4, "b", "b")
	stream(t, s, 40, "a", "a")
	w, err := s.CreateShared(ctx, "4-0-0-0-x")
	sh := write(t, w, err, "shared")
	if err := s.Commit(ctx, SampleMetadata(4, a)); err != nil {
		t.Fatal(err)
	}
	if err := rs.Discard(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if len(rec.deletes) != 3 || rec.deletes[0] != "chk-4/_metadata" {
		t.Fatalf("deletes %v, want chk-4/_metadata first and then the 2 blobs", rec.deletes)
	}
	checkLists(t, s, nil, ids(40), 40)
	for _, h := range []checkpoint.StreamHandle{a, b} {
		if r, err := s.OpenStream(ctx, h); err == nil {
			r.Close()
			t.Fatalf("%s survived the discard", h.Path)
		}
	}
	if got := ReadAll(t, s, sh); string(got) != "shared" {
		t.Fatalf("the shared blob reads %q after a discard", got)
	}
	if err := s.Discard(ctx, 42); err != nil {
		t.Fatalf("discarding an absent checkpoint: %v", err)
	}
	// A discard failing half way leaves no checkpoint that looks
	// complete.
	a5 := stream(t, s, 5, "a", "a")
	stream(t, s, 5, "b", "b")
	if err := s.Commit(ctx, SampleMetadata(5, a5)); err != nil {
		t.Fatal(err)
	}
	rec.fail = func(key string) bool { return key == "chk-5/b" }
	if err := rs.Discard(ctx, 5); err == nil || !strings.Contains(err.Error(), "checkpoint 5") {
		t.Fatalf("a failing discard: %v", err)
	}
	checkLists(t, s, nil, ids(5, 40), 40)
	rec.fail = nil
	if err := rs.Discard(ctx, 5); err != nil {
		t.Fatal(err)
	}
	checkLists(t, s, nil, ids(40), 40)
}

// The shared area: create once, list, delete (absent is no error).
func testShared(t *testing.T, s *storage.Storage) {
	if names, err := s.ListShared(ctx); err != nil || len(names) != 0 {
		t.Fatalf("empty shared area: %v %v", names, err)
	}
	var shared []checkpoint.StreamHandle
	for _, name := range []string{"6-0-0-000007.sst", "6-0-0-000004.sst"} {
		w, err := s.CreateShared(ctx, name)
		sh := write(t, w, err, "sst "+name)
		if sh.Path != storage.SharedPrefix+name {
			t.Fatalf("shared handle %+v", sh)
		}
		if got := ReadAll(t, s, sh); string(got) != "sst "+name {
			t.Fatalf("shared blob reads back %q", got)
		}
		shared = append(shared, sh)
	}
	if _, err := s.CreateShared(ctx, "6-0-0-000007.sst"); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("created a shared blob twice: %v", err)
	}
	names, err := s.ListShared(ctx)
	if err != nil || !slices.Equal(names, []string{"6-0-0-000004.sst", "6-0-0-000007.sst"}) {
		t.Fatalf("list shared: %v %v", names, err)
	}
	if err := s.DeleteShared(ctx, "6-0-0-000007.sst"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteShared(ctx, "6-0-0-000007.sst"); err != nil {
		t.Fatalf("deleting an absent shared blob: %v", err)
	}
	if err := s.DeleteShared(ctx, "../x"); err == nil {
		t.Fatal("deleted a shared blob named ../x")
	}
	if names, err := s.ListShared(ctx); err != nil || !slices.Equal(names, []string{"6-0-0-000004.sst"}) {
		t.Fatalf("list shared after delete: %v %v", names, err)
	}
	if r, err := s.OpenStream(ctx, shared[0]); err == nil {
		r.Close()
		t.Fatal("opened a deleted shared blob")
	}
	if got := ReadAll(t, s, shared[1]); string(got) != "sst 6-0-0-000004.sst" {
		t.Fatalf("the other shared blob reads back %q", got)
	}
	// Not in the shared area.
	if names := list(t, s, "chk-"); len(names) != 0 {
		t.Fatalf("shared blobs under chk-: %v", names)
	}
}

// The collector deletes the shared blobs that no completed checkpoint
// references and whose creator is not in flight.
func testCollect(t *testing.T, s *storage.Storage) {
	upload := func(id checkpoint.ID, name string) checkpoint.NamedStream {
		w, err := storage.NewTarget(ctx, s, id, "1-0-0").CreateShared(name)
		return checkpoint.NamedStream{Name: name, Stream: write(t, w, err, name)}
	}
	kept1, kept2 := upload(1, "000001.sst"), upload(2, "000002.sst")
	orphan := upload(2, "000003.sst")
	inFlight := upload(3, "000004.sst")
	md := SampleMetadata(2, checkpoint.StreamHandle{})
	md.Operators[1].Subtasks[0].Keyed = []checkpoint.KeyedStateHandle{{
		Range:       checkpoint.KeyGroupRange{Start: 0, End: 127},
		Incremental: &checkpoint.IncrementalHandle{Backend: "test", Files: []checkpoint.NamedStream{kept1, kept2}},
	}}
	if err := s.Commit(ctx, md); err != nil {
		t.Fatal(err)
	}
	refs := map[string]bool{}
	storage.SharedReferences(md, refs)
	if len(refs) != 2 {
		t.Fatalf("references %v", refs)
	}
	n, err := storage.CollectShared(ctx, s, func(id checkpoint.ID) bool { return id == 3 })
	if err != nil || n != 1 {
		t.Fatalf("collected %d %v, want the orphan", n, err)
	}
	want := []string{
		strings.TrimPrefix(kept1.Stream.Path, storage.SharedPrefix),
		strings.TrimPrefix(kept2.Stream.Path, storage.SharedPrefix),
		strings.TrimPrefix(inFlight.Stream.Path, storage.SharedPrefix),
	}
	if names, err := s.ListShared(ctx); err != nil || !slices.Equal(names, want) {
		t.Fatalf("shared after collection %v %v, want %v (orphan %s gone)", names, err, want, orphan.Stream.Path)
	}
	if err := s.Discard(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if n, err := storage.CollectShared(ctx, s, func(checkpoint.ID) bool { return false }); err != nil || n != 3 {
		t.Fatalf("collected %d %v after the discard, want 3", n, err)
	}
}

// A target names the blobs of a subtask's snapshot.
func testTarget(t *testing.T, s *storage.Storage) {
	tg := storage.NewTarget(ctx, s, 7, "1-2-0")
	if tg.CheckpointID() != 7 {
		t.Fatalf("checkpoint id %d", tg.CheckpointID())
	}
	w, err := tg.CreateStream("OPTIONS")
	if h := write(t, w, err, "o"); h.Path != "chk-7/1-2-0-OPTIONS" {
		t.Fatalf("private blob %q", h.Path)
	}
	w, err = tg.CreateShared("000009.sst")
	if h := write(t, w, err, "s"); h.Path != "shared/7-1-2-0-000009.sst" {
		t.Fatalf("shared blob %q", h.Path)
	}
	if id, ok := storage.SharedCreator("7-1-2-0-000009.sst"); !ok || id != 7 {
		t.Fatalf("creator %d %v", id, ok)
	}
}

func testConcurrentWriters(t *testing.T, s *storage.Storage) {
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	handles := make([]checkpoint.StreamHandle, 16)
	for i := range 16 {
		wg.Go(func() {
			w, err := s.CreateStream(ctx, 6, fmt.Sprintf("b%d", i))
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
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, h := range handles {
		if got := ReadAll(t, s, h); !bytes.Equal(got, bytes.Repeat([]byte{byte(i)}, 1000)) {
			t.Fatalf("concurrent blob %d reads back %d wrong bytes", i, len(got))
		}
	}
}

// Every call with a context already cancelled fails at once with the
// context's error.
func testCancelled(t *testing.T, s *storage.Storage) {
	h := stream(t, s, 1, "a", "abc")
	if err := s.Commit(ctx, SampleMetadata(1, h)); err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithCancel(ctx)
	cancel()
	for name, call := range map[string]func() error{
		"CreateStream": func() error { _, err := s.CreateStream(c, 2, "b"); return err },
		"CreateShared": func() error { _, err := s.CreateShared(c, "2-b"); return err },
		"OpenStream":   func() error { _, err := s.OpenStream(c, h); return err },
		"Commit":       func() error { return s.Commit(c, SampleMetadata(2, h)) },
		"ReadMetadata": func() error { _, err := s.ReadMetadata(c, 1); return err },
		"Completed":    func() error { _, err := s.Completed(c); return err },
		"Latest":       func() error { _, _, err := s.Latest(c); return err },
		"MaxID":        func() error { _, err := s.MaxID(c); return err },
		"Incomplete":   func() error { _, err := s.Incomplete(c); return err },
		"Discard":      func() error { return s.Discard(c, 1) },
		"ListShared":   func() error { _, err := s.ListShared(c); return err },
		"DeleteShared": func() error { return s.DeleteShared(c, "1-x") },
		"Collect": func() error {
			_, err := storage.CollectShared(c, s, func(checkpoint.ID) bool { return false })
			return err
		},
	} {
		start := time.Now()
		err := call()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: %v", name, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s with a cancelled context took %s", name, d)
		}
	}
	// Nothing changed.
	checkLists(t, s, ids(1), nil, 1)
	if got := ReadAll(t, s, h); string(got) != "abc" {
		t.Fatalf("read back %q", got)
	}
}

// A writer whose context ends fails, and its blob never appears.
func testCancelWriter(t *testing.T, s *storage.Storage) {
	c, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := s.CreateStream(c, 1, "cut")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("before")); err != nil {
		t.Fatal(err)
	}
	cancel()
	w.Write([]byte("after"))
	start := time.Now()
	if _, err := w.Close(); !errors.Is(err, context.Canceled) {
		t.Fatalf("closing a stream whose context ended: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("closing a stream whose context ended took %s", d)
	}
	w.Abort()
	if keys := list(t, s, "chk-1/"); len(keys) != 0 {
		t.Fatalf("a cancelled stream left %v", keys)
	}
}

// A reader whose context ends fails.
func testCancelReader(t *testing.T, s *storage.Storage) {
	big := bytes.Repeat([]byte("x"), 4<<20)
	w, err := s.CreateStream(ctx, 1, "big")
	if err != nil {
		t.Fatal(err)
	}
	w.Write(big)
	h, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithCancel(ctx)
	defer cancel()
	r, err := s.OpenStream(c, h)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := io.ReadFull(r, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	cancel()
	start := time.Now()
	if n, err := io.Copy(io.Discard, r); !errors.Is(err, context.Canceled) {
		t.Fatalf("reading on after the context ended: %d bytes, %v", n, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a read whose context ended took %s", d)
	}
}
