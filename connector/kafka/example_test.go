package kafka_test

import (
	"context"
	"log"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/connector/kafka"
)

// From one topic to another, doubled, exactly once (readers of "doubled"
// use read_committed).
func Example() {
	brokers := []string{"localhost:9092"}
	env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(time.Second, weir.ExactlyOnce),
		weir.CheckpointStorage("/var/lib/weir/doubler"))
	src := kafka.Source(kafka.SourceOptions{Brokers: brokers, Topic: "numbers", ReadCommitted: true},
		func(r *kgo.Record) (int64, error) { return strconv.ParseInt(string(r.Value), 10, 64) })
	nums := weir.FromSource(env, src, "numbers").UID("numbers")
	doubled := weir.Map(nums, func(n int64) int64 { return 2 * n })
	sink, err := kafka.ExactlyOnce(kafka.SinkOptions{Brokers: brokers, Topic: "doubled"},
		func(n int64) *kgo.Record { return &kgo.Record{Value: strconv.AppendInt(nil, n, 10)} })
	if err != nil {
		log.Fatal(err)
	}
	doubled.SinkTo(sink).UID("doubled-sink")
	if err := env.Execute(context.Background(), "doubler"); err != nil {
		log.Fatal(err)
	}
}
