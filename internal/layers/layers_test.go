package layers

import (
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/weirstream/weir"

// allowed maps a package (relative to the module; "." is the root) to the
// weir packages its non-test files may import. A package missing here is
// an error: a new package must say where it sits. Entries ending in "/..."
// allow every package below.
var allowed = map[string][]string{
	"checkpoint":                  {},
	"checkpoint/barrier":          {"checkpoint"},
	"checkpoint/coordinator":      {"checkpoint"},
	"restart":                     {},
	"storage":                     {"checkpoint"},
	"storage/s3":                  {"storage", "checkpoint"},
	"storage/storagetest":         {"storage", "checkpoint"},
	"state":                       {"checkpoint"},
	"state/pebblestate":           {"state", "checkpoint"},
	"state/statetest":             {"state", "checkpoint", "storage"},
	"runtime/watermark":           {},
	"metrics":                     {},
	"runtime":                     {"checkpoint", "checkpoint/barrier", "checkpoint/coordinator", "restart", "state", "storage", "runtime/watermark", "metrics"},
	"runtime/network/transport":   {},
	"runtime/network":             {"runtime", "runtime/network/transport", "checkpoint", "state", "internal/secret"},
	"runtime/network/tcp":         {"runtime/network/transport"},
	"plan":                        {"runtime", "checkpoint", "state"},
	".":                           {"plan", "runtime", "runtime/network", "runtime/watermark", "checkpoint", "checkpoint/coordinator", "restart", "state", "storage"},
	"ha":                          {"checkpoint", "storage"},
	"cluster":                     {"runtime", "runtime/network", "runtime/network/tcp", "checkpoint", "checkpoint/coordinator", "ha", "storage", "internal/secret", "metrics"},
	"rest":                        {"runtime", "checkpoint", "storage", "metrics", "internal/secret", "rest/client"},
	"rest/client":                 {},
	"connector/files":             {".", "checkpoint"},
	"connector/socket":            {".", "checkpoint"},
	"connector/kafka":             {".", "checkpoint"},
	"connector/postgres":          {".", "checkpoint", "connector/internal/prepared"},
	"connector/mysql":             {".", "checkpoint", "connector/internal/prepared"},
	"connector/internal/prepared": {},
	"jobflags":                    {".", "checkpoint", "cluster", "restart", "state", "state/pebblestate", "storage", "storage/s3", "rest", "runtime"},
	"cmd/weir":                    {".", "connector/postgres", "connector/mysql", "connector/kafka", "checkpoint", "state", "state/pebblestate", "storage", "storage/s3", "rest/client"},
	"nexmark":                     {},
	"nexmark/reference":           {"nexmark"},
	"nexmark/queries":             {".", "nexmark", "checkpoint"},
	"examples/...":                {".", "jobflags", "connector/...", "nexmark", "nexmark/...", "checkpoint", "restart", "state", "state/pebblestate", "storage", "cluster", "internal/..."},
	"internal/secret":             {},
	"internal/tlstest":            {},
	"internal/pgtest":             {},
	"internal/etcdtest":           {},
	"internal/leaktest":           {},
	"internal/tmpfstest":          {},
	"internal/layers":             {},
	"internal/s3test":             {"storage", "storage/s3"},
	"internal/sinktest":           {".", "restart"},
}

// forbiddenExternal are modules a package may not link through its own
// imports: the root API runs locally without them.
var forbiddenExternal = map[string][]string{
	".": {"google.golang.org/grpc", "go.etcd.io/", "github.com/minio/", "github.com/cockroachdb/pebble"},
}

// forbiddenDeps are packages that a program importing only the root
// package must not link at all (go list -deps): sockets and TLS belong to
// the data plane's transport, runtime/network/tcp, which only the cluster
// roles import.
var forbiddenDeps = []string{"net", "crypto/tls", "crypto/x509", module + "/runtime/network/tcp"}

func moduleRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}

// imports reads the imports of the non-test Go files of every package
// directory under root.
func imports(t *testing.T, root string) map[string][]string {
	out := map[string][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		if _, ok := out[rel]; !ok {
			out[rel] = nil
		}
		for _, imp := range f.Imports {
			out[rel] = append(out[rel], strings.Trim(imp.Path.Value, `"`))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// rule finds the allowed list of pkg (exact, or a "/..." entry).
func rule(pkg string) ([]string, bool) {
	if a, ok := allowed[pkg]; ok {
		return a, true
	}
	for k, a := range allowed {
		if base, ok := strings.CutSuffix(k, "/..."); ok && strings.HasPrefix(pkg, base+"/") {
			return a, true
		}
	}
	return nil, false
}

func permits(list []string, imp string) bool {
	for _, a := range list {
		if a == imp {
			return true
		}
		if base, ok := strings.CutSuffix(a, "/..."); ok && strings.HasPrefix(imp, base+"/") {
			return true
		}
	}
	return false
}

// TestLayering fails when a package imports a weir package its layer may
// not, or when a package is not placed in a layer.
func TestLayering(t *testing.T) {
	root := moduleRoot(t)
	var problems []string
	for pkg, imps := range imports(t, root) {
		list, ok := rule(pkg)
		if !ok {
			problems = append(problems, pkg+": not placed in a layer (add it to allowed in internal/layers)")
			continue
		}
		for _, imp := range imps {
			if bad := forbiddenExternal[pkg]; len(bad) > 0 {
				for _, b := range bad {
					if strings.HasPrefix(imp, b) {
						problems = append(problems, pkg+" imports "+imp)
					}
				}
			}
			if imp != module && !strings.HasPrefix(imp, module+"/") {
				continue
			}
			rel := strings.TrimPrefix(strings.TrimPrefix(imp, module), "/")
			if rel == "" {
				rel = "."
			}
			if !permits(list, rel) {
				problems = append(problems, pkg+" imports "+rel)
			}
		}
	}
	sort.Strings(problems)
	problems = slices.Compact(problems)
	for _, p := range problems {
		t.Error(p)
	}
}

// The test catches what it should: a forbidden import is reported.
func TestLayeringCatchesAForbiddenImport(t *testing.T) {
	if permits(allowed["state"], "storage") || permits(allowed["runtime"], ".") || permits(allowed["."], "cluster") {
		t.Fatal("the rules allow an upward or sideways import they must forbid")
	}
	for _, pkg := range []string{".", "runtime", "runtime/network", "plan"} {
		if permits(allowed[pkg], "runtime/network/tcp") {
			t.Fatalf("the rules let %s import the TCP transport", pkg)
		}
	}
	if !permits(allowed["examples/..."], "connector/kafka") {
		t.Fatal("a /... entry does not allow the packages below it")
	}
}

// A program that imports only the root package and runs locally links no
// cluster, high-availability, object-store or disk-state dependency, and
// no socket or TLS code.
func TestRootLinksNoClusterDependencies(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH")
	}
	out, err := exec.Command(goTool, "list", "-deps", module).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", module, err)
	}
	deps := strings.Fields(string(out))
	for _, d := range deps {
		for _, b := range forbiddenExternal["."] {
			if strings.HasPrefix(d, b) {
				t.Errorf("the root package links %s", d)
			}
		}
		if slices.Contains(forbiddenDeps, d) {
			t.Errorf("the root package links %s", d)
		}
	}
	t.Logf("go list -deps %s: %d packages", module, len(deps))
}
