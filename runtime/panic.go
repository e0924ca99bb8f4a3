package runtime

import (
	"fmt"
	"reflect"
	goruntime "runtime"
	"runtime/debug"
	"strings"
)

// PanicError is a panic in the code of a task (user functions, an
// operator, a source), recovered by the task: it fails the task like an
// error. Its message names the task (operator chain and subtask), the
// operator when the stack shows which one, and the panic's value; the
// stack is kept in Stack, logged once where the task ran.
type PanicError struct {
	// Task is the task's name: its chain and subtask, "count (2/4)".
	Task string
	// Operator is the operator of the chain whose code was running, when
	// the stack tells ("" otherwise).
	Operator string
	Value    any
	Stack    string
}

func (e *PanicError) Error() string {
	if e.Operator != "" {
		return fmt.Sprintf("operator %s in task %s panicked: %v", e.Operator, e.Task, e.Value)
	}
	return fmt.Sprintf("task %s panicked: %v", e.Task, e.Value)
}

// Unwrap returns the panic's value when it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// newPanicError describes panic value r of task t. It must be called in
// the deferred function that recovered, while the panicking frames are
// still on the stack.
func newPanicError(t *Task, r any) *PanicError {
	e := &PanicError{Task: t.Name, Value: r, Stack: panicStack(debug.Stack())}
	pcs := make([]uintptr, 64)
	n := goruntime.Callers(3, pcs)
	frames := goruntime.CallersFrames(pcs[:n])
	prefixes := make([]string, len(t.chain.Operators))
	for i, op := range t.chain.Operators {
		prefixes[i] = methodPrefix(op)
	}
	for {
		fr, more := frames.Next()
		// The innermost frame that is a method of one of the chain's
		// operators names the operator, unless two operators share its
		// type.
		match := -1
		for i, p := range prefixes {
			if p != "" && strings.HasPrefix(fr.Function, p) {
				if match >= 0 {
					return e
				}
				match = i
			}
		}
		if match >= 0 {
			if match < len(t.opInfo) {
				e.Operator = t.opInfo[match].Name
			}
			return e
		}
		if !more {
			return e
		}
	}
}

// methodPrefix is how the stack names the methods of op's type:
// "pkg.(*T).", generic types as "pkg.(*T[...]).".
func methodPrefix(op any) string {
	t := reflect.TypeOf(op)
	if t == nil {
		return ""
	}
	ptr := t.Kind() == reflect.Pointer
	if ptr {
		t = t.Elem()
	}
	name := t.Name()
	if name == "" || t.PkgPath() == "" {
		return ""
	}
	if i := strings.IndexByte(name, '['); i >= 0 {
		name = name[:i] + "[...]"
	}
	if ptr {
		return t.PkgPath() + ".(*" + name + ")."
	}
	return t.PkgPath() + "." + name + "."
}

// panicStack is the stack of a goroutine that panicked without the frames
// of the recovery: its first line, then from the call of panic on.
func panicStack(stack []byte) string {
	s := string(stack)
	head, rest, ok := strings.Cut(s, "\n")
	if !ok {
		return s
	}
	if i := strings.Index(rest, "\npanic("); i >= 0 {
		return head + rest[i:]
	}
	return s
}
