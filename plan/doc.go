// Package plan turns the logical graph of a job (the transformations a
// program made with the DataStream API, one Node each) into the job graph
// the runtime executes (runtime.JobGraph: vertices of chained operators
// joined by partitioned edges).
//
// Build applies these rules, node by node in the order the nodes were
// added (every input comes from an earlier node):
//
//   - Parallelism. A node runs with its own Parallelism, or the job's
//     default (Config.Parallelism) when that is 0. A node with
//     FixedParallelism (a non-parallel source) runs with 1. A node with
//     ParallelismOf runs with the resolved parallelism of that node, whatever
//     its own (ConnectBroadcast's input tagging follows its input). No
//     parallelism may exceed Config.MaxParallelism, the number of key groups.
//   - Partitioning. An input the user did not partition (Input.Auto) is
//     forward when both ends have equal parallelism, and rebalance (round
//     robin) otherwise. An explicit forward input between unequal
//     parallelisms is an error. Hash and broadcast inputs stay as given.
//   - Sinks. No node may read from a sink, and a job needs at least one.
//   - Chaining. A node that is not a source and has exactly one input, which
//     is forward with equal parallelism, is chained into its upstream's
//     vertex: both run fused in one goroutine per subtask, calling each
//     other directly. Every other node starts a vertex of its own, and each
//     of its inputs becomes a network edge. A vertex is named after its
//     operators, joined by " -> ".
//   - UIDs. An operator's state is found in a checkpoint by its UID: the
//     node's UID, or when empty DefaultUID(kind, id), e.g. "map-3" or
//     "source-numbers-0". The default depends on the node's position in the
//     program, so long-lived jobs set UIDs on their stateful operators; the
//     rule itself must never change, or restores lose their state.
//
// Describe renders a job graph as text, for tests, tools and humans.
//
// Imports point down: plan knows the runtime, never the DataStream API.
package plan
