package kafka

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/internal/sinktest"
	"github.com/weirstream/weir/restart"
)

func cluster(t testing.TB, partitions int32, topics ...string) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

func encodeRow(r sinktest.Row) *kgo.Record {
	return &kgo.Record{Value: fmt.Appendf(nil, "%d %d %d", r.Key, r.Seq, r.Cnt)}
}

// readCommitted reads every committed record of topic.
func readCommitted(t *testing.T, brokers []string, topic string) []sinktest.Row {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var rows []sinktest.Row
	quiet := 0
	for quiet < 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			var row sinktest.Row
			fmt.Sscanf(string(r.Value), "%d %d %d", &row.Key, &row.Seq, &row.Cnt)
			rows = append(rows, row)
			n++
		})
		if n == 0 {
			quiet++
		} else {
			quiet = 0
		}
	}
	return rows
}

// TestSinkConformance runs the exactly-once sink conformance job into an
// in-process Kafka (kfake) with failures around the pre-commit and both
// sides of the commit; a read_committed reader sees every (key, seq)
// exactly once with cnt = seq.
func TestSinkConformance(t *testing.T) {
	for _, mode := range []weir.Mode{weir.ExactlyOnce, weir.AtLeastOnce} {
		for seed := uint64(1); seed <= 2; seed++ {
			t.Run(fmt.Sprintf("%s/seed%d", mode, seed), func(t *testing.T) {
				brokers := cluster(t, 3, "out")
				c, err := NewCommitter(SinkOptions{Brokers: brokers, Topic: "out"}, encodeRow)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				sinktest.Run(t, c, mode, seed)
				sinktest.Check(t, mode, readCommitted(t, brokers, "out"))
			})
		}
	}
}

// A savepoint that does not stop the job, then a task failure before the
// next checkpoint: a read_committed reader sees every (key, seq) exactly
// once.
func TestSinkSavepointThenFailure(t *testing.T) {
	brokers := cluster(t, 3, "out")
	c, err := NewCommitter(SinkOptions{Brokers: brokers, Topic: "out"}, encodeRow)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sinktest.SavepointThenFailure(t, c, nil, func() []sinktest.Row { return readCommitted(t, brokers, "out") })
}

// The source reads its partitions from checkpointed offsets: with a
// failure in the middle and a transactional collecting sink, every input
// record comes out exactly once.
func TestSourceRestoresOffsets(t *testing.T) {
	brokers := cluster(t, 4, "in")
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("in"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	const n = 4000
	for i := range n {
		prod.Produce(context.Background(), &kgo.Record{Partition: int32(i % 4), Value: fmt.Appendf(nil, "%d", i)}, nil)
	}
	if err := prod.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	prod.Close()

	env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(10*time.Millisecond, weir.ExactlyOnce),
		weir.CheckpointStorage(t.TempDir()), weir.RestartStrategy(restart.FixedDelay(3, 0)), weir.BufferSize(50))
	src := Source(SourceOptions{Brokers: brokers, Topic: "in", Bounded: true}, func(r *kgo.Record) (int, error) {
		var v int
		_, err := fmt.Sscanf(string(r.Value), "%d", &v)
		return v, err
	})
	failed := false
	nums := weir.MapErr(weir.FromSource(env, src, "in").UID("in"), func(v int) (int, error) {
		if v == n/2 && !failed {
			failed = true
			return 0, fmt.Errorf("injected")
		}
		if v%200 == 0 {
			time.Sleep(3 * time.Millisecond) // let checkpoints happen mid-stream
		}
		return v, nil
	})
	sink := weir.NewCollectSink[int]()
	nums.SinkTo(sink).UID("sink")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	job, err := env.Start(ctx, "kafka-source")
	if err != nil {
		t.Fatal(err)
	}
	if err := job.Wait(); err != nil {
		t.Fatal(err)
	}
	if job.Restarts() != 1 {
		t.Fatalf("restarts %d, want 1", job.Restarts())
	}
	seen := map[int]int{}
	for _, v := range sink.Committed() {
		seen[v]++
	}
	for i := range n {
		if seen[i] != 1 {
			t.Fatalf("record %d came out %d times, want once", i, seen[i])
		}
	}
}

func TestValidation(t *testing.T) {
	brokers := cluster(t, 1, "present")
	if _, err := NewCommitter(SinkOptions{Brokers: brokers, Topic: "absent", Timeout: 3 * time.Second}, encodeRow); err == nil || !strings.Contains(err.Error(), "absent") {
		t.Errorf("missing topic: %v", err)
	}
	if _, err := NewCommitter(SinkOptions{Topic: "x"}, encodeRow); err == nil || !strings.Contains(err.Error(), "needs brokers") {
		t.Errorf("no brokers: %v", err)
	}
	if _, err := NewCommitter(SinkOptions{Brokers: []string{"127.0.0.1:1"}, Topic: "x", Timeout: 2 * time.Second}, encodeRow); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("unreachable: %v", err)
	}
}

// The at-least-once sink loses nothing across failures.
func TestAtLeastOnceSink(t *testing.T) {
	brokers := cluster(t, 2, "out")
	sink, err := AtLeastOnce(SinkOptions{Brokers: brokers, Topic: "out"}, encodeRow)
	if err != nil {
		t.Fatal(err)
	}
	inj := sinktest.NewInjector(5, 5)
	env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(20*time.Millisecond, weir.AtLeastOnce),
		weir.CheckpointStorage(t.TempDir()), weir.RestartStrategy(restart.FixedDelay(100, 10*time.Millisecond)))
	gen := weir.Generator(sinktest.Keys, sinktest.PerKey, func(p int, off int64) sinktest.Row {
		return sinktest.Row{Key: int64(p), Seq: off + 1, Cnt: off + 1}
	}).WithRate(6000)
	rows := weir.MapErr(weir.FromSource(env, gen, "seq").UID("src"), func(r sinktest.Row) (sinktest.Row, error) {
		return r, inj.Maybe("map", 0.001)
	})
	rows.SinkTo(sink).UID("sink")
	if err := env.Execute(context.Background(), "alo"); err != nil {
		t.Fatal(err)
	}
	if len(inj.Hits()) == 0 {
		t.Fatal("no failure injected")
	}
	sinktest.Check(t, weir.AtLeastOnce, readCommitted(t, brokers, "out"))
}

// With discovery on, partitions added to the topic while the job runs are
// read by the subtask that owns them.
func TestPartitionDiscovery(t *testing.T) {
	brokers := cluster(t, 2, "grow")
	produce := func(from, to int, partitions int32) {
		prod, _ := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("grow"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		defer prod.Close()
		for i := from; i < to; i++ {
			prod.Produce(context.Background(), &kgo.Record{Partition: int32(i) % partitions, Value: fmt.Appendf(nil, "%d", i)}, nil)
		}
		if err := prod.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	produce(0, 100, 2)
	env := weir.NewEnvironment(weir.Parallelism(2))
	src := Source(SourceOptions{Brokers: brokers, Topic: "grow", DiscoveryInterval: 20 * time.Millisecond}, func(r *kgo.Record) (int, error) {
		var v int
		_, err := fmt.Sscanf(string(r.Value), "%d", &v)
		return v, err
	})
	sink := weir.NewCollectSink[int]()
	weir.FromSource(env, src, "grow").SinkTo(sink)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	job, err := env.Start(ctx, "discovery")
	if err != nil {
		t.Fatal(err)
	}
	admin, _ := kgo.NewClient(kgo.SeedBrokers(brokers...))
	defer admin.Close()
	if _, err := kadm.NewClient(admin).UpdatePartitions(context.Background(), 5, "grow"); err != nil {
		t.Fatal(err)
	}
	produce(100, 300, 5)
	deadline := time.Now().Add(20 * time.Second)
	for len(sink.Written()) < 300 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	job.Wait()
	seen := map[int]bool{}
	for _, v := range sink.Written() {
		seen[v] = true
	}
	for i := range 300 {
		if !seen[i] {
			t.Fatalf("record %d (partition %d) never read", i, i%5)
		}
	}
}

// Restoring fences the transactional ids of the failed attempt: a zombie
// producer of that attempt can no longer commit.
func TestZombieProducerIsFenced(t *testing.T) {
	brokers := cluster(t, 1, "out")
	c, err := NewCommitter(SinkOptions{Brokers: brokers, Topic: "out"}, encodeRow)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := weir.TxnContext{Prefix: "weir-job-sink-0", Seq: 5}
	zombie, err := c.Begin(tc)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Write(zombie, sinktest.Row{Key: 1, Seq: 1, Cnt: 1}); err != nil {
		t.Fatal(err)
	}
	if err := c.PreCommit(zombie); err != nil {
		t.Fatal(err)
	}
	// The restore (from a checkpoint whose next sequence is 5) fences it.
	if err := c.AbortLingering(tc, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Commit(zombie); err == nil {
		t.Fatal("a fenced zombie producer committed its transaction")
	}
	if rows := readCommitted(t, brokers, "out"); len(rows) != 0 {
		t.Fatalf("the zombie's records became visible: %v", rows)
	}
}

// A bounded read_committed source ends on a transactionally written topic
// (whose last offset is a commit marker, not a record), and skips what an
// aborted transaction wrote.
func TestBoundedSourceOnTransactionalTopic(t *testing.T) {
	brokers := cluster(t, 2, "tx")
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("tx"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionalID("bounded-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	ctx := context.Background()
	write := func(from, to int, commit kgo.TransactionEndTry) {
		if err := prod.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := from; i < to; i++ {
			if err := prod.ProduceSync(ctx, &kgo.Record{Partition: int32(i % 2), Value: fmt.Appendf(nil, "%d", i)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := prod.EndTransaction(ctx, commit); err != nil {
			t.Fatal(err)
		}
	}
	write(0, 100, kgo.TryCommit)
	write(100, 150, kgo.TryAbort) // never visible
	write(150, 200, kgo.TryCommit)

	env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(10*time.Millisecond, weir.ExactlyOnce),
		weir.CheckpointStorage(t.TempDir()), weir.RestartStrategy(restart.None()))
	src := Source(SourceOptions{Brokers: brokers, Topic: "tx", Bounded: true, ReadCommitted: true}, func(r *kgo.Record) (int, error) {
		var v int
		_, err := fmt.Sscanf(string(r.Value), "%d", &v)
		return v, err
	})
	sink := weir.NewCollectSink[int]()
	weir.FromSource(env, src, "tx").UID("tx").SinkTo(sink).UID("sink")
	runCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := env.Execute(runCtx, "bounded-tx"); err != nil {
		t.Fatalf("a bounded source on a transactional topic must end: %v", err)
	}
	got := map[int]int{}
	for _, v := range sink.Committed() {
		got[v]++
	}
	for i := range 200 {
		want := 1
		if i >= 100 && i < 150 {
			want = 0
		}
		if got[i] != want {
			t.Fatalf("record %d read %d times, want %d", i, got[i], want)
		}
	}
}
