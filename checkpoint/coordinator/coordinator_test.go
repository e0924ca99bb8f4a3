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
//	start t=D | tick t=D | trigger t=D [kind=savepoint] [req=N]
//	ack id=N task=V.S t=D [size=N]
//	decline id=N task=V.S t=D [reason=S] [why=failure|subsumed|cancelled|end-of-input|not-running]
//	trigger-failed id=N t=D | source-ended task=V.S t=D | stop t=D
//	finished task=V.S t=D | written id=N t=D | write-failed id=N t=D [err=S]
//	shutdown t=D
//
// Times are offsets from an epoch. Each command prints the actions, then the
// pending and retained completed ids, the restore point (the newest
// completion told to the tasks), queued requests and the next deadline. Regenerate with: go test ./checkpoint/coordinator -rewrite
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
					MaxConcurrent: num("max-concurrent", 1), TolerableFailures: num("tolerable", 0), NumRetained: num("retained", 1),
					FinalTimeout: dur("final-timeout"), MaxQueued: num("max-queued", 0)}
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
				acts = c.Trigger(now, kind, uint64(num("req", 0)))
			case "ack":
				acts = c.Ack(now, id, parseTask(t, args["task"]), checkpoint.TaskSnapshot{StateSize: int64(num("size", 0))})
			case "decline":
				reason := errors.New("snapshot failed")
				if r, ok := args["reason"]; ok {
					reason = errors.New(r)
				}
				why := DeclineFailure
				for r := DeclineFailure; r <= DeclineNotRunning; r++ {
					if args["why"] == r.String() {
						why = r
					}
				}
				acts = c.Decline(now, id, parseTask(t, args["task"]), why, reason)
			case "trigger-failed":
				acts = c.TriggerFailed(now, id, errors.New("cannot reach the id counter"))
			case "source-ended":
				acts = c.SourceEnded(now, parseTask(t, args["task"]))
			case "stop":
				a, err := c.StopWithSavepoint(now)
				if err != nil {
					return "error: " + err.Error() + "\n" + state(c)
				}
				acts = a
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
		final := ""
		if a.Final {
			final = " final"
		}
		return fmt.Sprintf("trigger id=%d kind=%s%s at=%s -> %v", a.Barrier.ID, a.Barrier.Kind, final, a.Barrier.Timestamp.Sub(epoch), a.Tasks)
	case Triggered:
		return fmt.Sprintf("triggered req=%d id=%d", a.Request, a.ID)
	case TriggerRefused:
		return fmt.Sprintf("refused req=%d err=%q", a.Request, a.Err)
	case Completed:
		return fmt.Sprintf("completed id=%d kind=%s notified=%v", a.ID, a.Kind, a.Notified)
	case StopSources:
		return fmt.Sprintf("stop-sources %v", a.Tasks)
	case FinishSources:
		return fmt.Sprintf("finish-sources %v after %s %d", a.Tasks, a.Kind, a.ID)
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
		return fmt.Sprintf("fail-job permanent=%v reason=%q", a.Permanent, a.Reason)
	}
	return fmt.Sprintf("unknown %T", a)
}

func state(c *Coordinator) string {
	dl := "none"
	if t, ok := c.NextDeadline(); ok {
		dl = t.Sub(time.Unix(0, 0)).String()
	}
	restore := "none"
	if id, ok := c.RestorePoint(); ok {
		restore = strconv.Itoa(int(id))
	}
	extra := ""
	if n := c.Queued(); n > 0 {
		extra += fmt.Sprintf(" queued=%d", n)
	}
	if c.Finished() {
		extra += " finished"
	}
	return fmt.Sprintf("pending=%v completed=%v restore=%s deadline=%s%s\n", c.Pending(), c.Completed(), restore, dl, extra)
}
