package network

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/state"
)

func TestChannelID(t *testing.T) {
	id := NewChannelID(7, 3, 65535, 12)
	if id.Attempt() != 7 || id.Edge() != 3 || id.Sender() != 65535 || id.Receiver() != 12 {
		t.Fatalf("parts of %#x: %d %d %d %d", uint64(id), id.Attempt(), id.Edge(), id.Sender(), id.Receiver())
	}
	if s := id.String(); s != "7/3/65535->12" {
		t.Fatalf("String = %q", s)
	}
	if NewChannelID(1, 0, 0, 2) == NewChannelID(1, 0, 2, 0) {
		t.Fatal("sender and receiver collide")
	}
}

// readAll plays the receiving task: it reads every channel until its end of
// partition, recycling batches, and returns what each channel delivered.
func readAll(t *testing.T, gate *runtime.InputGate, ins []*InputChannel[int64]) [][]item {
	t.Helper()
	got := make([][]item, len(ins))
	ended := make([]bool, len(ins))
	left := len(ins)
	timer := time.NewTimer(hang)
	defer timer.Stop()
	for left > 0 {
		progress := false
		for i, in := range ins {
			for !ended[i] {
				b, _, ok := in.Poll()
				if !ok {
					break
				}
				progress = true
				if b.IsEvent() {
					got[i] = append(got[i], item{ev: b.Event})
					if b.Event.Kind == runtime.EventEndOfPartition {
						ended[i] = true
						left--
					}
					continue
				}
				for _, r := range b.Records {
					got[i] = append(got[i], item{rec: r})
				}
				in.Recycle(b.Records)
			}
		}
		if !progress {
			select {
			case <-gate.Signal():
			case <-timer.C:
				t.Fatalf("hang: %d of %d channels did not end", left, len(ins))
			}
		}
	}
	return got
}

func sameItems(a, b []item) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.rec != y.rec || x.ev.Kind != y.ev.Kind || x.ev.Barrier.ID != y.ev.Barrier.ID ||
			x.ev.Barrier.Kind != y.ev.Barrier.Kind || !x.ev.Barrier.Timestamp.Equal(y.ev.Barrier.Timestamp) {
			return false
		}
	}
	return true
}

// Many channels share one connection; each delivers its records and events
// in the order sent. Half the receivers register after their senders
// started (and sent a barrier): events sent early are held, not lost.
func TestRecordsAndEventsInOrderAcrossChannels(t *testing.T) {
	checkLeaks(t)
	env := newEnv(t, nil)
	const channels = 16
	gate := runtime.NewInputGate(channels)
	ins := make([]*InputChannel[int64], channels)
	id := func(i int) ChannelID { return NewChannelID(1, 2, uint16(i), 0) }
	register := func(i int) {
		in, err := NewInputChannel(env.recv, id(i), int64Codec, gate, i, 3, 64)
		if err != nil {
			t.Fatal(err)
		}
		ins[i] = in
	}
	for i := 0; i < channels; i += 2 {
		register(i)
	}
	outs := make([]*OutputChannel[int64], channels)
	for i := range outs {
		var err error
		if outs[i], err = NewOutputChannel(context.Background(), env.send, env.recv.Addr(), id(i), int64Codec, 64); err != nil {
			t.Fatal(err)
		}
	}
	want := make([][]item, channels)
	errs := make(chan error, channels)
	var wg sync.WaitGroup
	for i, out := range outs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), hang)
			defer cancel()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			var sent []item
			send := func(b runtime.Buffer[int64]) bool {
				if err := out.Send(ctx, b); err != nil {
					errs <- err
					return false
				}
				return true
			}
			next := int64(i) << 32
			for batch := range 300 {
				if batch%7 == 0 {
					ev := barrier(int64(batch/7 + 1))
					if batch == 140 {
						ev = runtime.Event{Kind: runtime.EventCancel, Barrier: ev.Barrier}
					}
					if !send(runtime.Buffer[int64]{Event: ev}) {
						return
					}
					sent = append(sent, item{ev: ev})
				}
				buf := out.NewBuffer()
				for range 1 + rng.IntN(64) {
					buf = append(buf, next)
					sent = append(sent, item{rec: next})
					next++
				}
				if !send(runtime.Buffer[int64]{Records: buf}) {
					return
				}
			}
			if send(runtime.Buffer[int64]{Event: endOfPartition}) {
				sent = append(sent, item{ev: endOfPartition})
			}
			out.Close()
			want[i] = sent
		})
	}
	for i := 1; i < channels; i += 2 {
		register(i)
	}
	got := readAll(t, gate, ins)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range got {
		if !sameItems(got[i], want[i]) {
			t.Errorf("channel %d delivered %d items, sent %d:\ngot  %.300s\nwant %.300s", i, len(got[i]), len(want[i]),
				itemsString(got[i]), itemsString(want[i]))
		}
	}
	// Both ends count the record bytes (the sender also counts frame
	// headers): at least a byte per record.
	for i := range outs {
		var recs int64
		for _, it := range want[i] {
			if it.ev.Kind == 0 {
				recs++
			}
		}
		if in, out := ins[i].Bytes(), outs[i].Bytes(); in < recs || out < in {
			t.Errorf("channel %d: %d records, %d bytes received, %d sent", i, recs, in, out)
		}
	}
	env.send.mu.Lock()
	nconns := len(env.send.mu.conns)
	env.send.mu.Unlock()
	if nconns != 1 {
		t.Errorf("%d connections for %d channels to one process, want 1", nconns, channels)
	}
	if n := env.errs.count(); n != 0 {
		t.Errorf("%d channel errors: %v", n, env.errs.errs)
	}
}

// A sender without credit blocks; Poll alone does not return credit (the
// task still holds the batch), Recycle does and the sender resumes. Events
// need no credit, and a blocked Send ends with its context.
func TestCreditExhaustionBlocksSenderUntilRecycle(t *testing.T) {
	checkLeaks(t)
	env := newEnv(t, nil)
	gate := runtime.NewInputGate(1)
	out, in := env.channel(t, NewChannelID(0, 0, 0, 0), gate, 0, 2, 4)
	for i := range int64(2) {
		if err := sendWithin(t, out, runtime.Buffer[int64]{Records: []int64{i}}); err != nil {
			t.Fatal(err)
		}
	}
	sent := make(chan error, 1)
	go func() { sent <- out.Send(context.Background(), runtime.Buffer[int64]{Records: []int64{2}}) }()
	b0 := pollWithin(t, gate, in)
	b1 := pollWithin(t, gate, in)
	if b0.Records[0] != 0 || b1.Records[0] != 1 {
		t.Fatalf("got %v %v, want [0] [1]", b0.Records, b1.Records)
	}
	waitFor(t, "the third send to wait for credit", out.waitingForCredit)
	select {
	case err := <-sent:
		t.Fatalf("third send returned (%v) without credit", err)
	default:
	}
	in.Recycle(b0.Records)
	select {
	case err := <-sent:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(hang):
		t.Fatal("blocked send did not resume after Recycle")
	}
	if b := pollWithin(t, gate, in); b.IsEvent() || len(b.Records) != 1 || b.Records[0] != 2 {
		t.Fatalf("third batch = %+v", b)
	}
	// Two batches held, no credit left: an event still goes through.
	if err := sendWithin(t, out, runtime.Buffer[int64]{Event: barrier(9)}); err != nil {
		t.Fatal(err)
	}
	if b := pollWithin(t, gate, in); b.Event.Kind != runtime.EventBarrier || b.Event.Barrier.ID != 9 {
		t.Fatalf("got %+v, want barrier 9", b)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { sent <- out.Send(ctx, runtime.Buffer[int64]{Records: []int64{3}}) }()
	waitFor(t, "the fourth send to wait for credit", out.waitingForCredit)
	cancel()
	if err := <-sent; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Send = %v, want context.Canceled", err)
	}
}

// A channel whose task does not read holds back its own sender only: the
// other channels of the connection keep flowing.
func TestBackpressureOnOneChannelDoesNotBlockAnother(t *testing.T) {
	checkLeaks(t)
	env := newEnv(t, nil)
	gate := runtime.NewInputGate(2)
	slowOut, slowIn := env.channel(t, NewChannelID(0, 0, 0, 0), gate, 0, 2, 16)
	fastOut, fastIn := env.channel(t, NewChannelID(0, 0, 1, 0), gate, 1, 2, 16)
	for i := range int64(2) {
		if err := sendWithin(t, slowOut, runtime.Buffer[int64]{Records: []int64{i}}); err != nil {
			t.Fatal(err)
		}
	}
	blocked := make(chan error, 1)
	go func() { blocked <- slowOut.Send(context.Background(), runtime.Buffer[int64]{Records: []int64{2}}) }()

	const batches, size = 1000, 16
	fastErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), hang)
		defer cancel()
		for i := range batches {
			buf := fastOut.NewBuffer()
			for j := range size {
				buf = append(buf, int64(i*size+j))
			}
			if err := fastOut.Send(ctx, runtime.Buffer[int64]{Records: buf}); err != nil {
				fastErr <- err
				return
			}
		}
		fastErr <- fastOut.Send(ctx, runtime.Buffer[int64]{Event: endOfPartition})
	}()
	got := readAll(t, gate, []*InputChannel[int64]{fastIn})[0]
	if err := <-fastErr; err != nil {
		t.Fatal(err)
	}
	if len(got) != batches*size+1 {
		t.Fatalf("fast channel delivered %d items, want %d", len(got), batches*size+1)
	}
	for i, it := range got[:batches*size] {
		if it.rec != int64(i) {
			t.Fatalf("fast channel item %d = %v", i, it)
		}
	}
	select {
	case err := <-blocked:
		t.Fatalf("slow sender returned (%v) while its channel was full", err)
	default:
	}
	if q := slowIn.Queued(); q != 2 {
		t.Fatalf("slow channel holds %d batches, want its 2 credits' worth", q)
	}
	b := pollWithin(t, gate, slowIn)
	slowIn.Recycle(b.Records)
	select {
	case err := <-blocked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(hang):
		t.Fatal("slow sender did not resume")
	}
}

// A barrier stays behind the records sent before it and ahead of those
// sent after it, also when it needs no credit and the records do.
func TestBarrierNeverOvertakesData(t *testing.T) {
	checkLeaks(t)
	env := newEnv(t, nil)
	gate := runtime.NewInputGate(1)
	out, in := env.channel(t, NewChannelID(0, 0, 0, 0), gate, 0, 1, 4)
	if err := sendWithin(t, out, runtime.Buffer[int64]{Records: []int64{1}}); err != nil {
		t.Fatal(err)
	}
	if err := sendWithin(t, out, runtime.Buffer[int64]{Event: barrier(5)}); err != nil {
		t.Fatal(err)
	}
	sent := make(chan error, 1)
	go func() { sent <- out.Send(context.Background(), runtime.Buffer[int64]{Records: []int64{2}}) }()
	first := pollWithin(t, gate, in)
	if first.IsEvent() || first.Records[0] != 1 {
		t.Fatalf("first = %+v, want records [1]", first)
	}
	if b := pollWithin(t, gate, in); b.Event.Kind != runtime.EventBarrier || b.Event.Barrier.ID != 5 {
		t.Fatalf("second = %+v, want barrier 5", b)
	}
	// Records [2] need the credit records [1] still hold: their Send
	// waits, and nothing arrives.
	waitFor(t, "the send after the barrier to wait for credit", out.waitingForCredit)
	if b, _, ok := in.Poll(); ok {
		t.Fatalf("a batch (%+v) arrived without credit", b)
	}
	in.Recycle(first.Records)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if b := pollWithin(t, gate, in); b.IsEvent() || b.Records[0] != 2 {
		t.Fatalf("third = %+v, want records [2]", b)
	}
}

// Aligned checkpoint, the way the task does it: once channel 0 delivered
// barrier 1 the handler blocks it and the gate stops reading it, while
// channel 1 is read up to its barrier. Channel 0's sender blocks after its
// credit (the alignment reaches the sender); nothing it sent after the
// barrier is read before the alignment ends.
func TestAlignmentBlocksTheSenderThroughCredit(t *testing.T) {
	checkLeaks(t)
	env := newEnv(t, nil)
	gate := runtime.NewInputGate(2)
	const credits = 2
	out0, in0 := env.channel(t, NewChannelID(0, 0, 0, 0), gate, 0, credits, 8)
	out1, in1 := env.channel(t, NewChannelID(0, 0, 1, 0), gate, 1, credits, 8)
	var afterBarrier atomic.Int64 // batches channel 0's sender got out after the barrier
	release1 := make(chan struct{})
	errs := make(chan error, 2)
	send := func(out *OutputChannel[int64], before, after int, gateBarrier chan struct{}, counter *atomic.Int64) {
		ctx, cancel := context.WithTimeout(context.Background(), hang)
		defer cancel()
		for i := range before + after {
			if i == before {
				if gateBarrier != nil {
					<-gateBarrier
				}
				if err := out.Send(ctx, runtime.Buffer[int64]{Event: barrier(1)}); err != nil {
					errs <- err
					return
				}
			}
			if err := out.Send(ctx, runtime.Buffer[int64]{Records: append(out.NewBuffer(), int64(i))}); err != nil {
				errs <- err
				return
			}
			if i >= before && counter != nil {
				counter.Add(1)
			}
		}
		errs <- out.Send(ctx, runtime.Buffer[int64]{Event: endOfPartition})
	}
	go send(out0, 10, 20, nil, &afterBarrier)
	go send(out1, 10, 10, release1, nil)

	ins := []*InputChannel[int64]{in0, in1}
	blocked := []bool{false, false}
	var seen [2][]item
	aligned := false
	ended := 0
	timer := time.NewTimer(hang)
	defer timer.Stop()
	for ended < 2 {
		progress := false
		for i, in := range ins {
			if blocked[i] {
				continue
			}
			b, _, ok := in.Poll()
			if !ok {
				continue
			}
			progress = true
			if !b.IsEvent() {
				if i == 0 && b.Records[0] >= 10 && !aligned {
					t.Fatalf("channel 0 record %d read during the alignment", b.Records[0])
				}
				seen[i] = append(seen[i], item{rec: b.Records[0]})
				in.Recycle(b.Records)
				continue
			}
			seen[i] = append(seen[i], item{ev: b.Event})
			switch b.Event.Kind {
			case runtime.EventEndOfPartition:
				ended++
				blocked[i] = true
			case runtime.EventBarrier:
				if i == 0 {
					blocked[0] = true
					// Channel 1 has delivered its pre-barrier records;
					// channel 0's sender must now run out of credit.
					waitFor(t, "channel 1's pre-barrier records", func() bool { return in1.Queued() > 0 || len(seen[1]) >= 10 })
					waitFor(t, "channel 0's sender to use its credit and wait for more", func() bool {
						return afterBarrier.Load() >= credits && out0.waitingForCredit()
					})
					if n := afterBarrier.Load(); n != credits {
						t.Fatalf("channel 0's sender got %d batches out during the alignment, want %d (its credit)", n, credits)
					}
					close(release1)
				} else {
					aligned = true
					blocked[0] = false // barrier 1 on all channels: unblock
				}
			}
		}
		if !progress {
			select {
			case <-gate.Signal():
			case <-time.After(time.Millisecond):
			case <-timer.C:
				t.Fatal("hang")
			}
		}
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []int{30, 20} {
		var n int64
		for _, it := range seen[i] {
			if it.ev.Kind == 0 {
				if it.rec != n {
					t.Fatalf("channel %d: %s", i, itemsString(seen[i]))
				}
				n++
			}
		}
		if int(n) != want || seen[i][10].ev.Kind != runtime.EventBarrier {
			t.Fatalf("channel %d: %s", i, itemsString(seen[i]))
		}
	}
}

// Closing the socket under a connection fails its channels at both ends
// with an error naming the peer, instead of leaving anything hanging. The
// endpoints dial a new connection for new channels afterwards.
func TestDroppedConnectionFailsBothSides(t *testing.T) {
	for _, side := range []string{"sender", "receiver"} {
		t.Run("closed at the "+side, func(t *testing.T) {
			checkLeaks(t)
			env := newEnv(t, nil)
			gate := runtime.NewInputGate(2)
			id := NewChannelID(0, 0, 0, 0)
			out, in := env.channel(t, id, gate, 0, 1, 4)
			if err := sendWithin(t, out, runtime.Buffer[int64]{Records: []int64{1}}); err != nil {
				t.Fatal(err)
			}
			pollWithin(t, gate, in) // held: no credit left
			blocked := make(chan error, 1)
			go func() { blocked <- out.Send(context.Background(), runtime.Buffer[int64]{Records: []int64{2}}) }()
			waitFor(t, "the send to wait for credit", out.waitingForCredit)

			ep := env.send
			if side == "receiver" {
				ep = env.recv
				waitFor(t, "the accepted connection", func() bool {
					ep.mu.Lock()
					defer ep.mu.Unlock()
					return len(ep.mu.conns) == 1
				})
			}
			ep.mu.Lock()
			for c := range ep.mu.conns {
				c.c.Close()
			}
			ep.mu.Unlock()

			select {
			case err := <-blocked:
				if !errors.Is(err, ErrConnectionLost) {
					t.Fatalf("blocked Send = %v, want ErrConnectionLost", err)
				}
				if !strings.Contains(err.Error(), "receiver@127.0.0.1") {
					t.Errorf("sender's error %q does not name the peer", err)
				}
			case <-time.After(hang):
				t.Fatal("blocked Send hangs after the connection dropped")
			}
			if err := sendWithin(t, out, runtime.Buffer[int64]{Event: endOfPartition}); err == nil {
				t.Fatal("Send on a dropped connection succeeded")
			}
			rerr := env.errs.waitError(t, id)
			if !errors.Is(rerr, ErrConnectionLost) || !strings.Contains(rerr.Error(), "sender@127.0.0.1") || !strings.Contains(rerr.Error(), id.String()) {
				t.Fatalf("receiver's error %q: want ErrConnectionLost naming the peer and channel", rerr)
			}
			in.Close()
			out.Close()

			// New channels get a new connection.
			out2, in2 := env.channel(t, NewChannelID(1, 0, 0, 0), gate, 1, 1, 4)
			if err := sendWithin(t, out2, runtime.Buffer[int64]{Records: []int64{42}}); err != nil {
				t.Fatal(err)
			}
			if b := pollWithin(t, gate, in2); b.Records[0] != 42 {
				t.Fatalf("got %+v", b)
			}
			if n := len(env.errs.get(id)); n != 1 {
				t.Fatalf("%d errors reported for channel %s, want 1", n, id)
			}
		})
	}
}

// Channels that ended (end of partition delivered) are not failed when
// their sender goes away; Close of an endpoint unblocks its senders and
// fails input channels that never got a sender.
func TestCleanShutdown(t *testing.T) {
	checkLeaks(t)
	env := newEnv(t, nil)
	gate := runtime.NewInputGate(3)
	done, doneIn := env.channel(t, NewChannelID(0, 0, 0, 0), gate, 0, 2, 4)
	stuck, stuckIn := env.channel(t, NewChannelID(0, 0, 1, 0), gate, 1, 1, 4)
	orphan := NewChannelID(0, 0, 2, 0)
	if _, err := NewInputChannel(env.recv, orphan, int64Codec, gate, 2, 1, 4); err != nil {
		t.Fatal(err)
	}
	if err := sendWithin(t, done, runtime.Buffer[int64]{Records: []int64{1, 2, 3}}); err != nil {
		t.Fatal(err)
	}
	if err := sendWithin(t, done, runtime.Buffer[int64]{Event: endOfPartition}); err != nil {
		t.Fatal(err)
	}
	done.Close()
	if err := sendWithin(t, stuck, runtime.Buffer[int64]{Records: []int64{1}}); err != nil {
		t.Fatal(err)
	}
	blocked := make(chan error, 1)
	go func() { blocked <- stuck.Send(context.Background(), runtime.Buffer[int64]{Records: []int64{2}}) }()
	waitFor(t, "the batch of the stuck channel", func() bool { return stuckIn.Queued() == 1 })

	if err := env.send.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-blocked:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Send blocked across Close = %v, want ErrClosed", err)
		}
	case <-time.After(hang):
		t.Fatal("Close left a Send blocked")
	}
	got := readAll(t, gate, []*InputChannel[int64]{doneIn})[0]
	if itemsString(got) != "1 2 3 end-of-partition(0)" {
		t.Fatalf("ended channel delivered %s", itemsString(got))
	}
	stuckErr := env.errs.waitError(t, stuckIn.ID())
	if !errors.Is(stuckErr, ErrConnectionLost) {
		t.Fatalf("unfinished channel failed with %v, want ErrConnectionLost", stuckErr)
	}
	if errs := env.errs.get(doneIn.ID()); len(errs) != 0 {
		t.Fatalf("ended channel reported %v", errs)
	}
	if err := env.recv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := env.errs.waitError(t, orphan); !errors.Is(err, ErrClosed) {
		t.Fatalf("channel without sender failed with %v, want ErrClosed", err)
	}
	if n := env.errs.count(); n != 2 {
		t.Fatalf("%d errors reported, want 2: %v", n, env.errs.errs)
	}
}

// A sender may open, send events and close before its receiver registers:
// the receiver still gets everything, in order.
func TestSenderBeforeReceiver(t *testing.T) {
	checkLeaks(t)
	env := newEnv(t, nil)
	id := NewChannelID(3, 1, 0, 0)
	out, err := NewOutputChannel(context.Background(), env.send, env.recv.Addr(), id, int64Codec, 4)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []runtime.Event{barrier(1), barrier(2), endOfPartition} {
		if err := sendWithin(t, out, runtime.Buffer[int64]{Event: e}); err != nil {
			t.Fatal(err)
		}
	}
	out.Close()
	if err := out.Send(context.Background(), runtime.Buffer[int64]{Event: barrier(3)}); err == nil {
		t.Fatal("Send after Close succeeded")
	}
	waitFor(t, "the open frame", func() bool {
		env.recv.mu.Lock()
		defer env.recv.mu.Unlock()
		return len(env.recv.mu.pending) == 1
	})
	gate := runtime.NewInputGate(1)
	in, err := NewInputChannel(env.recv, id, int64Codec, gate, 0, 1, 4)
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, gate, []*InputChannel[int64]{in})[0]
	if s := itemsString(got); s != "barrier(1) barrier(2) end-of-partition(0)" {
		t.Fatalf("got %s", s)
	}
	if n := env.errs.count(); n != 0 {
		t.Fatalf("errors: %v", env.errs.errs)
	}
}

// A receiver reading another record type refuses the channel: both ends
// fail with an error naming both types.
func TestRecordTypeMismatch(t *testing.T) {
	checkLeaks(t)
	env := newEnv(t, nil)
	id := NewChannelID(0, 0, 0, 0)
	if _, err := NewInputChannel(env.recv, id, state.CodecFor[string](), runtime.NewInputGate(1), 0, 1, 4); err != nil {
		t.Fatal(err)
	}
	out, err := NewOutputChannel(context.Background(), env.send, env.recv.Addr(), id, int64Codec, 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := sendWithin(t, out, runtime.Buffer[int64]{Records: []int64{1}}); !errors.Is(err, ErrChannelClosed) || !strings.Contains(err.Error(), "int64") {
		t.Fatalf("Send = %v, want ErrChannelClosed naming the types", err)
	}
	if err := env.errs.waitError(t, id); !strings.Contains(err.Error(), "int64") || !strings.Contains(err.Error(), "string") {
		t.Fatalf("receiver error %q does not name both types", err)
	}
}

// Records of any size and codec survive the trip.
func TestBytesRecords(t *testing.T) {
	checkLeaks(t)
	env := newEnv(t, nil)
	gate := runtime.NewInputGate(1)
	id := NewChannelID(0, 0, 0, 0)
	codec := state.CodecFor[[]byte]()
	in, err := NewInputChannel(env.recv, id, codec, gate, 0, 2, 8)
	if err != nil {
		t.Fatal(err)
	}
	out, err := NewOutputChannel(context.Background(), env.send, env.recv.Addr(), id, codec, 8)
	if err != nil {
		t.Fatal(err)
	}
	sizes := []int{0, 1, 127, 128, 300, 16383, 16384, 100_000}
	go func() {
		for _, n := range sizes {
			rec := make([]byte, n)
			for i := range rec {
				rec[i] = byte(n + i)
			}
			if err := out.Send(context.Background(), runtime.Buffer[[]byte]{Records: append(out.NewBuffer(), rec, []byte("x"))}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for _, n := range sizes {
		b := pollWithin(t, gate, in)
		if len(b.Records) != 2 || len(b.Records[0]) != n || string(b.Records[1]) != "x" {
			t.Fatalf("batch for size %d: %d records, first of %d bytes", n, len(b.Records), len(b.Records[0]))
		}
		for i, c := range b.Records[0] {
			if c != byte(n+i) {
				t.Fatalf("size %d: byte %d = %d", n, i, c)
			}
		}
		in.Recycle(b.Records)
	}
}

// A batch larger than the receiver's frame limit is an error of Send, not
// of the connection.
func TestBatchOverFrameLimit(t *testing.T) {
	checkLeaks(t)
	env := newEnv(t, func(_, r *endpointConfig) { r.MaxFrameSize = 4 << 10 })
	gate := runtime.NewInputGate(1)
	codec := state.CodecFor[[]byte]()
	id := NewChannelID(0, 0, 0, 0)
	in, err := NewInputChannel(env.recv, id, codec, gate, 0, 1, 8)
	if err != nil {
		t.Fatal(err)
	}
	out, err := NewOutputChannel(context.Background(), env.send, env.recv.Addr(), id, codec, 8)
	if err != nil {
		t.Fatal(err)
	}
	if err := sendWithin(t, out, runtime.Buffer[[]byte]{Records: [][]byte{make([]byte, 5000)}}); err == nil || !strings.Contains(err.Error(), "frame limit") {
		t.Fatalf("Send of an oversize batch = %v", err)
	}
	if err := sendWithin(t, out, runtime.Buffer[[]byte]{Records: [][]byte{[]byte("ok")}}); err != nil {
		t.Fatal(err)
	}
	if b := pollWithin(t, gate, in); string(b.Records[0]) != "ok" {
		t.Fatalf("got %q", b.Records)
	}
}

// Recycled batches are reused: no allocation per batch in the steady state
// on either side.
func TestNoAllocationPerBatch(t *testing.T) {
	checkLeaks(t)
	env := newEnv(t, nil)
	gate := runtime.NewInputGate(1)
	out, in := env.channel(t, NewChannelID(0, 0, 0, 0), gate, 0, 1, 64)
	ctx := context.Background()
	roundTrip := func() {
		buf := out.NewBuffer()
		for i := range int64(64) {
			buf = append(buf, i)
		}
		if err := out.Send(ctx, runtime.Buffer[int64]{Records: buf}); err != nil {
			t.Fatal(err)
		}
		for {
			if b, _, ok := in.Poll(); ok {
				in.Recycle(b.Records)
				return
			}
			<-gate.Signal()
		}
	}
	for range 10 {
		roundTrip()
	}
	if allocs := testing.AllocsPerRun(200, roundTrip); allocs > 0.5 {
		t.Fatalf("%.2f allocations per batch round trip, want 0", allocs)
	}
}
