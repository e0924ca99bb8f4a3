// Command weir is the operator's tool for weir jobs: it inspects the
// checkpoints a job left in its checkpoint storage. (A job itself is the
// user's own Go binary, built with the weir package and the standard job
// flags of package jobflags.)
//
//	weir checkpoint list DIR       completed checkpoints in a checkpoint directory
//	weir checkpoint inspect PATH   operators, subtasks, key groups and state of one checkpoint
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/storage"
)

func main() {
	if err := newRoot(os.Stdout).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "weir:", err)
		os.Exit(1)
	}
}

func newRoot(out io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "weir",
		Short:         "Operate weir stream processing jobs",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(out)
	ck := &cobra.Command{Use: "checkpoint", Short: "Look into checkpoints"}
	list := &cobra.Command{
		Use:   "list DIR",
		Short: "List the completed checkpoints in a checkpoint directory",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openExisting(args[0])
			if err != nil {
				return err
			}
			ids, err := st.Completed()
			if err != nil {
				return fmt.Errorf("cannot list checkpoints in %s: %w", args[0], err)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tCOMPLETED\tOPERATORS")
			for _, id := range ids {
				md, err := st.ReadMetadata(id)
				if err != nil {
					fmt.Fprintf(tw, "%d\tunreadable: %v\t\t\n", id, err)
					continue
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%d\n", id, md.Kind, md.CompletedAt.Format("2006-01-02T15:04:05.000Z07:00"), len(md.Operators))
			}
			return tw.Flush()
		},
	}
	var asJSON bool
	inspect := &cobra.Command{
		Use:   "inspect PATH",
		Short: "Print a checkpoint's operators, subtasks, key-group ranges and state",
		Long:  "PATH is a checkpoint directory (.../chk-17), its _metadata file, or a checkpoint directory root (then the latest checkpoint).",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, id, err := storage.ResolveRestorePath(args[0])
			if err != nil {
				return err
			}
			md, err := st.ReadMetadata(id)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(md)
			}
			printMetadata(cmd.OutOrStdout(), md)
			return nil
		},
	}
	inspect.Flags().BoolVar(&asJSON, "json", false, "print the metadata as JSON")
	ck.AddCommand(list, inspect)
	root.AddCommand(ck)
	return root
}

func openExisting(dir string) (storage.Storage, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("cannot open checkpoint directory: %w", err)
	}
	return storage.NewFile(dir)
}

func printMetadata(w io.Writer, md *checkpoint.Metadata) {
	fmt.Fprintf(w, "%s %d of job %q\n", md.Kind, md.CheckpointID, md.JobName)
	fmt.Fprintf(w, "  triggered  %s\n  completed  %s\n  max parallelism %d\n",
		md.TriggeredAt.Format("2006-01-02T15:04:05.000Z07:00"), md.CompletedAt.Format("2006-01-02T15:04:05.000Z07:00"), md.MaxParallelism)
	ops := append([]checkpoint.OperatorState(nil), md.Operators...)
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].UID < ops[j].UID })
	for _, op := range ops {
		fmt.Fprintf(w, "operator %s (%s), parallelism %d\n", op.UID, op.Name, op.Parallelism)
		for i, st := range op.Subtasks {
			if st.IsEmpty() {
				fmt.Fprintf(w, "  subtask %d: no state\n", i)
				continue
			}
			fmt.Fprintf(w, "  subtask %d:\n", i)
			for _, k := range st.Keyed {
				where := k.Stream.Path
				if where == "" {
					where = "inline"
				}
				fmt.Fprintf(w, "    keyed state: key groups %s, %d bytes in %s\n", k.Range, k.Stream.Size, where)
			}
			for _, l := range st.Operator {
				n := 0
				for _, e := range l.Entries {
					n += len(e)
				}
				mode := "split"
				if l.Mode == checkpoint.Union {
					mode = "union"
				}
				fmt.Fprintf(w, "    list state %q (%s): %d entries, %d bytes\n", l.Name, mode, len(l.Entries), n)
			}
		}
	}
}
