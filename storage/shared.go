package storage

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/weirstream/weir/checkpoint"
)

// Target is where one subtask writes the blobs of one checkpoint.
type Target interface {
	// CheckpointID is the checkpoint being written.
	CheckpointID() checkpoint.ID
	// CreateStream opens a blob private to this checkpoint. The target
	// makes name unique among the subtasks and operators of the job.
	CreateStream(name string) (StreamWriter, error)
	// CreateShared opens a blob in the shared area; the target prefixes
	// name with the checkpoint id ("<id>-<name>") so that the collector
	// knows which checkpoint created it, and makes it unique among the
	// subtasks and operators of the job.
	CreateShared(name string) (StreamWriter, error)
}

// NewTarget returns the Target of checkpoint id in s whose blob names all
// start with prefix (e.g. "<vertex>-<subtask>-<operator>").
func NewTarget(s Storage, id checkpoint.ID, prefix string) Target {
	return target{s: s, id: id, prefix: prefix}
}

type target struct {
	s      Storage
	id     checkpoint.ID
	prefix string
}

func (t target) CheckpointID() checkpoint.ID { return t.id }
func (t target) CreateStream(name string) (StreamWriter, error) {
	return t.s.CreateStream(t.id, t.prefix+"-"+name)
}
func (t target) CreateShared(name string) (StreamWriter, error) {
	return t.s.CreateShared(SharedName(t.id, t.prefix+"-"+name))
}

// SharedName is the name of a shared blob first written by checkpoint id.
func SharedName(id checkpoint.ID, name string) string {
	return strconv.FormatInt(int64(id), 10) + "-" + name
}

// SharedCreator parses the checkpoint id out of a SharedName.
func SharedCreator(name string) (checkpoint.ID, bool) {
	s, _, ok := strings.Cut(name, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 {
		return 0, false
	}
	return checkpoint.ID(n), true
}

// SharedReferences returns the names of the shared blobs the metadata
// references.
func SharedReferences(md *checkpoint.Metadata, into map[string]bool) {
	for _, op := range md.Operators {
		for _, st := range op.Subtasks {
			for _, k := range st.Keyed {
				if k.Incremental == nil {
					continue
				}
				for _, f := range k.Incremental.Files {
					if name, ok := strings.CutPrefix(f.Stream.Path, SharedPrefix); ok {
						into[name] = true
					}
				}
			}
		}
	}
}

// CollectShared deletes the shared blobs nothing needs any more: those no
// completed checkpoint in s references and whose creating checkpoint is
// not in flight (inFlight reports the checkpoints still being written;
// their uploads are referenced once they complete). A blob a retained
// checkpoint references is never deleted, which is the reference count of
// the shared area: computed from the retained checkpoints' metadata
// rather than kept as a counter, so it survives crashes and restarts
// unchanged. Blobs left by failed or aborted checkpoints (orphans) go in
// the first collection after their checkpoint ends. It returns the number
// of blobs deleted.
func CollectShared(s Storage, inFlight func(checkpoint.ID) bool) (int, error) {
	return CollectSharedWith(s, func(id checkpoint.ID) (map[string]bool, error) {
		md, err := s.ReadMetadata(id)
		if err != nil {
			return nil, err
		}
		refs := map[string]bool{}
		SharedReferences(md, refs)
		return refs, nil
	}, inFlight)
}

// CollectSharedWith is CollectShared with the references of each completed
// checkpoint given by refsOf, for a caller that knows them already (the
// coordinator driver keeps those of the checkpoints it wrote, instead of
// reading every retained _metadata again at every collection).
func CollectSharedWith(s Storage, refsOf func(checkpoint.ID) (map[string]bool, error), inFlight func(checkpoint.ID) bool) (int, error) {
	names, err := s.ListShared()
	if err != nil || len(names) == 0 {
		return 0, err
	}
	ids, err := s.Completed()
	if err != nil {
		return 0, err
	}
	refs := map[string]bool{}
	for _, id := range ids {
		r, err := refsOf(id)
		if err != nil {
			// A checkpoint whose metadata cannot be read may still
			// reference anything: delete nothing.
			return 0, fmt.Errorf("cannot collect unused shared state: %w", err)
		}
		for n := range r {
			refs[n] = true
		}
	}
	deleted := 0
	for _, name := range names {
		if refs[name] {
			continue
		}
		creator, ok := SharedCreator(name)
		if !ok || inFlight(creator) {
			continue
		}
		if err := s.DeleteShared(name); err != nil {
			return deleted, err
		}
		deleted++
	}
	return deleted, nil
}

// Location is the address of checkpoint id in s, as restore paths take it:
// "<root>/chk-<id>", with the query of a URL-like location kept at the end
// ("s3://bucket/prefix/chk-7?endpoint=...").
func Location(s Storage, id checkpoint.ID) string {
	if f, ok := s.(*File); ok {
		return filepath.Join(f.Root(), chkDir(id))
	}
	loc, query, hasQuery := strings.Cut(s.String(), "?")
	p := strings.TrimSuffix(loc, "/") + "/" + chkDir(id)
	if hasQuery {
		p += "?" + query
	}
	return p
}
