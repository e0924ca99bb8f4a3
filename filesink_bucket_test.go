package weir_test

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/connector/files"
	"github.com/weirstream/weir/internal/sinktest"
)

// keyBucket puts a conformance row into the bucket of its key, two
// levels deep.
func keyBucket(r sinktest.Row) string { return fmt.Sprintf("k=%d/p=%d", r.Key, r.Key%2) }

// TestBucketedFileSinkConformance: the conformance run with failures
// around pre-commit and commit into a bucketed, size-rolling file sink;
// every row is committed exactly once, in its key's bucket, and no
// in-progress or pending part is left in any bucket.
func TestBucketedFileSinkConformance(t *testing.T) {
	for _, mode := range []weir.Mode{weir.ExactlyOnce, weir.AtLeastOnce} {
		t.Run(mode.String(), func(t *testing.T) {
			out := t.TempDir()
			c := files.BucketedCommitterWith(out, files.SinkOptions{Suffix: ".txt", RollSize: 3000}, keyBucket,
				func(dst []byte, r sinktest.Row) []byte { return fmt.Appendf(dst, "%d %d %d\n", r.Key, r.Seq, r.Cnt) })
			sinktest.Run(t, c, mode, 5)
			rows, buckets := readBucketedRows(t, out)
			sinktest.Check(t, mode, rows)
			if len(buckets) != sinktest.Keys {
				t.Fatalf("buckets %v, want one per key", buckets)
			}
		})
	}
}

// readBucketedRows reads the committed rows under dir and checks each is
// in its key's bucket; it returns the rows and the buckets that hold files.
func readBucketedRows(t *testing.T, dir string) ([]sinktest.Row, map[string]int) {
	t.Helper()
	var rows []sinktest.Row
	buckets := map[string]int{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") {
			t.Errorf("left behind: %s", path)
			return nil
		}
		rel, _ := filepath.Rel(dir, filepath.Dir(path))
		bucket := filepath.ToSlash(rel)
		buckets[bucket]++
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var r sinktest.Row
			if _, err := fmt.Sscanf(sc.Text(), "%d %d %d", &r.Key, &r.Seq, &r.Cnt); err != nil {
				t.Fatalf("%s: bad line %q", path, sc.Text())
			}
			if want := keyBucket(r); bucket != want {
				t.Fatalf("row %v in bucket %q, want %q", r, bucket, want)
			}
			rows = append(rows, r)
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return rows, buckets
}

// A transaction of a bucketed sink survives its handle: encoded at
// pre-commit and decoded after a restart, it commits the parts of every
// bucket; an unbucketed sink's handles keep their format.
func TestBucketedFileSinkHandle(t *testing.T) {
	dir := t.TempDir()
	c := files.BucketedCommitterWith(dir, files.SinkOptions{Suffix: ".txt"}, func(s string) string { return s[:1] }, files.Lines[string])
	tc := weir.TxnContext{Prefix: "weir-j-s-0", Seq: 3}
	txn, err := c.Begin(tc)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"a1", "b1", "a2", "c1", "b2"} {
		if err := c.Write(txn, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.PreCommit(txn); err != nil {
		t.Fatal(err)
	}
	h, err := c.EncodeHandle(txn)
	if err != nil {
		t.Fatal(err)
	}
	// A new committer, as after a restart, commits from the handle.
	c2 := files.BucketedCommitterWith(dir, files.SinkOptions{Suffix: ".txt"}, func(s string) string { return s[:1] }, files.Lines[string])
	back, err := c2.DecodeHandle(h)
	if err != nil {
		t.Fatal(err)
	}
	if back.Name != txn.Name || back.Parts != 3 || strings.Join(back.Buckets, ",") != "a,b,c" {
		t.Fatalf("decoded %+v from %+v", back, txn)
	}
	if err := c2.Commit(back); err != nil {
		t.Fatal(err)
	}
	for b, want := range map[string]string{"a": "a1\na2\n", "b": "b1\nb2\n", "c": "c1\n"} {
		entries, _ := os.ReadDir(filepath.Join(dir, b))
		if len(entries) != 1 || strings.HasPrefix(entries[0].Name(), ".") {
			t.Fatalf("bucket %s holds %v", b, entries)
		}
		got, _ := os.ReadFile(filepath.Join(dir, b, entries[0].Name()))
		if string(got) != want {
			t.Fatalf("bucket %s: %q, want %q", b, got, want)
		}
	}
	// Truncated or corrupted handles are refused, not guessed at.
	for _, bad := range [][]byte{h[:len(h)-1], append(append([]byte(nil), h...), 'x'), {0}, {0, 1, 50, 'a'}} {
		if _, err := c2.DecodeHandle(bad); err == nil {
			t.Errorf("handle %q decoded", bad)
		}
	}
	// The handle of the unbucketed sink is unchanged: uvarint(parts), name.
	plain := files.Committer(t.TempDir(), ".txt", files.Lines[string])
	p, err := plain.DecodeHandle(append([]byte{2}, "weir-j-s-0-1"...))
	if err != nil || p.Parts != 2 || p.Name != "weir-j-s-0-1" || p.Buckets != nil {
		t.Fatalf("old handle: %+v, %v", p, err)
	}
}

// A record whose bucket is not a relative path inside the sink's
// directory fails the job with an error naming the bucket; nothing is
// written outside the directory.
func TestBucketedFileSinkBadBucket(t *testing.T) {
	for _, bucket := range []string{"../escape", "/abs", "a//b", ".hidden", "a/./b"} {
		t.Run(bucket, func(t *testing.T) {
			root := t.TempDir()
			out := filepath.Join(root, "out")
			env := weir.NewEnvironment()
			weir.FromSlice(env, []string{"x"}).SinkTo(files.BucketedSinkWith(out, files.SinkOptions{Suffix: ".txt"},
				func(string) string { return bucket }, files.Lines[string])).UID("files")
			err := env.Execute(context.Background(), "files")
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", bucket)) {
				t.Fatalf("want an error naming bucket %q, got %v", bucket, err)
			}
			entries, _ := os.ReadDir(root)
			if len(entries) != 1 || entries[0].Name() != "out" {
				t.Fatalf("written next to the sink's directory: %v", entries)
			}
		})
	}
}
