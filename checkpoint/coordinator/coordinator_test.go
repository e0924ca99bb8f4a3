package coordinator

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/weirstream/weir/checkpoint"
)

// TestTranscripts replays testdata/*.txt. Commands:
//
//	new [interval=D timeout=D min-pause=D max-concurrent=N tolerable=N retained=N]
//	    tasks=V.S,... sources=V.S,... [next-id=N retained-ids=N,...]
//	start t=D | tick t=D | trigger t=D [kind=savepoint]
//	ack id=N task=V.S t=D [size=N] | decline id=N task=V.S t=D [reason=S]
//	finished task=V.S t=D | written id=N t=D | write-failed id=N t=D [err=S]
//	shutdown t=D
//
// Times are offsets from an epoch. Each command prints the actions, then the
// pending and retained completed ids, the latest completed id and the next
// deadline. Regenerate with: go test ./checkpoint/coordinator -rewrite
func TestTranscripts(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		var c *Coordinator
		epoch := time.Unix(0, 0).UTC()
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			args := map[string]string{}
			for _, a := range d.CmdArgs {
				args[a.Key] = strings.Join(a.Vals, ",")
			}
			dur := func(k string) time.Duration {
				v, ok := args[k]
				if !ok {
					return 0
				}
				x, err := time.ParseDuration(v)
				if err != nil {
					d.Fatalf(t, "bad %s=%q", k, v)
				}
				return x
			}
			num := func(k string, def int) int {
				v, ok := args[k]
				if !ok {
					return def
				}
				n, err := strconv.Atoi(v)
				if err != nil {
					d.Fatalf(t, "bad %s=%q", k, v)
				}
				return n
			}
			now := epoch.Add(dur("t"))
			id := checkpoint.ID(num("id", 0))
			var acts []Action
			switch d.Cmd {
			case "new":
				cfg := Config{Interval: dur("interval"), Timeout: dur("timeout"), MinPause: dur("min-pause"),
					MaxConcurrent: num("max-concurrent", 1), TolerableFailures: num("tolerable", 0), NumRetained: num("retained", 1)}
				var retained []checkpoint.ID
				for _, s := range splitList(args["retained-ids"]) {
					n, _ := strconv.Atoi(s)
					retained = append(retained, checkpoint.ID(n))
				}
				var err error
				c, err = New(cfg, parseTasks(t, args["tasks"]), parseTasks(t, args["sources"]), checkpoint.ID(num("next-id", 1)), retained)
				if err != nil {
					return "error: " + err.Error() + "\n"
				}
				return "ok\n"
			case "start":
				acts = c.Start(now)
			case "tick":
				acts = c.Tick(now)
			case "trigger":
				kind := checkpoint.KindCheckpoint
				if args["kind"] == "savepoint" {
					kind = checkpoint.KindSavepoint
				}
				_, a, err := c.TriggerNow(now, kind)
				if err != nil {
					return "error: " + err.Error() + "\n" + state(c)
				}
				acts = a
			case "ack":
				acts = c.Ack(now, id, parseTask(t, args["task"]), checkpoint.TaskSnapshot{StateSize: int64(num("size", 0))})
			case "decline":
				reason := errors.New("snapshot failed")
				if r, ok := args["reason"]; ok {
					reason = errors.New(r)
				}
				acts = c.Decline(now, id, parseTask(t, args["task"]), reason)
			case "finished":
				acts = c.TaskFinished(now, parseTask(t, args["task"]))
			case "written":
				acts = c.MetadataWritten(now, id)
			case "write-failed":
				err := errors.New("disk full")
				if e, ok := args["err"]; ok {
					err = errors.New(e)
				}
				acts = c.MetadataFailed(now, id, err)
			case "shutdown":
				acts = c.Shutdown(now)
			default:
				d.Fatalf(t, "unknown command %q", d.Cmd)
			}
			var b strings.Builder
			for _, a := range acts {
				b.WriteString(render(a, epoch))
				b.WriteByte('\n')
			}
			return b.String() + state(c)
		})
	})
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func parseTasks(t *testing.T, s string) []checkpoint.TaskID {
	var out []checkpoint.TaskID
	for _, x := range splitList(s) {
		out = append(out, parseTask(t, x))
	}
	return out
}

func parseTask(t *testing.T, s string) checkpoint.TaskID {
	v, sub, ok := strings.Cut(s, ".")
	a, err1 := strconv.Atoi(v)
	b, err2 := strconv.Atoi(sub)
	if !ok || err1 != nil || err2 != nil {
		t.Fatalf("bad task %q", s)
	}
	return checkpoint.TaskID{Vertex: a, Subtask: b}
}

func render(a Action, epoch time.Time) string {
	switch a := a.(type) {
	case TriggerSources:
		return fmt.Sprintf("trigger id=%d kind=%s at=%s -> %v", a.Barrier.ID, a.Barrier.Kind, a.Barrier.Timestamp.Sub(epoch), a.Tasks)
	case WriteMetadata:
		var tasks []string
		for t, s := range a.Snapshots {
			tasks = append(tasks, fmt.Sprintf("%s:%d", t, s.StateSize))
		}
		sort.Strings(tasks)
		return fmt.Sprintf("write-metadata id=%d kind=%s triggered=%s acks=%v", a.ID, a.Kind, a.TriggeredAt.Sub(epoch), tasks)
	case NotifyComplete:
		return fmt.Sprintf("notify-complete id=%d", a.ID)
	case NotifyAborted:
		return fmt.Sprintf("notify-aborted id=%d reason=%q", a.ID, a.Reason)
	case Discard:
		return fmt.Sprintf("discard id=%d completed=%v", a.ID, a.Completed)
	case FailJob:
		return fmt.Sprintf("fail-job reason=%q", a.Reason)
	}
	return fmt.Sprintf("unknown %T", a)
}

func state(c *Coordinator) string {
	dl := "none"
	if t, ok := c.NextDeadline(); ok {
		dl = t.Sub(time.Unix(0, 0)).String()
	}
	latest := "none"
	if id, ok := c.LatestCompleted(); ok {
		latest = strconv.Itoa(int(id))
	}
	return fmt.Sprintf("pending=%v completed=%v latest=%s deadline=%s\n", c.Pending(), c.Completed(), latest, dl)
}
