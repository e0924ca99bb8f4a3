package runtime

import (
	"context"
	"fmt"
	"time"

	"github.com/weirstream/weir/metrics"
)

// PartitionKind says how an edge spreads records over the downstream
// subtasks.
type PartitionKind uint8

const (
	// Forward sends subtask i's records to downstream subtask i (equal
	// parallelism only).
	Forward PartitionKind = iota
	// Rebalance sends records round robin to all downstream subtasks.
	Rebalance
	// Hash sends a record to the subtask owning its key group.
	Hash
	// Broadcast sends every record to every downstream subtask.
	Broadcast
)

func (k PartitionKind) String() string {
	switch k {
	case Forward:
		return "FORWARD"
	case Rebalance:
		return "REBALANCE"
	case Hash:
		return "HASH"
	case Broadcast:
		return "BROADCAST"
	}
	return fmt.Sprintf("PartitionKind(%d)", uint8(k))
}

// RecordWriter is the output of a subtask into one edge. It implements
// Collector: records are appended to a buffer per channel, and a buffer is
// sent when full or when the task flushes (buffer timeout, barrier, end of
// input). It belongs to the task goroutine.
type RecordWriter[T any] struct {
	ctx      context.Context
	kind     PartitionKind
	channels []OutputChannel[T]
	bufs     [][]T
	bufSize  int
	next     int // round robin position (Rebalance)
	// route maps a record to its channel (Hash): key group -> channel.
	hash     func(T) uint32
	maxPar   uint32
	kgToChan []int32
	dirty    bool
	failed   error
	onFail   func(error)
	// metrics, if set, count the records sent and the time a send waited
	// for credit.
	metrics *metrics.Task
}

// SetMetrics makes w count into m: records sent (once per record, also on
// a broadcast edge), the time sends wait for credit, and the watermark.
func (w *RecordWriter[T]) SetMetrics(m *metrics.Task) { w.metrics = m }

// NewRecordWriter returns a writer into channels. For Hash, hash returns the
// (already mixed) key hash of a record and kgToChannel maps each key group
// to a channel index.
func NewRecordWriter[T any](ctx context.Context, kind PartitionKind, channels []OutputChannel[T], bufSize int,
	hash func(T) uint32, kgToChannel []int32, onFail func(error)) *RecordWriter[T] {
	w := &RecordWriter[T]{ctx: ctx, kind: kind, channels: channels, bufSize: bufSize, hash: hash,
		maxPar: uint32(len(kgToChannel)), kgToChan: kgToChannel, onFail: onFail}
	w.bufs = make([][]T, len(channels))
	for i, c := range channels {
		w.bufs[i] = c.NewBuffer()
	}
	return w
}

// Collect routes one record.
func (w *RecordWriter[T]) Collect(r T) {
	var i int
	switch w.kind {
	case Forward:
		i = 0
	case Hash:
		i = int(w.kgToChan[w.hash(r)%w.maxPar])
	case Rebalance:
		i = w.next
		w.next++
		if w.next == len(w.channels) {
			w.next = 0
		}
	case Broadcast:
		for i := range w.channels {
			w.add(i, r)
		}
		return
	}
	w.add(i, r)
}

func (w *RecordWriter[T]) add(i int, r T) {
	b := append(w.bufs[i], r)
	w.dirty = true
	if len(b) >= w.bufSize {
		w.send(i, b)
		return
	}
	w.bufs[i] = b
}

func (w *RecordWriter[T]) send(i int, b []T) {
	if w.failed != nil {
		w.bufs[i] = b[:0]
		return
	}
	m := w.metrics
	if m != nil {
		if w.kind != Broadcast || i == 0 {
			// Every channel of a broadcast edge gets every record.
			m.RecordsOut.Add(int64(len(b)))
		}
		m.BlockStart(time.Now())
	}
	err := w.channels[i].Send(w.ctx, Buffer[T]{Records: b})
	if m != nil {
		m.BlockEnd(time.Now())
	}
	if err != nil {
		w.fail(err)
		w.bufs[i] = b[:0]
		return
	}
	w.bufs[i] = w.channels[i].NewBuffer()
}

func (w *RecordWriter[T]) fail(err error) {
	if w.failed == nil {
		w.failed = err
		if w.onFail != nil {
			w.onFail(err)
		}
	}
}

// Flush sends every non-empty buffer.
func (w *RecordWriter[T]) Flush() {
	if !w.dirty {
		return
	}
	for i, b := range w.bufs {
		if len(b) > 0 {
			w.send(i, b)
		}
	}
	w.dirty = false
}

// EmitEvent flushes the buffered records and then sends e on every channel,
// so the event follows every record collected before it.
func (w *RecordWriter[T]) EmitEvent(e Event) {
	w.Flush()
	for _, c := range w.channels {
		if w.failed != nil {
			return
		}
		if err := c.Send(w.ctx, Buffer[T]{Event: e}); err != nil {
			w.fail(err)
		}
	}
}

// ProcessWatermark implements WatermarkStage: the watermark follows every
// record collected before it, on every channel.
func (w *RecordWriter[T]) ProcessWatermark(wm int64) {
	if w.metrics != nil {
		w.metrics.SetOutputWatermark(wm)
	}
	w.EmitEvent(Event{Kind: EventWatermark, Watermark: wm})
}

// ProcessStatus implements WatermarkStage.
func (w *RecordWriter[T]) ProcessStatus(idle bool) {
	w.EmitEvent(Event{Kind: EventStatus, Idle: idle})
}

// Err returns the error that stopped the writer (cancellation), if any.
func (w *RecordWriter[T]) Err() error { return w.failed }
