package plan

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/weirstream/weir/runtime"
)

// TestPlans replays testdata/*.txt. One command:
//
//	plan [parallelism=N] [max-parallelism=N] [job=NAME] [wiring]
//	<program>
//
// prints the job graph Build makes of the program (plan.Describe), or the
// error. With wiring it then builds subtask 0 of every vertex and prints,
// for each operator, where its output goes: the input of a chained operator
// (by label) or a network output of the vertex (out<i>(v<target>)). The
// program has one node per line, in program order:
//
//	<role> <label> <kind> [<input>...] [<attr>...]
//
// role is source, node or sink; kind is a word or a quoted string ("Source:
// numbers"); an input is the label of an earlier node (partitioning left to
// the planner) or partitioning:label with partitioning forward, rebalance,
// hash or broadcast; attributes are p=N (parallelism), uid=U, name=S (word
// or quoted), fixed (non-parallel), parallelism-of=label and fail (building
// the operator fails). Lines starting with # are comments. Regenerate with:
// go test ./plan -rewrite
func TestPlans(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			if d.Cmd != "plan" {
				d.Fatalf(t, "unknown command %q", d.Cmd)
			}
			cfg := Config{JobName: "job", Parallelism: 1, MaxParallelism: 128}
			wiring := false
			for _, a := range d.CmdArgs {
				switch a.Key {
				case "parallelism":
					d.ScanArgs(t, "parallelism", &cfg.Parallelism)
				case "max-parallelism":
					d.ScanArgs(t, "max-parallelism", &cfg.MaxParallelism)
				case "job":
					d.ScanArgs(t, "job", &cfg.JobName)
				case "wiring":
					wiring = true
				default:
					d.Fatalf(t, "unknown argument %q", a.Key)
				}
			}
			g, err := parseProgram(d.Input)
			if err != nil {
				d.Fatalf(t, "%v", err)
			}
			jg, err := Build(g, cfg)
			if err != nil {
				return "error: " + err.Error() + "\n"
			}
			out := Describe(jg)
			// Build leaves the logical graph as it was: building it again
			// gives the same job graph.
			if jg2, err := Build(g, cfg); err != nil || Describe(jg2) != out {
				t.Fatalf("%s: a second Build differs: %v\n%s", d.Pos, err, Describe(jg2))
			}
			if wiring {
				out += describeWiring(jg)
			}
			return out
		})
	})
}

// describeWiring builds subtask 0 of each vertex with stub operators.
func describeWiring(g *runtime.JobGraph) string {
	var b strings.Builder
	for _, v := range g.Vertices {
		outputs := make([]any, len(v.Outputs))
		for i, e := range v.Outputs {
			outputs[i] = fmt.Sprintf("out%d(v%d)", i, e.Target.ID)
		}
		chain, err := v.Build(0, outputs)
		if err != nil {
			fmt.Fprintf(&b, "chain %d: error: %v\n", v.ID, err)
			continue
		}
		fmt.Fprintf(&b, "chain %d: input=%v", v.ID, orNone(chain.Input))
		if chain.Source != nil {
			fmt.Fprintf(&b, " source=%s", chain.Source.(stubDriver))
		}
		b.WriteByte('\n')
		for _, op := range chain.Operators {
			s := op.(*stubOp)
			fmt.Fprintf(&b, "  %s -> %v\n", s.label, orNone(s.out))
		}
	}
	return b.String()
}

func orNone(v any) any {
	if v == nil {
		return "none"
	}
	return v
}

// stubOp is an operator that only remembers where its output goes.
type stubOp struct {
	runtime.Operator // nil: the test never runs it
	label            string
	out              any
}

type stubDriver string

func (stubDriver) Read() (runtime.ReadStatus, error) { return runtime.EndOfInput, nil }
func (stubDriver) Available() <-chan struct{}        { return nil }

// parseProgram parses the program of a plan command.
func parseProgram(text string) (*Graph, error) {
	g := &Graph{}
	labels := map[string]*Node{}
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := parseNode(g, labels, line); err != nil {
			return nil, fmt.Errorf("line %d: %q: %w", i+1, line, err)
		}
	}
	return g, nil
}

var partitionings = map[string]runtime.PartitionKind{
	"forward": runtime.Forward, "rebalance": runtime.Rebalance,
	"hash": runtime.Hash, "broadcast": runtime.Broadcast,
}

func parseNode(g *Graph, labels map[string]*Node, line string) error {
	toks, err := tokens(line)
	if err != nil {
		return err
	}
	if len(toks) < 3 {
		return errors.New("want <role> <label> <kind> ...")
	}
	role, label, kind := toks[0], toks[1], toks[2]
	if _, dup := labels[label]; dup {
		return fmt.Errorf("label %s used twice", label)
	}
	n := &Node{Kind: kind}
	switch role {
	case "source":
		n.IsSource = true
	case "sink":
		n.IsSink = true
	case "node":
	default:
		return fmt.Errorf("unknown role %q", role)
	}
	lookup := func(l string) (*Node, error) {
		m, ok := labels[l]
		if !ok {
			return nil, fmt.Errorf("unknown node %q", l)
		}
		return m, nil
	}
	fail := false
	for _, tok := range toks[3:] {
		key, val, isAttr := strings.Cut(tok, "=")
		switch {
		case tok == "fixed":
			n.FixedParallelism = true
		case tok == "fail":
			fail = true
		case isAttr && key == "p":
			if n.Parallelism, err = strconv.Atoi(val); err != nil {
				return err
			}
		case isAttr && key == "uid":
			n.UID = val
		case isAttr && key == "name":
			n.Name = val
		case isAttr && key == "parallelism-of":
			if n.ParallelismOf, err = lookup(val); err != nil {
				return err
			}
		case isAttr:
			return fmt.Errorf("unknown attribute %q", key)
		default:
			in := Input{Partitioning: runtime.Forward, Auto: true, Type: runtime.TypeOf[int](nil)}
			if p, l, ok := strings.Cut(tok, ":"); ok {
				kind, known := partitionings[p]
				if !known {
					return fmt.Errorf("unknown partitioning %q", p)
				}
				in.Partitioning, in.Auto, tok = kind, false, l
			}
			if in.From, err = lookup(tok); err != nil {
				return err
			}
			n.Inputs = append(n.Inputs, in)
		}
	}
	n.NewOperator = func(subtask int, out any) (any, runtime.Operator, runtime.SourceDriver, error) {
		if fail {
			return nil, nil, nil, errors.New("boom")
		}
		op := &stubOp{label: label, out: out}
		if n.IsSource {
			return nil, op, stubDriver(label), nil
		}
		return label, op, nil, nil
	}
	n.FanOut = func(outs []any) any { return outs }
	labels[label] = g.Add(n)
	return nil
}

// tokens splits line at spaces; a double-quoted string (alone or after
// "key=") is one token, unquoted.
func tokens(line string) ([]string, error) {
	var toks []string
	for line = strings.TrimLeft(line, " "); line != ""; line = strings.TrimLeft(line, " ") {
		end := strings.IndexAny(line, " \"")
		if end < 0 {
			toks = append(toks, line)
			break
		}
		if line[end] == ' ' {
			toks = append(toks, line[:end])
			line = line[end:]
			continue
		}
		q, err := strconv.QuotedPrefix(line[end:])
		if err != nil {
			return nil, err
		}
		s, _ := strconv.Unquote(q)
		toks = append(toks, line[:end]+s)
		line = line[end+len(q):]
	}
	return toks, nil
}

// TestMalformedGraphs covers the graphs the DataStream API cannot make.
func TestMalformedGraphs(t *testing.T) {
	cfg := Config{JobName: "job", Parallelism: 1, MaxParallelism: 128}
	src := func() *Node { return &Node{Kind: "Source: s", IsSource: true} }
	sink := func(from *Node) *Node {
		return &Node{Kind: "Print", IsSink: true, Inputs: []Input{{From: from, Auto: true}}}
	}
	for _, tc := range []struct {
		name string
		make func() *Graph
		want string
	}{
		{"not added", func() *Graph {
			g := &Graph{}
			s := g.Add(src())
			g.Nodes = append(g.Nodes, sink(s))
			return g
		}, "operator Print has ID 0 at position 1: add nodes with Graph.Add"},
		{"input from another graph", func() *Graph {
			g := &Graph{}
			g.Add(src())
			g.Add(sink((&Graph{}).Add(src())))
			return g
		}, "operator Print: input 0 is not an earlier node of the graph"},
		{"input from itself", func() *Graph {
			g := &Graph{}
			g.Add(src())
			n := g.Add(sink(nil))
			n.Inputs[0].From = n
			return g
		}, "operator Print: input 0 is not an earlier node of the graph"},
		{"nil input", func() *Graph {
			g := &Graph{}
			g.Add(src())
			g.Add(sink(nil))
			return g
		}, "operator Print: input 0 is not an earlier node of the graph"},
		{"parallelism of a later node", func() *Graph {
			g := &Graph{}
			s := g.Add(src())
			m := g.Add(&Node{Kind: "Map", Inputs: []Input{{From: s, Auto: true}}})
			p := g.Add(sink(m))
			m.ParallelismOf = p
			return g
		}, "operator Map takes the parallelism of Print, which is not an earlier node of the graph"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(tc.make(), cfg)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got %v, want %s", err, tc.want)
			}
		})
	}
}
