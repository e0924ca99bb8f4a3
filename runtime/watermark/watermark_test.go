package watermark

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// TestTranscripts replays testdata/*.txt. Commands:
//
//	valve channels=N
//	wm ch=C t=N | idle ch=C | active ch=C | eop ch=C
//	splits [idle-timeout=MS]
//	record split=S now=MS | swm split=S t=N now=MS | tick now=MS | end split=S now=MS
//
// Each prints what is emitted (watermark, status change), then the current
// watermark and status. Regenerate with: go test ./runtime/watermark -rewrite
func TestTranscripts(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		var v *Valve
		var s *Splits
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			args := map[string]string{}
			for _, a := range d.CmdArgs {
				if len(a.Vals) > 0 {
					args[a.Key] = a.Vals[0]
				}
			}
			num := func(k string) int64 {
				if args[k] == "max" {
					return Max
				}
				n, err := strconv.ParseInt(args[k], 10, 64)
				if err != nil {
					d.Fatalf(t, "bad %s=%q", k, args[k])
				}
				return n
			}
			var out Output
			switch d.Cmd {
			case "valve":
				v, s = NewValve(int(num("channels"))), nil
				return "ok"
			case "splits":
				timeout := int64(0)
				if _, ok := args["idle-timeout"]; ok {
					timeout = num("idle-timeout")
				}
				v, s = nil, NewSplits(timeout)
				return "ok"
			case "wm":
				out = v.OnWatermark(int(num("ch")), num("t"))
			case "idle":
				out = v.OnStatus(int(num("ch")), Idle)
			case "active":
				out = v.OnStatus(int(num("ch")), Active)
			case "eop":
				out = v.OnEndOfPartition(int(num("ch")))
			case "record":
				out = s.OnRecord(int(num("split")), num("now"))
			case "swm":
				out = s.OnWatermark(int(num("split")), num("t"), num("now"))
			case "tick":
				out = s.Tick(num("now"))
			case "end":
				out = s.OnEnd(int(num("split")), num("now"))
			default:
				d.Fatalf(t, "unknown command %s", d.Cmd)
			}
			var b strings.Builder
			if out.HasWatermark {
				fmt.Fprintf(&b, "emit watermark %s\n", fmtWM(out.Watermark))
			}
			if out.StatusChanged {
				fmt.Fprintf(&b, "emit %s\n", out.Status)
			}
			var wm int64
			var st Status
			if v != nil {
				wm, st = v.Current()
			} else {
				wm, st = s.Current()
			}
			fmt.Fprintf(&b, "watermark=%s %s", fmtWM(wm), st)
			return b.String()
		})
	})
}

func fmtWM(w int64) string {
	switch w {
	case Min:
		return "min"
	case Max:
		return "max"
	}
	return strconv.FormatInt(w, 10)
}
