package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/connector/kafka"
	"github.com/weirstream/weir/connector/mysql"
	"github.com/weirstream/weir/connector/postgres"
	"github.com/weirstream/weir/internal/pgtest"
	"github.com/weirstream/weir/restart"
	"github.com/weirstream/weir/storage"
)

// The crash tests run a real job in a child process (this test binary,
// TestTxnCrashJob) that writes into a two-phase-commit sink and exits
// abruptly, like a killed process, at a chosen point of the protocol:
//
//   - "precommit": right after a transaction is pre-committed (prepared,
//     or flushed into an open Kafka transaction) for a checkpoint that
//     therefore never completes, once every earlier transaction was
//     committed: the latest completed checkpoint does not know it, it is
//     lingering;
//   - "commit": when the first completed checkpoint's transaction is to be
//     committed: the checkpoint records it as pending.

const crashExit = 3

// crashingCommitter ends the process at its point (see above).
type crashingCommitter[T, TXN any] struct {
	weir.TwoPhaseCommitter[T, TXN]
	at                  string
	preCommits, commits atomic.Int64
}

func (c *crashingCommitter[T, TXN]) PreCommit(txn TXN) error {
	n := c.preCommits.Add(1)
	if err := c.TwoPhaseCommitter.PreCommit(txn); err != nil {
		return err
	}
	if c.at == "precommit" && n >= 2 && c.commits.Load() == n-1 {
		os.Exit(crashExit)
	}
	return nil
}

func (c *crashingCommitter[T, TXN]) Commit(txn TXN) error {
	if c.at == "commit" {
		os.Exit(crashExit)
	}
	err := c.TwoPhaseCommitter.Commit(txn)
	if err == nil {
		c.commits.Add(1)
	}
	return err
}

// TestTxnCrashJob is the child process of the crash tests; it does nothing
// unless WEIR_TXN_CRASH_SYSTEM is set.
func TestTxnCrashJob(t *testing.T) {
	system := os.Getenv("WEIR_TXN_CRASH_SYSTEM")
	if system == "" {
		t.Skip("the child process of the weir txn crash tests")
	}
	at, target, dir, job := os.Getenv("WEIR_TXN_CRASH_AT"), os.Getenv("WEIR_TXN_CRASH_TARGET"), os.Getenv("WEIR_TXN_CRASH_DIR"), os.Getenv("WEIR_TXN_CRASH_JOB")
	env := weir.NewEnvironment(weir.Parallelism(1), weir.Checkpointing(100*time.Millisecond, weir.ExactlyOnce),
		weir.CheckpointStorage(dir), weir.RestartStrategy(restart.None()))
	src := weir.FromSource(env, weir.Generator(1, -1, func(_ int, off int64) int64 { return off }).WithRate(2000), "numbers").UID("numbers")
	var sink weir.Sink[int64]
	switch system {
	case "postgres":
		c, err := postgres.NewCommitter(target, "nums", []string{"v"}, func(v int64) []any { return []any{v} })
		if err != nil {
			t.Fatal(err)
		}
		sink = weir.TwoPhaseCommitSink[int64, *postgres.Txn](&crashingCommitter[int64, *postgres.Txn]{TwoPhaseCommitter: c, at: at})
	case "mysql":
		table := os.Getenv("WEIR_TXN_CRASH_TABLE")
		c, err := mysql.NewCommitter(target, table, []string{"v"}, func(v int64) []any { return []any{v} })
		if err != nil {
			t.Fatal(err)
		}
		sink = weir.TwoPhaseCommitSink[int64, *mysql.Txn](&crashingCommitter[int64, *mysql.Txn]{TwoPhaseCommitter: c, at: at})
	case "kafka":
		c, err := kafka.NewCommitter(kafka.SinkOptions{Brokers: strings.Split(target, ","), Topic: "out"},
			func(v int64) *kgo.Record { return &kgo.Record{Value: strconv.AppendInt(nil, v, 10)} })
		if err != nil {
			t.Fatal(err)
		}
		sink = weir.TwoPhaseCommitSink[int64, *kafka.Txn](&crashingCommitter[int64, *kafka.Txn]{TwoPhaseCommitter: c, at: at})
	default:
		t.Fatalf("unknown system %q", system)
	}
	src.SinkTo(sink).UID("out")
	err := env.Execute(context.Background(), job)
	t.Fatalf("the job should have been killed at %s, it ended: %v", at, err)
}

// crashJob runs TestTxnCrashJob in a child process until it is killed, and
// returns its checkpoint directory.
func crashJob(t *testing.T, system, at, target, job string, extraEnv ...string) string {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestTxnCrashJob$", "-test.v")
	cmd.Env = append(os.Environ(), "WEIR_TXN_CRASH_SYSTEM="+system, "WEIR_TXN_CRASH_AT="+at, "WEIR_TXN_CRASH_TARGET="+target,
		"WEIR_TXN_CRASH_DIR="+dir, "WEIR_TXN_CRASH_JOB="+job)
	cmd.Env = append(cmd.Env, extraEnv...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != crashExit {
		t.Fatalf("the job process should have exited with %d at %s: %v\n%s", crashExit, at, err, out)
	}
	return dir
}

// txnRows runs weir txn VERB and decodes its JSON.
func txnRows(t *testing.T, verb, dir string, flags ...string) []txnRow {
	t.Helper()
	out, notes, err := runCmdNotes(append([]string{"txn", verb, dir, "-o", "json"}, flags...)...)
	if err != nil {
		t.Fatalf("weir txn %s: %v\n%s%s", verb, err, out, notes)
	}
	var res struct {
		Transactions []txnRow `json:"transactions"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("weir txn %s -o json: %v\n%s", verb, err, out)
	}
	return res.Transactions
}

// byState returns the transactions of rows in state.
func byState(rows []txnRow, state string) []string {
	var out []string
	for _, r := range rows {
		if r.State == state {
			out = append(out, r.Transaction)
		}
	}
	slices.Sort(out)
	return out
}

// checkListed: weir txn list names exactly the transactions the system
// holds, lingering and pending as wanted.
func checkListed(t *testing.T, rows []txnRow, held []string, wantState string) {
	t.Helper()
	var listed []string
	for _, r := range rows {
		if r.State == "pending" || r.State == "lingering" {
			listed = append(listed, r.Transaction)
		}
	}
	slices.Sort(listed)
	slices.Sort(held)
	if len(held) == 0 || !slices.Equal(listed, held) {
		t.Fatalf("weir txn list shows %v, the system holds %v (%+v)", listed, held, rows)
	}
	if got := byState(rows, wantState); !slices.Equal(got, held) {
		t.Fatalf("want every held transaction %s, got %+v", wantState, rows)
	}
}

// checkActions: the verb acted on every transaction in state, with
// action, and on no other.
func checkActions(t *testing.T, rows []txnRow, state, action string) {
	t.Helper()
	n := 0
	for _, r := range rows {
		switch {
		case r.State == state && r.Action != action:
			t.Fatalf("%s transaction %s: action %q, want %q (%+v)", state, r.Transaction, r.Action, action, rows)
		case r.State != state && r.Action != "":
			t.Fatalf("%s transaction %s: action %q, want none (%+v)", r.State, r.Transaction, r.Action, rows)
		case r.State == state:
			n++
		}
	}
	if n == 0 {
		t.Fatalf("no %s transaction to act on: %+v", state, rows)
	}
}

func TestTxnPostgres(t *testing.T) {
	dsn := pgtest.Start(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE nums (v BIGINT)"); err != nil {
		t.Fatal(err)
	}
	prepared := func() []string {
		t.Helper()
		rows, err := conn.Query(ctx, "SELECT gid FROM pg_prepared_xacts")
		if err != nil {
			t.Fatal(err)
		}
		gids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return gids
	}
	count := func() int {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM nums").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	flags := []string{"--postgres", dsn}

	t.Run("killed after prepare", func(t *testing.T) {
		dir := crashJob(t, "postgres", "precommit", dsn, "pg-crash")
		held := prepared()
		checkListed(t, txnRows(t, "list", dir, flags...), held, "lingering")
		out, err := runCmd(append([]string{"txn", "list", dir}, flags...)...)
		if err != nil || !strings.Contains(out, "lingering") || !strings.Contains(out, held[0]) || !strings.Contains(out, "SYSTEM") {
			t.Fatalf("txn list: %v\n%s", err, out)
		}
		before := count()
		checkActions(t, txnRows(t, "abort", dir, flags...), "lingering", "rolled back")
		if left := prepared(); len(left) != 0 {
			t.Fatalf("prepared transactions left after weir txn abort: %v", left)
		}
		if count() != before {
			t.Fatalf("abort changed the committed rows: %d, then %d", before, count())
		}
	})

	t.Run("killed before commit", func(t *testing.T) {
		dir := crashJob(t, "postgres", "commit", dsn, "pg-crash2")
		held := prepared()
		checkListed(t, txnRows(t, "list", dir, flags...), held, "pending")
		// abort keeps the pending transaction: a restore would commit it.
		txnRows(t, "abort", dir, flags...)
		if left := prepared(); !slices.Equal(left, held) {
			t.Fatalf("abort without --include-pending: prepared %v, want %v kept", left, held)
		}
		before := count()
		checkActions(t, txnRows(t, "commit", dir, flags...), "pending", "committed")
		if left := prepared(); len(left) != 0 {
			t.Fatalf("prepared transactions left after weir txn commit: %v", left)
		}
		if count() <= before {
			t.Fatalf("commit made no rows visible: %d, then %d", before, count())
		}
		if got := byState(txnRows(t, "list", dir, flags...), "settled"); !slices.Equal(got, held) {
			t.Fatalf("after commit the checkpoint's transactions should be settled: %v, want %v", got, held)
		}
	})

	t.Run("abort including pending", func(t *testing.T) {
		dir := crashJob(t, "postgres", "commit", dsn, "pg-crash3")
		held := prepared()
		checkListed(t, txnRows(t, "list", dir, flags...), held, "pending")
		before := count()
		checkActions(t, txnRows(t, "abort", dir, append(flags, "--include-pending")...), "pending", "rolled back")
		if left := prepared(); len(left) != 0 {
			t.Fatalf("prepared transactions left after weir txn abort --include-pending: %v", left)
		}
		if count() != before {
			t.Fatalf("abort changed the committed rows: %d, then %d", before, count())
		}
	})
}

func TestTxnMySQL(t *testing.T) {
	const dsn = "root@tcp(127.0.0.1:3306)/test"
	db, err := sql.Open("mysql", dsn)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err = db.PingContext(ctx)
		cancel()
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("MariaDB/MySQL at 127.0.0.1:3306 (root, no password, database test) is not reachable: %v", err)
		}
		t.Skipf("MariaDB/MySQL at 127.0.0.1:3306 is not reachable (%v): start it to run this test", err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	table := fmt.Sprintf("weir_txn_%d", time.Now().UnixNano())
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+table+" (v BIGINT)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.ExecContext(ctx, "DROP TABLE "+table) })
	// The server is shared: the job name is unique, and only its XA ids
	// (weir<hash of its prefix>-...) are looked at.
	job := fmt.Sprintf("my-crash-%d", time.Now().UnixNano())
	admin, err := mysql.NewAdmin(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	recovered := func() []string {
		t.Helper()
		xids, err := admin.Prepared(ctx, weir.TxnPrefix(job, "out", 0))
		if err != nil {
			t.Fatal(err)
		}
		return xids
	}
	count := func() int {
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Whatever a failing test leaves prepared on the shared server is
	// rolled back.
	t.Cleanup(func() {
		for _, j := range []string{job, job + "-2"} {
			xids, _ := admin.Prepared(ctx, weir.TxnPrefix(j, "out", 0))
			for _, x := range xids {
				admin.Rollback(ctx, x)
			}
		}
	})
	flags := []string{"--mysql", dsn}
	tableEnv := "WEIR_TXN_CRASH_TABLE=" + table

	t.Run("killed after prepare", func(t *testing.T) {
		dir := crashJob(t, "mysql", "precommit", dsn, job, tableEnv)
		held := recovered()
		checkListed(t, txnRows(t, "list", dir, flags...), held, "lingering")
		before := count()
		checkActions(t, txnRows(t, "abort", dir, flags...), "lingering", "rolled back")
		if left := recovered(); len(left) != 0 {
			t.Fatalf("XA RECOVER still lists the job's transactions after weir txn abort: %v", left)
		}
		if count() != before {
			t.Fatalf("abort changed the committed rows: %d, then %d", before, count())
		}
	})

	t.Run("killed before commit", func(t *testing.T) {
		dir := crashJob(t, "mysql", "commit", dsn, job+"-2", tableEnv)
		job := job + "-2"
		held, err := admin.Prepared(ctx, weir.TxnPrefix(job, "out", 0))
		if err != nil {
			t.Fatal(err)
		}
		checkListed(t, txnRows(t, "list", dir, flags...), held, "pending")
		before := count()
		checkActions(t, txnRows(t, "commit", dir, flags...), "pending", "committed")
		if left, _ := admin.Prepared(ctx, weir.TxnPrefix(job, "out", 0)); len(left) != 0 {
			t.Fatalf("XA RECOVER still lists the job's transactions after weir txn commit: %v", left)
		}
		if count() <= before {
			t.Fatalf("commit made no rows visible: %d, then %d", before, count())
		}
	})
}

func TestTxnKafka(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := strings.Join(c.ListenAddrs(), ",")
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	// stable reports the partition's end offset and its last stable offset
	// (the end offset under read_committed): an open transaction holds the
	// second back.
	stable := func() (end, lso int64) {
		t.Helper()
		e, err := adm.ListEndOffsets(ctx, "out")
		if err == nil {
			err = e.Error()
		}
		if err != nil {
			t.Fatal(err)
		}
		s, err := adm.ListCommittedOffsets(ctx, "out")
		if err == nil {
			err = s.Error()
		}
		if err != nil {
			t.Fatal(err)
		}
		ev, _ := e.Lookup("out", 0)
		sv, _ := s.Lookup("out", 0)
		return ev.Offset, sv.Offset
	}
	flags := []string{"--kafka", brokers}

	dir := crashJob(t, "kafka", "precommit", brokers, "kafka-crash")
	// A record produced after the crash, outside any transaction: a
	// read_committed reader cannot get to it while the job's transaction
	// is open.
	marker := &kgo.Record{Topic: "out", Value: []byte("marker")}
	if err := cl.ProduceSync(ctx, marker).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if end, lso := stable(); lso >= end {
		t.Fatalf("no open transaction holds read_committed readers back: end %d, last stable %d", end, lso)
	}
	rows := txnRows(t, "list", dir, flags...)
	lingering := byState(rows, "lingering")
	if len(lingering) == 0 {
		t.Fatalf("weir txn list shows no lingering transaction: %+v", rows)
	}
	checkActions(t, txnRows(t, "abort", dir, flags...), "lingering", "aborted (transactional id fenced)")
	if end, lso := stable(); lso != end {
		t.Fatalf("after weir txn abort a transaction still holds read_committed readers back: end %d, last stable %d", end, lso)
	}
	// A read_committed consumer now reads the marker.
	rc, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"out": {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for seen := false; !seen; {
		f := rc.PollFetches(pctx)
		if pctx.Err() != nil {
			t.Fatal("a read_committed consumer did not get the record after the aborted transaction")
		}
		f.EachRecord(func(r *kgo.Record) { seen = seen || string(r.Value) == "marker" })
	}
	if got := byState(txnRows(t, "list", dir, flags...), "lingering"); len(got) != 0 {
		t.Fatalf("still lingering after abort: %v", got)
	}

	// Killed before the commit: the checkpoint's transaction is pending
	// (open in Kafka); weir txn commit ends it with the recorded producer
	// id and epoch, and read_committed readers get past it.
	dir = crashJob(t, "kafka", "commit", brokers, "kafka-crash2")
	admin, err := kafka.NewAdmin(c.ListenAddrs())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	open, err := admin.Open(ctx, weir.TxnPrefix("kafka-crash2", "out", 0))
	if err != nil {
		t.Fatal(err)
	}
	var held []string
	for _, o := range open {
		held = append(held, o.ID)
	}
	// Kafka holds the checkpoint's transaction (pending) and, if the job
	// began the next epoch's before it was killed, that one too
	// (lingering: the checkpoint does not know it).
	rows = txnRows(t, "list", dir, flags...)
	listed := append(byState(rows, "pending"), byState(rows, "lingering")...)
	slices.Sort(listed)
	slices.Sort(held)
	pending := byState(rows, "pending")
	if len(pending) == 0 || !slices.Equal(listed, held) {
		t.Fatalf("weir txn list shows pending %v and lingering %v, Kafka holds %v (%+v)", pending, byState(rows, "lingering"), held, rows)
	}
	if end, lso := stable(); lso >= end {
		t.Fatalf("the pending transaction does not hold read_committed readers back: end %d, last stable %d", end, lso)
	}
	rows = txnRows(t, "commit", dir, flags...)
	for _, r := range rows {
		if r.State == "pending" && !strings.HasPrefix(r.Action, "committed (producer ") {
			t.Fatalf("commit: %+v", rows)
		}
	}
	if len(byState(rows, "lingering")) > 0 {
		checkActions(t, txnRows(t, "abort", dir, flags...), "lingering", "aborted (transactional id fenced)")
	}
	if end, lso := stable(); lso != end {
		t.Fatalf("after weir txn commit (and abort of the next epoch's) a transaction still holds read_committed readers back: end %d, last stable %d", end, lso)
	}
	if got := byState(txnRows(t, "list", dir, flags...), "settled"); !slices.Equal(got, pending) {
		t.Fatalf("after commit the checkpoint's transactions should be settled: %v, want %v", got, pending)
	}
}

// Bad input is a clear error: no system to look in, a checkpoint without a
// two-phase-commit sink, an unknown sink UID; a sink state of another kind
// is skipped with a note.
func TestTxnBadInput(t *testing.T) {
	dir := t.TempDir()
	st, err := storage.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	md := &checkpoint.Metadata{Version: checkpoint.MetadataVersion, JobName: "j", CheckpointID: 3,
		TriggeredAt: time.Unix(10, 0), CompletedAt: time.Unix(11, 0), MaxParallelism: 128,
		Operators: []checkpoint.OperatorState{{UID: "odd", Name: "Odd sink", Parallelism: 1, Subtasks: []checkpoint.OperatorSubtaskState{{
			Operator: []checkpoint.ListStateSnapshot{{Name: "sink-state", Entries: [][]byte{[]byte("zzz")}}},
		}}}}}
	if err := st.Commit(t.Context(), md); err != nil {
		t.Fatal(err)
	}
	if _, err := runCmd("txn", "list", dir); err == nil || !strings.Contains(err.Error(), "give --postgres DSN, --mysql DSN or --kafka BROKERS") {
		t.Fatalf("no system: %v", err)
	}
	_, notes, err := runCmdNotes("txn", "list", dir, "--postgres", "postgres://x@127.0.0.1:1/db")
	if err == nil || !strings.Contains(err.Error(), "checkpoint 3 of job j has no two-phase-commit sink state") ||
		!strings.Contains(notes, `sink odd: skipped, its state is not two-phase-commit state (subtask 0: unknown two-phase commit state entry kind 'z')`) {
		t.Fatalf("no two-phase-commit sink: %v\n%s", err, notes)
	}
	if _, err := runCmd("txn", "abort", dir, "--sink", "other", "--mysql", "root@tcp(127.0.0.1:1)/x"); err == nil || !strings.Contains(err.Error(), `no two-phase-commit sink with UID "other"`) {
		t.Fatalf("unknown sink: %v", err)
	}
	if _, err := runCmd("txn", "commit", dir, "--job", "k", "--postgres", "x"); err == nil || !strings.Contains(err.Error(), `checkpoint 3 at `+dir+` is of job "j", not "k"`) {
		t.Fatalf("another job: %v", err)
	}
	if _, err := runCmd("txn", "list", dir, "--postgres", "x", "-o", "yaml"); err == nil || !strings.Contains(err.Error(), `invalid --output "yaml"`) {
		t.Fatalf("bad output: %v", err)
	}
}

// A running job holds its checkpoint directory's lock: abort and commit
// refuse to settle its transactions, naming the holder, and list warns;
// once the job is gone they go on.
func TestTxnRefusesRunningJob(t *testing.T) {
	dir := t.TempDir()
	st, err := storage.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	md := &checkpoint.Metadata{Version: checkpoint.MetadataVersion, JobName: "j", CheckpointID: 3,
		TriggeredAt: time.Unix(10, 0), CompletedAt: time.Unix(11, 0), MaxParallelism: 128}
	if err := st.Commit(t.Context(), md); err != nil {
		t.Fatal(err)
	}
	// What a running job takes (runtime's lockStorage).
	unlock, err := st.TryLock(storage.Holder("j"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{dir, dir + "/chk-3", dir + "/chk-3/_metadata"} {
		for _, verb := range []string{"abort", "commit"} {
			_, err := runCmd("txn", verb, path, "--postgres", "postgres://x@127.0.0.1:1/db")
			if err == nil || !strings.Contains(err.Error(), "refusing to "+verb+" the transactions while the job runs") ||
				!strings.Contains(err.Error(), "locked by job j, pid "+strconv.Itoa(os.Getpid())) {
				t.Fatalf("txn %s %s while the job holds the lock: %v", verb, path, err)
			}
		}
	}
	_, notes, err := runCmdNotes("txn", "list", dir, "--postgres", "postgres://x@127.0.0.1:1/db")
	if !strings.Contains(notes, "note: checkpoint directory "+dir+" is in use by another job: locked by job j") ||
		err == nil || !strings.Contains(err.Error(), "has no two-phase-commit sink state") {
		t.Fatalf("txn list while the job runs: %v\n%s", err, notes)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	// The job is gone: abort gets past the lock (to this checkpoint's lack
	// of sinks), and releases it when done.
	if _, err := runCmd("txn", "abort", dir, "--postgres", "x"); err == nil || !strings.Contains(err.Error(), "has no two-phase-commit sink state") {
		t.Fatalf("txn abort after the job ended: %v", err)
	}
	again, err := st.TryLock(storage.Holder("j"))
	if err != nil {
		t.Fatalf("weir txn abort kept the directory locked: %v", err)
	}
	_ = again()
}
