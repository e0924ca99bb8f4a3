// Command weir is the operator's tool for weir jobs: it inspects the
// checkpoints and savepoints a job left in its checkpoint storage and reads
// the keyed state in them, without the job's code, and it operates running
// jobs through their REST API. (A job itself is the user's own Go binary,
// built with the weir package and the standard job flags of package
// jobflags; --rest-listen serves its API.)
//
//	weir list | describe JOB | checkpoints JOB [--limit N]
//	weir checkpoint trigger JOB | savepoint JOB [DIR] | stop JOB [DIR] | cancel JOB
//	    talk to the REST API at --jobmanager URL (WEIR_JOBMANAGER; default
//	    http://127.0.0.1:8081) with --token (WEIR_TOKEN) and, for https,
//	    --tls-ca; --output table (default) or json. JOB is a job's id or
//	    name. savepoint and stop wait for the savepoint, printing progress
//	    on standard error, and print its location.
//
//	weir checkpoint list DIR
//	    the completed checkpoints and savepoints in a checkpoint directory
//	weir checkpoint inspect PATH [--id N] [--json] [--sizes=false]
//	    per operator: UID, name, parallelism; per subtask: its key-group
//	    range, its operator list states (name, mode, entries, bytes) and its
//	    keyed state: the states in the snapshot stream with their entries
//	    and bytes (read from the stream and checked; --sizes=false skips
//	    that) and the value and key codecs the checkpoint recorded for
//	    them; for an incremental (pebble) snapshot also its files, shared
//	    or private, with their sizes and the bytes this checkpoint uploaded
//	    (its states are read from the downloaded files);
//	    then totals per operator and for the checkpoint
//	weir state dump PATH --operator UID --state NAME [--id N] [--json]
//	        [--key-codec C] [--value-codec C] [--limit N]
//	    the entries of one keyed state, sorted by key group then key, as
//	    "key<TAB>value" lines or JSON lines
//
//	weir txn list|abort|commit PATH [--id N] [--job NAME] [--sink UID]
//	        [--postgres DSN] [--mysql DSN] [--kafka BROKERS] [--include-pending]
//	    the transactions of the job's two-phase-commit sinks in PostgreSQL,
//	    MySQL / MariaDB and Kafka, found from the checkpoint's sink state:
//	    pending (pre-committed for the checkpoint, still open), lingering
//	    (not in the checkpoint) or settled; abort rolls back the lingering
//	    ones (and the pending ones with --include-pending), commit commits
//	    the pending ones, as a restore from the checkpoint would
//
// PATH is a checkpoint or savepoint directory (".../chk-17"), its _metadata
// file, or a checkpoint storage root; for a root, --id picks the
// checkpoint (default: the latest completed one).
//
// Keys and values are stored in their codecs' encodings (package state,
// CodecFor), which dump decodes with --key-codec and --value-codec: string,
// int64 (zig-zag varint, every signed integer type), uint64 (uvarint,
// every unsigned integer type), float64, float32, bool, json (structs and
// other types), bytes (printed as hex), list:C (ListState of C),
// map:K:V (MapState), and auto, the default: printable UTF-8 as a string,
// anything else as hex. Without the flags, dump decodes with the codecs the
// checkpoint recorded for the state (state.CodecIdentity: varint:int64 as
// int64, list(string) as list:string, json:... as json), auto for a job's
// own codecs, and says on standard error which it used. A value of a state
// with a time-to-live is printed with its expiry. An incremental (pebble) checkpoint is dumped by
// downloading its files and reading them with Pebble.
//
// Every read checks the snapshot stream as a restore does (checksums,
// format version, key group sections); a damaged checkpoint is an error
// that names the operator, subtask, key group and state.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/storage"
	_ "github.com/weirstream/weir/storage/s3" // s3:// checkpoint paths
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
	ck := &cobra.Command{Use: "checkpoint", Short: "Look into checkpoints, or trigger one"}
	list := &cobra.Command{
		Use:   "list DIR",
		Short: "List the completed checkpoints in a checkpoint directory",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := openExisting(args[0])
			if err != nil {
				return err
			}
			ids, err := st.Completed(cmd.Context())
			if err != nil {
				return fmt.Errorf("cannot list checkpoints in %s: %w", args[0], err)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tCOMPLETED\tOPERATORS")
			for _, id := range ids {
				md, err := st.ReadMetadata(cmd.Context(), id)
				if err != nil {
					fmt.Fprintf(tw, "%d\tunreadable: %v\t\t\n", id, err)
					continue
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%d\n", id, md.Kind, md.CompletedAt.Format(timeFormat), len(md.Operators))
			}
			return tw.Flush()
		},
	}
	ck.AddCommand(list, newInspect())
	st := &cobra.Command{Use: "state", Short: "Read the keyed state in checkpoints and savepoints"}
	st.AddCommand(newDump())
	root.AddCommand(ck, st, newTxn())
	addJobVerbs(root, ck)
	return root
}

const timeFormat = "2006-01-02T15:04:05.000Z07:00"

func openExisting(dir string) (*storage.Storage, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("cannot open checkpoint directory: %w", err)
	}
	return storage.NewFile(dir)
}

// openCheckpoint finds the checkpoint PATH names (see the package
// documentation; id > 0 picks one in a storage root) and reads its
// metadata.
func openCheckpoint(ctx context.Context, path string, id int64) (*storage.Storage, *checkpoint.Metadata, error) {
	if id < 0 {
		return nil, nil, fmt.Errorf("invalid checkpoint id %d", id)
	}
	p := strings.TrimPrefix(path, "file://")
	base := filepath.Base(filepath.Clean(p))
	n, isChk := strings.CutPrefix(base, "chk-")
	if _, err := strconv.ParseInt(n, 10, 64); err != nil {
		isChk = false
	}
	if id == 0 || base == "_metadata" || isChk {
		st, cid, err := storage.ResolveRestorePath(ctx, path)
		if err != nil {
			return nil, nil, err
		}
		if id != 0 && int64(cid) != id {
			return nil, nil, fmt.Errorf("%s is checkpoint %d, not %d (--id picks a checkpoint in a storage root)", path, cid, id)
		}
		md, err := st.ReadMetadata(ctx, cid)
		return st, md, err
	}
	st, err := openExisting(p)
	if err != nil {
		return nil, nil, err
	}
	ids, err := st.Completed(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot list checkpoints in %s: %w", path, err)
	}
	for _, c := range ids {
		if int64(c) == id {
			md, err := st.ReadMetadata(ctx, c)
			return st, md, err
		}
	}
	have := make([]string, len(ids))
	for i, c := range ids {
		have[i] = strconv.FormatInt(int64(c), 10)
	}
	if len(have) == 0 {
		have = []string{"none"}
	}
	return nil, nil, fmt.Errorf("no completed checkpoint %d in %s (completed: %s)", id, path, strings.Join(have, ", "))
}
