package storage

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/weirstream/weir/checkpoint"
)

// Target is where one subtask writes the blobs of one checkpoint; it is
// the state.SnapshotTarget a native snapshot writes itself to. It carries
// the context of the snapshot: the writers it creates live under it.
type Target struct {
	ctx    context.Context
	s      *Storage
	id     checkpoint.ID
	prefix string
}

// NewTarget returns the Target of checkpoint id in s whose blob names all
// start with prefix (e.g. "<vertex>-<subtask>-<operator>"); ctx governs
// every blob written through it.
func NewTarget(ctx context.Context, s *Storage, id checkpoint.ID, prefix string) *Target {
	return &Target{ctx: ctx, s: s, id: id, prefix: prefix}
}

// CheckpointID is the checkpoint being written.
func (t *Target) CheckpointID() checkpoint.ID { return t.id }

// CreateStream opens a blob private to this checkpoint, named
// "<prefix>-<name>" to keep it apart from the other subtasks' and
// operators'.
func (t *Target) CreateStream(name string) (checkpoint.StreamWriter, error) {
	return t.s.CreateStream(t.ctx, t.id, t.prefix+"-"+name)
}

// CreateShared opens a blob in the shared area, named
// "<id>-<prefix>-<name>" (SharedName) so that the collector knows which
// checkpoint created it.
func (t *Target) CreateShared(name string) (checkpoint.StreamWriter, error) {
	return t.s.CreateShared(t.ctx, SharedName(t.id, t.prefix+"-"+name))
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
func CollectShared(ctx context.Context, s *Storage, inFlight func(checkpoint.ID) bool) (int, error) {
	return CollectSharedWith(ctx, s, func(id checkpoint.ID) (map[string]bool, error) {
		md, err := s.ReadMetadata(ctx, id)
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
func CollectSharedWith(ctx context.Context, s *Storage, refsOf func(checkpoint.ID) (map[string]bool, error), inFlight func(checkpoint.ID) bool) (int, error) {
	names, err := s.ListShared(ctx)
	if err != nil || len(names) == 0 {
		return 0, err
	}
	ids, err := s.Completed(ctx)
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
		if err := s.DeleteShared(ctx, name); err != nil {
			return deleted, err
		}
		deleted++
	}
	return deleted, nil
}
