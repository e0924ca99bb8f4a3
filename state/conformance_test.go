package state_test

import (
	"testing"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/internal/leaktest"
	"github.com/weirstream/weir/state"
	"github.com/weirstream/weir/state/statetest"
)

func TestMain(m *testing.M) { leaktest.Main(m) }

// The heap backend runs the conformance suite (the pebble backend runs it
// in package pebblestate).
func TestConformance(t *testing.T) { statetest.Run(t, statetest.Heap()) }

// counting is a KeyedBackend of another package: it wraps a backend and
// counts the states registered through it. Registration goes through the
// interface, so it runs the whole suite.
type counting[K comparable] struct {
	state.KeyedBackend[K]
	registered int
}

func (c *counting[K]) RegisterValueState(r state.ValueStateRequest[K]) error {
	c.registered++
	return c.KeyedBackend.RegisterValueState(r)
}

func TestConformanceWrappedBackend(t *testing.T) {
	heap := statetest.Heap()
	var wrapped []*counting[string]
	statetest.Run(t, statetest.Backend{
		Name: "wrapped-heap",
		New: func(t *testing.T, r checkpoint.KeyGroupRange) state.KeyedBackend[string] {
			c := &counting[string]{KeyedBackend: heap.New(t, r)}
			wrapped = append(wrapped, c)
			return c
		},
		NewInt64: func(t *testing.T, r checkpoint.KeyGroupRange) state.KeyedBackend[int64] {
			return &counting[int64]{KeyedBackend: heap.NewInt64(t, r)}
		},
	})
	n := 0
	for _, c := range wrapped {
		n += c.registered
	}
	if n == 0 {
		t.Fatal("no state was registered through the wrapping backend")
	}
}
