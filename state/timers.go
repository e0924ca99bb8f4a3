package state

// Timers are keyed state of their own kind: a keyed operator registers
// event-time and processing-time timers for its current key, and the
// runtime fires them (event time when the watermark passes them,
// processing time when the clock does), with the timer's key restored.
// They are checkpointed with the rest of the keyed state, restored and
// redistributed by key group on rescale.

// Timer is one timer of a keyed operator: at Timestamp (milliseconds since
// 1970), for Key, in Namespace (a window, encoded; empty for a process
// function's timers).
type Timer[K comparable] struct {
	Timestamp int64
	Key       K
	Namespace string
}

// TimerQueue is one set of timers of a keyed backend (the event-time or the
// processing-time timers of an operator): ordered by timestamp, kept per
// key group, deduplicated per (key, timestamp, namespace). Every method
// runs on the task goroutine. Add and Delete act on the backend's current
// key (KeyedBackend.SetCurrentKeyHashed).
type TimerQueue[K comparable] interface {
	// Add registers a timer at ts in namespace ns for the current key; a
	// timer that exists already is not added twice.
	Add(ts int64, ns string)
	// Delete removes the current key's timer at ts in ns, if there is one.
	Delete(ts int64, ns string)
	// Peek returns the earliest timer's timestamp; ok is false when there
	// is no timer.
	Peek() (ts int64, ok bool)
	// Poll removes and returns the earliest timer if its timestamp is at
	// most limit; ok is false otherwise. Timers with equal timestamps come
	// in no particular order.
	Poll(limit int64) (t Timer[K], ok bool)
	// Len is the number of timers.
	Len() int
}

// TimerService is implemented by keyed backends that hold timers:
// TimerQueue registers (or returns) the queue called name, checkpointed as
// a state of kind timers under that name.
type TimerService[K comparable] interface {
	TimerQueue(name string) (TimerQueue[K], error)
}
