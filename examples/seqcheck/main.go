// Command seqcheck is the job that shows exactly-once output for yourself:
// per key it generates the sequence numbers 1..N from a replayable,
// checkpointed source, shuffles them by key, counts them per key in keyed
// state, and writes rows "key seq cnt" to an exactly-once sink. Kill it as
// often as you like (kill -9 included) and start it again with
// --restore latest: when it exits 0, every key has every seq exactly once,
// and cnt = seq on every row.
//
//	go run ./examples/seqcheck --sink file --sink-url /tmp/out --checkpoint-dir /tmp/chk --restore latest
//	cat /tmp/out/part* | sort -n | uniq -d      # nothing: no duplicates
//
// Sinks: file (committed part files in --sink-url), postgres and mysql
// (rows in --table of the database at the DSN --sink-url), kafka (records
// "key seq cnt" in topic --table at brokers --sink-url; read them with
// read_committed).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/connector/files"
	"github.com/weirstream/weir/connector/kafka"
	"github.com/weirstream/weir/connector/mysql"
	"github.com/weirstream/weir/connector/postgres"
	"github.com/weirstream/weir/jobflags"
)

// Rec is record Seq of key Key.
type Rec struct{ Key, Seq int64 }

// Row is what the sink receives.
type Row struct{ Key, Seq, Cnt int64 }

type counter struct{ cnt weir.ValueState[int64] }

func (c *counter) Open(ctx *weir.KeyedContext[int64]) (err error) {
	c.cnt, err = weir.GetValueState[int64](ctx, "cnt")
	return err
}

func (c *counter) ProcessElement(_ *weir.KeyedContext[int64], in Rec, out weir.Collector[Row]) error {
	n, _ := c.cnt.Value()
	n++
	c.cnt.Update(n)
	out.Collect(Row{Key: in.Key, Seq: in.Seq, Cnt: n})
	return nil
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "seqcheck:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("seqcheck", flag.ContinueOnError)
	jf := jobflags.Register(fs)
	keys := fs.Int("keys", 8, "number of keys")
	count := fs.Int64("count", 10000, "sequence numbers per key")
	rate := fs.Float64("rate", 0, "records per second per source subtask (0: no bound)")
	sinkKind := fs.String("sink", "file", "where rows go: file, postgres, mysql or kafka")
	sinkURL := fs.String("sink-url", "", "file: the output directory; postgres, mysql: the DSN; kafka: broker addresses, comma separated")
	table := fs.String("table", "seqcheck", "postgres, mysql: an existing table (key BIGINT, seq BIGINT, cnt BIGINT); kafka: the topic")
	if err := jobflags.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	if *keys < 1 || *count < 1 {
		return fmt.Errorf("--keys and --count must be at least 1")
	}
	opts, err := jf.Options("seqcheck")
	if err != nil {
		return err
	}
	env := weir.NewEnvironment(opts...)
	gen := weir.Generator(*keys, *count, func(p int, off int64) Rec { return Rec{Key: int64(p), Seq: off + 1} }).WithRate(*rate)
	recs := weir.FromSource(env, gen, "sequences").UID("sequences")
	rows := weir.Process(weir.KeyBy(recs, func(r Rec) int64 { return r.Key }), &counter{}).Name("count").UID("count")
	switch *sinkKind {
	case "file":
		if *sinkURL == "" {
			return errors.New("--sink file needs --sink-url DIR")
		}
		rows.SinkTo(files.Sink(*sinkURL, ".txt", func(dst []byte, r Row) []byte {
			return fmt.Appendf(dst, "%d %d %d\n", r.Key, r.Seq, r.Cnt)
		})).Name("files").UID("sink")
	case "postgres":
		sink, err := postgres.ExactlyOnce(*sinkURL, *table, []string{"key", "seq", "cnt"},
			func(r Row) []any { return []any{r.Key, r.Seq, r.Cnt} })
		if err != nil {
			return err
		}
		rows.SinkTo(sink).Name("postgres").UID("sink")
	case "mysql":
		sink, err := mysql.ExactlyOnce(*sinkURL, *table, []string{"key", "seq", "cnt"},
			func(r Row) []any { return []any{r.Key, r.Seq, r.Cnt} })
		if err != nil {
			return err
		}
		rows.SinkTo(sink).Name("mysql").UID("sink")
	case "kafka":
		sink, err := kafka.ExactlyOnce(kafka.SinkOptions{Brokers: strings.Split(*sinkURL, ","), Topic: *table},
			func(r Row) *kgo.Record { return &kgo.Record{Value: fmt.Appendf(nil, "%d %d %d", r.Key, r.Seq, r.Cnt)} })
		if err != nil {
			return err
		}
		rows.SinkTo(sink).Name("kafka").UID("sink")
	default:
		return fmt.Errorf("--sink %q is not supported (supported: file, postgres, mysql, kafka)", *sinkKind)
	}
	return jf.Run(context.Background(), env, "seqcheck")
}
