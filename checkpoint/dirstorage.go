package checkpoint

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// DirStorage is a Storage in a local directory: object a/b/c is the file
// <root>/a/b/c. Put writes a temporary file in the same directory, syncs
// it, renames it over the object and syncs the directory, so an object is
// whole or absent after a crash. Temporary files start with ".tmp-" and are
// never listed.
type DirStorage struct {
	root string
}

var _ Storage = (*DirStorage)(nil)

// NewDirStorage returns the storage in directory root, creating it.
func NewDirStorage(root string) (*DirStorage, error) {
	if root == "" {
		return nil, fmt.Errorf("checkpoint: the checkpoint directory is empty: give a directory (checkpoints.dir)")
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("checkpoint: creating checkpoint directory: %w", err)
	}
	return &DirStorage{root: filepath.Clean(root)}, nil
}

// Root returns the storage's directory.
func (d *DirStorage) Root() string { return d.root }

func (d *DirStorage) String() string { return "dir " + d.root }

const tmpPrefix = ".tmp-"

func (d *DirStorage) path(name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	if strings.HasPrefix(filepath.Base(name), tmpPrefix) {
		return "", fmt.Errorf("checkpoint: object name %q: names starting with %q are reserved", name, tmpPrefix)
	}
	return filepath.Join(d.root, filepath.FromSlash(name)), nil
}

// mkdirs creates dir and its missing parents below the root and syncs the
// directories that got a new entry.
func (d *DirStorage) mkdirs(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	var created []string
	for p := dir; p != d.root && len(p) > len(d.root); p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil {
			break
		}
		created = append(created, p)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, p := range created {
		if err := syncDir(filepath.Dir(p)); err != nil {
			return err
		}
	}
	return nil
}

// Put implements Storage.
func (d *DirStorage) Put(ctx context.Context, name string, r io.Reader) (ObjectInfo, error) {
	p, err := d.path(name)
	if err != nil {
		return ObjectInfo{}, err
	}
	dir := filepath.Dir(p)
	if err := d.mkdirs(dir); err != nil {
		return ObjectInfo{}, fmt.Errorf("checkpoint: %s: %w", d, err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, tmpPrefix+filepath.Base(p)+"-"+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("checkpoint: %s: %w", d, err)
	}
	fail := func(err error) (ObjectInfo, error) {
		f.Close()
		os.Remove(tmp)
		return ObjectInfo{}, err
	}
	n, err := io.Copy(f, ctxReader{ctx, r})
	if err != nil {
		return fail(fmt.Errorf("checkpoint: writing %s to %s: %w", name, d, err))
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("checkpoint: writing %s to %s: %w", name, d, err))
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return ObjectInfo{}, fmt.Errorf("checkpoint: writing %s to %s: %w", name, d, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return ObjectInfo{}, fmt.Errorf("checkpoint: writing %s to %s: %w", name, d, err)
	}
	if err := syncDir(dir); err != nil {
		return ObjectInfo{}, fmt.Errorf("checkpoint: writing %s to %s: %w", name, d, err)
	}
	st, err := os.Stat(p)
	if err != nil {
		return ObjectInfo{}, err
	}
	return ObjectInfo{Name: name, Size: n, ModTime: st.ModTime()}, nil
}

// ctxReader stops a copy when its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Get implements Storage.
func (d *DirStorage) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s in %s", ErrNotFound, name, d)
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: reading %s from %s: %w", name, d, err)
	}
	return f, nil
}

// Stat implements Storage.
func (d *DirStorage) Stat(ctx context.Context, name string) (ObjectInfo, error) {
	p, err := d.path(name)
	if err != nil {
		return ObjectInfo{}, err
	}
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) || err == nil && !st.Mode().IsRegular() {
		return ObjectInfo{}, fmt.Errorf("%w: %s in %s", ErrNotFound, name, d)
	}
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("checkpoint: %s: %w", d, err)
	}
	return ObjectInfo{Name: name, Size: st.Size(), ModTime: st.ModTime()}, nil
}

// List implements Storage.
func (d *DirStorage) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	// Walk the deepest directory every match lies in.
	start := d.root
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = filepath.Join(d.root, filepath.FromSlash(prefix[:i]))
	}
	var out []ObjectInfo
	err := filepath.WalkDir(start, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if e.IsDir() || !e.Type().IsRegular() || strings.HasPrefix(e.Name(), tmpPrefix) {
			return nil
		}
		rel, err := filepath.Rel(d.root, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if !strings.HasPrefix(name, prefix) {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		out = append(out, ObjectInfo{Name: name, Size: info.Size(), ModTime: info.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: listing %s: %w", d, err)
	}
	slices.SortFunc(out, func(a, b ObjectInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Delete implements Storage. Directories left empty are removed.
func (d *DirStorage) Delete(ctx context.Context, name string) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("checkpoint: deleting %s from %s: %w", name, d, err)
	}
	for dir := filepath.Dir(p); dir != d.root && len(dir) > len(d.root); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil { // not empty
			break
		}
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
