package state

import (
	"fmt"
	"iter"
	"sort"

	"github.com/weirstream/weir/checkpoint"
)

// OperatorBackend holds the operator list states of one operator in one
// subtask. Entries are small (source positions, transaction handles): a
// snapshot copies them synchronously and they travel inline in the
// checkpoint metadata.
type OperatorBackend struct {
	restored map[string]checkpoint.ListStateSnapshot
	states   map[string]listTable
	order    []string
}

type listTable interface {
	snapshot() (checkpoint.ListStateSnapshot, error)
}

// NewOperatorBackend returns a backend holding the restored states.
func NewOperatorBackend(restored []checkpoint.ListStateSnapshot) *OperatorBackend {
	b := &OperatorBackend{restored: map[string]checkpoint.ListStateSnapshot{}, states: map[string]listTable{}}
	for _, l := range restored {
		if prev, ok := b.restored[l.Name]; ok {
			prev.Entries = append(prev.Entries[:len(prev.Entries):len(prev.Entries)], l.Entries...) // never into the caller's array
			b.restored[l.Name] = prev
			continue
		}
		b.restored[l.Name] = l
	}
	return b
}

// ListState is a list of values per operator subtask (operator state) or
// per key (keyed state, GetKeyedListState).
type ListState[T any] interface {
	// Get returns the list, materialised. The slice may be the state's
	// own: do not modify it (use Update or Add).
	Get() []T
	// All iterates over the list in order without materialising it
	// (keyed state in a RawKeyedBackend reads it from the store).
	All() iter.Seq[T]
	// Update replaces the list with a copy of v.
	Update(v []T)
	// Add appends v.
	Add(v T)
	// AddAll appends the elements of v in order.
	AddAll(v []T)
	// Clear empties the list.
	Clear()
}

type listState[T any] struct {
	name  string
	mode  checkpoint.Redistribution
	codec Codec[T]
	items []T
}

// GetListState registers (or returns) the list state called name.
func GetListState[T any](b *OperatorBackend, name string, mode checkpoint.Redistribution, c Codec[T]) (ListState[T], error) {
	if t, ok := b.states[name]; ok {
		ls, ok := t.(*listState[T])
		if !ok {
			return nil, fmt.Errorf("list state %q is already registered with another type", name)
		}
		return ls, nil
	}
	ls := &listState[T]{name: name, mode: mode, codec: c}
	if r, ok := b.restored[name]; ok {
		for i, e := range r.Entries {
			v, err := c.Decode(e)
			if err != nil {
				return nil, fmt.Errorf("cannot restore list state %q entry %d: %w", name, i, err)
			}
			ls.items = append(ls.items, v)
		}
		delete(b.restored, name)
	}
	b.states[name] = ls
	b.order = append(b.order, name)
	return ls, nil
}

func (l *listState[T]) Get() []T     { return l.items }
func (l *listState[T]) Update(v []T) { l.items = append(l.items[:0:0], v...) }
func (l *listState[T]) Add(v T)      { l.items = append(l.items, v) }
func (l *listState[T]) AddAll(v []T) { l.items = append(l.items, v...) }
func (l *listState[T]) All() iter.Seq[T] {
	return func(yield func(T) bool) {
		for _, x := range l.items {
			if !yield(x) {
				return
			}
		}
	}
}
func (l *listState[T]) Clear() { l.items = nil }
func (l *listState[T]) snapshot() (s checkpoint.ListStateSnapshot, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("cannot encode list state %q: %v", l.name, p)
		}
	}()
	s = checkpoint.ListStateSnapshot{Name: l.name, Mode: l.mode, Entries: make([][]byte, len(l.items))}
	for i, v := range l.items {
		s.Entries[i] = l.codec.Append(nil, v)
	}
	return s, nil
}

// Snapshot encodes every list state, synchronously (the entries are small
// and the result travels inline in the checkpoint metadata). States are in
// registration order, followed by restored states nobody registered, which
// are kept unchanged (sorted by name).
func (b *OperatorBackend) Snapshot() ([]checkpoint.ListStateSnapshot, error) {
	out := make([]checkpoint.ListStateSnapshot, 0, len(b.order)+len(b.restored))
	for _, name := range b.order {
		s, err := b.states[name].snapshot()
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	rest := make([]string, 0, len(b.restored))
	for name := range b.restored {
		rest = append(rest, name)
	}
	sort.Strings(rest)
	for _, name := range rest {
		out = append(out, b.restored[name])
	}
	return out, nil
}

// Redistribute spreads the list states of old subtasks (old[i] is subtask
// i's snapshot) over newParallelism subtasks. SplitEvenly concatenates the
// entries of all old subtasks in subtask order and deals them out in
// contiguous runs whose lengths differ by at most one (new subtask s gets
// entries [n*s/p, n*(s+1)/p)); Union gives every new subtask every entry.
// Every new subtask gets every state name, possibly with no entries. The
// mode of a name is the one of its first occurrence. Entries are shared with
// old, not copied.
func Redistribute(old [][]checkpoint.ListStateSnapshot, newParallelism int) [][]checkpoint.ListStateSnapshot {
	if newParallelism <= 0 {
		return nil
	}
	type agg struct {
		mode    checkpoint.Redistribution
		entries [][]byte
	}
	var names []string
	byName := map[string]*agg{}
	for _, sub := range old {
		for _, l := range sub {
			a := byName[l.Name]
			if a == nil {
				a = &agg{mode: l.Mode}
				byName[l.Name] = a
				names = append(names, l.Name)
			}
			a.entries = append(a.entries, l.Entries...)
		}
	}
	out := make([][]checkpoint.ListStateSnapshot, newParallelism)
	for _, name := range names {
		a := byName[name]
		n := len(a.entries)
		for s := range newParallelism {
			l := checkpoint.ListStateSnapshot{Name: name, Mode: a.mode}
			if a.mode == checkpoint.Union {
				l.Entries = a.entries[:n:n]
			} else {
				lo, hi := n*s/newParallelism, n*(s+1)/newParallelism
				l.Entries = a.entries[lo:hi:hi]
			}
			out[s] = append(out[s], l)
		}
	}
	return out
}
