package plan

import (
	"fmt"
	"strings"

	"github.com/weirstream/weir/runtime"
)

// Config is what Build needs besides the logical graph.
type Config struct {
	JobName string
	// Parallelism is the default parallelism, of nodes whose Parallelism
	// is 0.
	Parallelism int
	// MaxParallelism is the number of key groups: the upper bound of every
	// node's parallelism.
	MaxParallelism int
	// EventTime is set when the program uses event time: the job graph's
	// edges then carry record timestamps, its tasks track watermarks.
	EventTime bool
}

// Build turns the logical graph g into the job graph the runtime executes,
// by the rules of the package documentation. It does not modify g; the
// job graph's vertices build their chains with the nodes' NewOperator and
// FanOut.
func Build(g *Graph, cfg Config) (*runtime.JobGraph, error) {
	if cfg.Parallelism < 1 {
		return nil, fmt.Errorf("job %s: default parallelism must be at least 1, got %d", cfg.JobName, cfg.Parallelism)
	}
	if cfg.MaxParallelism < 1 {
		return nil, fmt.Errorf("job %s: max parallelism must be at least 1, got %d", cfg.JobName, cfg.MaxParallelism)
	}
	if len(g.Nodes) == 0 {
		return nil, fmt.Errorf("job %s has no operators", cfg.JobName)
	}
	p, err := resolve(g, cfg)
	if err != nil {
		return nil, err
	}
	return p.jobGraph(cfg), nil
}

// planner holds what Build resolved about each node, indexed by node ID.
type planner struct {
	nodes     []*Node
	par       []int
	kinds     [][]runtime.PartitionKind // resolved partitioning of each input
	consumers [][]consumer
	// outputIndex[n][i] is the index, among its producer vertex's outputs,
	// of the network edge of node n's input i.
	outputIndex [][]int
}

// consumer is a node reading a producer, through its input number input.
type consumer struct {
	n     *Node
	input int
}

// resolve resolves parallelism and partitioning and checks the rules.
func resolve(g *Graph, cfg Config) (*planner, error) {
	p := &planner{
		nodes:       g.Nodes,
		par:         make([]int, len(g.Nodes)),
		kinds:       make([][]runtime.PartitionKind, len(g.Nodes)),
		consumers:   make([][]consumer, len(g.Nodes)),
		outputIndex: make([][]int, len(g.Nodes)),
	}
	earlier := func(n, m *Node) bool { return m != nil && m.ID < n.ID && g.Nodes[m.ID] == m }
	hasSink := false
	for i, n := range g.Nodes {
		if n.ID != i {
			return nil, fmt.Errorf("operator %s has ID %d at position %d: add nodes with Graph.Add", n.Kind, n.ID, i)
		}
		if n.Parallelism < 0 {
			return nil, fmt.Errorf("operator %s: parallelism must not be negative, got %d", n.Name, n.Parallelism)
		}
		par := n.Parallelism
		if par == 0 {
			par = cfg.Parallelism
		}
		if n.FixedParallelism {
			par = 1
		}
		if n.ParallelismOf != nil {
			if !earlier(n, n.ParallelismOf) {
				return nil, fmt.Errorf("operator %s takes the parallelism of %s, which is not an earlier node of the graph", n.Name, n.ParallelismOf.Name)
			}
			par = p.par[n.ParallelismOf.ID]
		}
		p.par[n.ID] = par
		if par > cfg.MaxParallelism {
			return nil, fmt.Errorf("operator %s: parallelism %d exceeds max parallelism %d", n.Name, par, cfg.MaxParallelism)
		}
		kinds := make([]runtime.PartitionKind, len(n.Inputs))
		for i, in := range n.Inputs {
			if !earlier(n, in.From) {
				return nil, fmt.Errorf("operator %s: input %d is not an earlier node of the graph", n.Name, i)
			}
			kind := in.Partitioning
			if in.Auto {
				kind = runtime.Forward
				if p.par[in.From.ID] != par {
					kind = runtime.Rebalance
				}
			}
			if in.SideTag != "" && (kind != runtime.Forward || len(n.Inputs) != 1 || n.IsSource) {
				return nil, fmt.Errorf("operator %s: the side output %q of %s must be its only input, forward", n.Name, in.SideTag, in.From.Name)
			}
			if kind == runtime.Forward && p.par[in.From.ID] != par {
				return nil, fmt.Errorf("operator %s: forward input from %s needs equal parallelism, got %d and %d", n.Name, in.From.Name, p.par[in.From.ID], par)
			}
			if in.From.IsSink {
				return nil, fmt.Errorf("operator %s reads from sink %s", n.Name, in.From.Name)
			}
			kinds[i] = kind
			p.consumers[in.From.ID] = append(p.consumers[in.From.ID], consumer{n, i})
		}
		p.kinds[n.ID] = kinds
		if n.IsSink {
			hasSink = true
		}
	}
	if !hasSink {
		return nil, fmt.Errorf("job %s has no sink: add Print or SinkTo", cfg.JobName)
	}
	return p, nil
}

// chained reports whether n runs in its upstream's vertex.
func (p *planner) chained(n *Node) bool {
	return len(n.Inputs) == 1 && p.kinds[n.ID][0] == runtime.Forward && p.par[n.Inputs[0].From.ID] == p.par[n.ID] && !n.IsSource
}

// jobGraph makes the vertices and edges.
func (p *planner) jobGraph(cfg Config) *runtime.JobGraph {
	g := &runtime.JobGraph{Name: cfg.JobName, MaxParallelism: cfg.MaxParallelism, EventTime: cfg.EventTime}
	vertexOf := make([]*runtime.Vertex, len(p.nodes))
	members := map[*runtime.Vertex][]*Node{}
	for _, n := range p.nodes {
		if p.chained(n) {
			v := vertexOf[n.Inputs[0].From.ID]
			vertexOf[n.ID] = v
			members[v] = append(members[v], n)
			continue
		}
		v := &runtime.Vertex{ID: len(g.Vertices), Parallelism: p.par[n.ID], IsSource: n.IsSource}
		g.Vertices = append(g.Vertices, v)
		vertexOf[n.ID] = v
		members[v] = []*Node{n}
	}
	// Network edges: one per input of each vertex's head.
	for _, n := range p.nodes {
		if p.chained(n) {
			continue
		}
		p.outputIndex[n.ID] = make([]int, len(n.Inputs))
		for i, in := range n.Inputs {
			src, dst := vertexOf[in.From.ID], vertexOf[n.ID]
			edge := &runtime.Edge{Source: src, Target: dst, Kind: p.kinds[n.ID][i], Type: in.Type}
			p.outputIndex[n.ID][i] = len(src.Outputs)
			src.Outputs = append(src.Outputs, edge)
			dst.Inputs = append(dst.Inputs, edge)
		}
	}
	for _, v := range g.Vertices {
		ms := members[v]
		names := make([]string, len(ms))
		for i, n := range ms {
			v.Operators = append(v.Operators, runtime.OperatorInfo{UID: n.OperatorUID(), Name: n.Name})
			names[i] = n.Name
		}
		v.Name = strings.Join(names, " -> ")
		v.Build = func(subtask int, outputs []any) (*runtime.Chain, error) {
			return p.buildChain(ms, subtask, outputs)
		}
	}
	return g
}

// buildChain creates one subtask's chain of the vertex whose operators are
// ms, tail first, so that each operator's output exists when it is made:
// the inputs of its chained consumers and the collectors of its network
// edges.
func (p *planner) buildChain(ms []*Node, subtask int, outputs []any) (*runtime.Chain, error) {
	ins := make(map[*Node]any, len(ms))
	ops := make([]runtime.Operator, len(ms))
	var src runtime.SourceDriver
	for i := len(ms) - 1; i >= 0; i-- {
		n := ms[i]
		var outs []any
		sideOuts := map[string][]any{}
		sideFan := map[string]func([]any) any{}
		for _, c := range p.consumers[n.ID] {
			if tag := c.n.Inputs[c.input].SideTag; tag != "" {
				sideOuts[tag] = append(sideOuts[tag], ins[c.n])
				sideFan[tag] = c.n.FanOut
				continue
			}
			if p.chained(c.n) {
				outs = append(outs, ins[c.n])
			} else {
				outs = append(outs, outputs[p.outputIndex[c.n.ID][c.input]])
			}
		}
		var out any
		if !n.IsSink {
			out = n.FanOut(outs)
		}
		var in any
		var op runtime.Operator
		var sd runtime.SourceDriver
		var err error
		if n.NewOperatorWithSides != nil {
			sides := map[string]any{}
			for tag, o := range sideOuts {
				sides[tag] = sideFan[tag](o)
			}
			in, op, sd, err = n.NewOperatorWithSides(subtask, out, sides)
		} else {
			if len(sideOuts) > 0 {
				return nil, fmt.Errorf("operator %s has no side outputs, but a node reads one", n.Name)
			}
			in, op, sd, err = n.NewOperator(subtask, out)
		}
		if err != nil {
			return nil, fmt.Errorf("operator %s: %w", n.Name, err)
		}
		ins[n], ops[i] = in, op
		if sd != nil {
			src = sd
		}
	}
	return &runtime.Chain{Operators: ops, Input: ins[ms[0]], Source: src}, nil
}
