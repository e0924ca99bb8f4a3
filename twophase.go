package weir

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
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
	// restore the numbers continue where the checkpoint was.
	Seq int64
	// Generation is different for every writer the subtask creates (every
	// attempt, every run): the microseconds since 1970 when it was
	// created. A job that restores an older checkpoint (a savepoint, say)
	// numbers its transactions from that checkpoint's Seq again; the
	// generation keeps their names apart from the ones an earlier run used
	// and committed, so a name is never reused after a commit.
	Generation int64
	Subtask    int
	Logger     *slog.Logger
}

// Name is the conventional transaction name: Prefix-Seq_Generation
// (Prefix-Seq when Generation is 0). A name is never reused, and
// everything after the last '-' is the name's own part: AbortLingering
// may match Prefix-*.
func (c TxnContext) Name() string {
	if c.Generation == 0 {
		return fmt.Sprintf("%s-%d", c.Prefix, c.Seq)
	}
	return fmt.Sprintf("%s-%d_%d", c.Prefix, c.Seq, c.Generation)
}

// ErrTransactionLost is wrapped by a TwoPhaseCommitter's Commit when the
// transaction no longer exists and was not committed either: its records
// are gone. After a restore from a checkpoint that is a permanent failure
// (it wraps checkpoint.ErrCorrupt too); after a restore from a savepoint
// taken while the job went on, it is expected when a failover aborted the
// savepoint's transactions before a later checkpoint committed them (the
// failover replayed their records), and only logged.
var ErrTransactionLost = errors.New("the transaction is lost")

// TwoPhaseCommitter is the external system's side of an exactly-once sink:
// weir calls it from one subtask goroutine, one transaction per checkpoint
// epoch, and keeps the pre-committed transaction handles in its checkpoints.
//
// The contract that makes the sink exactly once:
//   - after PreCommit returns, Commit of that handle must succeed, also from
//     a new process after a crash (the handle is all it gets);
//   - Commit is idempotent: committing a transaction that was already
//     committed (before a crash) succeeds; a transaction that no longer
//     exists and was not committed returns an error wrapping
//     ErrTransactionLost, when the system can tell;
//   - Commit never replaces output committed earlier (the file sink
//     refuses to rename onto an existing file); transaction names from
//     ctx.Name() are never reused, also when a job restores an older
//     checkpoint or savepoint (see TxnContext.Generation);
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
// On rescale, the state of old subtask s (its pending handles and next
// sequence number) is settled by new subtask s mod parallelism, so every
// transaction prefix has exactly one owner; and every new subtask numbers
// its transactions above the largest sequence number of any old subtask,
// so no new transaction reuses a committed one's name.
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
	w := &twoPhaseWriter[T, TXN]{c: s.c, checkpointing: sc.Checkpointing}
	w.ctx = TxnContext{Prefix: txnPrefix(sc, sc.Subtask), Subtask: sc.Subtask, Logger: sc.Logger, Generation: newGeneration()}
	// Restored state (union: every subtask sees every old subtask's unit).
	// Old subtask s is settled by new subtask s mod parallelism: it
	// commits s's handles and aborts the rest of s's transactions, so no
	// two subtasks ever touch the same prefix. Names go on above the
	// largest sequence number of any old subtask, so that no new
	// transaction reuses the name of a committed one, whatever subtask
	// owned the prefix before a rescale.
	units, err := decodeTwoPhaseState(sc.RestoredState, s.c, sc.Subtask, w.ctx.Prefix)
	if err != nil {
		return nil, err
	}
	for _, u := range units {
		w.ctx.Seq = max(w.ctx.Seq, u.seq)
	}
	settled := false // this subtask's own prefix, from w.ctx.Seq on
	for _, u := range units {
		if u.subtask%sc.Parallelism != sc.Subtask {
			continue
		}
		for _, txn := range u.handles {
			err := s.c.Commit(txn)
			switch {
			case err == nil:
			case errors.Is(err, ErrTransactionLost) && sc.RestoredKind == checkpoint.KindSavepoint:
				if sc.Logger != nil {
					sc.Logger.Warn("a transaction of the restored savepoint no longer exists: a failover after the savepoint aborted it and replayed its records",
						"savepoint", sc.RestoredCheckpoint, "err", err)
				}
			case errors.Is(err, ErrTransactionLost):
				return nil, fmt.Errorf("cannot commit a transaction of restored checkpoint %d: %w (%w)", sc.RestoredCheckpoint, err, checkpoint.ErrCorrupt)
			default:
				return nil, fmt.Errorf("cannot commit a transaction of restored %s %d: %w", sc.RestoredKind, sc.RestoredCheckpoint, err)
			}
		}
		tc := TxnContext{Prefix: u.prefix, Subtask: u.subtask, Seq: u.seq, Logger: sc.Logger, Generation: w.ctx.Generation}
		if err := s.c.AbortLingering(tc, u.handles); err != nil {
			return nil, fmt.Errorf("cannot abort lingering transactions %s-*: %w", tc.Prefix, err)
		}
		settled = settled || tc.Prefix == w.ctx.Prefix && tc.Seq == w.ctx.Seq
	}
	if !settled {
		// Transactions this prefix opened from w.ctx.Seq on (an attempt
		// that failed before its first checkpoint) belong to nobody.
		if err := s.c.AbortLingering(w.ctx, nil); err != nil {
			return nil, fmt.Errorf("cannot abort lingering transactions %s-*: %w", w.ctx.Prefix, err)
		}
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
	// One unit: 'u', subtask, next sequence number, the transaction name
	// prefix (length-prefixed), then the handles not yet committed, each
	// length-prefixed (uvarint). The prefix is stored rather than derived
	// again: a job restored under another name still settles the
	// transactions its predecessor opened.
	out := []byte{'u'}
	out = binary.AppendUvarint(out, uint64(w.ctx.Subtask))
	out = binary.AppendVarint(out, w.ctx.Seq)
	out = binary.AppendUvarint(out, uint64(len(w.ctx.Prefix)))
	out = append(out, w.ctx.Prefix...)
	for _, p := range w.pending {
		b, err := w.c.EncodeHandle(p.txn)
		if err != nil {
			return nil, fmt.Errorf("cannot encode transaction handle: %w", err)
		}
		out = binary.AppendUvarint(out, uint64(len(b)))
		out = append(out, b...)
	}
	return [][]byte{out}, nil
}

// StateRedistribution implements SinkStateRedistribution: every subtask
// sees every old subtask's state after a rescale.
func (s *twoPhaseSink[T, TXN]) StateRedistribution() checkpoint.Redistribution {
	return checkpoint.Union
}

// lastGeneration makes generations strictly increase within a process,
// even for writers created in the same microsecond.
var lastGeneration atomic.Int64

func newGeneration() int64 {
	now := time.Now().UnixMicro()
	for {
		last := lastGeneration.Load()
		g := max(now, last+1)
		if lastGeneration.CompareAndSwap(last, g) {
			return g
		}
	}
}

func txnPrefix(sc SinkContext, subtask int) string {
	return TxnPrefix(sc.JobName, sc.OperatorUID, subtask)
}

// twoPhaseUnit is what one old subtask left in a checkpoint.
type twoPhaseUnit[TXN any] struct {
	subtask int
	seq     int64
	prefix  string
	handles []TXN
}

// TwoPhaseCommitUnit is what one subtask of a two-phase-commit sink keeps in
// a checkpoint (its operator list state "sink-state"), for tools that settle
// a job's transactions from outside it (weir txn).
type TwoPhaseCommitUnit struct {
	Subtask int
	// Seq is the sequence number of the subtask's next transaction.
	Seq int64
	// Prefix starts the name of every transaction the subtask opened
	// (TxnContext.Prefix).
	Prefix string
	// Handles are the transactions pre-committed and not yet committed
	// when the checkpoint was taken, oldest first, as the committer's
	// EncodeHandle wrote them: a restore from the checkpoint commits them.
	Handles [][]byte
}

// TxnPrefix is the transaction name prefix (TxnContext.Prefix) of subtask
// of the two-phase-commit sink with operator UID uid in job.
func TxnPrefix(job, uid string, subtask int) string {
	return fmt.Sprintf("weir-%s-%s-%d", job, uid, subtask)
}

// DecodeTwoPhaseCommitState reads the entries of a two-phase-commit sink's
// "sink-state" list state. subtask and prefix stand for the entries of a
// checkpoint of an older weir, which did not record them ('s' sequence and
// 'h' handle entries): they become one unit of that subtask and prefix. An
// entry that is not two-phase-commit state is an error naming what is
// wrong.
func DecodeTwoPhaseCommitState(entries [][]byte, subtask int, prefix string) ([]TwoPhaseCommitUnit, error) {
	var units []TwoPhaseCommitUnit
	var legacy *TwoPhaseCommitUnit
	legacyUnit := func() *TwoPhaseCommitUnit {
		if legacy == nil {
			legacy = &TwoPhaseCommitUnit{Subtask: subtask, Prefix: prefix}
		}
		return legacy
	}
	for _, e := range entries {
		if len(e) == 0 {
			return nil, errors.New("empty two-phase commit state entry")
		}
		switch e[0] {
		case 'u':
			b := e[1:]
			sub, n := binary.Uvarint(b)
			if n <= 0 || sub > 1<<20 {
				return nil, errors.New("corrupted subtask in two-phase commit state")
			}
			b = b[n:]
			seq, n := binary.Varint(b)
			if n <= 0 {
				return nil, errors.New("corrupted sequence number in two-phase commit state")
			}
			b = b[n:]
			pl, n := binary.Uvarint(b)
			if n <= 0 || pl > uint64(len(b)-n) {
				return nil, errors.New("corrupted transaction prefix in two-phase commit state")
			}
			u := TwoPhaseCommitUnit{Subtask: int(sub), Seq: seq, Prefix: string(b[n : n+int(pl)])}
			b = b[n+int(pl):]
			for len(b) > 0 {
				l, n := binary.Uvarint(b)
				if n <= 0 || l > uint64(len(b)-n) {
					return nil, errors.New("corrupted transaction handle in two-phase commit state")
				}
				u.Handles = append(u.Handles, b[n:n+int(l)])
				b = b[n+int(l):]
			}
			units = append(units, u)
		case 's':
			seq, n := binary.Varint(e[1:])
			if n <= 0 {
				return nil, errors.New("corrupted sequence number in two-phase commit state")
			}
			legacyUnit().Seq = max(legacyUnit().Seq, seq)
		case 'h':
			l := legacyUnit()
			l.Handles = append(l.Handles, e[1:])
		default:
			return nil, fmt.Errorf("unknown two-phase commit state entry kind %q", e[0])
		}
	}
	if legacy != nil {
		units = append(units, *legacy)
	}
	return units, nil
}

// decodeTwoPhaseState reads the restored units and decodes their handles
// with the committer.
func decodeTwoPhaseState[T, TXN any](entries [][]byte, c TwoPhaseCommitter[T, TXN], subtask int, prefix string) ([]twoPhaseUnit[TXN], error) {
	raw, err := DecodeTwoPhaseCommitState(entries, subtask, prefix)
	if err != nil {
		return nil, err
	}
	units := make([]twoPhaseUnit[TXN], 0, len(raw))
	for _, r := range raw {
		u := twoPhaseUnit[TXN]{subtask: r.Subtask, seq: r.Seq, prefix: r.Prefix}
		for _, h := range r.Handles {
			txn, err := c.DecodeHandle(h)
			if err != nil {
				return nil, fmt.Errorf("cannot decode a restored transaction handle: %w", err)
			}
			u.handles = append(u.handles, txn)
		}
		units = append(units, u)
	}
	return units, nil
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
