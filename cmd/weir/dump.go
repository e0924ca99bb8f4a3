package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/state"
	"github.com/weirstream/weir/storage"
)

type dumpOptions struct {
	operator, state      string
	keyCodec, valueCodec string
	asJSON               bool
	limit                int
	id                   int64
}

func newDump() *cobra.Command {
	var o dumpOptions
	dump := &cobra.Command{
		Use:   "dump PATH --operator UID --state NAME",
		Short: "Print the entries of one keyed state of a checkpoint or savepoint",
		Long: `Print the entries of one keyed state, sorted by key group then key, as
"key<TAB>value" lines or, with --json, JSON lines
{"keyGroup":..,"key":..,"value":..}. A state with a time-to-live adds the
expiry ("expires ..." as a third column, "expiresAt" in JSON). A list or
map state prints one line per key with the whole list or map. A timer queue
prints one line per timer: "key<TAB>timer MILLIS (UTC time)<TAB>namespace NS"
({"keyGroup":..,"key":..,"timestamp":..,"time":..,"namespace":..} in JSON).

PATH is a checkpoint or savepoint directory (.../chk-17), its _metadata file,
or a checkpoint storage root (then --id, or the latest checkpoint).

--key-codec and --value-codec decode keys and values as the job's codecs
(state.CodecFor) wrote them:

  ` + codecNames + `

int64 is every signed integer type (zig-zag varint), uint64 every unsigned
one (uvarint), json every other type; list:C is a ListState of C, map:K:V a
MapState; auto prints printable UTF-8 as a string and anything else as hex.
Without the flags, dump uses the codecs the checkpoint recorded for the
state (varint:int64 as int64, json:main.Order as json, list(string) as
list:string, ...), and auto for codecs it does not know (a job's own) or
for checkpoints that recorded none. The recorded codecs, and how they are
printed, go to standard error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var kc, vc *codec // nil: the recorded codec
			var err error
			if o.keyCodec != "" {
				if kc, err = parseCodec(o.keyCodec); err != nil {
					return fmt.Errorf("--key-codec: %w", err)
				}
			}
			if o.valueCodec != "" {
				if vc, err = parseCodec(o.valueCodec); err != nil {
					return fmt.Errorf("--value-codec: %w", err)
				}
			}
			if o.limit < 0 {
				return fmt.Errorf("--limit must not be negative, got %d", o.limit)
			}
			st, md, err := openCheckpoint(cmd.Context(), args[0], o.id)
			if err != nil {
				return err
			}
			return dumpState(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), st, md, o, kc, vc)
		},
	}
	f := dump.Flags()
	f.StringVar(&o.operator, "operator", "", "UID of the operator (required)")
	f.StringVar(&o.state, "state", "", "name of the keyed state (required)")
	f.StringVar(&o.keyCodec, "key-codec", "", "codec of the keys: "+codecNames+" (default: as recorded in the checkpoint, else auto)")
	f.StringVar(&o.valueCodec, "value-codec", "", "codec of the values (same choices; default: as recorded, else auto)")
	f.BoolVar(&o.asJSON, "json", false, "print JSON lines")
	f.IntVar(&o.limit, "limit", 0, "print at most this many entries (0: all)")
	f.Int64Var(&o.id, "id", 0, "checkpoint id, when PATH is a storage root (default: the latest)")
	dump.MarkFlagRequired("operator")
	dump.MarkFlagRequired("state")
	return dump
}

var (
	// errLimit stops reading once --limit entries are printed.
	errLimit = errors.New("limit reached")
	// errPrint stops reading when an entry cannot be printed (dumper.err
	// says why).
	errPrint = errors.New("cannot print an entry")
)

// dumpState prints the entries of o.state to w, decoded with kc and vc
// (nil: the codecs the checkpoint recorded, else auto); a note on the
// recorded codecs goes to notes.
func dumpState(ctx context.Context, w, notes io.Writer, st *storage.Storage, md *checkpoint.Metadata, o dumpOptions, kc, vc *codec) (err error) {
	op := md.Operator(o.operator)
	if op == nil {
		return fmt.Errorf("%s %d has no operator %q; its operators: %s", md.Kind, md.CheckpointID, o.operator, operatorList(md))
	}
	type part struct {
		subtask int
		h       checkpoint.KeyedStateHandle
	}
	var parts []part
	lists := map[string]bool{}
	for i, sub := range op.Subtasks {
		for _, h := range sub.Keyed {
			parts = append(parts, part{i, h})
		}
		for _, l := range sub.Operator {
			lists[strconv.Quote(l.Name)] = true
		}
	}
	if len(parts) == 0 {
		what := "no state"
		if len(lists) > 0 {
			names := make([]string, 0, len(lists))
			for n := range lists {
				names = append(names, n)
			}
			sort.Strings(names)
			what = "only operator list states (" + strings.Join(names, ", ") + "; see weir checkpoint inspect)"
		}
		return fmt.Errorf("operator %q has no keyed state in %s %d: it has %s", o.operator, md.Kind, md.CheckpointID, what)
	}
	sort.SliceStable(parts, func(i, j int) bool { return parts[i].h.Range.Start < parts[j].h.Range.Start })
	for i := 1; i < len(parts); i++ {
		if a, b := parts[i-1], parts[i]; b.h.Range.Start <= a.h.Range.End {
			return fmt.Errorf("operator %q: subtasks %d and %d have overlapping key groups %s and %s (corrupted metadata)", o.operator, a.subtask, b.subtask, a.h.Range, b.h.Range)
		}
	}

	var recorded *checkpoint.StateMeta
	schema := map[string]checkpoint.StateMeta{}
	for _, p := range parts {
		for _, m := range p.h.States {
			schema[m.Name] = m
		}
	}
	if m, ok := schema[o.state]; ok {
		recorded = &m
	}
	if kc, err = recordedCodec(kc, recorded, true); err != nil {
		return err
	}
	if vc, err = recordedCodec(vc, recorded, false); err != nil {
		return err
	}
	if recorded != nil && recorded.Kind == "timers" {
		fmt.Fprintf(notes, "state %q of operator %q: timer queue, keys %s printed as %s; one line per timer: key, timestamp (milliseconds since 1970, UTC time), namespace\n", o.state, o.operator,
			codecRef(recorded.KeyCodec, recorded.KeyCodecVersion), kc.name)
	} else if recorded != nil {
		fmt.Fprintf(notes, "state %q of operator %q: %s state, keys %s printed as %s, values %s printed as %s\n", o.state, o.operator, recorded.Kind,
			codecRef(recorded.KeyCodec, recorded.KeyCodecVersion), kc.name, codecRef(recorded.Codec, recorded.CodecVersion), vc.name)
	}

	bw := bufio.NewWriter(w)
	defer func() {
		if ferr := bw.Flush(); err == nil && ferr != nil {
			err = fmt.Errorf("cannot write the entries: %w", ferr)
		}
	}()
	d := &dumper{w: bw, o: o, kc: kc, vc: vc, seen: map[string]*seenState{}, schema: schema}
	for _, p := range parts {
		err := d.read(st.Opener(ctx), p.h)
		if err == nil {
			if err = d.flush(); err != nil && !errors.Is(err, errLimit) {
				d.err, err = err, errPrint
			}
		}
		switch {
		case errors.Is(err, errLimit):
			return nil
		case errors.Is(err, errPrint):
			return fmt.Errorf("operator %q: %w", o.operator, d.err)
		case err != nil:
			where := p.h.Stream.Path
			if p.h.Incremental != nil {
				where = "incremental " + p.h.Incremental.Backend
			} else if where == "" {
				where = "inline"
			}
			return fmt.Errorf("cannot read keyed state of operator %q subtask %d (%s): %w", o.operator, p.subtask, where, err)
		}
	}
	if !d.found {
		names := make([]string, 0, len(d.seen))
		for n, s := range d.seen {
			codec := ""
			if m, ok := d.schema[n]; ok {
				codec = ", values " + codecRef(m.Codec, m.CodecVersion)
			}
			names = append(names, fmt.Sprintf("%q (%s%s, %d entries)", n, s.kind, codec, s.entries))
		}
		sort.Strings(names)
		have := "none with entries"
		if len(names) > 0 {
			have = strings.Join(names, ", ")
		}
		return fmt.Errorf("operator %q has no keyed state %q (or no entries in it) in %s %d; its keyed states: %s", o.operator, o.state, md.Kind, md.CheckpointID, have)
	}
	return nil
}

// recordedCodec returns c, or when c is nil (no flag) the codec the
// checkpoint recorded for the keys or values of a state, or auto when it
// recorded none dump knows.
func recordedCodec(c *codec, recorded *checkpoint.StateMeta, key bool) (*codec, error) {
	if c != nil {
		return c, nil
	}
	name := ""
	if recorded != nil {
		if key {
			name = codecForIdentity(codecRef(recorded.KeyCodec, recorded.KeyCodecVersion))
		} else {
			name = codecForIdentity(codecRef(recorded.Codec, recorded.CodecVersion))
		}
	}
	if name == "" {
		name = "auto"
	}
	return parseCodec(name)
}

func operatorList(md *checkpoint.Metadata) string {
	if len(md.Operators) == 0 {
		return "none (no operator has state)"
	}
	ops := make([]string, 0, len(md.Operators))
	for _, op := range md.Operators {
		s := strconv.Quote(op.UID)
		if op.Name != "" {
			s += " (" + op.Name + ")"
		}
		ops = append(ops, s)
	}
	sort.Strings(ops)
	return strings.Join(ops, ", ")
}

type seenState struct {
	kind    state.StateKind
	entries int64
}

// dumper prints the entries of one state, one key group at a time: it
// buffers the entries of the current key group (streams hold them in no
// order), sorts them by key and prints them when the next key group
// starts.
type dumper struct {
	w      *bufio.Writer
	o      dumpOptions
	kc, vc *codec

	found   bool
	err     error // why an entry could not be printed
	printed int
	kg      int         // key group of the buffered entries
	buf     []byte      // their keys and values
	entries []dumpEntry // into buf
	line    []byte

	seen     map[string]*seenState           // every state met, for the error when o.state is not one
	schema   map[string]checkpoint.StateMeta // the recorded schema of the states, by name
	lastSeen *seenState
	lastName string
}

type dumpEntry struct {
	kind       state.StateKind
	keyGroup   int
	key0, val0 int // the key is buf[key0:val0], the value buf[val0:end]
	end        int
}

func (d *dumper) read(open func(checkpoint.StreamHandle) (io.ReadCloser, error), h checkpoint.KeyedStateHandle) error {
	if h.Incremental != nil {
		return incrementalEntries(open, h, d.visit)
	}
	rc, err := open(h.Stream)
	if err != nil {
		return err
	}
	defer rc.Close()
	return state.ReadKeyGroups(rc, h, d.visit)
}

func (d *dumper) visit(e state.RawEntry) error {
	if d.lastSeen == nil || e.State != d.lastName {
		s := d.seen[e.State]
		if s == nil {
			s = &seenState{kind: e.Kind}
			d.seen[e.State] = s
		}
		d.lastSeen, d.lastName = s, e.State
	}
	d.lastSeen.entries++
	if e.State != d.o.state {
		return nil
	}
	if len(d.entries) > 0 && e.KeyGroup != d.kg {
		if e.KeyGroup < d.kg {
			return fmt.Errorf("key group %d after key group %d: entries out of key group order", e.KeyGroup, d.kg)
		}
		// Errors of printing are not errors of the stream: they do not
		// pass through the reader, which would name the key group of e.
		if err := d.flush(); errors.Is(err, errLimit) {
			return err
		} else if err != nil {
			d.err = err
			return errPrint
		}
	}
	d.found, d.kg = true, e.KeyGroup
	k0 := len(d.buf)
	d.buf = append(d.buf, e.Key...)
	v0 := len(d.buf)
	d.buf = append(d.buf, e.Value...)
	d.entries = append(d.entries, dumpEntry{kind: e.Kind, key0: k0, val0: v0, end: len(d.buf), keyGroup: e.KeyGroup})
	return nil
}

// flush prints the buffered entries sorted by key; errLimit once the
// limit is reached.
func (d *dumper) flush() error {
	defer func() { d.entries, d.buf = d.entries[:0], d.buf[:0] }()
	key := func(e dumpEntry) []byte { return d.buf[e.key0:e.val0] }
	sort.SliceStable(d.entries, func(i, j int) bool {
		a, b := key(d.entries[i]), key(d.entries[j])
		if c := d.kc.compare(a, b); c != 0 {
			return c < 0
		}
		if c := bytes.Compare(a, b); c != 0 {
			return c < 0
		}
		// Timers of one key: by timestamp, then namespace.
		va, vb := d.buf[d.entries[i].val0:d.entries[i].end], d.buf[d.entries[j].val0:d.entries[j].end]
		if len(va) >= 8 && len(vb) >= 8 && d.entries[i].kind.IsTimers() {
			if ta, tb := int64(binary.BigEndian.Uint64(va)), int64(binary.BigEndian.Uint64(vb)); ta != tb {
				return ta < tb
			}
		}
		return bytes.Compare(va, vb) < 0
	})
	d.mergeCollections()
	for _, e := range d.entries {
		if d.o.limit > 0 && d.printed >= d.o.limit {
			return errLimit
		}
		if err := d.print(e); err != nil {
			return err
		}
		d.printed++
	}
	if d.o.limit > 0 && d.printed >= d.o.limit {
		return errLimit
	}
	return nil
}

func (d *dumper) print(e dumpEntry) error {
	k, raw := d.buf[e.key0:e.val0], d.buf[e.val0:e.end]
	if e.kind.IsTimers() {
		return d.printTimer(e, k, raw)
	}
	exp, v, hasTTL := state.RawEntry{Kind: e.kind, Value: raw}.Expiry()
	if e.kind.HasTTL() && !hasTTL {
		return fmt.Errorf("key group %d, state %q: a value with a time-to-live has %d bytes, needs at least 8", e.keyGroup, d.o.state, len(raw))
	}
	keyErr := func(err error) error {
		return fmt.Errorf("key group %d, state %q: cannot decode key %x as %s: %w (wrong --key-codec?)", e.keyGroup, d.o.state, k, d.kc.name, err)
	}
	valErr := func(err error) error {
		key, kerr := d.kc.text(nil, k)
		if kerr != nil {
			key = fmt.Appendf(nil, "%x", k)
		}
		return fmt.Errorf("key group %d, state %q: cannot decode the value of key %s as %s: %w (wrong --value-codec?)", e.keyGroup, d.o.state, key, d.vc.name, err)
	}
	var err error
	l := d.line[:0]
	if d.o.asJSON {
		l = strconv.AppendInt(append(l, `{"keyGroup":`...), int64(e.keyGroup), 10)
		if l, err = d.kc.json(append(l, `,"key":`...), k); err != nil {
			return keyErr(err)
		}
		if l, err = d.vc.json(append(l, `,"value":`...), v); err != nil {
			return valErr(err)
		}
		if hasTTL {
			l = strconv.AppendQuote(append(l, `,"expiresAt":`...), time.UnixMilli(exp).UTC().Format(timeFormat))
		}
		l = append(l, '}', '\n')
	} else {
		if l, err = d.kc.text(l, k); err != nil {
			return keyErr(err)
		}
		if l, err = d.vc.text(append(l, '\t'), v); err != nil {
			return valErr(err)
		}
		if hasTTL {
			l = append(append(l, "\texpires "...), time.UnixMilli(exp).UTC().Format(timeFormat)...)
		}
		l = append(l, '\n')
	}
	d.line = l
	_, err = d.w.Write(l)
	return err
}

// autoCodec prints timer namespaces: printable UTF-8 as a string, anything
// else as hex.
var autoCodec, _ = parseCodec("auto")

// printTimer prints one timer of a timer queue: its key, its timestamp
// (milliseconds since 1970, and as a UTC time) and its namespace.
func (d *dumper) printTimer(e dumpEntry, k, raw []byte) error {
	ts, ns, err := state.TimerEntry(raw)
	if err != nil {
		return fmt.Errorf("key group %d, timer queue %q: %w", e.keyGroup, d.o.state, err)
	}
	at := time.UnixMilli(ts).UTC().Format(timeFormat)
	l := d.line[:0]
	if d.o.asJSON {
		l = strconv.AppendInt(append(l, `{"keyGroup":`...), int64(e.keyGroup), 10)
		if l, err = d.kc.json(append(l, `,"key":`...), k); err != nil {
			return fmt.Errorf("key group %d, timer queue %q: cannot decode key %x as %s: %w (wrong --key-codec?)", e.keyGroup, d.o.state, k, d.kc.name, err)
		}
		l = strconv.AppendInt(append(l, `,"timestamp":`...), ts, 10)
		l = strconv.AppendQuote(append(l, `,"time":`...), at)
		if l, err = autoCodec.json(append(l, `,"namespace":`...), ns); err != nil {
			return err
		}
		l = append(l, '}', '\n')
	} else {
		if l, err = d.kc.text(l, k); err != nil {
			return fmt.Errorf("key group %d, timer queue %q: cannot decode key %x as %s: %w (wrong --key-codec?)", e.keyGroup, d.o.state, k, d.kc.name, err)
		}
		l = strconv.AppendInt(append(l, "\ttimer "...), ts, 10)
		l = append(append(append(l, " ("...), at...), ')')
		if len(ns) > 0 {
			if l, err = autoCodec.text(append(l, "\tnamespace "...), ns); err != nil {
				return err
			}
		}
		l = append(l, '\n')
	}
	d.line = l
	_, err = d.w.Write(l)
	return err
}

// mergeCollections turns the entries of a list or map state (one per
// element or map entry, a key's entries together after the stable sort,
// list elements in order) into one entry per key whose value is the whole
// list or map in the encoding of the list:C and map:K:V codecs, so that a
// key prints on one line.
func (d *dumper) mergeCollections() {
	if len(d.entries) == 0 || d.entries[0].kind.String() != "list" && d.entries[0].kind.String() != "map" {
		return
	}
	isMap := d.entries[0].kind.String() == "map"
	buf := make([]byte, 0, len(d.buf)+len(d.entries)*4)
	var out []dumpEntry
	var elems [][]byte
	for i := 0; i < len(d.entries); {
		e := d.entries[i]
		key := d.buf[e.key0:e.val0]
		elems = elems[:0]
		j := i
		for ; j < len(d.entries) && bytes.Equal(d.buf[d.entries[j].key0:d.entries[j].val0], key); j++ {
			elems = append(elems, d.buf[d.entries[j].val0:d.entries[j].end])
		}
		k0 := len(buf)
		buf = append(buf, key...)
		v0 := len(buf)
		buf = binary.AppendUvarint(buf, uint64(len(elems)))
		for _, el := range elems {
			if !isMap {
				buf = binary.AppendUvarint(buf, uint64(len(el)))
				buf = append(buf, el...)
				continue
			}
			// A map entry: uvarint length, map key, map value.
			n, l := binary.Uvarint(el)
			if l <= 0 || n > uint64(len(el)-l) {
				n, l = 0, 0 // malformed: the map codec reports it
			}
			mk, mv := el[l:l+int(n)], el[l+int(n):]
			buf = binary.AppendUvarint(buf, uint64(len(mk)))
			buf = append(buf, mk...)
			buf = binary.AppendUvarint(buf, uint64(len(mv)))
			buf = append(buf, mv...)
		}
		out = append(out, dumpEntry{kind: e.kind, keyGroup: e.keyGroup, key0: k0, val0: v0, end: len(buf)})
		i = j
	}
	d.buf, d.entries = buf, out
}
