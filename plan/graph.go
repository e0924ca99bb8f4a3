package plan

import (
	"fmt"
	"strings"

	"github.com/weirstream/weir/runtime"
)

// Node is one transformation of the logical graph.
type Node struct {
	// ID is the node's position in its Graph, set by Graph.Add.
	ID int
	// Kind says what the transformation is ("Map", "Source: numbers");
	// the default UID derives from it.
	Kind string
	// Name is the display name (Graph.Add defaults it to Kind).
	Name string
	// UID is the operator's stable identity, under which its state is found
	// in a checkpoint; empty means DefaultUID(Kind, ID).
	UID string
	// Parallelism is the number of parallel subtasks; 0 means the job's
	// default.
	Parallelism int
	// FixedParallelism marks a non-parallel operator: it runs with
	// parallelism 1 whatever Parallelism says.
	FixedParallelism bool
	// ParallelismOf, when set, gives the node the resolved parallelism of
	// that earlier node, whatever Parallelism says: internal operators that
	// must chain to their input (ConnectBroadcast's input tagging) follow
	// its parallelism.
	ParallelismOf *Node
	// Inputs are the streams the node reads, in input gate order.
	Inputs []Input
	// IsSource marks a source: it has no inputs, is never chained into an
	// upstream, and NewOperator returns its driver.
	IsSource bool
	// IsSink marks a sink: it has no output and no node may read from it.
	IsSink bool
	// NewOperator creates the operator of one subtask. out is the node's
	// Collector[OUT] (FanOut of its consumers' inputs; nil for sinks). It
	// returns the Collector[IN] the upstream feeds (nil for sources), the
	// operator, and for sources the driver that feeds the chain.
	NewOperator func(subtask int, out any) (in any, op runtime.Operator, src runtime.SourceDriver, err error)
	// NewOperatorWithSides, when set, is used instead of NewOperator by a
	// node with side outputs: sides maps a side output's tag to the
	// Collector of the nodes that read it (absent: nobody reads it).
	NewOperatorWithSides func(subtask int, out any, sides map[string]any) (in any, op runtime.Operator, src runtime.SourceDriver, err error)
	// FanOut joins the Collector[OUT] of each consumer into one
	// Collector[OUT]; FanOut[OUT] does it for records of type OUT.
	FanOut func(outs []any) any
}

// Input is one input of a node: the node it reads, and how the records are
// spread over the reading node's subtasks.
type Input struct {
	From *Node
	// Partitioning is the partitioning the user chose; it is ignored when
	// Auto is set.
	Partitioning runtime.PartitionKind
	// Auto marks partitioning the user did not choose: Build makes it
	// forward at equal parallelism, rebalance otherwise.
	Auto bool
	// Type is the runtime type of the records on the edge (with the key
	// hash of a Hash input).
	Type runtime.EdgeType
	// SideTag, when set, makes the input read From's side output of that
	// name instead of its main output. Such an input is forward at equal
	// parallelism: the node runs chained to From.
	SideTag string
}

// Graph is the logical graph of a job: its nodes in the order they were
// added, which is a topological order (inputs come from earlier nodes).
type Graph struct {
	Nodes []*Node
}

// Add appends n to the graph, sets its ID, defaults its Name to its Kind,
// and returns it.
func (g *Graph) Add(n *Node) *Node {
	n.ID = len(g.Nodes)
	if n.Name == "" {
		n.Name = n.Kind
	}
	g.Nodes = append(g.Nodes, n)
	return n
}

// DefaultUID is the UID of an operator that was not given one: its kind,
// lowercased, with spaces turned into '-' and ':' removed, then '-' and the
// node's ID ("source-numbers-0", "map-3"). Checkpoints find state by UID:
// this rule must not change.
func DefaultUID(kind string, id int) string {
	return fmt.Sprintf("%s-%d", strings.ToLower(uidReplacer.Replace(kind)), id)
}

var uidReplacer = strings.NewReplacer(" ", "-", ":", "")

// OperatorUID is n's UID, or its default.
func (n *Node) OperatorUID() string {
	if n.UID != "" {
		return n.UID
	}
	return DefaultUID(n.Kind, n.ID)
}

// FanOut joins Collector[T]s into one Collector[T]: the FanOut of a node
// whose records are of type T.
func FanOut[T any](outs []any) any {
	cs := make([]runtime.Collector[T], len(outs))
	for i, o := range outs {
		cs[i] = o.(runtime.Collector[T])
	}
	return runtime.FanOut(cs)
}
