package plan

import (
	"fmt"
	"strings"

	"github.com/weirstream/weir/runtime"
)

// Describe renders a job graph as text: the job, then each vertex with its
// operators (head first) and its input edges in input gate order:
//
//	job "parity-sum" max-parallelism=128
//	vertex 0 "Source: numbers -> Map" parallelism=2 source
//	  operator uid=source-numbers-0 name="Source: numbers"
//	  operator uid=map-1 name="Map"
//	vertex 1 "Sum -> Print" parallelism=2
//	  input from 0 HASH
//	  operator uid=sum-2 name="Sum"
//	  operator uid=print-3 name="Print"
//
// UIDs are quoted only when they hold spaces, quotes or nothing.
func Describe(g *runtime.JobGraph) string {
	var b strings.Builder
	fmt.Fprintf(&b, "job %q max-parallelism=%d\n", g.Name, g.MaxParallelism)
	for _, v := range g.Vertices {
		fmt.Fprintf(&b, "vertex %d %q parallelism=%d", v.ID, v.Name, v.Parallelism)
		if v.IsSource {
			b.WriteString(" source")
		}
		b.WriteByte('\n')
		for _, e := range v.Inputs {
			fmt.Fprintf(&b, "  input from %d %s\n", e.Source.ID, e.Kind)
		}
		for _, op := range v.Operators {
			fmt.Fprintf(&b, "  operator uid=%s name=%q\n", word(op.UID), op.Name)
		}
	}
	return b.String()
}

// word returns s, quoted if it would not read as one word.
func word(s string) string {
	if s == "" || strings.ContainsAny(s, " \t\n\"") {
		return fmt.Sprintf("%q", s)
	}
	return s
}
