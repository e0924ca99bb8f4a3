package rest_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/weirstream/weir/rest"
)

// chromium finds a Chromium to drive: $WEIR_CHROMIUM, then the usual
// names. Without one the test skips, unless CI=true.
func chromium(t *testing.T) string {
	t.Helper()
	cands := []string{os.Getenv("WEIR_CHROMIUM"), "/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"}
	for _, c := range cands {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium found (CI=true): install it (apt-get install -y chromium) or set WEIR_CHROMIUM")
	}
	t.Skip("no chromium found: the web UI test needs one (apt-get install -y chromium, or WEIR_CHROMIUM=/path); skipped because CI is not set")
	return ""
}

// The web UI against a real job, in headless Chromium: the job list, the
// job graph with its backpressure colouring, the checkpoint history, the
// barrier timeline of a checkpoint, a savepoint and a stop through the
// buttons. No script error may occur.
func TestWebUI(t *testing.T) {
	path := chromium(t)
	rj := startJob(t, "ui-count", rest.Config{Token: "ui-tok"})

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.NoFirstRun, chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelTab := chromedp.NewContext(actx)
	defer cancelTab()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()

	var mu sync.Mutex
	var jsErrors []string
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			mu.Lock()
			d := e.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			jsErrors = append(jsErrors, fmt.Sprintf("%s:%d: %s", d.URL, d.LineNumber+1, msg))
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}

	do := func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatal(err)
		}
	}
	eval := func(expr string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		return v
	}
	poll := func(expr string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr)); err != nil {
			t.Fatalf("waiting for %s: %v", expr, err)
		}
	}

	// The token travels in the fragment once; the UI keeps it as a cookie.
	do(chromedp.Navigate(rj.srv.URL()+"/#token=ui-tok"), chromedp.WaitVisible(`#jobs tbody tr[data-job]`))
	rows := eval(`String(document.querySelectorAll('#jobs tbody tr').length)`)
	do(chromedp.Click(`#jobs tbody tr[data-job]`), chromedp.WaitVisible(`#graph g.vertex`),
		chromedp.WaitVisible(`#checkpoints tbody tr[data-checkpoint]`), chromedp.WaitVisible(`#timeline g.subtask-row rect.sync`))
	vertices := eval(`String(document.querySelectorAll('#graph g.vertex').length)`)
	backpressure := eval(`document.querySelector('#graph g.vertex').getAttribute('data-backpressure')`)
	timelineRows := eval(`String(document.querySelectorAll('#timeline g.subtask-row').length)`)
	bars := eval(`['start','align','sync','async'].map(c => document.querySelectorAll('#timeline rect.' + c).length).join(',')`)
	if rows != "1" || vertices != "2" || backpressure == "" || timelineRows != "4" || bars != "4,4,4,4" {
		t.Fatalf("jobs %s, vertices %s, backpressure %q, timeline rows %s, bars (start,align,sync,async) %s", rows, vertices, backpressure, timelineRows, bars)
	}

	if out := os.Getenv("WEIR_UI_SCREENSHOT"); out != "" {
		do(chromedp.EmulateViewport(1400, 900))
		time.Sleep(2500 * time.Millisecond)
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The subtasks of the second vertex, after a click on it in the graph.
	do(chromedp.Click(`#graph g.vertex:nth-of-type(2) rect`))
	poll(`document.querySelector('#vertex-name').textContent.includes('Sum')`)
	if n := eval(`String(document.querySelectorAll('#subtasks tbody tr').length)`); n != "2" {
		t.Fatalf("%s subtask rows for the counting vertex", n)
	}

	// A savepoint through the button.
	do(chromedp.Click(`#btn-savepoint`))
	poll(`document.querySelector('#action-result').textContent.includes('completed')`)
	result := eval(`document.querySelector('#action-result').textContent`)
	if !strings.HasPrefix(result, "savepoint ") || !strings.Contains(result, rj.dir) {
		t.Fatalf("savepoint result: %q", result)
	}
	readMetadata(t, strings.TrimSpace(result[strings.Index(result, ": ")+2:]))

	// Stop asks for a second click, then stops the job with a savepoint.
	do(chromedp.Click(`#btn-stop`))
	poll(`document.querySelector('#btn-stop').textContent.startsWith('Click again')`)
	do(chromedp.Click(`#btn-stop`))
	poll(`document.querySelector('#action-result').textContent.startsWith('stopped with savepoint')`)
	result = eval(`document.querySelector('#action-result').textContent`)
	if err := rj.job.Wait(); err != nil {
		t.Fatalf("the job stopped from the UI ended with %v (%s)", err, result)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(jsErrors) > 0 {
		t.Fatalf("script errors: %v", jsErrors)
	}
}
