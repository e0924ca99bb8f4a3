package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/weirstream/weir/rest/client"
)

// The verbs that operate running jobs through their REST API (package
// rest/client): list, describe, checkpoints, checkpoint trigger,
// savepoint, stop, cancel.

// apiFlags are the flags of every verb that talks to a job.
type apiFlags struct {
	jobManager string
	token      string
	tlsCA      string
	output     string
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func (f *apiFlags) register(cmd *cobra.Command) {
	p := cmd.PersistentFlags()
	p.StringVar(&f.jobManager, "jobmanager", envOr("WEIR_JOBMANAGER", "http://127.0.0.1:8081"), "the job's REST API (a job's or job manager's --rest-listen address); env WEIR_JOBMANAGER")
	p.StringVar(&f.token, "token", os.Getenv("WEIR_TOKEN"), "the cluster token, sent as a bearer token; env WEIR_TOKEN")
	p.StringVar(&f.tlsCA, "tls-ca", os.Getenv("WEIR_TLS_CA"), "CA certificates (PEM) that verify an https REST API; env WEIR_TLS_CA")
	p.StringVarP(&f.output, "output", "o", "table", "output format: table or json")
}

func (f *apiFlags) client() (*client.Client, error) {
	if f.output != "table" && f.output != "json" {
		return nil, fmt.Errorf("invalid --output %q: want table or json", f.output)
	}
	var tc *tls.Config
	if f.tlsCA != "" {
		pem, err := os.ReadFile(f.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("invalid --tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("invalid --tls-ca %s: no PEM certificate in it", f.tlsCA)
		}
		tc = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return client.New(f.jobManager, f.token, tc)
}

func (f *apiFlags) json(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func fmtTime(ms int64) string {
	if ms <= 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format(timeFormat)
}

func fmtDur(ms int64) string {
	if ms < 0 {
		return "-"
	}
	return (time.Duration(ms) * time.Millisecond).String()
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func fmtCounts(m map[string]int) string {
	var parts []string
	for _, s := range []string{"CREATED", "DEPLOYING", "RUNNING", "FINISHED", "CANCELED", "FAILED"} {
		if m[s] > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", strings.ToLower(s), m[s]))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

func addJobVerbs(root, ck *cobra.Command) {
	f := &apiFlags{}
	f.register(root)
	run := func(fn func(ctx context.Context, c *client.Client, w io.Writer, args []string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			return fn(ctx, c, cmd.OutOrStdout(), args)
		}
	}
	list := &cobra.Command{Use: "list", Short: "List the jobs of a REST API", Args: cobra.NoArgs,
		RunE: run(func(ctx context.Context, c *client.Client, w io.Writer, _ []string) error {
			l, err := c.Jobs(ctx)
			if err != nil {
				return err
			}
			if f.output == "json" {
				return f.json(w, l)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "JID\tNAME\tSTATE\tSTARTED\tDURATION\tSUBTASKS")
			for _, j := range l.Jobs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Name, j.State, fmtTime(j.StartTime), fmtDur(j.Duration), fmtCounts(j.Tasks))
			}
			return tw.Flush()
		})}
	describe := &cobra.Command{Use: "describe JOB", Short: "Show a job: its vertices, their subtasks and metrics, its latest checkpoints", Args: cobra.ExactArgs(1),
		RunE: run(func(ctx context.Context, c *client.Client, w io.Writer, args []string) error {
			j, err := c.Job(ctx, args[0])
			if err != nil {
				return err
			}
			cps, err := c.Checkpoints(ctx, args[0], 0)
			if err != nil {
				return err
			}
			if f.output == "json" {
				return f.json(w, struct {
					Job         client.Job         `json:"job"`
					Checkpoints client.Checkpoints `json:"checkpoints"`
				}{j, cps})
			}
			fmt.Fprintf(w, "job %s (%s)\nstate:     %s\nstarted:   %s\nduration:  %s\nrestarts:  %d\n", j.Name, j.ID, j.State, fmtTime(j.StartTime), fmtDur(j.Duration), j.Restarts)
			if j.Error != "" {
				fmt.Fprintf(w, "error:     %s\n", j.Error)
			}
			fmt.Fprintln(w)
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VERTEX\tNAME\tPARALLELISM\tSTATUS\tRECORDS IN\tRECORDS OUT\tBUSY\tBACKPRESSURED")
			for _, v := range j.Vertices {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d\t%.0f%%\t%.0f%%\n", v.ID, v.Name, v.Parallelism, v.Status,
					v.Metrics.ReadRecords, v.Metrics.WriteRecords, 100*v.Metrics.BusyRatio, 100*v.Metrics.BackPressureRatio)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			n := cps.Counts
			fmt.Fprintf(w, "\ncheckpoints: %d triggered, %d completed, %d failed, %d in progress, %d restored\n", n.Total, n.Completed, n.Failed, n.InProgress, n.Restored)
			for _, l := range []struct {
				what string
				c    *client.Checkpoint
			}{{"latest completed", cps.Latest.Completed}, {"latest savepoint", cps.Latest.Savepoint}, {"latest failed", cps.Latest.Failed}} {
				if l.c != nil {
					fmt.Fprintf(w, "%s: %d at %s, %s, %s %s\n", l.what, l.c.ID, fmtTime(l.c.TriggerTimestamp), fmtDur(l.c.EndToEndDuration), fmtBytes(l.c.StateSize), l.c.ExternalPath+l.c.FailureMessage)
				}
			}
			if r := cps.Latest.Restored; r != nil {
				fmt.Fprintf(w, "restored: %d from %s\n", r.ID, r.ExternalPath)
			}
			return nil
		})}
	checkpoints := &cobra.Command{Use: "checkpoints JOB", Short: "The checkpoint history of a job, newest first", Args: cobra.ExactArgs(1)}
	limit := checkpoints.Flags().Int("limit", 20, "how many checkpoints to list")
	checkpoints.RunE = run(func(ctx context.Context, c *client.Client, w io.Writer, args []string) error {
		cps, err := c.Checkpoints(ctx, args[0], *limit)
		if err != nil {
			return err
		}
		if f.output == "json" {
			return f.json(w, cps)
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTYPE\tSTATUS\tTRIGGERED\tDURATION\tSIZE\tACKED\tMAX ALIGNMENT\tMAX START DELAY\tNOTE")
		for _, cp := range cps.History {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n", cp.ID, strings.ToLower(cp.CheckpointType), cp.Status, fmtTime(cp.TriggerTimestamp),
				fmtDur(cp.EndToEndDuration), fmtBytes(cp.StateSize), cp.NumAcknowledged, cp.NumSubtasks, fmtDur(cp.AlignmentMax), fmtDur(cp.StartDelayMax), cp.FailureMessage)
		}
		return tw.Flush()
	})
	wait := func(ctx context.Context, c *client.Client, w io.Writer, what, job string, status func(context.Context) (client.OperationStatus, error)) error {
		errw := io.Discard
		if f.output == "table" {
			errw = os.Stderr
		}
		last := time.Duration(0)
		op, err := client.Await(ctx, 100*time.Millisecond, status, func(el time.Duration) {
			if el-last >= time.Second {
				last = el
				fmt.Fprintf(errw, "waiting for the %s of job %s: %s\n", what, job, el.Round(time.Second))
			}
		})
		if err != nil {
			return fmt.Errorf("the %s of job %s failed: %w", what, job, err)
		}
		if f.output == "json" {
			return f.json(w, op)
		}
		if op.Location != "" {
			fmt.Fprintf(w, "%s %d completed: %s\n", what, op.CheckpointID, op.Location)
		} else {
			fmt.Fprintf(w, "%s %d completed\n", what, op.CheckpointID)
		}
		return nil
	}
	trigger := &cobra.Command{Use: "trigger JOB", Short: "Take a checkpoint of a running job now and wait for it", Args: cobra.ExactArgs(1),
		RunE: run(func(ctx context.Context, c *client.Client, w io.Writer, args []string) error {
			rid, err := c.TriggerCheckpoint(ctx, args[0])
			if err != nil {
				return err
			}
			return wait(ctx, c, w, "checkpoint", args[0], func(ctx context.Context) (client.OperationStatus, error) {
				return c.CheckpointStatus(ctx, args[0], rid)
			})
		})}
	savepoint := &cobra.Command{Use: "savepoint JOB [DIR]", Short: "Take a savepoint of a running job and wait for it (DIR, if given, must be the job's checkpoint storage)",
		Args: cobra.RangeArgs(1, 2),
		RunE: run(func(ctx context.Context, c *client.Client, w io.Writer, args []string) error {
			req := client.SavepointRequest{}
			if len(args) == 2 {
				req.TargetDirectory = args[1]
			}
			rid, err := c.TriggerSavepoint(ctx, args[0], req)
			if err != nil {
				return err
			}
			return wait(ctx, c, w, "savepoint", args[0], func(ctx context.Context) (client.OperationStatus, error) { return c.SavepointStatus(ctx, args[0], rid) })
		})}
	stop := &cobra.Command{Use: "stop JOB [DIR]", Short: "Stop a job with a final savepoint (sinks commit) and print its location", Args: cobra.RangeArgs(1, 2),
		RunE: run(func(ctx context.Context, c *client.Client, w io.Writer, args []string) error {
			req := client.SavepointRequest{}
			if len(args) == 2 {
				req.TargetDirectory = args[1]
			}
			rid, err := c.Stop(ctx, args[0], req)
			if err != nil {
				return err
			}
			return wait(ctx, c, w, "savepoint", args[0], func(ctx context.Context) (client.OperationStatus, error) { return c.SavepointStatus(ctx, args[0], rid) })
		})}
	cancel := &cobra.Command{Use: "cancel JOB", Short: "Cancel a job (no savepoint; its retained checkpoints stay)", Args: cobra.ExactArgs(1),
		RunE: run(func(ctx context.Context, c *client.Client, w io.Writer, args []string) error {
			if err := c.Cancel(ctx, args[0]); err != nil {
				return err
			}
			if f.output == "json" {
				return f.json(w, map[string]string{"job": args[0], "status": "cancelling"})
			}
			fmt.Fprintf(w, "job %s cancelling\n", args[0])
			return nil
		})}
	ck.AddCommand(trigger)
	root.AddCommand(list, describe, checkpoints, savepoint, stop, cancel)
}
