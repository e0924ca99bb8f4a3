package ha

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/weirstream/weir/checkpoint"
)

// pointerVersion is the version of the JSON encoding of a Pointer in etcd.
const pointerVersion = 1

// Pointer names the latest completed checkpoint of a job.
type Pointer struct {
	ID checkpoint.ID
	// Location is where the checkpoint lives, e.g. the URL of its directory
	// in checkpoint storage ("s3://bucket/jobs/wordcount/chk-17").
	Location string
}

// pointerJSON is the stored form of a Pointer (version 1).
type pointerJSON struct {
	Version  int    `json:"version"`
	ID       int64  `json:"id"`
	Location string `json:"location"`
}

func encodePointer(p Pointer) string {
	b, err := json.Marshal(pointerJSON{Version: pointerVersion, ID: int64(p.ID), Location: p.Location})
	if err != nil {
		panic(err) // a struct of an int and a string always marshals
	}
	return string(b)
}

func decodePointer(b []byte) (Pointer, error) {
	var pj pointerJSON
	if err := json.Unmarshal(b, &pj); err != nil {
		return Pointer{}, err
	}
	if pj.Version != pointerVersion {
		return Pointer{}, fmt.Errorf("unsupported version %d (want %d)", pj.Version, pointerVersion)
	}
	p := Pointer{ID: checkpoint.ID(pj.ID), Location: pj.Location}
	if err := checkPointer(p); err != nil {
		return Pointer{}, err
	}
	return p, nil
}

func checkPointer(p Pointer) error {
	if p.ID < 1 {
		return fmt.Errorf("checkpoint id %d is not positive", p.ID)
	}
	if p.Location == "" {
		return fmt.Errorf("checkpoint %d has an empty location", p.ID)
	}
	return nil
}

// NextCheckpointID hands out the next checkpoint id of the job: one more than
// the last id handed out by any leader of the job, starting at 1. Ids never
// repeat, also across leaders; a deposed leader gets ErrNotLeader. Gaps are
// possible (an id handed out to a leader that then died).
func (l *Leadership) NextCheckpointID(ctx context.Context) (checkpoint.ID, error) {
	key := l.svc.counterKey(l.job)
	for {
		kv, err := l.fencedGet(ctx, key)
		if err != nil {
			return 0, fmt.Errorf("cannot read checkpoint id counter of job %q at %s: %w", l.job, key, err)
		}
		var last, modRev int64
		if kv != nil {
			last, err = strconv.ParseInt(string(kv.Value), 10, 64)
			if err != nil || last < 0 {
				return 0, fmt.Errorf("cannot read checkpoint id counter of job %q: key %s holds %q, not a non-negative integer", l.job, key, kv.Value)
			}
			modRev = kv.ModRevision
		}
		next := last + 1
		ok, err := l.fencedPut(ctx, key, modRev, strconv.FormatInt(next, 10))
		if err != nil {
			return 0, fmt.Errorf("cannot advance checkpoint id counter of job %q at %s to %d: %w", l.job, key, next, err)
		}
		if ok {
			return checkpoint.ID(next), nil
		}
		// Another call on this leadership advanced the counter: read again.
	}
}

// SetLatestCheckpoint records p as the latest completed checkpoint of the
// job. The pointer only moves forward: an id lower than the recorded one
// fails with ErrOlderCheckpoint, the recorded id with another location fails
// too, and the recorded pointer itself is accepted again (a retry). A deposed
// leader gets ErrNotLeader.
func (l *Leadership) SetLatestCheckpoint(ctx context.Context, p Pointer) error {
	if err := checkPointer(p); err != nil {
		return fmt.Errorf("cannot set latest checkpoint of job %q: %w", l.job, err)
	}
	key := l.svc.pointerKey(l.job)
	for {
		cur, modRev, err := l.readPointer(ctx, key)
		if err != nil {
			return fmt.Errorf("cannot set latest checkpoint of job %q to %d: %w", l.job, p.ID, err)
		}
		if modRev != 0 {
			switch {
			case cur.ID > p.ID:
				return fmt.Errorf("cannot set latest checkpoint of job %q to %d: %w %d at %s", l.job, p.ID, ErrOlderCheckpoint, cur.ID, key)
			case cur.ID == p.ID && cur.Location == p.Location:
				return nil
			case cur.ID == p.ID:
				return fmt.Errorf("cannot set latest checkpoint of job %q to %d at %q: %s already records it at %q", l.job, p.ID, p.Location, key, cur.Location)
			}
		}
		ok, err := l.fencedPut(ctx, key, modRev, encodePointer(p))
		if err != nil {
			return fmt.Errorf("cannot set latest checkpoint of job %q to %d at %s: %w", l.job, p.ID, key, err)
		}
		if ok {
			return nil
		}
		// Another call on this leadership moved the pointer: read again.
	}
}

// LatestCheckpoint returns the latest completed checkpoint recorded by any
// leader of the job; ok is false if none was recorded. A deposed leader gets
// ErrNotLeader.
func (l *Leadership) LatestCheckpoint(ctx context.Context) (p Pointer, ok bool, err error) {
	key := l.svc.pointerKey(l.job)
	p, modRev, err := l.readPointer(ctx, key)
	if err != nil {
		return Pointer{}, false, fmt.Errorf("cannot read latest checkpoint of job %q: %w", l.job, err)
	}
	return p, modRev != 0, nil
}

// readPointer reads the pointer at key under the fence; modRev is 0 if the
// key is absent.
func (l *Leadership) readPointer(ctx context.Context, key string) (Pointer, int64, error) {
	kv, err := l.fencedGet(ctx, key)
	if err != nil {
		return Pointer{}, 0, err
	}
	if kv == nil {
		return Pointer{}, 0, nil
	}
	p, err := decodePointer(kv.Value)
	if err != nil {
		return Pointer{}, 0, fmt.Errorf("cannot decode pointer at %s: %w", key, err)
	}
	return p, kv.ModRevision, nil
}
