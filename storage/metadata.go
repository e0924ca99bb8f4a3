package storage

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"

	"github.com/weirstream/weir/checkpoint"
)

const (
	metaMagic     = "WEIRMETA"
	metaHeaderLen = 8 + 4 + 8
	metaTrailer   = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupted marks metadata whose bytes are damaged.
var ErrCorrupted = errors.New("corrupted")

// EncodeMetadata returns the bytes of a _metadata file.
func EncodeMetadata(md *checkpoint.Metadata) ([]byte, error) {
	if err := validate(md); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(md)
	if err != nil {
		return nil, fmt.Errorf("cannot encode checkpoint metadata: %w", err)
	}
	b := make([]byte, 0, metaHeaderLen+len(payload)+metaTrailer)
	b = append(b, metaMagic...)
	b = binary.BigEndian.AppendUint32(b, checkpoint.MetadataVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(len(payload)))
	b = append(b, payload...)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(payload, castagnoli))
	return b, nil
}

// DecodeMetadata parses and validates the bytes of a _metadata file.
func DecodeMetadata(b []byte) (*checkpoint.Metadata, error) {
	if len(b) < metaHeaderLen+metaTrailer {
		if len(b) >= len(metaMagic) && !bytes.Equal(b[:len(metaMagic)], []byte(metaMagic)) {
			return nil, errors.New("not a weir checkpoint metadata file (wrong magic)")
		}
		return nil, fmt.Errorf("truncated: %d bytes, a metadata file has at least %d (%w)", len(b), metaHeaderLen+metaTrailer, ErrCorrupted)
	}
	if !bytes.Equal(b[:8], []byte(metaMagic)) {
		return nil, errors.New("not a weir checkpoint metadata file (wrong magic)")
	}
	version := binary.BigEndian.Uint32(b[8:12])
	if version == 0 || version > checkpoint.MetadataVersion {
		return nil, fmt.Errorf("metadata format version %d is not supported by this build (it reads up to %d)", version, checkpoint.MetadataVersion)
	}
	n := binary.BigEndian.Uint64(b[12:20])
	if n != uint64(len(b)-metaHeaderLen-metaTrailer) {
		return nil, fmt.Errorf("payload length %d does not match the file's %d bytes (truncated or %w)", n, len(b), ErrCorrupted)
	}
	payload := b[metaHeaderLen : metaHeaderLen+int(n)]
	if got, want := crc32.Checksum(payload, castagnoli), binary.BigEndian.Uint32(b[metaHeaderLen+int(n):]); got != want {
		return nil, fmt.Errorf("checksum mismatch (%w)", ErrCorrupted)
	}
	var md checkpoint.Metadata
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&md); err != nil {
		return nil, fmt.Errorf("cannot decode payload: %w", err)
	}
	if err := validate(&md); err != nil {
		return nil, err
	}
	return &md, nil
}

func validate(md *checkpoint.Metadata) error {
	if md.Version < 1 || md.Version > checkpoint.MetadataVersion {
		return fmt.Errorf("invalid metadata: version %d", md.Version)
	}
	if md.CheckpointID < 1 {
		return fmt.Errorf("invalid metadata: checkpoint id %d", md.CheckpointID)
	}
	if md.MaxParallelism < 1 {
		return fmt.Errorf("invalid metadata: max parallelism %d", md.MaxParallelism)
	}
	uids := map[string]bool{}
	for _, op := range md.Operators {
		if uids[op.UID] {
			return fmt.Errorf("invalid metadata: operator UID %q appears twice", op.UID)
		}
		uids[op.UID] = true
		if op.Parallelism < 1 || len(op.Subtasks) != op.Parallelism {
			return fmt.Errorf("invalid metadata: operator %q has parallelism %d but %d subtasks", op.UID, op.Parallelism, len(op.Subtasks))
		}
		for i, st := range op.Subtasks {
			for _, k := range st.Keyed {
				r := k.Range
				if r.Start < 0 || r.End < r.Start || r.End >= md.MaxParallelism {
					return fmt.Errorf("invalid metadata: operator %q subtask %d has key group range %s outside [0,%d]", op.UID, i, r, md.MaxParallelism-1)
				}
				if k.Incremental != nil {
					if k.Incremental.Backend == "" || len(k.Incremental.Files) == 0 || len(k.Offsets) != 0 {
						return fmt.Errorf("invalid metadata: operator %q subtask %d has a malformed incremental state handle", op.UID, i)
					}
					for _, f := range k.Incremental.Files {
						if f.Name == "" || strings.ContainsAny(f.Name, "/\\") || f.Stream.Path == "" && f.Stream.Inline == nil {
							return fmt.Errorf("invalid metadata: operator %q subtask %d: incremental file %q has a bad name or no data", op.UID, i, f.Name)
						}
					}
					continue
				}
				if len(k.Offsets) != r.Len() {
					return fmt.Errorf("invalid metadata: operator %q subtask %d has %d key group offsets for range %s", op.UID, i, len(k.Offsets), r)
				}
				if (k.Stream.Path == "") == (k.Stream.Inline == nil) && k.Stream.Size > 0 {
					return fmt.Errorf("invalid metadata: operator %q subtask %d: a state handle needs a path or inline bytes", op.UID, i)
				}
			}
		}
	}
	return nil
}
