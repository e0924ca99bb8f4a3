package weir

import (
	"encoding/binary"
	"errors"
	"testing"
)

// nameTxn is a transaction handle of a name and a part count, and
// nameCommitter encodes it (its other methods are not used here).
type nameTxn struct {
	Name  string
	Parts int
}

type nameCommitter struct {
	TwoPhaseCommitter[int, *nameTxn]
}

func (nameCommitter) EncodeHandle(t *nameTxn) ([]byte, error) {
	return append(binary.AppendUvarint(nil, uint64(t.Parts)), t.Name...), nil
}

func (nameCommitter) DecodeHandle(b []byte) (*nameTxn, error) {
	parts, n := binary.Uvarint(b)
	if n <= 0 || n == len(b) {
		return nil, errors.New("bad handle")
	}
	return &nameTxn{Name: string(b[n:]), Parts: int(parts)}, nil
}

// The two-phase-commit state round-trips as one unit per subtask, and the
// state of checkpoints written before units ('s' and 'h' entries) becomes
// a unit of the restoring subtask and its prefix.
func TestTwoPhaseStateUnits(t *testing.T) {
	c := nameCommitter{}
	w := &twoPhaseWriter[int, *nameTxn]{c: c, ctx: TxnContext{Prefix: "weir-j-u-3", Subtask: 3, Seq: 7}}
	w.pending = append(w.pending, pendingTxn[*nameTxn]{id: 1, txn: &nameTxn{Name: "weir-j-u-3-6", Parts: 2}})
	entries, err := w.SnapshotState(1)
	if err != nil || len(entries) != 1 {
		t.Fatalf("snapshot: %d entries, %v", len(entries), err)
	}
	units, err := decodeTwoPhaseState(entries, c, 0, "other")
	if err != nil || len(units) != 1 {
		t.Fatalf("decode: %v %v", units, err)
	}
	u := units[0]
	if u.subtask != 3 || u.seq != 7 || u.prefix != "weir-j-u-3" || len(u.handles) != 1 || u.handles[0].Name != "weir-j-u-3-6" || u.handles[0].Parts != 2 {
		t.Fatalf("unit %+v", u)
	}

	h, _ := c.EncodeHandle(&nameTxn{Name: "weir-j-u-1-4", Parts: 1})
	legacy := [][]byte{append([]byte{'s'}, binary.AppendVarint(nil, 5)...), append([]byte{'h'}, h...)}
	units, err = decodeTwoPhaseState(legacy, c, 1, "weir-j-u-1")
	if err != nil || len(units) != 1 {
		t.Fatalf("legacy decode: %v %v", units, err)
	}
	if u := units[0]; u.subtask != 1 || u.seq != 5 || u.prefix != "weir-j-u-1" || len(u.handles) != 1 || u.handles[0].Name != "weir-j-u-1-4" {
		t.Fatalf("legacy unit %+v", u)
	}
	for _, bad := range [][]byte{{}, {'u'}, {'u', 1, 2, 9}, {'x'}} {
		if _, err := decodeTwoPhaseState([][]byte{bad}, c, 0, "p"); err == nil {
			t.Errorf("corrupted entry %q decoded without an error", bad)
		}
	}
}
