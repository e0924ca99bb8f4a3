// Command windows is the everyday event-time job: clicks per user in
// 1-minute tumbling windows, with 30 s of allowed lateness and late clicks
// to a side output. A deterministic generator plays users clicking with
// timestamps up to --disorder out of order; of every --late-every clicks,
// one comes 25 s late (its window fires again: within the lateness) and one
// --late-by late (too late: to the side output). The source's watermark is
// the bounded out-of-orderness strategy. Windows are keyed state with their timers: kill the job and
// restart it with --restore latest, and the counts still come out once.
//
//	go run ./examples/windows                         # 2 x 20 000 clicks in 5 s: 11 minutes of event time
//	go run ./examples/windows --clicks -1 --rate 200  # unbounded, until Ctrl-C
//
// Each result line is "user window count"; a window fires again (with a
// larger count) for each click that arrives late but within the lateness,
// and clicks later than that are printed as "late ...".
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

// Click is a user's click at event time TS (milliseconds since 1970).
type Click struct {
	User string
	TS   int64
}

// Count is a user's clicks in a window.
type Count struct {
	User       string
	Start, End time.Time
	Clicks     int64
}

func (c Count) String() string {
	return fmt.Sprintf("%s [%s, %s) %d", c.User, c.Start.UTC().Format("15:04:05"), c.End.UTC().Format("15:04:05"), c.Clicks)
}

type countClicks struct{}

func (countClicks) CreateAccumulator() int64   { return 0 }
func (countClicks) Add(_ Click, n int64) int64 { return n + 1 }
func (countClicks) Result(n int64) int64       { return n }
func (countClicks) Merge(a, b int64) int64     { return a + b }
func withUser(ctx *weir.WindowContext[string], n []int64, out weir.Collector[Count]) error {
	w := ctx.Window()
	out.Collect(Count{User: ctx.Key(), Start: time.UnixMilli(w.Start), End: time.UnixMilli(w.End), Clicks: n[0]})
	return nil
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "windows:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("windows", flag.ContinueOnError)
	jf := jobflags.Register(fs)
	clicks := fs.Int64("clicks", 20_000, "clicks per partition (-1: no end)")
	rate := fs.Float64("rate", 4000, "clicks per second per partition (0: as fast as possible)")
	users := fs.Int("users", 5, "number of users")
	disorder := fs.Duration("disorder", 10*time.Second, "how far out of order clicks come (the watermark's bound)")
	lateEvery := fs.Int64("late-every", 500, "every n-th click is late")
	lateBy := fs.Duration("late-by", 2*time.Minute, "how late a too-late click is")
	if err := jobflags.Parse(fs, args, os.Getenv); err != nil {
		return err
	}
	if *users < 1 || *lateEvery < 1 {
		return errors.New("--users and --late-every must be at least 1")
	}
	opts, err := jf.Options("windows")
	if err != nil {
		return err
	}
	env := weir.NewEnvironment(opts...)
	const partitions = 2
	base := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC).UnixMilli()
	dis, late := disorder.Milliseconds(), lateBy.Milliseconds()
	gen := weir.Generator(partitions, *clicks, func(p int, off int64) Click {
		n := off*partitions + int64(p)
		ts := base + n*100 - (n*7919)%max(dis, 1) // 10 clicks a second, shuffled within the bound
		switch n % *lateEvery {
		case *lateEvery - 1:
			ts -= late
		case *lateEvery / 2:
			ts -= 25_000
		}
		return Click{User: fmt.Sprintf("user-%d", n%int64(*users)), TS: ts}
	}).WithRate(*rate)
	strategy := weir.ForBoundedOutOfOrderness[Click](*disorder).WithTimestampAssigner(func(c Click, _ int64) int64 { return c.TS })
	src := weir.FromSourceWithWatermarks(env, gen, strategy, "clicks").UID("clicks")

	lateClicks := weir.NewOutputTag[Click]("late-clicks")
	windows := weir.Window(weir.KeyBy(src, func(c Click) string { return c.User }), weir.TumblingEventTimeWindows(time.Minute)).
		AllowedLateness(30 * time.Second).
		SideOutputLateData(lateClicks)
	counts := weir.WindowAggregateProcess(windows, weir.Aggregator[Click, int64, int64](countClicks{}),
		weir.ProcessWindowFunc[string, int64, Count](withUser)).UID("clicks-per-minute")
	counts.Print()
	weir.Map(weir.GetSideOutput(counts, lateClicks), func(c Click) string {
		return fmt.Sprintf("late %s at %s", c.User, time.UnixMilli(c.TS).UTC().Format("15:04:05.000"))
	}).Print()

	// Ctrl-C or SIGTERM cancels the job (or stops it with a savepoint,
	// with --stop-with-savepoint-on-sigterm) and exits 0.
	return jf.Run(context.Background(), env, "windows")
}
