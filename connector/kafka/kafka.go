// Package kafka is weir's Kafka connector, on franz-go: a replayable source
// whose partition offsets live in weir's checkpoints (never in consumer
// groups), and an exactly-once sink built on Kafka transactions.
//
// Source: partition p of the topic is read by subtask p % parallelism; the
// next offset of each partition is checkpointed, so after a restore every
// subtask seeks to exactly where the checkpoint was, also at another
// parallelism.
//
//	src := kafka.Source(kafka.SourceOptions{Brokers: brokers, Topic: "numbers"},
//		func(r *kgo.Record) (int64, error) { return strconv.ParseInt(string(r.Value), 10, 64) })
//	nums := weir.FromSource(env, src, "numbers").UID("numbers")
//
// Sink: one transactional producer per subtask and checkpoint epoch
// (transactional.id weir-<job>-<sink UID>-<subtask>-<seq>); the barrier
// flushes it and stores (transactional id, producer id, epoch) in the
// checkpoint; completion commits. A transaction pre-committed before a
// crash is committed after the restore with an EndTxn request carrying the
// stored producer id and epoch; transactions of the failed attempt are
// aborted by re-initializing their transactional ids, which also fences
// zombie producers. Readers must use read_committed.
//
// Admin lists the sink's open transactions (ListTransactions), commits
// pre-committed ones and aborts lingering ones from outside a job, by the
// transaction name prefixes a checkpoint records (the weir txn command).
package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/checkpoint"
)

// SourceOptions configure Source.
type SourceOptions struct {
	Brokers []string
	Topic   string
	// ReadCommitted hides records of open and aborted transactions.
	ReadCommitted bool
	// Bounded stops each reader at the end offsets its partitions had when
	// it started (for backfills and tests; on a transactionally written
	// topic the final commit marker keeps a partition from ending).
	Bounded bool
	// DiscoveryInterval, when positive, makes each reader look for new
	// partitions of the topic that often and read the ones it owns from
	// their start (partition p belongs to subtask p % parallelism).
	DiscoveryInterval time.Duration
	// Timeout bounds metadata requests (default 30 s).
	Timeout time.Duration
}

// Source returns a replayable Kafka source; decode turns a record into T
// (an error fails the task, naming topic, partition and offset).
func Source[T any](o SourceOptions, decode func(*kgo.Record) (T, error)) weir.Source[T] {
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	return &source[T]{o: o, decode: decode}
}

type source[T any] struct {
	o      SourceOptions
	decode func(*kgo.Record) (T, error)
}

func (s *source[T]) CreateReader(ctx weir.SourceContext) (weir.SourceReader[T], error) {
	if len(s.o.Brokers) == 0 || s.o.Topic == "" {
		return nil, errors.New("kafka source needs brokers and a topic")
	}
	meta, err := kgo.NewClient(kgo.SeedBrokers(s.o.Brokers...))
	if err != nil {
		return nil, fmt.Errorf("kafka source: %w", err)
	}
	defer meta.Close()
	mctx, cancel := context.WithTimeout(context.Background(), s.o.Timeout)
	defer cancel()
	ends, err := kadm.NewClient(meta).ListEndOffsets(mctx, s.o.Topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("kafka source: cannot list partitions of topic %s at %v: %w", s.o.Topic, s.o.Brokers, err)
	}
	r := &reader[T]{s: s, next: map[int32]int64{}, end: map[int32]int64{}, subtask: ctx.Subtask, parallelism: ctx.Parallelism,
		lastDiscovery: time.Now()}
	ends.Each(func(lo kadm.ListedOffset) {
		if int(lo.Partition)%ctx.Parallelism == ctx.Subtask {
			r.parts = append(r.parts, lo.Partition)
			r.end[lo.Partition] = lo.Offset
		}
	})
	if len(ends) == 0 {
		return nil, fmt.Errorf("kafka source: topic %s does not exist", s.o.Topic)
	}
	for _, e := range ctx.Restored {
		if len(e) != 12 {
			return nil, fmt.Errorf("kafka source: restored position has %d bytes, want 12", len(e))
		}
		p, off := int32(binary.BigEndian.Uint32(e)), int64(binary.BigEndian.Uint64(e[4:]))
		if _, mine := r.end[p]; mine {
			r.next[p] = off
		}
	}
	offsets := map[int32]kgo.Offset{}
	for _, p := range r.parts {
		if off, ok := r.next[p]; ok {
			offsets[p] = kgo.NewOffset().At(off)
		} else {
			offsets[p] = kgo.NewOffset().AtStart()
			r.next[p] = -1 // unknown until the first record
		}
	}
	if len(r.parts) > 0 || (s.o.DiscoveryInterval > 0 && !s.o.Bounded) {
		if err := r.connect(offsets); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func (r *reader[T]) connect(offsets map[int32]kgo.Offset) error {
	opts := []kgo.Opt{kgo.SeedBrokers(r.s.o.Brokers...), kgo.FetchMaxWait(50 * time.Millisecond),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{r.s.o.Topic: offsets})}
	if r.s.o.ReadCommitted {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	// Control records (transaction markers) take offsets too: the reader
	// sees them so that its position can reach the end offset of a
	// transactionally written partition (Bounded), and skips them.
	opts = append(opts, kgo.KeepControlRecords())
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka source: %w", err)
	}
	r.cl = cl
	return nil
}

// discover adds the partitions created since the reader started that this
// subtask owns, read from their start.
func (r *reader[T]) discover() error {
	r.lastDiscovery = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), r.s.o.Timeout)
	defer cancel()
	ends, err := kadm.NewClient(r.cl).ListEndOffsets(ctx, r.s.o.Topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("kafka source: cannot look for new partitions of %s: %w", r.s.o.Topic, err)
	}
	added := map[int32]kgo.Offset{}
	ends.Each(func(lo kadm.ListedOffset) {
		if _, known := r.end[lo.Partition]; known || int(lo.Partition)%r.parallelism != r.subtask {
			return
		}
		r.parts = append(r.parts, lo.Partition)
		r.end[lo.Partition] = lo.Offset
		r.next[lo.Partition] = -1
		added[lo.Partition] = kgo.NewOffset().AtStart()
	})
	if len(added) > 0 {
		r.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{r.s.o.Topic: added})
	}
	return nil
}

type reader[T any] struct {
	s     *source[T]
	cl    *kgo.Client
	parts []int32
	next  map[int32]int64 // next offset to read; -1: from the start
	end   map[int32]int64

	subtask, parallelism int
	lastDiscovery        time.Time
}

func (r *reader[T]) Read(buf []T) ([]T, weir.ReadStatus, error) {
	if r.cl == nil {
		return buf, weir.EndOfInput, nil
	}
	if d := r.s.o.DiscoveryInterval; d > 0 && !r.s.o.Bounded && time.Since(r.lastDiscovery) >= d {
		if err := r.discover(); err != nil {
			return buf, weir.NothingAvailable, err
		}
	}
	// A nil context is franz-go's documented way to take only what is
	// already buffered, without waiting: Read must not block.
	fetches := r.cl.PollRecords(nil, cap(buf)-len(buf)) //nolint:staticcheck // SA1012: nil is intended, see above
	var err error
	fetches.EachError(func(topic string, p int32, e error) {
		if err == nil && !errors.Is(e, context.Canceled) && !errors.Is(e, kgo.ErrClientClosed) {
			err = fmt.Errorf("kafka source: cannot fetch %s[%d]: %w", topic, p, e)
		}
	})
	if err != nil {
		return buf, weir.NothingAvailable, err
	}
	var derr error
	fetches.EachRecord(func(rec *kgo.Record) {
		if derr != nil {
			return
		}
		if rec.Attrs.IsControl() {
			r.next[rec.Partition] = rec.Offset + 1
			return
		}
		v, e := r.s.decode(rec)
		if e != nil {
			derr = fmt.Errorf("kafka source: cannot decode %s[%d]@%d: %w", rec.Topic, rec.Partition, rec.Offset, e)
			return
		}
		buf = append(buf, v)
		r.next[rec.Partition] = rec.Offset + 1
	})
	if derr != nil {
		return buf, weir.NothingAvailable, derr
	}
	if len(buf) > 0 {
		return buf, weir.MoreAvailable, nil
	}
	if r.s.o.Bounded && r.atEnd() {
		return buf, weir.EndOfInput, nil
	}
	return buf, weir.NothingAvailable, nil
}

func (r *reader[T]) atEnd() bool {
	for _, p := range r.parts {
		if n := r.next[p]; n < r.end[p] && !(n == -1 && r.end[p] == 0) {
			return false
		}
	}
	return true
}

// Available: franz-go has no readiness signal for buffered fetches, so the
// reader is polled again shortly.
func (r *reader[T]) Available() <-chan struct{} {
	c := make(chan struct{})
	time.AfterFunc(2*time.Millisecond, func() { close(c) })
	return c
}

// Snapshot records the next offset of every partition read so far.
func (r *reader[T]) Snapshot(checkpoint.ID) ([][]byte, error) {
	var out [][]byte
	for _, p := range r.parts {
		if n := r.next[p]; n >= 0 {
			e := make([]byte, 12)
			binary.BigEndian.PutUint32(e, uint32(p))
			binary.BigEndian.PutUint64(e[4:], uint64(n))
			out = append(out, e)
		}
	}
	return out, nil
}

func (r *reader[T]) Close() error {
	if r.cl != nil {
		r.cl.Close()
	}
	return nil
}

// SinkOptions configure ExactlyOnce.
type SinkOptions struct {
	Brokers []string
	Topic   string
	// TransactionTimeout must exceed the checkpoint interval plus the time
	// to recover from a failure, or the broker aborts pre-committed
	// transactions before weir commits them (default 5 minutes).
	TransactionTimeout time.Duration
	// AbortWindow is how many transactional ids after the restored one are
	// aborted on restore (default 16).
	AbortWindow int
	Timeout     time.Duration
}

// ExactlyOnce returns an exactly-once sink into the topic; encode turns a
// record into a Kafka record (its Topic may stay empty).
func ExactlyOnce[T any](o SinkOptions, encode func(T) *kgo.Record) (weir.Sink[T], error) {
	c, err := NewCommitter(o, encode)
	if err != nil {
		return nil, err
	}
	return weir.TwoPhaseCommitSink(c), nil
}

// Committer is the sink's weir.TwoPhaseCommitter.
type Committer[T any] struct {
	o      SinkOptions
	encode func(T) *kgo.Record
	admin  *kgo.Client
}

// Txn is the handle of one Kafka transaction.
type Txn struct {
	ID         string
	ProducerID int64
	Epoch      int16
	cl         *kgo.Client
	mu         sync.Mutex
	err        error
}

// NewCommitter checks the brokers and the topic and returns the committer.
func NewCommitter[T any](o SinkOptions, encode func(T) *kgo.Record) (*Committer[T], error) {
	if len(o.Brokers) == 0 || o.Topic == "" || encode == nil {
		return nil, errors.New("kafka sink needs brokers, a topic and an encode function")
	}
	if o.TransactionTimeout <= 0 {
		o.TransactionTimeout = 5 * time.Minute
	}
	if o.AbortWindow <= 0 {
		o.AbortWindow = 16
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	admin, err := kgo.NewClient(kgo.SeedBrokers(o.Brokers...))
	if err != nil {
		return nil, fmt.Errorf("kafka sink: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	ends, err := kadm.NewClient(admin).ListEndOffsets(ctx, o.Topic)
	if err == nil {
		err = ends.Error()
	}
	if err == nil && len(ends) == 0 {
		err = errors.New("no such topic")
	}
	if err != nil {
		admin.Close()
		return nil, fmt.Errorf("kafka sink: cannot use topic %s at %v: %w", o.Topic, o.Brokers, err)
	}
	return &Committer[T]{o: o, encode: encode, admin: admin}, nil
}

// Close releases the admin client.
func (c *Committer[T]) Close() { c.admin.Close() }

func (c *Committer[T]) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.o.Timeout)
}

func (c *Committer[T]) Begin(tc weir.TxnContext) (*Txn, error) {
	// Transactional ids are Prefix-Seq, without the generation: Kafka
	// cannot list transactions, so AbortLingering fences a window of ids
	// from the restored Seq on. Reusing an id is safe in Kafka: committed
	// records never change, and a new producer fences the old one.
	id := fmt.Sprintf("%s-%d", tc.Prefix, tc.Seq)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.o.Brokers...), kgo.TransactionalID(id),
		kgo.TransactionTimeout(c.o.TransactionTimeout), kgo.DefaultProduceTopic(c.o.Topic))
	if err != nil {
		return nil, fmt.Errorf("cannot create transactional producer %s: %w", id, err)
	}
	if err := cl.BeginTransaction(); err != nil {
		cl.Close()
		return nil, fmt.Errorf("cannot begin transaction %s: %w", id, err)
	}
	return &Txn{ID: id, cl: cl}, nil
}

func (c *Committer[T]) Write(txn *Txn, r T) error {
	txn.mu.Lock()
	err := txn.err
	txn.mu.Unlock()
	if err != nil {
		return err
	}
	txn.cl.Produce(context.Background(), c.encode(r), func(_ *kgo.Record, err error) {
		if err != nil {
			txn.mu.Lock()
			if txn.err == nil {
				txn.err = fmt.Errorf("cannot produce to %s in transaction %s: %w", c.o.Topic, txn.ID, err)
			}
			txn.mu.Unlock()
		}
	})
	return nil
}

// PreCommit flushes the transaction's records and records its producer id
// and epoch, which are what a later EndTxn needs.
func (c *Committer[T]) PreCommit(txn *Txn) error {
	if txn.cl == nil {
		return fmt.Errorf("transaction %s is not open", txn.ID)
	}
	ctx, cancel := c.ctx()
	defer cancel()
	if err := txn.cl.Flush(ctx); err != nil {
		return fmt.Errorf("cannot flush transaction %s: %w", txn.ID, err)
	}
	txn.mu.Lock()
	err := txn.err
	txn.mu.Unlock()
	if err != nil {
		return err
	}
	pid, epoch, err := txn.cl.ProducerID(ctx)
	if err != nil {
		return fmt.Errorf("cannot read the producer id of transaction %s: %w", txn.ID, err)
	}
	txn.ProducerID, txn.Epoch = pid, epoch
	return nil
}

// Commit ends the transaction with a commit: through its producer while it
// is alive, else with an EndTxn request carrying the stored producer id and
// epoch (idempotent: committing a committed transaction succeeds).
func (c *Committer[T]) Commit(txn *Txn) error {
	ctx, cancel := c.ctx()
	defer cancel()
	if txn.cl != nil {
		err := txn.cl.EndTransaction(ctx, kgo.TryCommit)
		txn.cl.Close()
		txn.cl = nil
		if err != nil {
			return fmt.Errorf("cannot commit transaction %s: %w", txn.ID, err)
		}
		return nil
	}
	return c.endTxn(ctx, txn, true)
}

func (c *Committer[T]) endTxn(ctx context.Context, txn *Txn, commit bool) error {
	req := kmsg.NewPtrEndTxnRequest()
	req.TransactionalID = txn.ID
	req.ProducerID = txn.ProducerID
	req.ProducerEpoch = txn.Epoch
	req.Commit = commit
	resp, err := req.RequestWith(ctx, c.admin)
	if err != nil {
		return fmt.Errorf("cannot end transaction %s: %w", txn.ID, err)
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		if commit && (errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch)) {
			// A newer producer took over the id: this transaction was
			// ended (committed or aborted) before.
			err = fmt.Errorf("%w: %w", weir.ErrTransactionLost, err)
		}
		return fmt.Errorf("cannot end transaction %s (producer %d, epoch %d): %w", txn.ID, txn.ProducerID, txn.Epoch, err)
	}
	return nil
}

func (c *Committer[T]) Abort(txn *Txn) error {
	ctx, cancel := c.ctx()
	defer cancel()
	if txn.cl != nil {
		txn.cl.AbortBufferedRecords(ctx)
		err := txn.cl.EndTransaction(ctx, kgo.TryAbort)
		txn.cl.Close()
		txn.cl = nil
		if err != nil {
			return fmt.Errorf("cannot abort transaction %s: %w", txn.ID, err)
		}
		return nil
	}
	return c.fence(ctx, txn.ID)
}

// fence re-initializes a transactional id: the broker aborts its open
// transaction and bumps the epoch, so an old producer can no longer write.
func (c *Committer[T]) fence(ctx context.Context, id string) error {
	req := kmsg.NewPtrInitProducerIDRequest()
	req.TransactionalID = &id
	req.TransactionTimeoutMillis = int32(c.o.TransactionTimeout / time.Millisecond)
	resp, err := req.RequestWith(ctx, c.admin)
	if err != nil {
		return fmt.Errorf("cannot fence transactional id %s: %w", id, err)
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return fmt.Errorf("cannot fence transactional id %s: %w", id, err)
	}
	return nil
}

// AbortLingering fences the transactional ids the failed attempt may have
// used after the restored checkpoint: Kafka cannot list transactions by
// prefix, so a window of ids from the restored sequence on is
// re-initialized.
func (c *Committer[T]) AbortLingering(tc weir.TxnContext, keep []*Txn) error {
	ctx, cancel := c.ctx()
	defer cancel()
	kept := map[string]bool{}
	for _, k := range keep {
		kept[k.ID] = true
	}
	for i := range c.o.AbortWindow {
		id := fmt.Sprintf("%s-%d", tc.Prefix, tc.Seq+int64(i))
		if kept[id] {
			continue
		}
		if err := c.fence(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

func (c *Committer[T]) EncodeHandle(txn *Txn) ([]byte, error) {
	b := binary.BigEndian.AppendUint64(nil, uint64(txn.ProducerID))
	b = binary.BigEndian.AppendUint16(b, uint16(txn.Epoch))
	return append(b, txn.ID...), nil
}

func (c *Committer[T]) DecodeHandle(b []byte) (*Txn, error) {
	if len(b) < 11 {
		return nil, fmt.Errorf("kafka transaction handle has %d bytes", len(b))
	}
	return &Txn{ProducerID: int64(binary.BigEndian.Uint64(b)), Epoch: int16(binary.BigEndian.Uint16(b[8:])), ID: string(b[10:])}, nil
}

// AtLeastOnce returns a sink that produces without transactions and, when a
// checkpoint barrier passes, waits until every record produced before it is
// acknowledged: nothing is lost, and after a restore the records since the
// last checkpoint are produced again.
func AtLeastOnce[T any](o SinkOptions, encode func(T) *kgo.Record) (weir.Sink[T], error) {
	c, err := NewCommitter(o, encode)
	if err != nil {
		return nil, err
	}
	c.Close()
	return &aloSink[T]{o: c.o, encode: encode}, nil
}

type aloSink[T any] struct {
	o      SinkOptions
	encode func(T) *kgo.Record
}

type aloWriter[T any] struct {
	s   *aloSink[T]
	cl  *kgo.Client
	mu  sync.Mutex
	err error
}

func (s *aloSink[T]) CreateWriter(weir.SinkContext) (weir.SinkWriter[T], error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.o.Brokers...), kgo.DefaultProduceTopic(s.o.Topic))
	if err != nil {
		return nil, fmt.Errorf("kafka sink: %w", err)
	}
	return &aloWriter[T]{s: s, cl: cl}, nil
}

func (w *aloWriter[T]) Write(r T) error {
	w.mu.Lock()
	err := w.err
	w.mu.Unlock()
	if err != nil {
		return err
	}
	w.cl.Produce(context.Background(), w.s.encode(r), func(_ *kgo.Record, err error) {
		if err != nil {
			w.mu.Lock()
			if w.err == nil {
				w.err = fmt.Errorf("cannot produce to %s: %w", w.s.o.Topic, err)
			}
			w.mu.Unlock()
		}
	})
	return nil
}

func (w *aloWriter[T]) flush() error {
	ctx, cancel := context.WithTimeout(context.Background(), w.s.o.Timeout)
	defer cancel()
	if err := w.cl.Flush(ctx); err != nil {
		return fmt.Errorf("cannot flush to %s: %w", w.s.o.Topic, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// SnapshotState waits for every record before the barrier to be acknowledged.
func (w *aloWriter[T]) SnapshotState(checkpoint.ID) ([][]byte, error) { return nil, w.flush() }

// Finish waits for the last records.
func (w *aloWriter[T]) Finish() error { return w.flush() }

func (w *aloWriter[T]) Close() error {
	w.cl.Close()
	return nil
}

// TransactionTimeout is the producers' transaction timeout, which the
// two-phase-commit sink compares with the checkpoint interval.
func (c *Committer[T]) TransactionTimeout() time.Duration { return c.o.TransactionTimeout }
