// Command paritysum shows exactly-once recovery on the smallest job: a source with
// two partitions whose records are their own offsets (0, 1, 2, ...), keyed by
// parity and summed, printed by two parallel subtasks. It checkpoints every
// second to a local folder; --fail-after injects one failure so you can watch
// the job restore its last checkpoint and carry on.
//
//	go run ./examples/paritysum                        # exactly once, ends after 60 records
//	go run ./examples/paritysum --fail-after 30        # one failure, then a restore
//	go run ./examples/paritysum --mode at-least-once --fail-after 30
//
// With exactly-once the final sums are always even=2*(0+2+...), odd=2*(1+3+...)
// whatever fails; with at-least-once a restore may count some records twice.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/jobflags"
)

// Pair is a number with its parity.
type Pair struct {
	Parity string
	N      int64
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "paritysum:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("paritysum", flag.ContinueOnError)
	jf := jobflags.Register(fs)
	count := fs.Int64("count", 30, "records per partition (-1: no end)")
	rate := fs.Float64("rate", 10, "records per second per partition (0: as fast as possible)")
	failAfter := fs.Int64("fail-after", 0, "inject one failure after this many records (0: none)")
	// Two subtasks, one per parity, unless told otherwise.
	if err := fs.Set("parallelism", "2"); err != nil {
		return err
	}
	if err := jobflags.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	opts, err := jf.Options("paritysum")
	if err != nil {
		return err
	}
	env := weir.NewEnvironment(append(opts, weir.Stdout(stdout))...)

	src := weir.Generator(2, *count, func(_ int, offset int64) int64 { return offset }).WithRate(*rate)
	nums := weir.FromSource(env, src, "numbers").UID("numbers")
	var seen atomic.Int64
	var failed atomic.Bool
	pairs := weir.MapErr(nums, func(n int64) (Pair, error) {
		if *failAfter > 0 && seen.Add(1) == *failAfter && !failed.Swap(true) {
			return Pair{}, fmt.Errorf("injected failure after %d records (--fail-after)", *failAfter)
		}
		parity := "even"
		if n%2 != 0 {
			parity = "odd"
		}
		return Pair{Parity: parity, N: n}, nil
	}).Name("parity")
	sums := weir.Sum(weir.KeyBy(pairs, func(p Pair) string { return p.Parity }), func(p Pair) int64 { return p.N }).
		Name("sum").UID("sum")
	sums.Print()

	return jf.Run(context.Background(), env, "paritysum")
}
