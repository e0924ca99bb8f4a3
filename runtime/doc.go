// Package runtime executes a job graph: it deploys one Task per parallel
// subtask, wires them with credit-based channels, drives checkpoints through
// the coordinator, and fails over under the restart strategy.
//
// Threading. Each Task owns one goroutine. Its chain of operators, its
// barrier handler and its input gate are touched only by that goroutine;
// everything else (checkpoint triggers, completion notices, the end of a
// source) reaches it through its mailbox (an unbounded Queue, so control
// never waits behind data). The coordinator driver owns one goroutine per
// attempt and the pure coordinator state machine. Background snapshot
// uploads run on their own goroutines, tracked by their task and awaited
// before the task returns.
//
// Data plane. A RecordWriter appends records to one buffer per output
// channel and sends a buffer when it is full, when the task is about to go
// idle, after the buffer timeout, or before an event. A LocalChannel holds at
// most Credits record buffers; Send blocks without credit (backpressure).
// Events (barriers, cancellation markers, end of partition) need no credit
// and keep their order with the records. OutputChannel and InputChannel are
// the seams where a network channel (TCP, same credit semantics) plugs in.
package runtime
