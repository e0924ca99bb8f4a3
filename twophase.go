package weir

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/weirstream/weir/checkpoint"
)

// TxnContext names the transactions of one sink subtask.
type TxnContext struct {
	// Prefix is unique to (job, sink UID, subtask) and stable across
	// restarts: every transaction the subtask opens has a name starting
	// with it, which is how AbortLingering finds the ones a crash left.
	Prefix string
	// Seq numbers the subtask's transactions; it is checkpointed, so after a
	// restore the names continue where the checkpoint was.
	Seq     int64
	Subtask int
	Logger  *slog.Logger
}

// Name is the conventional transaction name: Prefix-Seq.
func (c TxnContext) Name() string { return fmt.Sprintf("%s-%d", c.Prefix, c.Seq) }

// TwoPhaseCommitter is the external system's side of an exactly-once sink:
// weir calls it from one subtask goroutine, one transaction per checkpoint
// epoch, and keeps the pre-committed transaction handles in its checkpoints.
//
// The contract that makes the sink exactly once:
//   - after PreCommit returns, Commit of that handle must succeed, also from
//     a new process after a crash (the handle is all it gets);
//   - Commit is idempotent: committing a transaction that was already
//     committed (before a crash) succeeds;
//   - AbortLingering removes every transaction whose name starts with
//     ctx.Prefix except those in keep — the ones a failed attempt left open
//     or pre-committed after the restored checkpoint. ctx.Seq is the
//     sequence number the restored checkpoint would use next: the failed
//     attempt's transactions are numbered from there (a system that cannot
//     list transactions by prefix, like Kafka, aborts a window of names
//     from ctx.Seq on).
type TwoPhaseCommitter[T, TXN any] interface {
	Begin(ctx TxnContext) (TXN, error)
	Write(txn TXN, record T) error
	PreCommit(txn TXN) error
	Commit(txn TXN) error
	Abort(txn TXN) error
	AbortLingering(ctx TxnContext, keep []TXN) error
	// EncodeHandle and DecodeHandle put a handle into checkpoint state.
	EncodeHandle(txn TXN) ([]byte, error)
	DecodeHandle(b []byte) (TXN, error)
}

// TwoPhaseCommitSink turns a TwoPhaseCommitter into an exactly-once Sink:
// records go into the current transaction; when a checkpoint barrier
// passes, the transaction is pre-committed and its handle stored in the
// checkpoint; when the checkpoint completes, every pre-committed
// transaction up to it is committed. After a restore the sink commits the
// handles in the restored checkpoint (they belong to a completed
// checkpoint) and aborts every other transaction the subtask opened.
//
// Without checkpointing, the sink commits once, at the end of input.
// Transactions must outlive a checkpoint interval plus the time to recover:
// a transaction the external system times out before commit is lost.
func TwoPhaseCommitSink[T, TXN any](c TwoPhaseCommitter[T, TXN]) Sink[T] {
	return &twoPhaseSink[T, TXN]{c: c}
}

type twoPhaseSink[T, TXN any] struct{ c TwoPhaseCommitter[T, TXN] }

type pendingTxn[TXN any] struct {
	id  checkpoint.ID
	txn TXN
}

type twoPhaseWriter[T, TXN any] struct {
	c             TwoPhaseCommitter[T, TXN]
	ctx           TxnContext
	checkpointing bool
	cur           TXN
	open          bool
	pending       []pendingTxn[TXN] // pre-committed, ascending ids
}

// RecoveryAllowance is the time a job is assumed to need to fail over and
// commit; a sink whose transactions time out sooner than a checkpoint
// interval plus this gets a warning.
const RecoveryAllowance = time.Minute

func (s *twoPhaseSink[T, TXN]) CreateWriter(sc SinkContext) (SinkWriter[T], error) {
	if tt, ok := s.c.(interface{ TransactionTimeout() time.Duration }); ok && sc.Checkpointing && sc.Logger != nil && sc.Subtask == 0 && sc.Attempt == 0 {
		if limit := sc.CheckpointInterval + RecoveryAllowance; tt.TransactionTimeout() < limit {
			sc.Logger.Warn("the sink's transaction timeout is shorter than the checkpoint interval plus recovery time: "+
				"a transaction may time out before it is committed, and its records be lost",
				"transactionTimeout", tt.TransactionTimeout(), "checkpointInterval", sc.CheckpointInterval, "recoveryAllowance", RecoveryAllowance)
		}
	}
	w := &twoPhaseWriter[T, TXN]{c: s.c, checkpointing: sc.Checkpointing,
		ctx: TxnContext{Prefix: fmt.Sprintf("weir-%s-%s-%d", sc.JobName, sc.OperatorUID, sc.Subtask), Subtask: sc.Subtask, Logger: sc.Logger}}
	// Restored state: entry 0 is the next sequence number, the others are
	// handles pre-committed at or before the restored checkpoint. On
	// rescale several old subtasks' entries may arrive here; each one's
	// handles are committed, the largest sequence wins.
	var restored []TXN
	for _, e := range sc.RestoredState {
		if len(e) == 0 {
			return nil, errors.New("empty two-phase commit state entry")
		}
		switch e[0] {
		case 's':
			seq, n := binary.Varint(e[1:])
			if n <= 0 {
				return nil, errors.New("corrupted sequence number in two-phase commit state")
			}
			w.ctx.Seq = max(w.ctx.Seq, seq)
		case 'h':
			txn, err := s.c.DecodeHandle(e[1:])
			if err != nil {
				return nil, fmt.Errorf("cannot decode a restored transaction handle: %w", err)
			}
			restored = append(restored, txn)
		default:
			return nil, fmt.Errorf("unknown two-phase commit state entry kind %q", e[0])
		}
	}
	for _, txn := range restored {
		if err := s.c.Commit(txn); err != nil {
			return nil, fmt.Errorf("cannot commit a transaction of restored checkpoint %d: %w", sc.RestoredCheckpoint, err)
		}
	}
	if err := s.c.AbortLingering(w.ctx, restored); err != nil {
		return nil, fmt.Errorf("cannot abort lingering transactions %s-*: %w", w.ctx.Prefix, err)
	}
	return w, nil
}

func (w *twoPhaseWriter[T, TXN]) begin() error {
	txn, err := w.c.Begin(w.ctx)
	if err != nil {
		return fmt.Errorf("cannot begin transaction %s: %w", w.ctx.Name(), err)
	}
	w.ctx.Seq++
	w.cur, w.open = txn, true
	return nil
}

func (w *twoPhaseWriter[T, TXN]) Write(r T) error {
	if !w.open {
		if err := w.begin(); err != nil {
			return err
		}
	}
	return w.c.Write(w.cur, r)
}

// SnapshotState pre-commits the epoch's transaction and stores every
// handle not yet committed.
func (w *twoPhaseWriter[T, TXN]) SnapshotState(id checkpoint.ID) ([][]byte, error) {
	if w.open {
		if err := w.c.PreCommit(w.cur); err != nil {
			return nil, fmt.Errorf("cannot pre-commit transaction for checkpoint %d: %w", id, err)
		}
		w.pending = append(w.pending, pendingTxn[TXN]{id: id, txn: w.cur})
		w.open = false
	}
	out := [][]byte{append([]byte{'s'}, binary.AppendVarint(nil, w.ctx.Seq)...)}
	for _, p := range w.pending {
		b, err := w.c.EncodeHandle(p.txn)
		if err != nil {
			return nil, fmt.Errorf("cannot encode transaction handle: %w", err)
		}
		out = append(out, append([]byte{'h'}, b...))
	}
	return out, nil
}

// NotifyCheckpointComplete commits every transaction pre-committed at or
// before id, oldest first.
func (w *twoPhaseWriter[T, TXN]) NotifyCheckpointComplete(id checkpoint.ID) error {
	n := 0
	for _, p := range w.pending {
		if p.id > id {
			break
		}
		if err := w.c.Commit(p.txn); err != nil {
			w.pending = slices.Delete(w.pending, 0, n)
			return fmt.Errorf("cannot commit transaction of checkpoint %d: %w", p.id, err)
		}
		n++
	}
	w.pending = slices.Delete(w.pending, 0, n)
	return nil
}

// NotifyCheckpointAborted keeps the pre-committed transactions: the next
// completed checkpoint commits them.
func (w *twoPhaseWriter[T, TXN]) NotifyCheckpointAborted(checkpoint.ID) error { return nil }

// Finish commits at the end of input when the job takes no checkpoints;
// with checkpoints, the job's final checkpoint commits.
func (w *twoPhaseWriter[T, TXN]) Finish() error {
	if w.checkpointing || !w.open {
		return nil
	}
	if err := w.c.PreCommit(w.cur); err != nil {
		return fmt.Errorf("cannot pre-commit the final transaction: %w", err)
	}
	if err := w.c.Commit(w.cur); err != nil {
		return fmt.Errorf("cannot commit the final transaction: %w", err)
	}
	w.open = false
	return nil
}

// Close aborts the open transaction (its epoch never reached a
// checkpoint); pre-committed ones stay for the restore to settle.
func (w *twoPhaseWriter[T, TXN]) Close() error {
	if !w.open {
		return nil
	}
	w.open = false
	return w.c.Abort(w.cur)
}
