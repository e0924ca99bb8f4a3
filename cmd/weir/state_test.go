package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/restart"
	"github.com/weirstream/weir/state"
	"github.com/weirstream/weir/state/pebblestate"
	"github.com/weirstream/weir/storage"
)

var words = []string{"apple", "banana", "apple", "cherry", "banana", "apple", "x\ty"}

// wantCounts is what Count holds per word at the end of wordJob.
var wantCounts = map[string]int64{"apple": 3, "banana": 2, "cherry": 1, "x\ty": 1}

// wordState keeps per word: its length (value state), every occurrence
// (list state), a count per first letter (map state) and a flag with a
// time-to-live.
type wordState struct {
	length  weir.ValueState[int64]
	seen    weir.ListState[string]
	letters weir.MapState[string, int64]
	flag    weir.ValueState[bool]
}

func (f *wordState) Open(ctx *weir.KeyedContext[string]) (err error) {
	if f.length, err = weir.GetValueState[int64](ctx, "length"); err != nil {
		return err
	}
	if f.seen, err = weir.GetListState[string](ctx, "seen"); err != nil {
		return err
	}
	if f.letters, err = weir.GetMapState[string, int64](ctx, "letters"); err != nil {
		return err
	}
	f.flag, err = weir.GetValueState[bool](ctx, "flag", weir.WithTTL(time.Hour))
	return err
}

func (f *wordState) ProcessElement(ctx *weir.KeyedContext[string], w string, out weir.Collector[string]) error {
	f.length.Update(int64(len(w)))
	f.seen.Add(w)
	n, _ := f.letters.Get(w[:1])
	f.letters.Put(w[:1], n+1)
	f.flag.Update(true)
	out.Collect(w)
	return nil
}

// wordJob builds a job that counts words and keeps wordState per word, at
// parallelism 2, checkpointing into dir.
func wordJob(dir string, src weir.Source[string], opts ...weir.Option) *weir.Environment {
	base := []weir.Option{weir.Parallelism(2), weir.Checkpointing(10*time.Millisecond, weir.ExactlyOnce),
		weir.CheckpointStorage(dir), weir.RestartStrategy(restart.None())}
	env := weir.NewEnvironment(append(base, opts...)...)
	in := weir.FromSource(env, src, "words").UID("words")
	keyed := weir.KeyBy(in, func(w string) string { return w })
	weir.Count(keyed).Name("Count").UID("count").SinkTo(weir.DiscardSink[weir.KV[string, int64]]{}).UID("count-sink")
	weir.Process(keyed, &wordState{}).Name("Words").UID("words-state").SinkTo(weir.DiscardSink[string]{}).UID("state-sink")
	return env
}

// runWords runs wordJob over words to its end; its final checkpoint stays
// in dir.
func runWords(t *testing.T, opts ...weir.Option) string {
	t.Helper()
	dir := t.TempDir()
	if err := wordJob(dir, &weir.SliceSource[string]{Elements: words}, opts...).Execute(context.Background(), "words"); err != nil {
		t.Fatal(err)
	}
	return dir
}

// sortedWords is the order dump prints words in: by key group, then key.
func sortedWords() []string {
	hash := state.HasherFor(state.CodecFor[string]())
	ws := make([]string, 0, len(wantCounts))
	for w := range wantCounts {
		ws = append(ws, w)
	}
	sort.Slice(ws, func(i, j int) bool {
		a, b := state.KeyGroupOf(hash(ws[i]), 128), state.KeyGroupOf(hash(ws[j]), 128)
		return a < b || a == b && ws[i] < ws[j]
	})
	return ws
}

func keyText(w string) string {
	if w == "x\ty" {
		return `"x\ty"`
	}
	return w
}

// inspect reads the states of a finished job's checkpoint and counts
// their entries; dump prints exactly the counts, lists, maps and flags
// the job left, in every codec and as JSON.
func TestInspectAndDumpFinishedJob(t *testing.T) {
	dir := runWords(t)

	out, err := runCmd("checkpoint", "inspect", dir)
	if err != nil {
		t.Fatalf("inspect: %v\n%s", err, out)
	}
	for _, want := range []string{
		`checkpoint `, `of job "words"`,
		"operator count (Count), parallelism 2",
		"operator words-state (Words), parallelism 2",
		"    keyed state: key groups [0,63], ",
		"    keyed state: key groups [64,127], ",
		`keyed state "sum" (value) in all subtasks: 4 entries`,
		`keyed state "length" (value) in all subtasks: 4 entries`,
		`keyed state "seen" (list) in all subtasks: 7 entries`, // one per element
		`keyed state "letters" (map) in all subtasks: 4 entries`,
		`keyed state "flag" (value-with-ttl) in all subtasks: 4 entries`,
		// The codecs the checkpoint recorded, per subtask and operator.
		`state "sum" (value): 3 entries, 20 bytes, values varint:int64, keys string`,
		`bytes, values list(string), keys string`,
		`bytes, values map(string,varint:int64), keys string`,
		`bytes, values bool, keys string`,
		"operator words (", `list state "`,
		"total: 5 operators, ", "23 keyed state entries",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	if t.Failed() {
		return
	}

	// JSON is the same report.
	out, err = runCmd("checkpoint", "inspect", "--json", dir)
	if err != nil {
		t.Fatalf("inspect --json: %v\n%s", err, out)
	}
	var rep report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("inspect --json: %v\n%s", err, out)
	}
	var count *operatorReport
	for i := range rep.Operators {
		if rep.Operators[i].UID == "count" {
			count = &rep.Operators[i]
		}
	}
	if rep.Job != "words" || rep.Kind != "checkpoint" || count == nil || len(count.Subtasks) != 2 ||
		len(count.KeyedStates) != 1 || count.KeyedStates[0] != (stateReport{Name: "sum", Kind: "value", Codec: "varint:int64", KeyCodec: "string", Entries: 4, Bytes: count.KeyedStates[0].Bytes}) ||
		rep.Totals.KeyedEntries != 23 || rep.Totals.Bytes == 0 || rep.Totals.Uploaded != rep.Totals.Bytes {
		t.Fatalf("inspect --json: %+v", rep)
	}
	var perSubtask int64
	for _, s := range count.Subtasks {
		if len(s.Keyed) != 1 || s.Keyed[0].Error != "" {
			t.Fatalf("subtask %+v", s)
		}
		for _, st := range s.Keyed[0].States {
			perSubtask += st.Entries
		}
	}
	if perSubtask != 4 {
		t.Fatalf("subtasks hold %d entries of sum, want 4", perSubtask)
	}

	// The counts, in key group then key order.
	order := sortedWords()
	var want strings.Builder
	for _, w := range order {
		fmt.Fprintf(&want, "%s\t%d\n", keyText(w), wantCounts[w])
	}
	dump := func(args ...string) string {
		t.Helper()
		out, err := runCmd(append([]string{"state", "dump", dir}, args...)...)
		if err != nil {
			t.Fatalf("dump %v: %v\n%s", args, err, out)
		}
		return out
	}
	if got := dump("--operator", "count", "--state", "sum", "--key-codec", "string", "--value-codec", "int64"); got != want.String() {
		t.Fatalf("dump counts:\n%s\nwant:\n%s", got, want.String())
	}
	// auto: the keys are text, the varints are not (3 is zig-zag 06).
	if got := dump("--operator", "count", "--state", "sum", "--key-codec", "auto", "--value-codec", "auto"); !strings.Contains(got, "apple\t06\n") || !strings.Contains(got, "banana\t04\n") {
		t.Fatalf("dump auto:\n%s", got)
	}
	// Without codecs: the ones the checkpoint recorded, said on stderr.
	got, notes, err := runCmdNotes("state", "dump", dir, "--operator", "count", "--state", "sum")
	if err != nil || got != want.String() || notes != "state \"sum\" of operator \"count\": value state, keys string printed as string, values varint:int64 printed as int64\n" {
		t.Fatalf("dump with the recorded codecs: %v\n%s\nnotes: %q", err, got, notes)
	}
	got, _, err = runCmdNotes("state", "dump", dir, "--operator", "words-state", "--state", "letters")
	if err != nil || !strings.Contains(got, "apple\t{\"a\":3}\n") {
		t.Fatalf("dump a map state with the recorded codecs: %v\n%s", err, got)
	}
	// --limit keeps the first lines of the same order.
	lines := strings.SplitAfter(want.String(), "\n")
	if got := dump("--operator", "count", "--state", "sum", "--key-codec", "string", "--value-codec", "int64", "--limit", "2"); got != lines[0]+lines[1] {
		t.Fatalf("dump --limit 2:\n%s", got)
	}
	// JSON lines.
	got = dump("--operator", "count", "--state", "sum", "--key-codec", "string", "--value-codec", "int64", "--json")
	jl := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(jl) != len(order) {
		t.Fatalf("dump --json:\n%s", got)
	}
	hash := state.HasherFor(state.CodecFor[string]())
	for i, l := range jl {
		var e struct {
			KeyGroup int    `json:"keyGroup"`
			Key      string `json:"key"`
			Value    int64  `json:"value"`
		}
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if e.Key != order[i] || e.Value != wantCounts[e.Key] || e.KeyGroup != state.KeyGroupOf(hash(e.Key), 128) {
			t.Fatalf("line %q: want key %q, count %d", l, order[i], wantCounts[order[i]])
		}
	}
	// List, map, TTL and value states of the process function.
	got = dump("--operator", "words-state", "--state", "seen", "--key-codec", "string", "--value-codec", "list:string")
	if !strings.Contains(got, "apple\t[\"apple\",\"apple\",\"apple\"]\n") || !strings.Contains(got, "cherry\t[\"cherry\"]\n") || !strings.Contains(got, "\"x\\ty\"\t[\"x\\ty\"]\n") {
		t.Fatalf("dump list state:\n%s", got)
	}
	got = dump("--operator", "words-state", "--state", "letters", "--key-codec", "string", "--value-codec", "map:string:int64", "--json")
	if !strings.Contains(got, `"key":"apple","value":{"a":3}}`) || !strings.Contains(got, `"key":"x\ty","value":{"x":1}}`) {
		t.Fatalf("dump map state:\n%s", got)
	}
	got = dump("--operator", "words-state", "--state", "flag", "--key-codec", "string", "--value-codec", "bool")
	if n := strings.Count(got, "\ttrue\texpires "); n != 4 {
		t.Fatalf("dump TTL state: %d flags\n%s", n, got)
	}
	got = dump("--operator", "words-state", "--state", "length", "--key-codec", "string", "--value-codec", "int64", "--json")
	if !strings.Contains(got, `"key":"banana","value":6}`) {
		t.Fatalf("dump length:\n%s", got)
	}

	// Clear errors for what does not exist or does not decode.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--operator", "nope", "--state", "sum"}, `has no operator "nope"; its operators: "count" (Count), "count-sink" (Sink), "state-sink" (Sink), "words" (Source: words), "words-state" (Words)`},
		{[]string{"--operator", "count", "--state", "nope"}, `operator "count" has no keyed state "nope" (or no entries in it) in checkpoint `},
		{[]string{"--operator", "words-state", "--state", "nope"}, `"flag" (value-with-ttl, values bool, 4 entries), "length" (value, values varint:int64, 4 entries), "letters" (map, values map(string,varint:int64), 4 entries), "seen" (list, values list(string), 7 entries)`},
		{[]string{"--operator", "words", "--state", "offsets"}, `operator "words" has no keyed state in checkpoint`},
		{[]string{"--operator", "words-state", "--state", "seen", "--key-codec", "string", "--value-codec", "int64"}, `operator "words-state": key group `},
		{[]string{"--operator", "words-state", "--state", "seen", "--key-codec", "string", "--value-codec", "int64"}, `cannot decode the value of key apple as int64: `},
		{[]string{"--operator", "count", "--state", "sum", "--key-codec", "int64"}, `state "sum": cannot decode key `},
		{[]string{"--operator", "count", "--state", "sum", "--key-codec", "uint32"}, `--key-codec: unknown codec "uint32" (known: auto, string, int64`},
		{[]string{"--operator", "count", "--state", "sum", "--id", "999"}, "no completed checkpoint 999 in"},
	} {
		out, err := runCmd(append([]string{"state", "dump", dir}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("dump %v: want error containing %q, got %v\n%s", tc.args, tc.want, err, out)
		}
	}

	// PATH may also be the checkpoint directory, its _metadata, or the
	// root with --id.
	ids, err := mustStorage(t, dir).Completed(t.Context())
	if err != nil || len(ids) == 0 {
		t.Fatalf("completed: %v %v", ids, err)
	}
	chk := filepath.Join(dir, fmt.Sprintf("chk-%d", ids[len(ids)-1]))
	for _, p := range [][]string{{chk}, {filepath.Join(chk, "_metadata")}, {dir, "--id", fmt.Sprint(ids[len(ids)-1])}} {
		out, err := runCmd(append([]string{"state", "dump", "--operator", "count", "--state", "sum", "--key-codec", "string", "--value-codec", "int64"}, p...)...)
		if err != nil || out != want.String() {
			t.Fatalf("dump %v: %v\n%s", p, err, out)
		}
	}
}

func mustStorage(t *testing.T, dir string) *storage.Storage {
	st, err := storage.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// A damaged keyed stream is a clear error of inspect and dump that names
// the operator, the subtask and the key group; inspect still prints the
// rest of the report.
func TestCorruptedStream(t *testing.T) {
	dir := runWords(t)
	st := mustStorage(t, dir)
	id, _, err := st.Latest(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	md, err := st.ReadMetadata(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	h := md.Operator("count").Subtasks[1].Keyed[0]
	path := filepath.Join(dir, filepath.FromSlash(h.Stream.Path))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Flip a byte in the middle of the section of the last key group that
	// holds an entry (a key's section is longer than an empty one's 6).
	kg := len(h.Offsets) - 1
	for h.Offsets[kg]+6 >= int64(len(data)) || kg+1 < len(h.Offsets) && h.Offsets[kg+1]-h.Offsets[kg] == 6 {
		kg--
	}
	end := int64(len(data))
	if kg+1 < len(h.Offsets) {
		end = h.Offsets[kg+1]
	}
	bad := append([]byte(nil), data...)
	bad[(h.Offsets[kg]+end)/2] ^= 0x55
	if err := os.WriteFile(path, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	wantErr := fmt.Sprintf(`cannot read keyed state of operator "count" subtask 1 (%s): cannot read key group %d: checksum mismatch`, h.Stream.Path, h.Range.Start+kg)

	out, err := runCmd("checkpoint", "inspect", dir)
	if err == nil || !strings.Contains(err.Error(), wantErr) {
		t.Fatalf("inspect: want error %q, got %v\n%s", wantErr, err, out)
	}
	if !strings.Contains(out, "error: "+wantErr) || !strings.Contains(out, `keyed state "length" (value) in all subtasks: 4 entries`) ||
		!strings.Contains(out, `keyed state "sum" (value) in the readable subtasks: `) {
		t.Fatalf("inspect output:\n%s", out)
	}
	// Without reading streams, the states and codecs are those the
	// metadata recorded.
	if out, err := runCmd("checkpoint", "inspect", "--sizes=false", dir); err != nil || !strings.Contains(out, `keyed state "sum" (value), values varint:int64, keys string`+"\n") {
		t.Fatalf("inspect --sizes=false reads no stream: %v\n%s", err, out)
	}
	out, err = runCmd("state", "dump", dir, "--operator", "count", "--state", "sum", "--key-codec", "string", "--value-codec", "int64")
	if err == nil || !strings.Contains(err.Error(), wantErr) {
		t.Fatalf("dump: want error %q, got %v\n%s", wantErr, err, out)
	}

	// A truncated stream.
	if err := os.WriteFile(path, data[:len(data)-3], 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"checkpoint", "inspect", dir},
		{"state", "dump", dir, "--operator", "count", "--state", "sum"},
	} {
		_, err := runCmd(args...)
		if err == nil || !strings.Contains(err.Error(), `operator "count" subtask 1`) || !strings.Contains(err.Error(), "truncated") {
			t.Fatalf("%v of a truncated stream: %v", args, err)
		}
	}
}

// Incremental (pebble) checkpoints list their files, shared and private;
// inspect and dump read their files (downloaded, opened read-only), and a
// savepoint of a pebble job dumps like any other.
func TestIncrementalCheckpoint(t *testing.T) {
	backend := weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: t.TempDir()}))
	dir := runWords(t, backend)
	out, err := runCmd("checkpoint", "inspect", dir)
	if err != nil {
		t.Fatalf("inspect: %v\n%s", err, out)
	}
	for _, want := range []string{"incremental pebble-v1 snapshot: ", "      private  ", "uploaded by this checkpoint",
		`keyed state "sum" (value) in all subtasks: 4 entries`, "values varint:int64, keys string\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	out, err = runCmd("checkpoint", "inspect", "--json", dir)
	var rep report
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("inspect --json: %v\n%s", err, out)
	}
	files, shared := 0, 0
	for _, op := range rep.Operators {
		for _, s := range op.Subtasks {
			for _, k := range s.Keyed {
				if k.Incremental == nil {
					t.Fatalf("operator %s: a pebble checkpoint with a key-group stream: %+v", op.UID, k)
				}
				for _, f := range k.Incremental.Files {
					files++
					if f.Area == "shared" {
						shared++
						if f.UploadedBy < 1 || f.UploadedBy > rep.CheckpointID || !strings.HasPrefix(f.Path, "shared/") {
							t.Fatalf("shared file %+v", f)
						}
					}
				}
			}
		}
	}
	if files == 0 || rep.Totals.Bytes == 0 || rep.Totals.Uploaded > rep.Totals.Bytes {
		t.Fatalf("incremental report: %d files (%d shared), totals %+v", files, shared, rep.Totals)
	}
	// Dump reads the pebble files themselves: the same output as the same
	// job with heap state.
	for _, st := range []string{"sum"} {
		args := []string{"state", "dump", "", "--operator", "count", "--state", st, "--key-codec", "string", "--value-codec", "int64"}
		args[2] = dir
		got, err := runCmd(args...)
		if err != nil {
			t.Fatalf("dump of an incremental checkpoint: %v", err)
		}
		args[2] = runWords(t)
		want, err := runCmd(args...)
		if err != nil {
			t.Fatal(err)
		}
		if got != want || got == "" {
			t.Fatalf("dump of the pebble checkpoint:\n%s\nwant (heap):\n%s", got, want)
		}
	}

	// A savepoint of a running pebble job is a key-group stream.
	gen := weir.Generator(1, -1, func(_ int, off int64) string { return words[off%int64(len(words))] }).WithRate(2000)
	job, err := wordJob(t.TempDir(), gen, backend).Start(context.Background(), "words")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { job.Cancel(); job.Wait() }()
	// Savepoints until one has every word (the source is rate limited).
	order := sortedWords()
	var sp string
	var got []string
	for attempt := 0; len(got) < len(order); attempt++ {
		if attempt == 200 {
			t.Fatalf("no savepoint with every word:\n%s", out)
		}
		time.Sleep(5 * time.Millisecond)
		if sp, err = job.TriggerSavepoint(context.Background()); err != nil {
			t.Fatal(err)
		}
		out, err = runCmd("state", "dump", sp, "--operator", "count", "--state", "sum", "--key-codec", "string", "--value-codec", "int64")
		if err != nil && !strings.Contains(err.Error(), "none with entries") {
			t.Fatalf("dump savepoint: %v\n%s", err, out)
		}
		got = strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	}
	out, err = runCmd("checkpoint", "inspect", sp)
	if err != nil || !strings.Contains(out, "savepoint ") || !strings.Contains(out, `keyed state "sum" (value) in all subtasks: 4 entries`) {
		t.Fatalf("inspect savepoint: %v\n%s", err, out)
	}
	for i, l := range got {
		k, v, _ := strings.Cut(l, "\t")
		var n int64
		if _, err := fmt.Sscan(v, &n); k != keyText(order[i]) || err != nil || n < 1 {
			t.Fatalf("dump savepoint line %q, want key %q and a count", l, order[i])
		}
	}
}

// A damaged file of an incremental checkpoint is an error of inspect that
// names the operator, the subtask and the file, as state.VerifyCheckpoint
// names it; inspect still prints the rest.
func TestCorruptedIncrementalFile(t *testing.T) {
	dir := runWords(t, weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: t.TempDir()})))
	st := mustStorage(t, dir)
	id, _, err := st.Latest(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	md, err := st.ReadMetadata(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	var f checkpoint.NamedStream
	for _, f = range md.Operator("count").Subtasks[1].Keyed[0].Incremental.Files {
		if strings.HasSuffix(f.Name, ".sst") {
			break
		}
	}
	path := filepath.Join(dir, filepath.FromSlash(f.Stream.Path))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x55
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	wantErr := fmt.Sprintf(`cannot read keyed state of operator "count" subtask 1 (%s): file %s is corrupted: CRC-32C`, f.Stream.Path, f.Name)
	out, err := runCmd("checkpoint", "inspect", dir)
	if err == nil || !strings.Contains(err.Error(), wantErr) {
		t.Fatalf("inspect: want error %q, got %v\n%s", wantErr, err, out)
	}
	if !strings.Contains(out, "error: "+wantErr) || !strings.Contains(out, `operator words-state`) {
		t.Fatalf("inspect output:\n%s", out)
	}
	if err := state.VerifyCheckpoint(md, st.Opener(t.Context())); err == nil || !strings.Contains(err.Error(), wantErr) {
		t.Fatalf("VerifyCheckpoint: want error %q, got %v", wantErr, err)
	}
}
