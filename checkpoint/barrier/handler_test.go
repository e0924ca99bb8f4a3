package barrier

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/weirstream/weir/checkpoint"
)

// TestTranscripts replays testdata/*.txt. Commands:
//
//	new mode=aligned|exactly-once|at-least-once channels=N
//	barrier ch=C id=N t=DUR [ts=DUR]   (t: arrival time; ts: trigger time)
//	cancel ch=C id=N t=DUR
//	eop ch=C t=DUR
//	abort id=N t=DUR                   (the coordinator aborted N)
//
// Each prints the actions, then the blocked channels and the pending
// checkpoint. Regenerate with: go test ./checkpoint/barrier -rewrite
func TestTranscripts(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		var h Handler
		var channels int
		epoch := time.Unix(1000, 0)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			args := map[string]string{}
			for _, a := range d.CmdArgs {
				if len(a.Vals) > 0 {
					args[a.Key] = a.Vals[0]
				}
			}
			num := func(k string) int {
				n, err := strconv.Atoi(args[k])
				if err != nil {
					d.Fatalf(t, "%s: bad %s=%q", d.Pos, k, args[k])
				}
				return n
			}
			at := func(k string) time.Time {
				v, ok := args[k]
				if !ok {
					return epoch
				}
				dur, err := time.ParseDuration(v)
				if err != nil {
					d.Fatalf(t, "%s: bad %s=%q", d.Pos, k, v)
				}
				return epoch.Add(dur)
			}
			var acts []Action
			switch d.Cmd {
			case "new":
				mode := checkpoint.ExactlyOnce
				if args["mode"] != "aligned" {
					m, err := checkpoint.ParseMode(args["mode"])
					if err != nil {
						d.Fatalf(t, "%s: %v", d.Pos, err)
					}
					mode = m
				}
				channels = num("channels")
				h = New(mode, channels)
				return "ok"
			case "barrier":
				b := checkpoint.Barrier{ID: checkpoint.ID(num("id")), Timestamp: at("ts")}
				if args["kind"] == "savepoint" {
					b.Kind = checkpoint.KindSavepoint
				}
				acts = h.OnBarrier(at("t"), num("ch"), b)
			case "cancel":
				acts = h.OnCancellation(at("t"), num("ch"), checkpoint.ID(num("id")))
			case "eop":
				acts = h.OnEndOfPartition(at("t"), num("ch"))
			case "abort":
				acts = h.OnAbort(at("t"), checkpoint.ID(num("id")))
			default:
				d.Fatalf(t, "unknown command %q", d.Cmd)
			}
			return render(h, channels, acts)
		})
	})
}

func render(h Handler, channels int, acts []Action) string {
	var b strings.Builder
	for _, a := range acts {
		fmt.Fprintln(&b, a)
	}
	var blocked []string
	for ch := range channels {
		if h.Blocked(ch) {
			blocked = append(blocked, strconv.Itoa(ch))
		}
	}
	p := "none"
	if id, ok := h.Pending(); ok {
		p = strconv.Itoa(int(id))
	}
	fmt.Fprintf(&b, "blocked=[%s] pending=%s\n", strings.Join(blocked, " "), p)
	return b.String()
}
