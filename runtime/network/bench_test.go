package network

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"testing"

	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/state"
)

const (
	benchBatch   = 1024 // records per buffer
	benchCredits = 4    // buffers in flight per channel
)

// array100Codec encodes a fixed 100-byte record without allocating on
// decode (unlike []byte, whose Decode must copy into a new slice).
type array100Codec struct{}

func (array100Codec) Append(dst []byte, v [100]byte) []byte { return append(dst, v[:]...) }

func (array100Codec) Decode(src []byte) (v [100]byte, err error) {
	if len(src) != len(v) {
		return v, fmt.Errorf("record of %d bytes, want %d", len(src), len(v))
	}
	copy(v[:], src)
	return v, nil
}

var payload100 = bytes.Repeat([]byte{'r'}, 100)

// BenchmarkNetworkChannel measures records per second through one remote
// channel between two endpoints on loopback: batches of 1024 records,
// encoded, framed, written, read, decoded, polled and recycled. One op is
// one record, so allocs/op is allocations per record.
func BenchmarkNetworkChannel(b *testing.B) {
	b.Run("int64", func(b *testing.B) {
		benchChannel(b, int64Codec, func(i int) int64 { return int64(i) })
	})
	b.Run("bytes100", func(b *testing.B) {
		benchChannel(b, bytesCodec, func(int) []byte { return payload100 })
	})
	b.Run("array100", func(b *testing.B) {
		benchChannel(b, state.Codec[[100]byte](array100Codec{}), func(int) [100]byte { return [100]byte(payload100) })
	})
}

func benchChannel[T any](b *testing.B, codec state.Codec[T], record func(int) T) {
	quiet := slog.New(slog.DiscardHandler)
	recv, err := listen(endpointConfig{Config: Config{Name: "receiver", Token: testToken, Logger: quiet}})
	if err != nil {
		b.Fatal(err)
	}
	defer recv.Close()
	send, err := listen(endpointConfig{Config: Config{Name: "sender", Token: testToken, Logger: quiet}})
	if err != nil {
		b.Fatal(err)
	}
	defer send.Close()
	gate := runtime.NewInputGate(1)
	id := NewChannelID(0, 0, 0, 0)
	in, err := NewInputChannel(recv, id, codec, gate, 0, benchCredits, benchBatch)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	out, err := NewOutputChannel(ctx, send, recv.Addr(), id, codec, benchBatch)
	if err != nil {
		b.Fatal(err)
	}
	received := make(chan int, 1)
	go func() { // the receiving task
		n := 0
		for {
			buf, _, ok := in.Poll()
			if !ok {
				<-gate.Signal()
				continue
			}
			if buf.IsEvent() {
				if buf.Event.Kind == runtime.EventEndOfPartition {
					received <- n
					return
				}
				continue
			}
			n += len(buf.Records)
			in.Recycle(buf.Records)
		}
	}()

	b.ReportAllocs()
	b.ResetTimer()
	batch := out.NewBuffer()
	for i := range b.N {
		batch = append(batch, record(i))
		if len(batch) == benchBatch {
			if err := out.Send(ctx, runtime.Buffer[T]{Records: batch}); err != nil {
				b.Fatal(err)
			}
			batch = out.NewBuffer()
		}
	}
	if len(batch) > 0 {
		if err := out.Send(ctx, runtime.Buffer[T]{Records: batch}); err != nil {
			b.Fatal(err)
		}
	}
	if err := out.Send(ctx, runtime.Buffer[T]{Event: endOfPartition}); err != nil {
		b.Fatal(err)
	}
	n := <-received
	b.StopTimer()
	if n != b.N {
		b.Fatalf("received %d records, sent %d", n, b.N)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkRawTCP is the ceiling for BenchmarkNetworkChannel: the same
// records frames, encoded once up front, written to a loopback TCP
// connection and read back frame by frame, without codec, credit or
// channel.
func BenchmarkRawTCP(b *testing.B) {
	ints := make([]int64, benchBatch)
	for i := range ints {
		ints[i] = int64(i) << 20 // varints of the size BenchmarkNetworkChannel sees
	}
	b.Run("int64", func(b *testing.B) { benchRaw(b, appendRecords(nil, 1, int64Codec, ints)) })
	recs := make([][]byte, benchBatch)
	for i := range recs {
		recs[i] = payload100
	}
	b.Run("bytes100", func(b *testing.B) { benchRaw(b, appendRecords(nil, 1, bytesCodec, recs)) })
}

func benchRaw(b *testing.B, frame []byte) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	frames := (b.N + benchBatch - 1) / benchBatch
	received := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			received <- err
			return
		}
		defer c.Close()
		fr := newFrameReader(c, DefaultMaxFrameSize)
		for range frames {
			_, _, payload, err := fr.next()
			if err != nil {
				received <- err
				return
			}
			if binary.BigEndian.Uint32(payload) != benchBatch {
				received <- fmt.Errorf("frame with %d records", binary.BigEndian.Uint32(payload))
				return
			}
		}
		received <- nil
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ReportAllocs()
	b.ResetTimer()
	for range frames {
		if _, err := c.Write(frame); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-received; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(frames*benchBatch)/b.Elapsed().Seconds(), "records/s")
}
