package weir_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/weirstream/weir"
)

// Records into files, exactly once: only committed files have names that do
// not start with a dot.
func ExampleFileSink() {
	dir, _ := os.MkdirTemp("", "weir-example")
	defer os.RemoveAll(dir)
	env := weir.NewEnvironment()
	weir.FromSlice(env, []string{"to", "be", "or", "not"}).SinkTo(weir.FileSink(dir, ".txt", weir.Lines[string])).UID("files")
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
