package weir

import (
	"sync"

	"github.com/weirstream/weir/checkpoint"
)

// CollectSink gathers a stream's records in memory, transactionally: what a
// subtask writes between two checkpoint barriers becomes visible in
// Committed only when that checkpoint completes (or, without
// checkpointing, at the end of input), and is dropped if the job restores
// from an earlier checkpoint. It is the in-memory model of a two-phase-commit
// sink, meant for tests and examples: Committed shows what an exactly-once
// sink would have delivered, Written everything that was ever written.
//
// A CollectSink outlives the attempts of a job (it lives in the test's
// memory), so its pending transactions survive failover like prepared
// transactions in a database. Several sinks of a job may share one
// (their operators' UIDs keep their transactions apart).
type CollectSink[T any] struct {
	mu        sync.Mutex
	committed []T
	written   []T
	// pending[sink subtask][checkpoint] holds pre-committed epochs.
	pending map[collectKey]map[checkpoint.ID][]T
}

// collectKey is a sink subtask: one CollectSink may back several sink
// operators of a job.
type collectKey struct {
	uid     string
	subtask int
}

// NewCollectSink returns an empty sink.
func NewCollectSink[T any]() *CollectSink[T] {
	return &CollectSink[T]{pending: map[collectKey]map[checkpoint.ID][]T{}}
}

// Committed returns the committed records, in commit order.
func (c *CollectSink[T]) Committed() []T {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]T(nil), c.committed...)
}

// Written returns every record ever written, including ones later rolled
// back by a restore.
func (c *CollectSink[T]) Written() []T {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]T(nil), c.written...)
}

// CreateWriter implements Sink. On restore it commits the epochs
// pre-committed up to the restored checkpoint and drops later ones, which
// is what a two-phase-commit sink does with its prepared transactions.
func (c *CollectSink[T]) CreateWriter(ctx SinkContext) (SinkWriter[T], error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := collectKey{ctx.OperatorUID, ctx.Subtask}
	p := c.pending[key]
	if p == nil {
		p = map[checkpoint.ID][]T{}
		c.pending[key] = p
	}
	// Epochs of old subtask s are settled by new subtask s mod parallelism
	// (after a rescale down, subtasks that no longer exist left some).
	for k, q := range c.pending {
		if k.uid != ctx.OperatorUID || k.subtask%max(ctx.Parallelism, 1) != ctx.Subtask {
			continue
		}
		if ctx.Restored {
			c.commitLocked(q, ctx.RestoredCheckpoint)
		}
		clear(q)
	}
	return &collectWriter[T]{c: c, key: key, checkpointing: ctx.Checkpointing}, nil
}

func (c *CollectSink[T]) commitLocked(p map[checkpoint.ID][]T, upTo checkpoint.ID) {
	for {
		// Commit in checkpoint order.
		var first checkpoint.ID
		for id := range p {
			if id <= upTo && (first == 0 || id < first) {
				first = id
			}
		}
		if first == 0 {
			return
		}
		c.committed = append(c.committed, p[first]...)
		delete(p, first)
	}
}

type collectWriter[T any] struct {
	c             *CollectSink[T]
	key           collectKey
	checkpointing bool
	epoch         []T
}

func (w *collectWriter[T]) Write(r T) error {
	w.epoch = append(w.epoch, r)
	w.c.mu.Lock()
	w.c.written = append(w.c.written, r)
	w.c.mu.Unlock()
	return nil
}

func (w *collectWriter[T]) SnapshotState(id checkpoint.ID) ([][]byte, error) {
	w.c.mu.Lock()
	w.c.pending[w.key][id] = w.epoch
	w.c.mu.Unlock()
	w.epoch = nil
	return nil, nil
}

func (w *collectWriter[T]) NotifyCheckpointComplete(id checkpoint.ID) error {
	w.c.mu.Lock()
	w.c.commitLocked(w.c.pending[w.key], id)
	w.c.mu.Unlock()
	return nil
}

func (w *collectWriter[T]) NotifyCheckpointAborted(checkpoint.ID) error { return nil }

func (w *collectWriter[T]) Finish() error {
	if !w.checkpointing {
		w.c.mu.Lock()
		w.c.committed = append(w.c.committed, w.epoch...)
		w.c.mu.Unlock()
		w.epoch = nil
	}
	return nil
}

func (w *collectWriter[T]) Close() error { return nil }
