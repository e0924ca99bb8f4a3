package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/weirstream/weir/checkpoint"
)

// Opener opens the blob store at a location of its scheme
// ("s3://bucket/prefix?endpoint=..."); ctx bounds the opening (a store may
// check that its bucket exists).
type Opener func(ctx context.Context, location string) (BlobStore, error)

var schemes struct {
	sync.Mutex
	open map[string]Opener
}

// schemePackages names the packages that register the schemes this module
// knows, for the error when a program did not import them.
var schemePackages = map[string]string{
	"s3": "github.com/weirstream/weir/storage/s3",
}

// RegisterScheme makes Open and ResolveRestorePath understand locations
// "<scheme>://...". Packages of blob stores call it from init (package
// storage/s3 registers "s3"), so that the store is linked only into the
// programs that import it. Registering a scheme twice, or file or memory,
// panics.
func RegisterScheme(scheme string, open Opener) {
	schemes.Lock()
	defer schemes.Unlock()
	if open == nil || scheme == "" || scheme == "file" || scheme == "memory" || schemes.open[scheme] != nil {
		panic("storage: RegisterScheme of " + scheme + "://: nil opener, or registered twice")
	}
	if schemes.open == nil {
		schemes.open = map[string]Opener{}
	}
	schemes.open[scheme] = open
}

func schemeOpener(scheme string) (Opener, error) {
	schemes.Lock()
	open := schemes.open[scheme]
	var known []string
	for s := range schemes.open {
		known = append(known, s+"://")
	}
	schemes.Unlock()
	if open != nil {
		return open, nil
	}
	if pkg, ok := schemePackages[scheme]; ok {
		return nil, fmt.Errorf("storage: %s:// needs %s imported (jobflags imports it)", scheme, pkg)
	}
	slices.Sort(known)
	return nil, fmt.Errorf("unsupported checkpoint storage scheme %q (supported: file://, memory://, %sor a plain path)",
		scheme, strings.Join(append(known, ""), ", "))
}

// Open returns the storage at location: "file:///abs/path", a plain path,
// "memory://name", or "<scheme>://..." of a registered scheme, such as
// "s3://bucket/prefix?endpoint=host:port&region=r&insecure=true" with
// package storage/s3 imported.
func Open(ctx context.Context, location string) (*Storage, error) {
	switch {
	case strings.HasPrefix(location, "file://"):
		return NewFile(strings.TrimPrefix(location, "file://"))
	case strings.HasPrefix(location, "memory://"):
		return NewMemory(strings.TrimPrefix(location, "memory://")), nil
	case strings.Contains(location, "://"):
		scheme, _, _ := strings.Cut(location, "://")
		open, err := schemeOpener(scheme)
		if err != nil {
			return nil, fmt.Errorf("cannot open checkpoint storage %s: %w", location, err)
		}
		b, err := open(ctx, location)
		if err != nil {
			return nil, err
		}
		return New(b), nil
	case location == "":
		return nil, errors.New("empty checkpoint storage location")
	}
	return NewFile(location)
}

// ResolveRestorePath finds the checkpoint a restore argument names: a
// checkpoint directory (".../chk-17"), its _metadata file, or a storage root
// (then its latest completed checkpoint). URL-like paths of a registered
// scheme ("s3://bucket/prefix/chk-17?endpoint=...") are resolved the same
// way, their query kept.
func ResolveRestorePath(ctx context.Context, path string) (*Storage, checkpoint.ID, error) {
	if strings.Contains(path, "://") && !strings.HasPrefix(path, "file://") {
		return resolveURL(ctx, path)
	}
	p := strings.TrimPrefix(path, "file://")
	st, err := os.Stat(p)
	if err != nil {
		return nil, 0, fmt.Errorf("cannot restore from %s: %w", path, err)
	}
	if !st.IsDir() {
		if filepath.Base(p) != metadataName {
			return nil, 0, fmt.Errorf("cannot restore from %s: not a checkpoint directory or _metadata file", path)
		}
		p = filepath.Dir(p)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return nil, 0, fmt.Errorf("cannot restore from %s: %w", path, err)
	}
	// A checkpoint directory under another name than its own chk-<id>
	// (a savepoint renamed or copied) is read where it is.
	if dir, err := NewFileStore(abs); err == nil {
		if st, id, found, inPlace, err := relocated(ctx, dir, filepath.Base(abs), path); err != nil {
			return nil, 0, err
		} else if found && !inPlace {
			return st, id, nil
		}
	}
	if id, ok := parseChkDir(filepath.Base(abs)); ok {
		if _, err := os.Stat(filepath.Join(abs, metadataName)); err != nil {
			return nil, 0, fmt.Errorf("cannot restore from %s: checkpoint %d is incomplete (no _metadata)", path, id)
		}
		fs, err := NewFile(filepath.Dir(abs))
		if err != nil {
			return nil, 0, err
		}
		return fs, id, nil
	}
	fs, err := NewFile(abs)
	if err != nil {
		return nil, 0, err
	}
	return latestIn(ctx, fs, path)
}

// resolveURL resolves "scheme://root/chk-N[/_metadata][?query]" to the
// storage at scheme://root?query and checkpoint N, or a storage root to its
// latest checkpoint.
func resolveURL(ctx context.Context, path string) (*Storage, checkpoint.ID, error) {
	loc, query, _ := strings.Cut(path, "?")
	loc = strings.TrimSuffix(strings.TrimSuffix(loc, "/"), "/"+metadataName)
	root, last := loc, ""
	if i := strings.LastIndex(loc, "/"); i > strings.Index(loc, "://")+len("://") {
		root, last = loc[:i], loc[i+1:]
	}
	id, isChk := parseChkDir(last)
	if !isChk {
		root = loc
	}
	if query != "" {
		root += "?" + query
		loc += "?" + query
	}
	// A checkpoint directory under another name than its own chk-<id>
	// (a savepoint copied to another prefix) is read where it is.
	if last != "" {
		if dir, err := Open(ctx, loc); err == nil {
			if st, id, found, inPlace, err := relocated(ctx, dir.store, last, path); err != nil {
				return nil, 0, err
			} else if found && !inPlace {
				return st, id, nil
			}
		}
	}
	st, err := Open(ctx, root)
	if err != nil {
		return nil, 0, fmt.Errorf("cannot restore from %s: %w", path, err)
	}
	if !isChk {
		return latestIn(ctx, st, path)
	}
	if _, err := st.ReadMetadata(ctx, id); err != nil {
		return nil, 0, fmt.Errorf("cannot restore from %s: checkpoint %d: %w", path, id, err)
	}
	return st, id, nil
}

func latestIn(ctx context.Context, st *Storage, path string) (*Storage, checkpoint.ID, error) {
	id, ok, err := st.Latest(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("cannot restore from %s: %w", path, err)
	}
	if !ok {
		return nil, 0, fmt.Errorf("cannot restore from %s: no completed checkpoint in it", path)
	}
	return st, id, nil
}
