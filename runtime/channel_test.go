package runtime

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A sender with no credit left blocks until the receiver takes a buffer,
// and then resumes: backpressure.
func TestLocalChannelCreditBlocksAndResumes(t *testing.T) {
	g := NewInputGate(1)
	c := NewLocalChannel[int](g, 0, 2, 4)
	ctx := context.Background()
	for i := range 2 {
		if err := c.Send(ctx, Buffer[int]{Records: []int{i}}); err != nil {
			t.Fatal(err)
		}
	}
	sent := make(chan error, 1)
	go func() { sent <- c.Send(ctx, Buffer[int]{Records: []int{2}}) }()
	select {
	case err := <-sent:
		t.Fatalf("third send returned (%v) without credit", err)
	case <-time.After(20 * time.Millisecond):
	}
	// Events need no credit.
	if err := sendWithin(t, c, Buffer[int]{Event: Event{Kind: EventEndOfPartition}}); err != nil {
		t.Fatal(err)
	}
	b, _, ok := c.Poll()
	if !ok || b.Records[0] != 0 {
		t.Fatalf("poll = %v %v", b, ok)
	}
	c.Recycle(b.Records)
	if err := <-sent; err != nil {
		t.Fatalf("blocked send did not resume: %v", err)
	}
	var got []int
	for {
		b, _, ok := c.Poll()
		if !ok {
			break
		}
		if b.IsEvent() {
			got = append(got, -1)
			continue
		}
		got = append(got, b.Records...)
	}
	want := []int{1, -1, 2}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v (order within a channel must be kept)", got, want)
		}
	}
}

func sendWithin(t *testing.T, c *LocalChannel[int], b Buffer[int]) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return c.Send(ctx, b)
}

// A blocked sender gives up when its task is cancelled.
func TestLocalChannelSendCancelled(t *testing.T) {
	c := NewLocalChannel[int](NewInputGate(1), 0, 1, 4)
	ctx, cancel := context.WithCancel(context.Background())
	if err := c.Send(ctx, Buffer[int]{Records: []int{1}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Send(ctx, Buffer[int]{Records: []int{2}}) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// The gate hands out channels in the order they became non-empty and skips
// blocked channels without losing their announcement.
func TestInputGateOrderAndBlocking(t *testing.T) {
	g := NewInputGate(3)
	g.notify(2)
	g.notify(0)
	g.notify(2) // already announced
	g.notify(1)
	blocked := map[int]bool{0: true}
	var order []int
	for {
		ch, ok := g.next(func(c int) bool { return blocked[c] })
		if !ok {
			break
		}
		order = append(order, ch)
	}
	if len(order) != 2 || order[0] != 2 || order[1] != 1 {
		t.Fatalf("order = %v, want [2 1]", order)
	}
	delete(blocked, 0)
	if ch, ok := g.next(func(c int) bool { return blocked[c] }); !ok || ch != 0 {
		t.Fatalf("after unblocking: %d %v, want channel 0", ch, ok)
	}
}

// Recycled buffers are reused by the sender: no allocation per buffer in
// the steady state.
func TestLocalChannelRecyclesBuffers(t *testing.T) {
	c := NewLocalChannel[int](NewInputGate(1), 0, 2, 8)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		b := c.NewBuffer()
		b = append(b, 1, 2, 3)
		if err := c.Send(ctx, Buffer[int]{Records: b}); err != nil {
			t.Fatal(err)
		}
		got, _, _ := c.Poll()
		c.Recycle(got.Records)
	})
	if allocs > 0 {
		t.Fatalf("%.1f allocations per buffer round trip, want 0", allocs)
	}
}
