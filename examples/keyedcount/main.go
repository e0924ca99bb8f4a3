// Command keyedcount is the throughput job of weir's benchmarks: a
// deterministic generator of --records integers over --keys keys, keyBy,
// a keyed count, and a sink that discards. It takes the standard job flags,
// so it runs locally or as a cluster:
//
//	go run ./examples/keyedcount --records 100000000 --parallelism 2
//	keyedcount --role jobmanager ... & keyedcount --role taskmanager --name tm-1 ... &
//
// When the job ends it prints the records per second it measured (job
// manager or local role).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/jobflags"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "keyedcount:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("keyedcount", flag.ContinueOnError)
	jf := jobflags.Register(fs)
	keys := fs.Int64("keys", 10000, "number of keys")
	records := fs.Int64("records", 10_000_000, "records in all")
	if err := jobflags.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	if *keys < 1 || *records < 1 {
		return errors.New("--keys and --records must be at least 1")
	}
	opts, err := jf.Options("keyedcount")
	if err != nil {
		return err
	}
	env := weir.NewEnvironment(opts...)
	const partitions = 2
	per := (*records + partitions - 1) / partitions
	src := weir.FromSource(env, weir.Generator(partitions, per, func(p int, off int64) int64 {
		return (off*partitions + int64(p)) % *keys
	}), "gen").UID("gen")
	weir.Count(weir.KeyBy(src, func(k int64) int64 { return k })).UID("count").
		SinkTo(weir.DiscardSink[weir.KV[int64, int64]]{}).UID("sink")
	start := time.Now()
	if err := jf.Run(context.Background(), env, "keyedcount"); err != nil {
		return err
	}
	if jf.Role != "taskmanager" {
		el := time.Since(start)
		fmt.Printf("%d records in %s: %.1f M records/s\n", partitions*per, el.Round(time.Millisecond), float64(partitions*per)/el.Seconds()/1e6)
	}
	return nil
}
