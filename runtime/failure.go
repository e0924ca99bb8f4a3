package runtime

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/state"
	"github.com/weirstream/weir/storage"
)

// PermanentError marks a failure that restarting the job cannot fix (a
// corrupted or incompatible checkpoint to restore, a final checkpoint that
// cannot complete): the job fails at once, whatever the restart strategy.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as a failure no restart can fix.
func Permanent(err error) error {
	if err == nil || IsPermanent(err) {
		return err
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err is marked as a failure no restart can fix.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// RestoreError is the failure of an operator to open with the state of the
// checkpoint the attempt restored. Whether a restart can help depends on
// the checkpoint: the job checks it, and fails for good when it is damaged
// or does not fit the job (checkpoint.ErrIncompatible).
type RestoreError struct {
	Task     string // the subtask's name
	Operator string
	Err      error
}

func (e *RestoreError) Error() string {
	if e.Task == "" {
		return e.Err.Error() // reported by a task manager, who named them
	}
	return fmt.Sprintf("task %s: cannot open operator %s with its restored state: %v", e.Task, e.Operator, e.Err)
}
func (e *RestoreError) Unwrap() error { return e.Err }

// FailureClass is how a task manager tells the job manager what kind of
// failure a task had (errors cross the control plane as text).
type FailureClass string

const (
	classRestore      FailureClass = "restore"
	classIncompatible FailureClass = "incompatible"
	classCorrupt      FailureClass = "corrupt"
	classPermanent    FailureClass = "permanent"
)

// Classify tells the class of a failure, for the control plane.
func Classify(err error) FailureClass {
	switch {
	case IsPermanent(err):
		return classPermanent
	case errors.Is(err, checkpoint.ErrIncompatible):
		return classIncompatible
	case errors.Is(err, checkpoint.ErrCorrupt):
		return classCorrupt
	}
	var re *RestoreError
	if errors.As(err, &re) {
		return classRestore
	}
	return ""
}

// Declassify turns a failure a task manager reported as text back into an
// error of its class.
func Declassify(msg string, class FailureClass) error {
	switch class {
	case classPermanent:
		return Permanent(errors.New(msg))
	case classRestore:
		return &RestoreError{Err: errors.New(msg)}
	case classIncompatible:
		return &RestoreError{Err: fmt.Errorf("%s (%w)", msg, checkpoint.ErrIncompatible)}
	case classCorrupt:
		return &RestoreError{Err: fmt.Errorf("%s (%w)", msg, checkpoint.ErrCorrupt)}
	}
	return errors.New(msg)
}

// restoreVerdict decides what a failed attempt that restored rp means. A
// failure while opening restored state is permanent when the state does
// not fit the job, or when the checkpoint turns out damaged (checked the
// way `weir checkpoint inspect` checks); otherwise (an unreachable store,
// say) a restart may help.
func restoreVerdict(ctx context.Context, rp *RestorePoint, err error) (permanent bool, why error) {
	var re *RestoreError
	if rp == nil || !errors.As(err, &re) {
		return false, nil
	}
	if errors.Is(err, checkpoint.ErrIncompatible) || errors.Is(err, checkpoint.ErrCorrupt) {
		return true, nil
	}
	if verr := state.VerifyCheckpoint(rp.Metadata, rp.Storage.Opener(ctx)); verr != nil {
		return true, verr
	}
	return false, nil
}

// maxVerified bounds the checkpoints checked when listing intact ones.
const maxVerified = 10

// intactCheckpoints lists, newest first, the completed checkpoints and
// savepoints of st (other than skip) that pass the same checks as `weir
// checkpoint inspect`, as restore paths with their kind.
func intactCheckpoints(ctx context.Context, st *storage.Storage, skip checkpoint.ID) []string {
	ids, err := st.Completed(ctx)
	if err != nil {
		return nil
	}
	var out []string
	checked := 0
	for i := len(ids) - 1; i >= 0 && checked < maxVerified; i-- {
		if ids[i] == skip {
			continue
		}
		checked++
		md, err := st.ReadMetadata(ctx, ids[i])
		if err != nil {
			continue
		}
		if state.VerifyCheckpoint(md, st.Opener(ctx)) != nil {
			continue
		}
		out = append(out, fmt.Sprintf("%s (%s %d, completed %s)", storage.Location(st, ids[i]), md.Kind, ids[i],
			md.CompletedAt.Format("2006-01-02 15:04:05")))
	}
	return out
}

// restoreFailure is the error of a job that cannot restore checkpoint id
// of st: what failed, and which other checkpoints are intact.
func restoreFailure(ctx context.Context, st *storage.Storage, id checkpoint.ID, cause error, jobStorage *storage.Storage) error {
	var b strings.Builder
	fmt.Fprintf(&b, "cannot restore checkpoint %d (%s): %v", id, storage.Location(st, id), cause)
	var intact []string
	intact = append(intact, intactCheckpoints(ctx, st, id)...)
	if jobStorage != nil && jobStorage != st {
		intact = append(intact, intactCheckpoints(ctx, jobStorage, 0)...)
	}
	if len(intact) == 0 {
		b.WriteString("; no other intact checkpoint was found")
	} else {
		b.WriteString("; intact checkpoints to restore instead with --restore PATH (restoring an older one replays output its sinks may have committed): ")
		b.WriteString(strings.Join(intact, ", "))
	}
	return Permanent(errors.New(b.String()))
}
