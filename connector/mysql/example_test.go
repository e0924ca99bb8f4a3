package mysql_test

import (
	"context"
	"log"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/connector/files"
	"github.com/weirstream/weir/connector/mysql"
)

// Words into MariaDB or MySQL, exactly once, through XA transactions.
func ExampleExactlyOnce() {
	env := weir.NewEnvironment(weir.Checkpointing(time.Second, weir.ExactlyOnce), weir.CheckpointStorage("/var/lib/weir/words"))
	words := files.TextFile(env, "/var/log/words.txt").UID("words")
	sink, err := mysql.ExactlyOnce("weir@tcp(localhost:3306)/app", "words", []string{"word"},
		func(w string) []any { return []any{w} })
	if err != nil {
		log.Fatal(err)
	}
	words.SinkTo(sink).UID("words-sink")
	if err := env.Execute(context.Background(), "words"); err != nil {
		log.Fatal(err)
	}
}
