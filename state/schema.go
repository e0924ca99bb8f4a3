package state

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/weirstream/weir/checkpoint"
)

// This file is the state schema: the identity of codecs, the schema a
// snapshot records per keyed state (checkpoint.StateMeta), and the check a
// restore makes before it decodes a state (see "State schema" in the
// package documentation).

// VersionedCodec is implemented by a Codec that names its encoding. The
// identity and version are recorded per state in every checkpoint, and a
// restore decodes a state only with a codec of the same identity and
// version (or a MigratingCodec that reads the recorded one). A Codec
// without it is identified by its Go type (fmt's %T) and version 0, so
// renaming or moving that type changes its identity: declare the old one
// with CodecID to keep restoring checkpoints written before.
type VersionedCodec interface {
	// CodecID names the encoding: codecs with the same id read each
	// other's bytes. Keep it stable while checkpoints written with it are
	// kept. The characters ( ) , @ are reserved for composed identities
	// ("list(...)", "map(K,V)", "id@version").
	CodecID() string
	// CodecVersion is the version of the encoding, 0 at first. Bump it
	// when the encoding changes so that old bytes no longer decode as
	// they should; a restore then rejects checkpoints of other versions,
	// unless the codec reads them (MigratingCodec).
	CodecVersion() int
}

// MigratingCodec is a Codec that also reads values another codec, or an
// older version of itself, wrote: a schema migration. When a restored
// state was checkpointed under another identity or version and the codec
// the job registers it with says CanDecodeFrom, the restore decodes the
// stored values with DecodeFrom; later snapshots write them with Append
// (the current encoding). The heap backend migrates as it decodes the
// restored entries; a backend keeping bytes (pebble) rewrites every entry
// of the state when it is registered.
//
// Migration is of values only: keys decide key groups and must keep
// their codec.
type MigratingCodec[T any] interface {
	Codec[T]
	// CanDecodeFrom reports whether DecodeFrom reads values written by
	// the codec with identity id and version version.
	CanDecodeFrom(id string, version int) bool
	// DecodeFrom decodes src, one value written by that codec. Like
	// Decode, it must not keep src after it returns.
	DecodeFrom(id string, version int, src []byte) (T, error)
}

// CodecIdentity returns the identity and version of c's encoding: what it
// declares as a VersionedCodec, else its Go type (%T) and 0. The built-in
// codecs (CodecFor) are identified by encoding and type:
//
//   - signed integers "varint:" and their type ("varint:int64",
//     "varint:int32", ...), unsigned ones "uvarint:" and theirs
//     ("uvarint:uint64", ..., "uvarint:uintptr");
//   - "float64", "float32", "bool", "string", "bytes";
//   - a named type over one of these has the identity of its underlying
//     type: type UserID int64 is "varint:int64", like int64. Both encode
//     the same bytes with the same range, so changing a state between a
//     basic type and a type named over it is compatible; changing the
//     basic type (int64 to int32, int64 to string) is not;
//   - every other type "json:" and its type: "json:main.Order" (package
//     path and name for a named type, reflect's String otherwise, e.g.
//     "json:map[string]int"). JSON decodes a struct with fields added or
//     removed, so such changes keep the identity; renaming or moving the
//     type changes it.
//
// The list and map states compose the identities of their element codecs:
// "list(varint:int64)", "map(string,json:main.Order)", with "@version"
// after an element codec's identity when its version is not 0.
//
// It costs a type switch and possibly reflection: call it when registering
// a state, not per record.
func CodecIdentity[T any](c Codec[T]) (id string, version int) {
	if v, ok := c.(VersionedCodec); ok {
		return v.CodecID(), v.CodecVersion()
	}
	return fmt.Sprintf("%T", c), 0
}

// codecRef formats an identity and version as one string, "id" for
// version 0 and "id@version" otherwise: how composed identities name their
// elements.
func codecRef(id string, version int) string {
	if version == 0 {
		return id
	}
	return id + "@" + strconv.Itoa(version)
}

// parseCodecRef splits "id@version" (or "id") as codecRef formats it.
func parseCodecRef(ref string) (id string, version int) {
	if i := strings.LastIndexByte(ref, '@'); i >= 0 {
		if v, err := strconv.Atoi(ref[i+1:]); err == nil && v > 0 {
			return ref[:i], v
		}
	}
	return ref, 0
}

func refOf[T any](c Codec[T]) string { return codecRef(CodecIdentity(c)) }

// composedArgs returns the arguments of the composed identity
// "name(a,b,...)" (commas inside parentheses do not split), or ok false
// if id is not one with n arguments.
func composedArgs(id, name string, n int) (args []string, ok bool) {
	rest, found := strings.CutPrefix(id, name+"(")
	if !found || !strings.HasSuffix(rest, ")") {
		return nil, false
	}
	rest = rest[:len(rest)-1]
	depth, start := 0, 0
	for i := 0; i < len(rest); i++ {
		switch rest[i] {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				args = append(args, rest[start:i])
				start = i + 1
			}
		}
	}
	args = append(args, rest[start:])
	return args, len(args) == n
}

// typeName names a Go type in codec identities: the package path and
// name of a named type, reflect's String otherwise.
func typeName(t reflect.Type) string {
	if t.Name() != "" && t.PkgPath() != "" {
		return t.PkgPath() + "." + t.Name()
	}
	return t.String()
}

// decoderFrom is implemented by the codecs of this package that compose
// others (list, map, time-to-live): the decoder of values written under
// (id, version), built once, or nil.
type decoderFrom[T any] interface {
	decoderFrom(id string, version int) func([]byte) (T, error)
}

// decoderFor returns how c decodes values written by the codec (id,
// version): c.Decode when that is c's own identity, a migration when c
// reads it (MigratingCodec), nil when it cannot. Call it once per state,
// not per value.
func decoderFor[T any](c Codec[T], id string, version int) func([]byte) (T, error) {
	if cid, cv := CodecIdentity(c); cid == id && cv == version {
		return c.Decode
	}
	if d, ok := c.(decoderFrom[T]); ok {
		return d.decoderFrom(id, version)
	}
	if m, ok := c.(MigratingCodec[T]); ok && m.CanDecodeFrom(id, version) {
		return func(src []byte) (T, error) { return m.DecodeFrom(id, version, src) }
	}
	return nil
}

// decoderForRef is decoderFor of an "id@version" reference.
func decoderForRef[T any](c Codec[T], ref string) func([]byte) (T, error) {
	id, v := parseCodecRef(ref)
	return decoderFor(c, id, v)
}

// stateMeta is the schema of a state registered with codec c, built once
// at registration.
func stateMeta[T any](name string, kind stateKind, c Codec[T], keyID string, keyVersion int) checkpoint.StateMeta {
	id, v := CodecIdentity(c)
	return checkpoint.StateMeta{Name: name, Kind: kind.String(), Codec: id, CodecVersion: v, KeyCodec: keyID, KeyCodecVersion: keyVersion}
}

// SchemaError is a restored state whose recorded schema the job cannot
// read with the codecs it registers: a changed value type without a
// migration, or a changed key type. Restoring the same checkpoint again
// fails the same way; it needs a change of the job.
type SchemaError struct {
	// State is the state's name; empty when the keys are incompatible.
	State string
	// Stored is the schema the checkpoint recorded, Registered the one the
	// job registers.
	Stored, Registered checkpoint.StateMeta
}

// Unwrap makes a schema mismatch checkpoint.ErrIncompatible: restarting
// the job cannot fix it.
func (e *SchemaError) Unwrap() error { return checkpoint.ErrIncompatible }

func (e *SchemaError) Error() string {
	s, r := e.Stored, e.Registered
	if e.State == "" {
		return fmt.Sprintf("the checkpoint's keys have codec %s, this operator's keys have codec %s: the key type changed (keys pick key groups, so a restore needs the key codec of the checkpoint)",
			codecRef(s.KeyCodec, s.KeyCodecVersion), codecRef(r.KeyCodec, r.KeyCodecVersion))
	}
	if s.Codec == r.Codec {
		newer := ""
		if s.CodecVersion > r.CodecVersion {
			newer = " (the checkpoint is newer than the codec)"
		}
		return fmt.Sprintf("state %q was checkpointed with version %d of codec %s, the job registers version %d, which does not read version %d%s: register a codec that reads it (state.MigratingCodec)",
			e.State, s.CodecVersion, s.Codec, r.CodecVersion, s.CodecVersion, newer)
	}
	return fmt.Sprintf("state %q was checkpointed with value codec %s, the job registers it with codec %s: keep the old value type, or register a codec that reads %s (state.MigratingCodec)",
		e.State, codecRef(s.Codec, s.CodecVersion), codecRef(r.Codec, r.CodecVersion), codecRef(s.Codec, s.CodecVersion))
}

// restoreDecoder returns how a state registered as cur, with codec c,
// decodes the values the checkpoint recorded as stored: c.Decode when the
// schemas agree or the checkpoint recorded none, a migration when c reads
// the stored codec (migrate true), else a *SchemaError.
func restoreDecoder[T any](stored, cur checkpoint.StateMeta, c Codec[T]) (dec func([]byte) (T, error), migrate bool, err error) {
	if stored.Codec == "" || stored.Codec == cur.Codec && stored.CodecVersion == cur.CodecVersion {
		return c.Decode, false, nil
	}
	if dec := decoderFor(c, stored.Codec, stored.CodecVersion); dec != nil {
		return dec, true, nil
	}
	return nil, false, &SchemaError{State: cur.Name, Stored: stored, Registered: cur}
}

// checkKeyCodec checks that the keys of the states of a snapshot were
// written with the backend's key codec (ref). States without a recorded
// key codec are not checked.
func checkKeyCodec(states []checkpoint.StateMeta, keyID string, keyVersion int) error {
	for _, m := range states {
		if m.KeyCodec != "" && (m.KeyCodec != keyID || m.KeyCodecVersion != keyVersion) {
			return &SchemaError{Stored: m, Registered: checkpoint.StateMeta{KeyCodec: keyID, KeyCodecVersion: keyVersion}}
		}
	}
	return nil
}

// wrongKeyGroupError is a restored key that does not hash into the key
// group it was found in: the max parallelism or the key type changed, or
// the snapshot is corrupted. It shows the key as Go syntax and as bytes, so
// that a key the key codec decoded into nonsense is still visible.
func wrongKeyGroupError(state string, key any, enc []byte, keyID string, got, in int) error {
	return fmt.Errorf("state %q: key %#v (encoded %x, read with key codec %s) belongs to key group %d, found in %d (did the max parallelism or the key type change?)", state, key, enc, keyID, got, in)
}

// mergeStored adds the state schemas of one restored handle to stored.
// Handles of one checkpoint agree on a state's schema (subtasks of one
// job); a state recorded differently by two of them is an error, since
// its entries would be decoded as one.
func mergeStored(stored map[string]checkpoint.StateMeta, states []checkpoint.StateMeta) error {
	for _, m := range states {
		if old, ok := stored[m.Name]; ok {
			if old != m {
				return fmt.Errorf("state %q has codec %s (%s state, keys %s) in one snapshot and codec %s (%s state, keys %s) in another",
					m.Name, codecRef(old.Codec, old.CodecVersion), old.Kind, codecRef(old.KeyCodec, old.KeyCodecVersion),
					codecRef(m.Codec, m.CodecVersion), m.Kind, codecRef(m.KeyCodec, m.KeyCodecVersion))
			}
			continue
		}
		stored[m.Name] = m
	}
	return nil
}

// SnapshotStates returns the state schema s records (nil if it records
// none): whoever builds the checkpoint.KeyedStateHandle of a key-group
// stream puts it into States. A HandleWriter sets States itself.
func SnapshotStates(s KeyedSnapshot) []checkpoint.StateMeta {
	if r, ok := s.(interface{ states() []checkpoint.StateMeta }); ok {
		return r.states()
	}
	return nil
}

func sortMetas(ms []checkpoint.StateMeta) []checkpoint.StateMeta {
	sort.Slice(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
	return ms
}
