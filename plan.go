package weir

import (
	"fmt"
	"strings"

	"github.com/weirstream/weir/runtime"
)

// buildGraph turns the logical graph of transformations into the job graph
// the runtime executes: it resolves parallelism and partitioning, and
// chains each operator into its upstream's vertex when the edge between them
// is forward with equal parallelism (they then run fused in one goroutine,
// calling each other directly).
func (e *Environment) buildGraph(jobName string) (*runtime.JobGraph, error) {
	if len(e.nodes) == 0 {
		return nil, fmt.Errorf("job %s has no operators", jobName)
	}
	maxP := e.cfg.maxParallelism
	par := make([]int, len(e.nodes))
	consumers := make([][]*node, len(e.nodes))
	hasSink := false
	for _, n := range e.nodes {
		p := n.parallelism
		if p == 0 {
			p = e.cfg.parallelism
		}
		if n.fixedPar {
			p = 1
		}
		if n.parallelismOf != nil {
			p = par[n.parallelismOf.id]
		}
		par[n.id] = p
		if p > maxP {
			return nil, fmt.Errorf("operator %s: parallelism %d exceeds max parallelism %d", n.name, p, maxP)
		}
		for i := range n.inputs {
			in := &n.inputs[i]
			if in.auto {
				in.kind = runtime.Forward
				if par[in.from.id] != p {
					in.kind = runtime.Rebalance
				}
			}
			if in.kind == runtime.Forward && par[in.from.id] != p {
				return nil, fmt.Errorf("operator %s: forward input from %s needs equal parallelism, got %d and %d", n.name, in.from.name, par[in.from.id], p)
			}
			if in.from.isSink {
				return nil, fmt.Errorf("operator %s reads from sink %s", n.name, in.from.name)
			}
			consumers[in.from.id] = append(consumers[in.from.id], n)
		}
		if n.isSink {
			hasSink = true
		}
	}
	if !hasSink {
		return nil, fmt.Errorf("job %s has no sink: add Print or SinkTo", jobName)
	}
	chained := func(n *node) bool {
		return len(n.inputs) == 1 && n.inputs[0].kind == runtime.Forward && par[n.inputs[0].from.id] == par[n.id] && !n.isSource
	}

	g := &runtime.JobGraph{Name: jobName, MaxParallelism: maxP}
	vertexOf := make([]*runtime.Vertex, len(e.nodes))
	members := map[*runtime.Vertex][]*node{}
	for _, n := range e.nodes {
		if chained(n) {
			v := vertexOf[n.inputs[0].from.id]
			vertexOf[n.id] = v
			members[v] = append(members[v], n)
			continue
		}
		v := &runtime.Vertex{ID: len(g.Vertices), Parallelism: par[n.id], IsSource: n.isSource}
		g.Vertices = append(g.Vertices, v)
		vertexOf[n.id] = v
		members[v] = []*node{n}
	}
	// Network edges, and for each (producer, consumer) pair the index of its
	// edge among the producer vertex's outputs.
	edgeIndex := map[[2]int]int{}
	for _, n := range e.nodes {
		if chained(n) {
			continue
		}
		for _, in := range n.inputs {
			src, dst := vertexOf[in.from.id], vertexOf[n.id]
			edge := &runtime.Edge{Source: src, Target: dst, Kind: in.kind, Type: in.typ}
			edgeIndex[[2]int{in.from.id, n.id}] = len(src.Outputs)
			src.Outputs = append(src.Outputs, edge)
			dst.Inputs = append(dst.Inputs, edge)
		}
	}
	for _, v := range g.Vertices {
		ms := members[v]
		names := make([]string, len(ms))
		for i, n := range ms {
			uid := n.uid
			if uid == "" {
				uid = fmt.Sprintf("%s-%d", strings.ToLower(strings.NewReplacer(" ", "-", ":", "").Replace(n.kind)), n.id)
			}
			v.Operators = append(v.Operators, runtime.OperatorInfo{UID: uid, Name: n.name})
			names[i] = n.name
		}
		v.Name = strings.Join(names, " -> ")
		v.Build = func(subtask int, outputs []any) (*runtime.Chain, error) {
			ins := make(map[*node]any, len(ms))
			ops := make([]runtime.Operator, len(ms))
			var src runtime.SourceDriver
			for i := len(ms) - 1; i >= 0; i-- {
				n := ms[i]
				var outs []any
				for _, c := range consumers[n.id] {
					if chained(c) {
						outs = append(outs, ins[c])
					} else {
						outs = append(outs, outputs[edgeIndex[[2]int{n.id, c.id}]])
					}
				}
				var out any
				if !n.isSink {
					out = n.fanOut(outs)
				}
				in, op, sd, err := n.build(subtask, out)
				if err != nil {
					return nil, fmt.Errorf("operator %s: %w", n.name, err)
				}
				ins[n], ops[i] = in, op
				if sd != nil {
					src = sd
				}
			}
			return &runtime.Chain{Operators: ops, Input: ins[ms[0]], Source: src}, nil
		}
	}
	return g, nil
}
