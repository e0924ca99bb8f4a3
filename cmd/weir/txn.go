package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/connector/kafka"
	"github.com/weirstream/weir/connector/mysql"
	"github.com/weirstream/weir/connector/postgres"
	"github.com/weirstream/weir/storage"
)

// weir txn: the two-phase-commit sinks' transactions of a job, found from
// a checkpoint's sink state and settled in PostgreSQL, MySQL / MariaDB and
// Kafka. Each connector knows its own transaction ids (its Admin and
// TransactionID / DecodeHandle); this file only wires them.

const txnLong = `The two-phase-commit sinks of a job (PostgreSQL, MySQL / MariaDB, Kafka)
name their transactions with a prefix per sink subtask, which every checkpoint
records in the sink's state together with the transactions pre-committed and
not yet committed when it was taken. A job killed between pre-commit and commit
leaves transactions behind; until a restore settles them they hold locks (SQL)
or hold back every read_committed reader of their partitions (Kafka).

PATH is a checkpoint or savepoint directory (.../chk-17), its _metadata file,
or a checkpoint storage root (then --id, or the latest completed checkpoint);
--job NAME refuses a checkpoint of another job.
The connection flags say where to look: --postgres DSN, --mysql DSN,
--kafka BROKERS (comma-separated); give at least one.

Each transaction found is one of:
  pending    pre-committed for the checkpoint and still prepared or open:
             a restore from this checkpoint would commit it
  lingering  of the job's sinks but not in the checkpoint (pre-committed for
             a checkpoint that never completed, or still open): a restore
             from this checkpoint would abort it
  settled    recorded in the checkpoint but no longer prepared or open: it
             was committed (or aborted) since

"weir txn commit" then "weir txn abort" leave the external systems as a
restore from the checkpoint would, for a job that will not run again.
Run them only while the job is not running: a running job's transactions
look lingering to an older checkpoint, and aborting one loses its records.
A job writing checkpoints into a directory holds its lock (_lock), so abort
and commit refuse a checkpoint in the directory of a running job, and hold
the lock themselves while they work, so the job cannot start meanwhile; list
only warns. A savepoint kept outside the job's checkpoint directory, or
checkpoints in S3, cannot be checked this way.`

// txnFlags are the flags of weir txn.
type txnFlags struct {
	id             int64
	job            string
	sink           string
	postgres       string
	mysql          string
	kafka          string
	includePending bool
}

func newTxn() *cobra.Command {
	f := &txnFlags{}
	txn := &cobra.Command{
		Use:   "txn",
		Short: "List, abort or commit the lingering transactions of a job's two-phase-commit sinks",
		Long:  txnLong,
	}
	list := &cobra.Command{
		Use:   "list PATH",
		Short: "List the job's transactions in the external systems, pending, lingering or settled",
		Long:  txnLong,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTxn(cmd, f, args[0], "list")
		},
	}
	abort := &cobra.Command{
		Use:   "abort PATH",
		Short: "Roll back (SQL) or abort (Kafka) the lingering transactions; pending ones only with --include-pending",
		Long: txnLong + `

abort rolls back every lingering transaction. Pending ones are kept, since a
restore from the checkpoint commits them; --include-pending aborts them too,
and their records are then lost to a restore from this checkpoint.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTxn(cmd, f, args[0], "abort")
		},
	}
	abort.Flags().BoolVar(&f.includePending, "include-pending", false, "abort the checkpoint's pending transactions too (their records are lost)")
	commit := &cobra.Command{
		Use:   "commit PATH",
		Short: "Commit the pending transactions, as a restore from the checkpoint would",
		Long: txnLong + `

commit commits every pending transaction (COMMIT PREPARED, XA COMMIT, or a
Kafka EndTxn with the producer id and epoch the checkpoint recorded), as a
restore from the checkpoint does first. Lingering ones are left alone.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTxn(cmd, f, args[0], "commit")
		},
	}
	for _, c := range []*cobra.Command{list, abort, commit} {
		fl := c.Flags()
		fl.Int64Var(&f.id, "id", 0, "checkpoint id, when PATH is a storage root (default: the latest)")
		fl.StringVar(&f.job, "job", "", "refuse a checkpoint of any other job than this one")
		fl.StringVar(&f.sink, "sink", "", "only the sink with this operator UID")
		fl.StringVar(&f.postgres, "postgres", "", "PostgreSQL DSN of the sinks' server (postgres://user@host:port/db)")
		fl.StringVar(&f.mysql, "mysql", "", "MySQL / MariaDB DSN of the sinks' server (user:pass@tcp(host:port)/db)")
		fl.StringVar(&f.kafka, "kafka", "", "Kafka brokers of the sinks' cluster, comma-separated (host:port,...)")
	}
	txn.AddCommand(list, abort, commit)
	return txn
}

// lockAgainstJob takes the lock of the checkpoint directory for abort and
// commit, refusing when a running job holds it; list only warns. A
// directory that cannot be locked (read-only, no flock) is noted and
// not refused: the lock is a safeguard, not a requirement.
func lockAgainstJob(st *storage.Storage, verb string, notes io.Writer) (storage.Unlock, error) {
	unlock, err := st.TryLock(storage.HolderDoing("weir txn " + verb))
	switch {
	case err == nil && verb == "list":
		// Listing needs no lock; holding it would only keep a job out.
		return func() error { return nil }, unlock()
	case err == nil:
		return unlock, nil
	case errors.Is(err, storage.ErrLocked) && verb == "list":
		fmt.Fprintf(notes, "note: %v; its open transactions are listed as lingering\n", err)
	case errors.Is(err, storage.ErrLocked):
		return nil, fmt.Errorf("refusing to %s the transactions while the job runs: %w", verb, err)
	default:
		fmt.Fprintf(notes, "note: cannot tell whether the job is running: %v\n", err)
	}
	return func() error { return nil }, nil
}

// sinkUnit is one sink subtask's record in the checkpoint.
type sinkUnit struct {
	sink string // operator UID
	weir.TwoPhaseCommitUnit
}

// txnRow is one transaction, as list prints it.
type txnRow struct {
	System      string `json:"system"`
	Sink        string `json:"sink"`
	Subtask     int    `json:"subtask"`
	Transaction string `json:"transaction"`
	State       string `json:"state"`
	// Detail is what the system says about it (Kafka: the coordinator's
	// state and producer id).
	Detail string `json:"detail,omitempty"`
	// Action is what abort or commit did.
	Action string `json:"action,omitempty"`

	unit     *sinkUnit
	handle   []byte
	producer int64 // Kafka's producer id of an open transaction, else -1
	order    int   // the handle's place in the checkpoint, oldest first; -1: none
}

// openTxn is a transaction a system holds: what it says about it, and for
// Kafka its producer id (a handle is pending only with the same one: a
// transactional id is reused by later runs).
type openTxn struct {
	detail   string
	producer int64
}

// txnSystem is one external system's side of weir txn.
type txnSystem interface {
	name() string
	// pending decodes a checkpointed handle of a unit with prefix; ok is
	// false for another system's handle. producer is the Kafka producer
	// id the handle recorded (-1 for SQL).
	pending(prefix string, handle []byte) (id string, producer int64, ok bool)
	// open lists the transactions of prefix that are prepared or open.
	open(ctx context.Context, prefix string) (map[string]openTxn, error)
	commit(ctx context.Context, prefix, id string, handle []byte) (string, error)
	abort(ctx context.Context, id string) (string, error)
	close()
}

func runTxn(cmd *cobra.Command, f *txnFlags, path, verb string) error {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	output := "table"
	if o := cmd.Flag("output"); o != nil {
		output = o.Value.String()
	}
	if output != "table" && output != "json" {
		return fmt.Errorf("invalid --output %q: want table or json", output)
	}
	if f.postgres == "" && f.mysql == "" && f.kafka == "" {
		return errors.New("no external system to look in: give --postgres DSN, --mysql DSN or --kafka BROKERS")
	}
	st, md, err := openCheckpoint(ctx, path, f.id)
	if err != nil {
		return err
	}
	if f.job != "" && md.JobName != f.job {
		return fmt.Errorf("%s %d at %s is of job %q, not %q", md.Kind, md.CheckpointID, path, md.JobName, f.job)
	}
	unlock, err := lockAgainstJob(st, verb, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	defer unlock()
	units, err := sinkUnits(md, f.sink, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	systems, err := openSystems(f)
	defer func() {
		for _, s := range systems {
			s.close()
		}
	}()
	if err != nil {
		return err
	}
	var rows []*txnRow
	for _, s := range systems {
		r, err := findTxns(ctx, s, units)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
	}
	sys := map[string]txnSystem{}
	for _, s := range systems {
		sys[s.name()] = s
	}
	var failed error
	for _, r := range rows {
		if verb == "list" {
			break
		}
		s := sys[r.System]
		var what string
		var err error
		switch {
		case verb == "commit" && r.State == "pending":
			what, err = s.commit(ctx, r.unit.Prefix, r.Transaction, r.handle)
		case verb == "abort" && (r.State == "lingering" || r.State == "pending" && f.includePending):
			what, err = s.abort(ctx, r.Transaction)
		default:
			continue
		}
		if err != nil {
			r.Action = "failed: " + err.Error()
			failed = errors.Join(failed, fmt.Errorf("cannot %s %s transaction %s: %w", verb, r.System, r.Transaction, err))
			continue
		}
		r.Action = what
	}
	w := cmd.OutOrStdout()
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if rows == nil {
			rows = []*txnRow{}
		}
		if err := enc.Encode(struct {
			Checkpoint   checkpoint.ID `json:"checkpointId"`
			Kind         string        `json:"kind"`
			Job          string        `json:"job"`
			Transactions []*txnRow     `json:"transactions"`
		}{md.CheckpointID, md.Kind.String(), md.JobName, rows}); err != nil {
			return err
		}
		return failed
	}
	printTxns(w, md, units, rows, verb)
	return failed
}

// sinkUnits reads the two-phase-commit units of every sink (or of sink
// uid) in the checkpoint. A sink state that is not two-phase-commit state
// is noted and skipped.
func sinkUnits(md *checkpoint.Metadata, uid string, notes io.Writer) ([]*sinkUnit, error) {
	var units []*sinkUnit
	seen := map[string]bool{}
	sinks := 0
	for _, op := range md.Operators {
		if uid != "" && op.UID != uid {
			continue
		}
		var opUnits []*sinkUnit
		var bad error
		has := false
		for i, sub := range op.Subtasks {
			for _, l := range sub.Operator {
				if l.Name != "sink-state" || len(l.Entries) == 0 {
					continue
				}
				has = true
				us, err := weir.DecodeTwoPhaseCommitState(l.Entries, i, weir.TxnPrefix(md.JobName, op.UID, i))
				if err != nil {
					bad = fmt.Errorf("subtask %d: %w", i, err)
					continue
				}
				for _, u := range us {
					if !seen[u.Prefix] {
						seen[u.Prefix] = true
						opUnits = append(opUnits, &sinkUnit{sink: op.UID, TwoPhaseCommitUnit: u})
					}
				}
			}
		}
		if bad != nil {
			fmt.Fprintf(notes, "weir: sink %s: skipped, its state is not two-phase-commit state (%v)\n", op.UID, bad)
			continue
		}
		if has {
			sinks++
			units = append(units, opUnits...)
		}
	}
	if sinks == 0 {
		if uid != "" {
			return nil, fmt.Errorf("checkpoint %d has no two-phase-commit sink with UID %q", md.CheckpointID, uid)
		}
		return nil, fmt.Errorf("checkpoint %d of job %s has no two-phase-commit sink state", md.CheckpointID, md.JobName)
	}
	sort.Slice(units, func(i, j int) bool {
		if units[i].sink != units[j].sink {
			return units[i].sink < units[j].sink
		}
		return units[i].Subtask < units[j].Subtask
	})
	return units, nil
}

// findTxns lists system s's transactions of the units' prefixes. A
// transaction whose id matches several prefixes (a sink UID that extends
// another's, "a" and "a-1") belongs to the longest.
func findTxns(ctx context.Context, s txnSystem, units []*sinkUnit) ([]*txnRow, error) {
	byID := map[string]*txnRow{}
	var rows []*txnRow
	for _, u := range units {
		open, err := s.open(ctx, u.Prefix)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name(), err)
		}
		for id, o := range open {
			if r, ok := byID[id]; ok && len(r.unit.Prefix) >= len(u.Prefix) {
				continue
			}
			byID[id] = &txnRow{System: s.name(), Sink: u.sink, Subtask: u.Subtask, Transaction: id, State: "lingering", Detail: o.detail, unit: u,
				producer: o.producer, order: -1}
		}
	}
	for _, u := range units {
		for i, h := range u.Handles {
			id, producer, ok := s.pending(u.Prefix, h)
			if !ok {
				continue
			}
			r, found := byID[id]
			if found && r.producer != producer {
				// A later run's transaction under the same Kafka id: the
				// checkpoint's one was ended before.
				rows = append(rows, &txnRow{System: s.name(), Sink: u.sink, Subtask: u.Subtask, Transaction: id, State: "settled", unit: u, handle: h, order: i})
				continue
			}
			if !found {
				byID[id] = &txnRow{System: s.name(), Sink: u.sink, Subtask: u.Subtask, Transaction: id, State: "settled", unit: u, handle: h, order: i}
				continue
			}
			r.State, r.handle, r.order = "pending", h, i
			r.Sink, r.Subtask, r.unit = u.sink, u.Subtask, u
		}
	}
	for _, r := range byID {
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.Sink != b.Sink {
			return a.Sink < b.Sink
		}
		if a.Subtask != b.Subtask {
			return a.Subtask < b.Subtask
		}
		// The checkpoint's transactions first, oldest first (commit
		// settles them in this order, as a restore does).
		if (a.order < 0) != (b.order < 0) {
			return a.order >= 0
		}
		if a.order != b.order {
			return a.order < b.order
		}
		return a.Transaction < b.Transaction
	})
	return rows, nil
}

func printTxns(w io.Writer, md *checkpoint.Metadata, units []*sinkUnit, rows []*txnRow, verb string) {
	fmt.Fprintf(w, "%s %d of job %s: %d two-phase-commit sink subtasks\n", md.Kind, md.CheckpointID, md.JobName, len(units))
	if len(rows) == 0 {
		fmt.Fprintln(w, "no transactions of the job's sinks found")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := "SYSTEM\tSINK\tSUBTASK\tTRANSACTION\tSTATE\tDETAIL"
	if verb != "list" {
		head += "\tACTION"
	}
	fmt.Fprintln(tw, head)
	for _, r := range rows {
		line := fmt.Sprintf("%s\t%s\t%d\t%s\t%s\t%s", r.System, r.Sink, r.Subtask, r.Transaction, r.State, orDash(r.Detail))
		if verb != "list" {
			line += "\t" + orDash(r.Action)
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func openSystems(f *txnFlags) ([]txnSystem, error) {
	var out []txnSystem
	if f.postgres != "" {
		a, err := postgres.NewAdmin(f.postgres)
		if err != nil {
			return out, err
		}
		out = append(out, pgSystem{a})
	}
	if f.mysql != "" {
		a, err := mysql.NewAdmin(f.mysql)
		if err != nil {
			return out, err
		}
		out = append(out, mysqlSystem{a})
	}
	if f.kafka != "" {
		var brokers []string
		for _, b := range strings.Split(f.kafka, ",") {
			if b = strings.TrimSpace(b); b != "" {
				brokers = append(brokers, b)
			}
		}
		a, err := kafka.NewAdmin(brokers)
		if err != nil {
			return out, err
		}
		out = append(out, kafkaSystem{a})
	}
	return out, nil
}

type pgSystem struct{ a *postgres.Admin }

func (pgSystem) name() string { return "postgres" }
func (pgSystem) pending(prefix string, h []byte) (string, int64, bool) {
	id, ok := postgres.TransactionID(prefix, h)
	return id, -1, ok
}
func (s pgSystem) open(ctx context.Context, prefix string) (map[string]openTxn, error) {
	gids, err := s.a.Prepared(ctx, prefix)
	return asOpen(gids, "prepared"), err
}
func (s pgSystem) commit(ctx context.Context, _, id string, _ []byte) (string, error) {
	return settled(s.a.Commit(ctx, id))("committed")
}
func (s pgSystem) abort(ctx context.Context, id string) (string, error) {
	return settled(s.a.Rollback(ctx, id))("rolled back")
}
func (s pgSystem) close() { s.a.Close() }

type mysqlSystem struct{ a *mysql.Admin }

func (mysqlSystem) name() string { return "mysql" }
func (mysqlSystem) pending(prefix string, h []byte) (string, int64, bool) {
	id, ok := mysql.TransactionID(prefix, h)
	return id, -1, ok
}
func (s mysqlSystem) open(ctx context.Context, prefix string) (map[string]openTxn, error) {
	xids, err := s.a.Prepared(ctx, prefix)
	return asOpen(xids, "prepared"), err
}
func (s mysqlSystem) commit(ctx context.Context, _, id string, _ []byte) (string, error) {
	return settled(s.a.Commit(ctx, id))("committed")
}
func (s mysqlSystem) abort(ctx context.Context, id string) (string, error) {
	return settled(s.a.Rollback(ctx, id))("rolled back")
}
func (s mysqlSystem) close() { s.a.Close() }

type kafkaSystem struct{ a *kafka.Admin }

func (kafkaSystem) name() string { return "kafka" }
func (kafkaSystem) pending(prefix string, h []byte) (string, int64, bool) {
	d, ok := kafka.DecodeHandle(prefix, h)
	return d.ID, d.ProducerID, ok
}
func (s kafkaSystem) open(ctx context.Context, prefix string) (map[string]openTxn, error) {
	txns, err := s.a.Open(ctx, prefix)
	out := map[string]openTxn{}
	for _, t := range txns {
		out[t.ID] = openTxn{detail: fmt.Sprintf("%s, producer %d", t.State, t.ProducerID), producer: t.ProducerID}
	}
	return out, err
}
func (s kafkaSystem) commit(ctx context.Context, prefix, _ string, h []byte) (string, error) {
	d, _ := kafka.DecodeHandle(prefix, h)
	if err := s.a.Commit(ctx, d); err != nil {
		return "", err
	}
	return fmt.Sprintf("committed (producer %d, epoch %d)", d.ProducerID, d.Epoch), nil
}
func (s kafkaSystem) abort(ctx context.Context, id string) (string, error) {
	if err := s.a.Abort(ctx, id); err != nil {
		return "", err
	}
	return "aborted (transactional id fenced)", nil
}
func (s kafkaSystem) close() { s.a.Close() }

func asOpen(ids []string, detail string) map[string]openTxn {
	out := make(map[string]openTxn, len(ids))
	for _, id := range ids {
		out[id] = openTxn{detail: detail, producer: -1}
	}
	return out
}

// settled turns a settle's (known, err) into the action's words: an id
// the server no longer knows was settled in between.
func settled(known bool, err error) func(string) (string, error) {
	return func(done string) (string, error) {
		if err != nil {
			return "", err
		}
		if !known {
			return "already settled", nil
		}
		return done, nil
	}
}
