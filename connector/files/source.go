package files

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/checkpoint"
)

// closedChan is always ready: "read again now".
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// The position is checkpointed as weir's generator positions are: 8 bytes
// of split (always 0) and 8 of byte offset, big-endian, so that
// checkpoints of weir.TextFile (before this package) restore.
func encodePosition(split, pos int64) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b, uint64(split))
	binary.BigEndian.PutUint64(b[8:], uint64(pos))
	return b
}

func decodePosition(b []byte) (split, pos int64, err error) {
	if len(b) != 16 {
		return 0, 0, fmt.Errorf("position entry has %d bytes, want 16", len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), int64(binary.BigEndian.Uint64(b[8:])), nil
}

// TextFile adds a source emitting the lines of a text file (without the
// line break). Its position is the byte offset of the next line, so after a
// restore it resumes exactly where the checkpoint was taken. It is a
// non-parallel source that ends at the end of the file.
func TextFile(env *weir.Environment, path string) weir.Stream[string] {
	return weir.FromSource[string](env, TextSource{Path: path}, "file "+path)
}

// TextSource is the text file source (see TextFile).
type TextSource struct{ Path string }

// NonParallel implements weir.NonParallel: one file, one subtask.
func (TextSource) NonParallel() {}

// CreateReader implements weir.Source.
func (s TextSource) CreateReader(ctx weir.SourceContext) (weir.SourceReader[string], error) {
	f, err := os.Open(s.Path)
	if err != nil {
		return nil, fmt.Errorf("cannot open text file source: %w", err)
	}
	r := &textFileReader{f: f, path: s.Path}
	for _, e := range ctx.Restored {
		_, pos, err := decodePosition(e)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("cannot restore text file source %s: %w", s.Path, err)
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("cannot restore text file source: %w", err)
		}
		if pos < 0 || pos > st.Size() {
			f.Close()
			return nil, fmt.Errorf("cannot restore text file source %s: checkpointed offset %d is beyond its %d bytes (was the file replaced?)", s.Path, pos, st.Size())
		}
		if _, err := f.Seek(pos, io.SeekStart); err != nil {
			f.Close()
			return nil, fmt.Errorf("cannot restore text file source: %w", err)
		}
		r.pos = pos
	}
	r.br = bufio.NewReaderSize(f, 64<<10)
	return r, nil
}

type textFileReader struct {
	f    *os.File
	path string
	br   *bufio.Reader
	pos  int64
}

func (r *textFileReader) Read(buf []string) ([]string, weir.ReadStatus, error) {
	for len(buf) < cap(buf) {
		line, err := r.br.ReadString('\n')
		if len(line) > 0 && (err == nil || err == io.EOF) {
			r.pos += int64(len(line))
			n := len(line)
			if line[n-1] == '\n' {
				n--
				if n > 0 && line[n-1] == '\r' {
					n--
				}
			}
			buf = append(buf, line[:n])
		}
		if err == io.EOF {
			if len(buf) == 0 {
				return buf, weir.EndOfInput, nil
			}
			return buf, weir.MoreAvailable, nil
		}
		if err != nil {
			return buf, weir.NothingAvailable, fmt.Errorf("cannot read text file source %s at byte %d: %w", r.path, r.pos, err)
		}
	}
	return buf, weir.MoreAvailable, nil
}

func (r *textFileReader) Available() <-chan struct{} { return closedChan }

func (r *textFileReader) Snapshot(checkpoint.ID) ([][]byte, error) {
	return [][]byte{encodePosition(0, r.pos)}, nil
}

func (r *textFileReader) Close() error { return r.f.Close() }
