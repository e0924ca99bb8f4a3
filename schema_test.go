package weir_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
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

// State schema through real jobs: a checkpoint records the codecs of every
// keyed state, and a job restoring it with another value or key type fails
// with an error naming the operator, the state, both codecs and the
// checkpoint, on every backend; a codec that reads the old version
// migrates the state.

// keeper keeps one value state per key and emits, per record, the key,
// whether the state had a value and what it was.
type keeper[K comparable, V any] struct {
	codec  state.Codec[V] // nil: the built-in codec
	st     weir.ValueState[V]
	next   func(k K, old V, ok bool) V
	format func(V) string
}

func (f *keeper[K, V]) Open(ctx *weir.KeyedContext[K]) (err error) {
	if f.codec == nil {
		f.st, err = weir.GetValueState[V](ctx, "cnt")
	} else {
		f.st, err = weir.GetValueStateWithCodec[V](ctx, "cnt", f.codec)
	}
	return err
}

func (f *keeper[K, V]) ProcessElement(ctx *weir.KeyedContext[K], _ int64, out weir.Collector[string]) error {
	old, ok := f.st.Value()
	out.Collect(fmt.Sprintf("%v %v %s", ctx.CurrentKey(), ok, f.format(old)))
	f.st.Update(f.next(ctx.CurrentKey(), old, ok))
	return nil
}

// keeperJob runs a keeper over limit records per partition (2 partitions,
// 10 keys) keyed by key.
func keeperJob[K comparable, V any](dir string, limit int64, key func(int64) K, f *keeper[K, V], opts ...weir.Option) (*weir.Environment, *weir.CollectSink[string]) {
	base := []weir.Option{weir.Parallelism(2), weir.Checkpointing(20*time.Millisecond, weir.ExactlyOnce),
		weir.CheckpointStorage(dir), weir.RestartStrategy(restart.None())}
	env := weir.NewEnvironment(append(base, opts...)...)
	sink := weir.NewCollectSink[string]()
	src := weir.FromSource(env, weir.Generator(2, limit, func(p int, off int64) int64 { return off % 10 }), "gen").UID("gen")
	weir.Process(weir.KeyBy(src, key), f).Name("Keeper").UID("keep").SinkTo(sink).UID("sink")
	return env, sink
}

func int64Keeper() *keeper[int64, int64] {
	return &keeper[int64, int64]{next: func(_ int64, n int64, _ bool) int64 { return n + 1 }, format: func(n int64) string { return fmt.Sprint(n) }}
}

func stringKeeper[K comparable]() *keeper[K, string] {
	return &keeper[K, string]{next: func(_ K, s string, _ bool) string { return s + "x" }, format: func(s string) string { return fmt.Sprintf("%q", s) }}
}

func id(k int64) int64 { return k }

// schemaBackends are the backends a restore is checked on: heap, pebble
// with incremental (native) checkpoints, pebble with full ones.
func schemaBackends(t *testing.T) map[string][]weir.Option {
	return map[string][]weir.Option{
		"heap":               nil,
		"pebble-incremental": {weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: t.TempDir()}))},
		"pebble-full":        {weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: t.TempDir(), Full: true}))},
	}
}

// checkpointID is the id of the checkpoint directory of a _metadata path.
func checkpointID(md string) string {
	return strings.TrimPrefix(filepath.Base(filepath.Dir(md)), "chk-")
}

// A ValueState[int64] changed to ValueState[string] does not restore on
// any backend: the error names the operator, the state, both codecs and
// the checkpoint (before, the job read "\xdc\x04" as the string).
func TestRestoreChangedValueType(t *testing.T) {
	for name, backend := range schemaBackends(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			env, _ := keeperJob(dir, 100, id, int64Keeper(), backend...)
			if err := env.Execute(context.Background(), "keep"); err != nil {
				t.Fatal(err)
			}
			md := latestMetadata(t, dir)
			// Under a restart strategy that would retry forever: a changed
			// type is not retried.
			env, sink := keeperJob(dir, 120, id, stringKeeper[int64](), append(backend, weir.Restore("latest"),
				weir.RestartStrategy(restart.FixedDelay(1000, 10*time.Millisecond)))...)
			job, err := env.Start(context.Background(), "keep")
			if err != nil {
				t.Fatal(err)
			}
			err = job.Wait()
			if job.Restarts() != 0 {
				t.Errorf("a changed state type was retried %d times", job.Restarts())
			}
			for _, want := range []string{`operator Keeper (uid "keep")`, "checkpoint " + checkpointID(md), `state "cnt"`, "value codec varint:int64", "codec string"} {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("want an error saying %q, got %v (output %q)", want, err, sink.Committed())
				}
			}
		})
	}
}

// A changed key type does not restore: the error names both key codecs.
func TestRestoreChangedKeyType(t *testing.T) {
	for name, backend := range schemaBackends(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			env, _ := keeperJob(dir, 100, id, int64Keeper(), backend...)
			if err := env.Execute(context.Background(), "keep"); err != nil {
				t.Fatal(err)
			}
			md := latestMetadata(t, dir)
			byString := &keeper[string, int64]{next: func(_ string, n int64, _ bool) int64 { return n + 1 }, format: func(n int64) string { return fmt.Sprint(n) }}
			env, _ = keeperJob(dir, 120, func(k int64) string { return fmt.Sprint(k) }, byString, append(backend, weir.Restore("latest"),
				weir.RestartStrategy(restart.FixedDelay(1000, 10*time.Millisecond)))...)
			job, err := env.Start(context.Background(), "keep")
			if err != nil {
				t.Fatal(err)
			}
			err = job.Wait()
			if job.Restarts() != 0 {
				t.Errorf("a changed key type was retried %d times", job.Restarts())
			}
			for _, want := range []string{`keyed state of Keeper (uid "keep") from checkpoint ` + checkpointID(md), "keys have codec varint:int64", "keys have codec string"} {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("want an error saying %q, got %v", want, err)
				}
			}
		})
	}
}

// A flipped byte inside a .keyed stream is an error naming the file, the
// operator and the key group.
func TestRestoreDamagedStreamNamesFile(t *testing.T) {
	dir := t.TempDir()
	env, _ := keeperJob(dir, 100, id, int64Keeper())
	if err := env.Execute(context.Background(), "keep"); err != nil {
		t.Fatal(err)
	}
	path := latestMetadata(t, dir)
	md, err := storage.DecodeMetadata(mustRead(t, path))
	if err != nil {
		t.Fatal(err)
	}
	// Either subtask may fail first: each file's error is known.
	var want []string
	for _, sub := range md.Operator("keep").Subtasks {
		h := sub.Keyed[0]
		f := filepath.Join(dir, filepath.FromSlash(h.Stream.Path))
		data := mustRead(t, f)
		os.WriteFile(f, flip(data, len(data)-5), 0o644) // inside the last key group, before its checksum
		want = append(want, fmt.Sprintf("cannot read %s: cannot read key group %d: checksum mismatch", h.Stream.Path, h.Range.End))
	}
	env, _ = keeperJob(dir, 120, id, int64Keeper(), weir.Restore("latest"))
	err = env.Execute(context.Background(), "keep")
	if err == nil || !strings.Contains(err.Error(), `keyed state of Keeper (uid "keep") from checkpoint `+checkpointID(path)) ||
		!strings.Contains(err.Error(), want[0]) && !strings.Contains(err.Error(), want[1]) {
		t.Fatalf("damaged stream: want an error saying %q or %q, got %v", want[0], want[1], err)
	}
}

// A checkpoint written before schemas were recorded (metadata version 1,
// handles without states) restores on every backend, unchecked.
func TestRestoreWithoutSchema(t *testing.T) {
	for name, backend := range schemaBackends(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			env, _ := keeperJob(dir, 100, id, int64Keeper(), backend...)
			if err := env.Execute(context.Background(), "keep"); err != nil {
				t.Fatal(err)
			}
			md := latestMetadata(t, dir)
			stripSchema(t, md)
			env, sink := keeperJob(dir, 120, id, int64Keeper(), append(backend, weir.Restore("latest"))...)
			if err := env.Execute(context.Background(), "keep"); err != nil {
				t.Fatal(err)
			}
			// 2 partitions x 100 records over 10 keys: 20 per key before,
			// 4 more after the restore.
			last := map[string]string{}
			for _, line := range sink.Committed() {
				k, rest, _ := strings.Cut(line, " ")
				last[k] = rest
			}
			for k := 0; k < 10; k++ {
				if got := last[fmt.Sprint(k)]; got != "true 23" {
					t.Fatalf("key %d: last output %q, want \"true 23\" (all %v)", k, got, last)
				}
			}
		})
	}
}

// stripSchema rewrites a _metadata file as a version 1 build wrote it:
// format version 1 and no state schemas in the keyed handles.
func stripSchema(t *testing.T, path string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	md, err := storage.DecodeMetadata(raw)
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for i := range md.Operators {
		for j := range md.Operators[i].Subtasks {
			for k := range md.Operators[i].Subtasks[j].Keyed {
				found += len(md.Operators[i].Subtasks[j].Keyed[k].States)
				md.Operators[i].Subtasks[j].Keyed[k].States = nil
			}
		}
	}
	if found == 0 {
		t.Fatal("the checkpoint recorded no state schema to strip")
	}
	md.Version = 1
	payload, err := json.Marshal(md)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(payload), `"states"`) {
		t.Fatal("states left in the payload")
	}
	b := append([]byte("WEIRMETA"), 0, 0, 0, 1)
	b = binary.BigEndian.AppendUint64(b, uint64(len(payload)))
	b = append(b, payload...)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(payload, crc32.MakeTable(crc32.Castagnoli)))
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// person is version 1 of a state's value; personV2 splits the name.
type person struct{ Name string }

type personV2 struct{ First, Last string }

// personCodec writes version 1 as JSON.
type personCodec struct{}

func (personCodec) Append(dst []byte, v person) []byte {
	b, _ := json.Marshal(v)
	return append(dst, b...)
}
func (personCodec) Decode(src []byte) (v person, err error) { return v, json.Unmarshal(src, &v) }
func (personCodec) CodecID() string                         { return "example.person" }
func (personCodec) CodecVersion() int                       { return 1 }

// personV2Codec writes version 2 and reads version 1.
type personV2Codec struct{}

func (personV2Codec) Append(dst []byte, v personV2) []byte {
	b, _ := json.Marshal(v)
	return append(dst, b...)
}
func (personV2Codec) Decode(src []byte) (v personV2, err error) { return v, json.Unmarshal(src, &v) }
func (personV2Codec) CodecID() string                           { return "example.person" }
func (personV2Codec) CodecVersion() int                         { return 2 }
func (personV2Codec) CanDecodeFrom(id string, version int) bool {
	return id == "example.person" && version == 1
}
func (personV2Codec) DecodeFrom(_ string, _ int, src []byte) (personV2, error) {
	var v1 person
	if err := json.Unmarshal(src, &v1); err != nil {
		return personV2{}, err
	}
	first, last, _ := strings.Cut(v1.Name, " ")
	return personV2{First: first, Last: last}, nil
}

// A struct state written as JSON version 1 restores into a job whose codec
// is version 2 and reads version 1: every value migrates, on every
// backend, and a second restore (from a checkpoint of the migrated job)
// reads version 2 as it is.
func TestRestoreMigratesState(t *testing.T) {
	for name, backend := range schemaBackends(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			v1 := &keeper[int64, person]{codec: personCodec{},
				next:   func(k int64, _ person, _ bool) person { return person{Name: fmt.Sprintf("Ada Lovelace%d", k)} },
				format: func(p person) string { return p.Name }}
			env, _ := keeperJob(dir, 100, id, v1, backend...)
			if err := env.Execute(context.Background(), "keep"); err != nil {
				t.Fatal(err)
			}
			v2 := &keeper[int64, personV2]{codec: personV2Codec{},
				next:   func(_ int64, p personV2, _ bool) personV2 { return p },
				format: func(p personV2) string { return p.First + "|" + p.Last }}
			for round, limit := range []int64{120, 140} {
				env, sink := keeperJob(dir, limit, id, v2, append(backend, weir.Restore("latest"))...)
				if err := env.Execute(context.Background(), "keep"); err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				out := sink.Committed()
				if len(out) != 40 {
					t.Fatalf("round %d: %d outputs, want 40: %q", round, len(out), out)
				}
				for _, line := range out {
					k, rest, _ := strings.Cut(line, " ")
					if want := "true Ada|Lovelace" + k; rest != want {
						t.Fatalf("round %d: key %s: %q, want %q", round, k, rest, want)
					}
				}
			}
			md, err := storage.DecodeMetadata(mustRead(t, latestMetadata(t, dir)))
			if err != nil {
				t.Fatal(err)
			}
			for _, sub := range md.Operator("keep").Subtasks {
				for _, h := range sub.Keyed {
					if len(h.States) != 1 || h.States[0] != (checkpoint.StateMeta{Name: "cnt", Kind: "value", Codec: "example.person", CodecVersion: 2, KeyCodec: "varint:int64"}) {
						t.Fatalf("schema after the migration: %+v", h.States)
					}
				}
			}
		})
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
