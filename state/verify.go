package state

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/weirstream/weir/checkpoint"
)

// VerifyError is a problem VerifyCheckpoint or VerifyKeyedState found in
// a keyed state handle: where it is, and what.
type VerifyError struct {
	// Operator and Subtask locate the handle (VerifyCheckpoint sets them;
	// VerifyKeyedState leaves Operator empty).
	Operator string
	Subtask  int
	// KeyGroups is the handle's key group range.
	KeyGroups checkpoint.KeyGroupRange
	// Path is the damaged stream or file, as the handle records it
	// ("inline" for bytes kept in the metadata).
	Path string
	Err  error
}

func (e *VerifyError) Error() string {
	if e.Operator == "" {
		return fmt.Sprintf("cannot read keyed state of key groups %s (%s): %v", e.KeyGroups, e.Path, e.Err)
	}
	return fmt.Sprintf("cannot read keyed state of operator %q subtask %d (%s): %v", e.Operator, e.Subtask, e.Path, e.Err)
}

func (e *VerifyError) Unwrap() error { return e.Err }

// VerifyCheckpoint checks that every keyed state handle of md can be read
// back: a key-group stream is read whole, with every section's checksum
// and structure checked as a restore does, its key groups within the
// handle's range and the range within the max parallelism; every file of
// an incremental (native) snapshot exists, has the recorded size and the
// recorded CRC-32C. It opens streams with open (a checkpoint storage's
// OpenStream) and returns the first problem, a *VerifyError naming the
// operator UID, the subtask and the file, or nil.
//
// The files of an incremental snapshot are checked as bytes, not opened
// as a database (that needs the backend); operator list states live in
// the metadata itself, which its reader has checked.
func VerifyCheckpoint(md *checkpoint.Metadata, open func(checkpoint.StreamHandle) (io.ReadCloser, error)) error {
	for _, op := range md.Operators {
		for i, sub := range op.Subtasks {
			for _, h := range sub.Keyed {
				if err := VerifyKeyedState(h, md.MaxParallelism, open, nil); err != nil {
					var ve *VerifyError
					if errors.As(err, &ve) {
						ve.Operator, ve.Subtask = op.UID, i
					}
					return err
				}
			}
		}
	}
	return nil
}

// VerifyKeyedState checks one keyed state handle as VerifyCheckpoint does
// (maxParallelism < 1 skips the range's upper bound). visit, if not nil,
// sees every entry of a key-group stream as ReadKeyGroups passes it, so
// that a caller can verify and read in one pass; an incremental snapshot's
// files are only checked, visit sees none of them. An error is a
// *VerifyError without Operator, unless visit returned it.
func VerifyKeyedState(h checkpoint.KeyedStateHandle, maxParallelism int, open func(checkpoint.StreamHandle) (io.ReadCloser, error), visit func(RawEntry) error) error {
	fail := func(path string, err error) error {
		return &VerifyError{KeyGroups: h.Range, Path: path, Err: err}
	}
	switch {
	case h.Range.Len() == 0:
		return fail(streamPath(h.Stream), fmt.Errorf("empty key group range %s (corrupted metadata)", h.Range))
	case h.Range.Start < 0 || (maxParallelism > 0 && h.Range.End >= maxParallelism):
		return fail(streamPath(h.Stream), fmt.Errorf("key groups %s are not within [0,%d] (corrupted metadata)", h.Range, maxParallelism-1))
	}
	if inc := h.Incremental; inc != nil {
		if len(inc.Files) == 0 {
			return fail("incremental "+inc.Backend, errors.New("the snapshot lists no files (corrupted metadata)"))
		}
		for _, f := range inc.Files {
			if err := verifyFile(f, open); err != nil {
				return fail(streamPath(f.Stream), err)
			}
		}
		return nil
	}
	rc, err := open(h.Stream)
	if err != nil {
		return fail(streamPath(h.Stream), err)
	}
	defer rc.Close()
	var visitErr error
	cr := &byteCounter{r: rc}
	err = ReadKeyGroups(cr, h, func(e RawEntry) error {
		if visit == nil {
			return nil
		}
		if err := visit(e); err != nil {
			visitErr = err
			return err
		}
		return nil
	})
	if visitErr != nil && errors.Is(err, visitErr) {
		return err // the caller's, not the stream's
	}
	if err == nil && h.Stream.Size > 0 {
		// The sections end at the recorded size; more bytes mean the file
		// is not the one the checkpoint wrote.
		if n, _ := io.Copy(io.Discard, cr); n > 0 {
			err = fmt.Errorf("the stream has %d bytes, the checkpoint recorded %d (replaced or appended to)", cr.n, h.Stream.Size)
		}
	}
	if err != nil {
		return fail(streamPath(h.Stream), err)
	}
	return nil
}

// verifyFile reads one file of an incremental snapshot and compares its
// size and CRC-32C with the recorded ones.
func verifyFile(f checkpoint.NamedStream, open func(checkpoint.StreamHandle) (io.ReadCloser, error)) error {
	rc, err := open(f.Stream)
	if err != nil {
		return fmt.Errorf("file %s: %w", f.Name, err)
	}
	defer rc.Close()
	crc := crc32.New(castagnoli)
	n, err := io.Copy(crc, rc)
	if err != nil {
		return fmt.Errorf("file %s: cannot read it: %w", f.Name, err)
	}
	if n != f.Stream.Size {
		return fmt.Errorf("file %s has %d bytes, the checkpoint recorded %d (truncated or replaced)", f.Name, n, f.Stream.Size)
	}
	if got := crc.Sum32(); got != f.CRC {
		return fmt.Errorf("file %s is corrupted: CRC-32C %08x, the checkpoint recorded %08x", f.Name, got, f.CRC)
	}
	return nil
}

func streamPath(h checkpoint.StreamHandle) string {
	if h.Path == "" {
		return "inline"
	}
	return h.Path
}

// byteCounter counts the bytes read through it. It hides any Seek of
// r, so a reader skips by reading (and the count stays right).
type byteCounter struct {
	r io.Reader
	n int64
}

func (c *byteCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
