package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/state"
	"github.com/weirstream/weir/storage"
)

func newInspect() *cobra.Command {
	var asJSON, sizes bool
	var id int64
	inspect := &cobra.Command{
		Use:   "inspect PATH",
		Short: "Print a checkpoint's operators, subtasks, key-group ranges and state",
		Long: `Print a checkpoint's operators, subtasks, key-group ranges and state.

PATH is a checkpoint or savepoint directory (.../chk-17), its _metadata file,
or a checkpoint storage root (then --id, or the latest checkpoint).

Keyed state streams are read to count each state's entries and bytes,
checking them as a restore does; incremental (pebble) snapshots list their
files, and every file's size and CRC-32C are checked before the files are
opened to count the entries. This is the check of state.VerifyCheckpoint;
--sizes=false skips it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, md, err := openCheckpoint(cmd.Context(), args[0], id)
			if err != nil {
				return err
			}
			rep, readErr := inspectCheckpoint(cmd.Context(), st, md, sizes)
			rep.Path = args[0]
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				printReport(cmd.OutOrStdout(), rep)
			}
			return readErr
		},
	}
	inspect.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	inspect.Flags().BoolVar(&sizes, "sizes", true, "read keyed state streams for each state's entries and bytes")
	inspect.Flags().Int64Var(&id, "id", 0, "checkpoint id, when PATH is a storage root (default: the latest)")
	return inspect
}

// report is what inspect prints, as text or JSON.
type report struct {
	Path           string           `json:"path"`
	CheckpointID   checkpoint.ID    `json:"checkpointId"`
	Kind           string           `json:"kind"`
	Job            string           `json:"job"`
	TriggeredAt    time.Time        `json:"triggeredAt"`
	CompletedAt    time.Time        `json:"completedAt"`
	MaxParallelism int              `json:"maxParallelism"`
	Operators      []operatorReport `json:"operators"`
	Totals         totals           `json:"totals"`
}

type operatorReport struct {
	UID         string          `json:"uid"`
	Name        string          `json:"name,omitempty"`
	Parallelism int             `json:"parallelism"`
	Subtasks    []subtaskReport `json:"subtasks"`
	// KeyedStates adds up the states of every subtask's keyed stream,
	// with the codecs the checkpoint recorded (with --sizes=false: only
	// the recorded states and codecs, no sizes); Partial says some
	// streams could not be read.
	KeyedStates []stateReport `json:"keyedStates,omitempty"`
	Partial     bool          `json:"partial,omitempty"`
	Totals      totals        `json:"totals"`
	read        bool          // some keyed state was read (KeyedStates has sizes)
}

type subtaskReport struct {
	Subtask    int           `json:"subtask"`
	Keyed      []keyedReport `json:"keyed,omitempty"`
	ListStates []listReport  `json:"listStates,omitempty"`
}

// keyedReport is one keyed state handle: a key-group stream or an
// incremental snapshot.
type keyedReport struct {
	KeyGroups checkpoint.KeyGroupRange `json:"keyGroups"`
	// Stream is the path of a key-group stream ("inline" in the metadata).
	Stream string `json:"stream,omitempty"`
	// Bytes is the size of the stream or of all incremental files.
	Bytes int64 `json:"bytes"`
	// States are read from the stream (with --sizes).
	States      []stateReport      `json:"states,omitempty"`
	Incremental *incrementalReport `json:"incremental,omitempty"`
	// Note says why States is missing; Error why the stream could not be
	// read.
	Note  string `json:"note,omitempty"`
	Error string `json:"error,omitempty"`
	read  bool   // States were read from the stream
}

type stateReport struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Codec and KeyCodec are the value and key codecs the checkpoint
	// recorded for the state ("identity" or "identity@version", see
	// state.CodecIdentity); empty if it recorded none (metadata version
	// 1).
	Codec    string `json:"codec,omitempty"`
	KeyCodec string `json:"keyCodec,omitempty"`
	Entries  int64  `json:"entries"`
	Bytes    int64  `json:"bytes"`
}

type incrementalReport struct {
	Backend string `json:"backend"`
	// Uploaded is what this checkpoint wrote (new files only).
	Uploaded int64        `json:"uploaded"`
	Files    []fileReport `json:"files"`
}

type fileReport struct {
	Name string `json:"name"`
	// Area is "shared" (in the storage's shared area, referenced by every
	// checkpoint that has the file) or "private" (this checkpoint's own).
	Area  string `json:"area"`
	Path  string `json:"path,omitempty"`
	Bytes int64  `json:"bytes"`
	// UploadedBy is the checkpoint that uploaded a shared file.
	UploadedBy checkpoint.ID `json:"uploadedBy,omitempty"`
}

type listReport struct {
	Name    string `json:"name"`
	Mode    string `json:"mode"`
	Entries int    `json:"entries"`
	Bytes   int64  `json:"bytes"`
}

type totals struct {
	// Bytes is the full size of the state: keyed streams, incremental
	// files (also those uploaded by earlier checkpoints) and list states.
	Bytes int64 `json:"bytes"`
	// Uploaded is what this checkpoint wrote of it.
	Uploaded int64 `json:"uploaded"`
	// KeyedEntries counts the entries of the keyed streams read.
	KeyedEntries int64 `json:"keyedEntries"`
}

func (t *totals) add(o totals) {
	t.Bytes += o.Bytes
	t.Uploaded += o.Uploaded
	t.KeyedEntries += o.KeyedEntries
}

// inspectCheckpoint builds the report of md. With sizes it reads every
// key-group stream; the first stream that cannot be read is the error
// (the report still has everything else, and an Error on each such
// handle).
func inspectCheckpoint(ctx context.Context, st *storage.Storage, md *checkpoint.Metadata, sizes bool) (*report, error) {
	open := st.Opener(ctx)
	rep := &report{CheckpointID: md.CheckpointID, Kind: md.Kind.String(), Job: md.JobName,
		TriggeredAt: md.TriggeredAt, CompletedAt: md.CompletedAt, MaxParallelism: md.MaxParallelism}
	ops := append([]checkpoint.OperatorState(nil), md.Operators...)
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].UID < ops[j].UID })
	var firstErr error
	unreadable := 0
	for _, op := range ops {
		or := operatorReport{UID: op.UID, Name: op.Name, Parallelism: op.Parallelism}
		type stateKey struct{ name, kind, codec, keyCodec string }
		byState := map[stateKey]*stateReport{}
		for i, sub := range op.Subtasks {
			sr := subtaskReport{Subtask: i}
			for _, h := range sub.Keyed {
				kr, t, err := inspectKeyed(open, h, md.MaxParallelism, sizes)
				if err != nil {
					if ve := (*state.VerifyError)(nil); errors.As(err, &ve) {
						ve.Operator, ve.Subtask = op.UID, i
					} else {
						where := kr.Stream
						if h.Incremental != nil {
							where = "incremental " + h.Incremental.Backend
						}
						err = fmt.Errorf("cannot read keyed state of operator %q subtask %d (%s): %w", op.UID, i, where, err)
					}
					kr.Error = err.Error()
					if firstErr == nil {
						firstErr = err
					}
					unreadable++
					or.Partial = true
				}
				states := kr.States
				if !kr.read { // the recorded schema still names the states
					states = schemaStates(h.States)
				}
				for _, s := range states {
					k := stateKey{s.Name, s.Kind, s.Codec, s.KeyCodec}
					if byState[k] == nil {
						byState[k] = &stateReport{Name: s.Name, Kind: s.Kind, Codec: s.Codec, KeyCodec: s.KeyCodec}
					}
					byState[k].Entries += s.Entries
					byState[k].Bytes += s.Bytes
				}
				or.read = or.read || kr.read
				or.Totals.add(t)
				sr.Keyed = append(sr.Keyed, kr)
			}
			for _, l := range sub.Operator {
				lr := listReport{Name: l.Name, Mode: modeName(l.Mode), Entries: len(l.Entries)}
				for _, e := range l.Entries {
					lr.Bytes += int64(len(e))
				}
				or.Totals.add(totals{Bytes: lr.Bytes, Uploaded: lr.Bytes})
				sr.ListStates = append(sr.ListStates, lr)
			}
			or.Subtasks = append(or.Subtasks, sr)
		}
		for _, s := range byState {
			or.KeyedStates = append(or.KeyedStates, *s)
		}
		sort.Slice(or.KeyedStates, func(i, j int) bool {
			a, b := or.KeyedStates[i], or.KeyedStates[j]
			return a.Name < b.Name || a.Name == b.Name && (a.Kind < b.Kind || a.Kind == b.Kind && a.Codec < b.Codec)
		})
		rep.Totals.add(or.Totals)
		rep.Operators = append(rep.Operators, or)
	}
	if unreadable > 1 {
		firstErr = fmt.Errorf("%w (and %d more unreadable keyed state handles)", firstErr, unreadable-1)
	}
	return rep, firstErr
}

// inspectKeyed reports one keyed state handle; with sizes it checks the
// handle as state.VerifyCheckpoint does (an error is then a
// *state.VerifyError naming the file) and counts its entries.
func inspectKeyed(open func(checkpoint.StreamHandle) (io.ReadCloser, error), h checkpoint.KeyedStateHandle, maxParallelism int, sizes bool) (keyedReport, totals, error) {
	kr := keyedReport{KeyGroups: h.Range}
	if inc := h.Incremental; inc != nil {
		ir := &incrementalReport{Backend: inc.Backend, Uploaded: inc.Uploaded}
		for _, f := range inc.Files {
			fr := fileReport{Name: f.Name, Area: "private", Path: f.Stream.Path, Bytes: f.Stream.Size}
			if name, ok := strings.CutPrefix(f.Stream.Path, storage.SharedPrefix); ok {
				fr.Area = "shared"
				fr.UploadedBy, _ = storage.SharedCreator(name)
			}
			kr.Bytes += f.Stream.Size
			ir.Files = append(ir.Files, fr)
		}
		kr.Incremental = ir
		t := totals{Bytes: kr.Bytes, Uploaded: inc.Uploaded}
		if !sizes {
			return kr, t, nil
		}
		// Every file's size and CRC first, so that a damaged file is named
		// as the verifier names it; then the entries, from the files opened
		// as a database.
		if err := state.VerifyKeyedState(h, maxParallelism, open, nil); err != nil {
			return kr, t, err
		}
		ss, err := state.SizesOf(func(visit func(state.RawEntry) error) error {
			return incrementalEntries(open, h, visit)
		})
		if err != nil {
			return kr, t, err
		}
		kr.read = true
		kr.States = withSchema(ss, h.States)
		for _, s := range ss {
			t.KeyedEntries += s.Entries
		}
		return kr, t, nil
	}
	kr.Stream, kr.Bytes = h.Stream.Path, h.Stream.Size
	if kr.Stream == "" {
		kr.Stream = "inline"
	}
	t := totals{Bytes: kr.Bytes, Uploaded: kr.Bytes}
	if !sizes {
		return kr, t, nil
	}
	ss, err := state.SizesOf(func(visit func(state.RawEntry) error) error {
		return state.VerifyKeyedState(h, maxParallelism, open, visit)
	})
	if err != nil {
		return kr, t, err
	}
	kr.read = true
	kr.States = withSchema(ss, h.States)
	for _, s := range ss {
		t.KeyedEntries += s.Entries
	}
	return kr, t, nil
}

// withSchema reports the states read from a snapshot with the codecs its
// handle recorded.
func withSchema(ss []state.StateSize, schema []checkpoint.StateMeta) []stateReport {
	byName := map[string]checkpoint.StateMeta{}
	for _, m := range schema {
		byName[m.Name] = m
	}
	out := make([]stateReport, 0, len(ss))
	for _, s := range ss {
		r := stateReport{Name: s.Name, Kind: s.Kind.String(), Entries: s.Entries, Bytes: s.Bytes}
		if m, ok := byName[s.Name]; ok {
			r.Codec, r.KeyCodec = codecRef(m.Codec, m.CodecVersion), codecRef(m.KeyCodec, m.KeyCodecVersion)
		}
		out = append(out, r)
	}
	return out
}

// schemaStates reports the states a handle recorded, without sizes.
func schemaStates(schema []checkpoint.StateMeta) []stateReport {
	out := make([]stateReport, 0, len(schema))
	for _, m := range schema {
		out = append(out, stateReport{Name: m.Name, Kind: m.Kind, Codec: codecRef(m.Codec, m.CodecVersion), KeyCodec: codecRef(m.KeyCodec, m.KeyCodecVersion)})
	}
	return out
}

// codecRef formats a recorded codec as "identity" or "identity@version".
func codecRef(id string, version int) string {
	if version == 0 {
		return id
	}
	return fmt.Sprintf("%s@%d", id, version)
}

// schemaText is how the text report shows a state's codecs.
func schemaText(s stateReport) string {
	if s.Codec == "" {
		return ""
	}
	return fmt.Sprintf(", values %s, keys %s", s.Codec, s.KeyCodec)
}

func modeName(m checkpoint.Redistribution) string {
	if m == checkpoint.Union {
		return "union"
	}
	return "split"
}

func printReport(w io.Writer, rep *report) {
	fmt.Fprintf(w, "%s %d of job %q\n", rep.Kind, rep.CheckpointID, rep.Job)
	fmt.Fprintf(w, "  triggered  %s\n  completed  %s\n  max parallelism %d\n",
		rep.TriggeredAt.Format(timeFormat), rep.CompletedAt.Format(timeFormat), rep.MaxParallelism)
	for _, op := range rep.Operators {
		fmt.Fprintf(w, "operator %s (%s), parallelism %d\n", op.UID, op.Name, op.Parallelism)
		for _, sr := range op.Subtasks {
			if len(sr.Keyed) == 0 && len(sr.ListStates) == 0 {
				fmt.Fprintf(w, "  subtask %d: no state\n", sr.Subtask)
				continue
			}
			fmt.Fprintf(w, "  subtask %d:\n", sr.Subtask)
			for _, kr := range sr.Keyed {
				printKeyed(w, kr)
			}
			for _, l := range sr.ListStates {
				fmt.Fprintf(w, "    list state %q (%s): %d entries, %d bytes\n", l.Name, l.Mode, l.Entries, l.Bytes)
			}
		}
		where := "all subtasks"
		if op.Partial {
			where = "the readable subtasks"
		}
		for _, s := range op.KeyedStates {
			if !op.read {
				fmt.Fprintf(w, "  keyed state %q (%s)%s\n", s.Name, s.Kind, schemaText(s))
				continue
			}
			fmt.Fprintf(w, "  keyed state %q (%s) in %s: %d entries, %d bytes%s\n", s.Name, s.Kind, where, s.Entries, s.Bytes, schemaText(s))
		}
		fmt.Fprintf(w, "  total: %d bytes, %d uploaded by this %s\n", op.Totals.Bytes, op.Totals.Uploaded, rep.Kind)
	}
	fmt.Fprintf(w, "total: %d operators, %d bytes of state, %d uploaded by this %s", len(rep.Operators), rep.Totals.Bytes, rep.Totals.Uploaded, rep.Kind)
	if rep.Totals.KeyedEntries > 0 {
		fmt.Fprintf(w, ", %d keyed state entries", rep.Totals.KeyedEntries)
	}
	fmt.Fprintln(w)
}

func printKeyed(w io.Writer, kr keyedReport) {
	if inc := kr.Incremental; inc != nil {
		fmt.Fprintf(w, "    keyed state: key groups %s, incremental %s snapshot: %d files, %d bytes, %d uploaded by this checkpoint\n",
			kr.KeyGroups, inc.Backend, len(inc.Files), kr.Bytes, inc.Uploaded)
		nameW, sizeW := 0, 0
		for _, f := range inc.Files {
			nameW, sizeW = max(nameW, len(f.Name)), max(sizeW, len(strconv.FormatInt(f.Bytes, 10)))
		}
		for _, f := range inc.Files {
			by := ""
			if f.UploadedBy > 0 {
				by = fmt.Sprintf("  uploaded by checkpoint %d", f.UploadedBy)
			}
			fmt.Fprintf(w, "      %-7s  %-*s  %*d bytes%s\n", f.Area, nameW, f.Name, sizeW, f.Bytes, by)
		}
	} else {
		fmt.Fprintf(w, "    keyed state: key groups %s, %d bytes in %s\n", kr.KeyGroups, kr.Bytes, kr.Stream)
		for _, s := range kr.States {
			fmt.Fprintf(w, "      state %q (%s): %d entries, %d bytes%s\n", s.Name, s.Kind, s.Entries, s.Bytes, schemaText(s))
		}
		if kr.read && len(kr.States) == 0 {
			fmt.Fprintln(w, "      (no entries)")
		}
	}
	if kr.Note != "" {
		fmt.Fprintf(w, "      (%s)\n", kr.Note)
	}
	if kr.Error != "" {
		fmt.Fprintf(w, "      error: %s\n", kr.Error)
	}
}
