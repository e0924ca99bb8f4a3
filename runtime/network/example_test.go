package network_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/network"
	"github.com/weirstream/weir/runtime/network/tcp"
	"github.com/weirstream/weir/state"
)

// Two endpoints stand for two processes: subtask 0 of the upstream vertex
// writes through a RecordWriter into a remote channel; subtask 3 of the
// downstream vertex reads it through its input gate.
func Example() {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	onError := func(id network.ChannelID, err error) { fmt.Println("fail over:", id, err) }

	// Receiving process.
	recvTr, err := tcp.Listen(tcp.Config{}) // loopback, a free port
	if err != nil {
		panic(err)
	}
	recvEP, err := network.NewEndpoint(recvTr, network.Config{Name: "tm-2", Token: "job-secret", Logger: quiet, OnError: onError})
	if err != nil {
		panic(err)
	}
	defer recvEP.Close()
	id := network.NewChannelID(1, 0, 0, 3) // attempt 1, edge 0, subtask 0 -> subtask 3
	gate := runtime.NewInputGate(1)
	in, err := network.NewInputChannel(recvEP, id, state.CodecFor[int64](), gate, 0, 4, 256)
	if err != nil {
		panic(err)
	}

	// Sending process: it learns recvEP.Addr() from the deployment.
	sendTr, err := tcp.Listen(tcp.Config{})
	if err != nil {
		panic(err)
	}
	sendEP, err := network.NewEndpoint(sendTr, network.Config{Name: "tm-1", Token: "job-secret", Logger: quiet})
	if err != nil {
		panic(err)
	}
	defer sendEP.Close()
	out, err := network.NewOutputChannel(ctx, sendEP, recvEP.Addr(), id, state.CodecFor[int64](), 256)
	if err != nil {
		panic(err)
	}
	go func() {
		w := runtime.NewRecordWriter(ctx, runtime.Forward, []runtime.OutputChannel[int64]{out}, 256, nil, nil, nil)
		for i := range int64(1000) {
			w.Collect(i)
		}
		w.EmitEvent(runtime.Event{Kind: runtime.EventEndOfPartition})
		out.Close()
	}()

	var n, sum int64
	for {
		b, _, ok := in.Poll()
		if !ok {
			<-gate.Signal()
			continue
		}
		if b.IsEvent() {
			fmt.Printf("%d records, sum %d, then %s\n", n, sum, b.Event.Kind)
			return
		}
		for _, r := range b.Records {
			n, sum = n+1, sum+r
		}
		in.Recycle(b.Records)
	}
	// Output: 1000 records, sum 499500, then end-of-partition
}
