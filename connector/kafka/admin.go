package kafka

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Admin settles the sink's transactions from outside a job, for operators
// (weir txn): it lists the open ones by transaction name prefix (the
// prefixes a checkpoint's sink state records, weir.TwoPhaseCommitUnit),
// commits pre-committed ones with their stored producer id and epoch, and
// aborts open ones by fencing their transactional id. An open transaction
// holds back every read_committed reader of its partitions until it ends.
type Admin struct {
	cl      *kgo.Client
	c       *Committer[struct{}]
	timeout time.Duration
}

// NewAdmin connects to the brokers.
func NewAdmin(brokers []string) (*Admin, error) {
	if len(brokers) == 0 {
		return nil, errors.New("kafka: no brokers")
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	a := &Admin{cl: cl, timeout: 30 * time.Second}
	a.c = &Committer[struct{}]{o: SinkOptions{Brokers: brokers, TransactionTimeout: 5 * time.Minute, Timeout: a.timeout}, admin: cl}
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	if err := cl.Ping(ctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("kafka: cannot reach %v: %w", brokers, err)
	}
	return a, nil
}

// Close releases the client.
func (a *Admin) Close() { a.cl.Close() }

// Handle is a transaction the sink stored in a checkpoint.
type Handle struct {
	ID         string
	ProducerID int64
	Epoch      int16
}

// DecodeHandle decodes a handle the sink stored in a checkpoint, and says
// whether it is this sink's and belongs to transaction name prefix
// (handles of other sinks are not).
func DecodeHandle(prefix string, b []byte) (Handle, bool) {
	if len(b) < 11 {
		return Handle{}, false
	}
	var c Committer[struct{}]
	txn, err := c.DecodeHandle(b)
	if err != nil || !strings.HasPrefix(txn.ID, prefix+"-") {
		return Handle{}, false
	}
	return Handle{ID: txn.ID, ProducerID: txn.ProducerID, Epoch: txn.Epoch}, true
}

// OpenTxn is a transaction the brokers have not ended.
type OpenTxn struct {
	ID         string
	ProducerID int64
	// State is the coordinator's: Ongoing (records written, not ended),
	// PrepareCommit or PrepareAbort (ending).
	State string
}

// Open lists the transactions of transaction name prefix that are not
// ended (ListTransactions, Kafka 3.0 or later), sorted by id.
func (a *Admin) Open(ctx context.Context, prefix string) ([]OpenTxn, error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	listed, err := kadm.NewClient(a.cl).ListTransactions(ctx, nil, []string{"Ongoing", "PrepareCommit", "PrepareAbort"})
	if err != nil {
		return nil, fmt.Errorf("cannot list transactions: %w", err)
	}
	var out []OpenTxn
	for _, t := range listed {
		if strings.HasPrefix(t.TxnID, prefix+"-") {
			out = append(out, OpenTxn{ID: t.TxnID, ProducerID: t.ProducerID, State: t.State})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Commit commits a pre-committed transaction with the producer id and
// epoch of its handle (EndTxn), as a restore does; committing a committed
// transaction succeeds. An error wrapping weir.ErrTransactionLost says a
// newer producer took over the id: the transaction was ended before.
func (a *Admin) Commit(ctx context.Context, h Handle) error {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	return a.c.endTxn(ctx, &Txn{ID: h.ID, ProducerID: h.ProducerID, Epoch: h.Epoch}, true)
}

// Abort aborts the open transaction of transactional id by initializing a
// producer id for it: the coordinator aborts the transaction and bumps the
// epoch, which also fences a producer of a job still running.
func (a *Admin) Abort(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	return a.c.fence(ctx, id)
}
