package files_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/connector/files"
)

// Records into files, exactly once: only committed files have names that do
// not start with a dot.
func ExampleSink() {
	dir, _ := os.MkdirTemp("", "weir-example")
	defer os.RemoveAll(dir)
	env := weir.NewEnvironment()
	weir.FromSlice(env, []string{"to", "be", "or", "not"}).SinkTo(files.Sink(dir, ".txt", files.Lines[string])).UID("files")
	if err := env.Execute(context.Background(), "files"); err != nil {
		log.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.txt"))
	b, _ := os.ReadFile(files[0])
	fmt.Print(string(b))
	// Output:
	// to
	// be
	// or
	// not
}
