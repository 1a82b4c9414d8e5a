package pebble

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"

	"github.com/wasmstream/wasmstream/statestore"
	"github.com/wasmstream/wasmstream/statestore/internal/core"
)

// Snapshots
//
// A snapshot is incremental: Pebble's tables (.sst) and blob files (.blob)
// never change once written, so a checkpoint stores each of them once, in
// the checkpoint store's shared area, and later checkpoints refer to the
// ones they still need. Only the files written since the previous
// checkpoint are stored, plus the small per-checkpoint files (MANIFEST,
// OPTIONS, markers, and the write-ahead log, which holds no writes after the
// flush; see snapshot_wal.go).
//
// Each worker's capture (Snapshot.Capture, then Step) writes back the
// records that were dirty at its barrier and commits the timer writes
// buffered then; until Write has copied the database, the key groups'
// later writes stay in the cache and in an indexed timer batch that reads
// go through, so the database holds every key group as of its barrier.
// Write then flushes Pebble's memtable into a table and lets Pebble make a
// checkpoint of the database, a directory of hard links in
// SnapshotDir(dir), releases the held writes, and stores what is new while
// the workers go on.
//
// # File identity
//
// A shared file's name is "<instance>-<local name>", e.g.
// "5f0c…e1-000123.sst": Pebble numbers the files of one database uniquely
// and never reuses a number, and the instance, a random 96-bit id in the
// state directory's file InstanceFile, tells databases apart. The instance
// lives beside the database, not in it, because the database's content is
// what checkpoints copy: a database restored from a checkpoint gets a new
// instance, and InstanceFile maps the files it inherited to the shared names
// they were stored under, so they are not stored again; the files it writes
// itself carry its new instance, so they cannot take the name of a file the
// original database writes later. Copying a state directory by hand copies
// its instance: restore through a checkpoint instead.
//
// # Local recovery
//
// After Write, the snapshot's directory of hard links stays in SnapshotDir
// (the newest one only), with its handle in SnapshotHandleFile. Restore
// takes every file of the checkpoint it finds there or in the state
// directory itself (a shared file by its shared name and size, a private
// file by name, size and checksum) by hard link, and downloads the others,
// so restoring the last checkpoint on the same machine downloads nothing.
//
// # Durable format, version 1
//
// This is a durable format. Backwards incompatible changes are gated behind
// a new format version. A snapshot is the set of files of a Pebble
// checkpoint of a database in the layout of the package documentation
// (format version 1); its handle names each file with its local name,
// shared name, size and SHA-256. InstanceFile and SnapshotHandleFile are
// JSON objects with a "format" field (1).

// SnapshotFormat is the version of the snapshot format this package writes
// and the only one it restores.
const SnapshotFormat = 1

// BackendKind is the name of this backend in snapshot handles.
const BackendKind = "pebble"

// InstanceFile is the file in a state directory that holds the database's
// instance id and the shared names of the files it inherited.
const InstanceFile = "WASMSTREAM-INSTANCE"

// SnapshotHandleFile is the file in a local snapshot directory that holds
// its handle, written once its files are stored.
const SnapshotHandleFile = "WASMSTREAM-SNAPSHOT"

// SnapshotDir returns the directory that keeps the local snapshots of the
// state directory dir: beside it, on the same filesystem, so that
// snapshots are hard links.
func SnapshotDir(dir string) string { return filepath.Clean(dir) + ".snapshots" }

// instanceInfo is the content of InstanceFile.
type instanceInfo struct {
	Format   int    `json:"format"`
	Instance string `json:"instance"`
	// Inherited maps the local names of files restored from a checkpoint
	// to the shared names they are stored under.
	Inherited map[string]string `json:"inherited,omitempty"`
}

// snapState is the Backend's snapshot bookkeeping.
type snapState struct {
	inst instanceInfo
	mu   sync.Mutex
	seq  int
	kept string // the newest written local snapshot directory
}

func newInstanceID() string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b[:])
}

// initSnapshots reads the instance of the state directory, giving it one
// when it has none, and removes local snapshots that were never written.
func (b *Backend) initSnapshots() error {
	p := filepath.Join(b.dir, InstanceFile)
	data, err := os.ReadFile(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		b.snaps.inst = instanceInfo{Format: SnapshotFormat, Instance: newInstanceID()}
		if err := writeFileAtomic(p, mustJSON(b.snaps.inst)); err != nil {
			return fmt.Errorf("wasmstream: state directory %s: writing %s: %w", b.dir, InstanceFile, err)
		}
	case err != nil:
		return fmt.Errorf("wasmstream: state directory %s: reading %s: %w", b.dir, InstanceFile, err)
	default:
		if err := json.Unmarshal(data, &b.snaps.inst); err != nil || b.snaps.inst.Instance == "" {
			return fmt.Errorf("wasmstream: state directory %s: %s is damaged (%v): delete the file to give the database a new instance id (its next checkpoint then stores every file again)", b.dir, InstanceFile, err)
		}
		if b.snaps.inst.Format != SnapshotFormat {
			return fmt.Errorf("wasmstream: state directory %s: %s has format version %d; this wasmstream supports version %d only", b.dir, InstanceFile, b.snaps.inst.Format, SnapshotFormat)
		}
	}
	entries, err := os.ReadDir(SnapshotDir(b.dir))
	if err != nil {
		return nil // none yet
	}
	for _, e := range entries {
		d := filepath.Join(SnapshotDir(b.dir), e.Name())
		if _, err := os.Stat(filepath.Join(d, SnapshotHandleFile)); err != nil {
			_ = os.RemoveAll(d)
		}
	}
	return nil
}

// Instance returns the database's instance id.
func (b *Backend) Instance() string { return b.snaps.inst.Instance }

// sharedName returns the shared name of the table or blob file local.
func (inst *instanceInfo) sharedName(local string) string {
	if s, ok := inst.Inherited[local]; ok {
		return s
	}
	return inst.Instance + "-" + local
}

// isShared reports whether the file local of a database never changes once
// written (so checkpoints may share it).
func isShared(local string) bool {
	return strings.HasSuffix(local, ".sst") || strings.HasSuffix(local, ".blob")
}

var _ statestore.Snapshotter = (*Backend)(nil)

// Snapshot implements statestore.Snapshotter. Every key group must be
// captured before Write. From its capture until Write has copied the
// database (or Release), nothing a key group writes after its barrier
// reaches the database: its cache and timer writes wait in memory.
func (b *Backend) Snapshot() (statestore.Snapshot, error) {
	if b.closed {
		return nil, fmt.Errorf("wasmstream: snapshot of a closed state backend")
	}
	n := len(b.timers.groups)
	return &snapshot{
		b:        b,
		epoch:    b.NewEpoch(),
		captured: make([]bool, n),
		handle: statestore.SnapshotHandle{
			Backend:        BackendKind,
			Format:         SnapshotFormat,
			MaxParallelism: n,
			KeyGroups:      []statestore.KeyGroupRange{{First: 0, Last: uint16(n - 1)}},
			States:         statestore.StateNames(b.States()),
			Instance:       b.snaps.inst.Instance,
		},
	}, nil
}

type snapshot struct {
	b        *Backend
	epoch    uint32
	mu       sync.Mutex
	captured []bool // by key group
	caps     []*capture
	dir      string
	handle   statestore.SnapshotHandle
	written  bool
	done     bool
}

// capture is the capture of some key groups: the state engine's write-back
// of the records dirty at the barrier, then the commit of the timer writes
// buffered at the barrier, one key group per Step.
type capture struct {
	b    *Backend
	c    *core.Capture
	kgs  []uint16
	next int // timer batches of kgs[next:] are not committed yet
	done atomic.Bool
	err  error
}

// Capture implements statestore.Snapshot.
func (s *snapshot) Capture(kgs []uint16) (statestore.Capture, error) {
	b := s.b
	n := len(b.timers.groups)
	if kgs == nil {
		kgs = statestore.AllKeyGroups(n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return nil, fmt.Errorf("wasmstream: capture for a pebble snapshot already written or released")
	}
	for _, kg := range kgs {
		if int(kg) >= n {
			return nil, fmt.Errorf("wasmstream: snapshot of key group %d: the backend has %d key groups", kg, n)
		}
		if s.captured[kg] {
			return nil, fmt.Errorf("wasmstream: key group %d is captured twice in one snapshot", kg)
		}
	}
	kgs = slices.Clone(kgs)
	c, err := b.BeginCapture(s.epoch, kgs, nil)
	if err != nil {
		return nil, err
	}
	cp := &capture{b: b, c: c, kgs: kgs}
	for _, kg := range kgs {
		if err := b.freezeTimers(kg, s.epoch); err != nil {
			cp.Abandon()
			return nil, err
		}
	}
	for _, kg := range kgs {
		s.captured[kg] = true
	}
	s.caps = append(s.caps, cp)
	return cp, nil
}

// Step implements statestore.Capture.
func (c *capture) Step(budget int) (bool, error) {
	if c.err != nil {
		return false, c.err
	}
	if !c.c.Done() {
		done, err := c.c.Step(budget)
		if err != nil {
			c.err = err
			return false, err
		}
		if !done {
			return false, nil
		}
		budget = max(budget/2, 1)
	}
	for c.next < len(c.kgs) && budget > 0 {
		n, err := c.b.commitFrozenTimers(c.kgs[c.next])
		if err != nil {
			c.err = err
			return false, err
		}
		c.next++
		budget -= max(n, 1)
	}
	if c.next < len(c.kgs) {
		return false, nil
	}
	c.done.Store(true)
	return true, nil
}

// Abandon implements statestore.Capture: the key groups' timer writes
// buffered at the barrier are committed, and the records not yet written
// back are dirty again.
func (c *capture) Abandon() {
	c.c.Abandon()
	for ; c.next < len(c.kgs); c.next++ {
		if _, err := c.b.commitFrozenTimers(c.kgs[c.next]); err != nil && c.err == nil {
			c.err = err
		}
	}
	if c.err == nil {
		c.err = fmt.Errorf("wasmstream: state snapshot: the capture was abandoned")
	}
}

// checkpoint copies the database, which holds every key group as of its
// barrier, to a new local snapshot directory, and lets the held writes go.
func (s *snapshot) checkpoint() error {
	b := s.b
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return fmt.Errorf("wasmstream: pebble snapshot written twice or after Release")
	}
	s.done = true
	defer b.ReleaseWrites(s.epoch)
	for kg, ok := range s.captured {
		if !ok {
			return fmt.Errorf("wasmstream: a pebble snapshot covers all %d key groups of its database: key group %d was not captured", len(s.captured), kg)
		}
	}
	for _, c := range s.caps {
		if !c.done.Load() {
			return fmt.Errorf("wasmstream: pebble snapshot written before its captures are done")
		}
	}
	// The counts include what calls after the barrier changed: they are
	// statistics, which a restore only reports.
	if err := b.SaveStats(); err != nil {
		return fmt.Errorf("wasmstream: state snapshot: %w", err)
	}
	if err := b.saveTimerCount(); err != nil {
		return fmt.Errorf("wasmstream: state snapshot: %w", err)
	}
	if err := b.db.Flush(); err != nil {
		return fmt.Errorf("wasmstream: state snapshot: flushing the memtable: %w", err)
	}
	b.snaps.mu.Lock()
	b.snaps.seq++
	dir := filepath.Join(SnapshotDir(b.dir), fmt.Sprintf("snap-%s-%06d", b.snaps.inst.Instance, b.snaps.seq))
	b.snaps.mu.Unlock()
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("wasmstream: state snapshot: %w", err)
	}
	s.dir = dir
	if err := b.db.Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
		return fmt.Errorf("wasmstream: state snapshot to %s: %w", dir, err)
	}
	if err := trimWALs(dir, b.db.Metrics().WAL.Files <= 1); err != nil {
		return fmt.Errorf("wasmstream: state snapshot: %w", err)
	}
	return nil
}

// Write implements statestore.Snapshot. Files the target already holds are
// not stored again.
func (s *snapshot) Write(ctx context.Context, t statestore.SnapshotTarget) (statestore.SnapshotHandle, error) {
	if err := s.checkpoint(); err != nil {
		return statestore.SnapshotHandle{}, err
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return statestore.SnapshotHandle{}, fmt.Errorf("wasmstream: state snapshot: %w", err)
	}
	h := s.handle
	inst := &s.b.snaps.inst
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == SnapshotHandleFile {
			continue
		}
		local := e.Name()
		path := filepath.Join(s.dir, local)
		var fh statestore.FileHandle
		if isShared(local) {
			name := inst.sharedName(local)
			info, err := e.Info()
			if err != nil {
				return h, err
			}
			if k, ok := t.Known(name); ok {
				if k.Size != info.Size() {
					return h, fmt.Errorf("wasmstream: state snapshot: %s has %d bytes, the stored shared file %s has %d: two databases share the instance id %s (was the state directory copied?): delete %s in one of them to give it a new id", path, info.Size(), name, k.Size, inst.Instance, InstanceFile)
				}
				k.Local = local
				h.Files = append(h.Files, k)
				continue
			}
			fh, err = writeFile(ctx, t, path, name, true)
			if err != nil {
				return h, err
			}
			fh.Local = local
		} else {
			if fh, err = writeFile(ctx, t, path, local, false); err != nil {
				return h, err
			}
		}
		h.Files = append(h.Files, fh)
	}
	slices.SortFunc(h.Files, func(x, y statestore.FileHandle) int { return strings.Compare(x.LocalName(), y.LocalName()) })
	if err := writeFileAtomic(filepath.Join(s.dir, SnapshotHandleFile), mustJSON(h)); err != nil {
		return h, fmt.Errorf("wasmstream: state snapshot: %w", err)
	}
	s.written = true
	s.b.snaps.keep(s.b.dir, s.dir)
	return h, nil
}

func writeFile(ctx context.Context, t statestore.SnapshotTarget, path, name string, shared bool) (statestore.FileHandle, error) {
	f, err := os.Open(path)
	if err != nil {
		return statestore.FileHandle{}, fmt.Errorf("wasmstream: state snapshot: %w", err)
	}
	defer f.Close()
	return t.Write(ctx, name, shared, f)
}

// keep makes dir the local snapshot kept for local recovery and removes the
// other local snapshots of the state directory.
func (ss *snapState) keep(stateDir, dir string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.kept = dir
	entries, _ := os.ReadDir(SnapshotDir(stateDir))
	for _, e := range entries {
		d := filepath.Join(SnapshotDir(stateDir), e.Name())
		if d == dir {
			continue
		}
		// A snapshot still being written has no handle file yet: leave it
		// to its Release.
		if _, err := os.Stat(filepath.Join(d, SnapshotHandleFile)); err == nil {
			_ = os.RemoveAll(d)
		}
	}
}

// Release implements statestore.Snapshot: a snapshot that was not written
// is deleted; a written one stays for local recovery until a newer one is
// written.
func (s *snapshot) Release() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = true
	s.b.ReleaseWrites(s.epoch)
	if s.written || s.dir == "" {
		return nil
	}
	return os.RemoveAll(s.dir)
}

// RestoreStats counts how Restore got the files of a snapshot.
type RestoreStats struct {
	Files           int   // files of the snapshot
	Linked          int   // found on the local disk and hard-linked
	LinkedBytes     int64 //
	Downloaded      int   // read through the SnapshotSource
	DownloadedBytes int64
}

// Restore replaces the state directory dir with the database of the
// snapshot h and opens it for cfg. Files found on the local disk (see Local
// recovery in the package documentation) are hard-linked, the others read
// through src, which checks their checksums. The restored database gets a
// new instance id. No backend may have dir open. On error dir is left as it
// was.
func Restore(ctx context.Context, dir string, cfg statestore.Config, o Options, h statestore.SnapshotHandle, src statestore.SnapshotSource) (*Backend, RestoreStats, error) {
	var stats RestoreStats
	if h.Backend != BackendKind {
		return nil, stats, fmt.Errorf("wasmstream: a %q snapshot cannot be restored into the pebble backend: restore it with the %s backend (state.backend)", h.Backend, h.Backend)
	}
	if h.Format != SnapshotFormat {
		return nil, stats, fmt.Errorf("wasmstream: pebble snapshot format version %d; this wasmstream restores version %d only: restore it with the wasmstream that wrote it", h.Format, SnapshotFormat)
	}
	if h.MaxParallelism != cfg.MaxParallelism {
		return nil, stats, fmt.Errorf("wasmstream: the snapshot has %d key groups (max_parallelism), the job has %d: keys would land in other key groups; keep max_parallelism %d", h.MaxParallelism, cfg.MaxParallelism, h.MaxParallelism)
	}
	if err := statestore.CheckStates(h.States, statestore.StateNames(cfg.States)); err != nil {
		return nil, stats, err
	}
	dir = filepath.Clean(dir)
	local := localFiles(dir)
	tmp := dir + ".restoring"
	if err := os.RemoveAll(tmp); err != nil {
		return nil, stats, fmt.Errorf("wasmstream: restore: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, stats, fmt.Errorf("wasmstream: restore: %w", err)
	}
	fail := func(err error) (*Backend, RestoreStats, error) {
		_ = os.RemoveAll(tmp)
		return nil, stats, err
	}
	inst := instanceInfo{Format: SnapshotFormat, Instance: newInstanceID(), Inherited: map[string]string{}}
	for _, f := range h.Files {
		name := f.LocalName()
		if name != filepath.Base(name) || name == "." || name == ".." || name == InstanceFile || name == SnapshotHandleFile {
			return fail(fmt.Errorf("%w: the handle names a file %q outside the database directory", statestore.ErrSnapshotCorrupt, name))
		}
		dst := filepath.Join(tmp, name)
		stats.Files++
		if f.Shared {
			inst.Inherited[name] = f.Name
		}
		if p, ok := local.find(f); ok && os.Link(p, dst) == nil {
			stats.Linked++
			stats.LinkedBytes += f.Size
			continue
		}
		if err := download(ctx, src, f, dst); err != nil {
			return fail(err)
		}
		stats.Downloaded++
		stats.DownloadedBytes += f.Size
	}
	if err := writeFileAtomic(filepath.Join(tmp, InstanceFile), mustJSON(inst)); err != nil {
		return fail(fmt.Errorf("wasmstream: restore: %w", err))
	}
	if err := syncDir(tmp); err != nil {
		return fail(fmt.Errorf("wasmstream: restore: %w", err))
	}
	old := dir + ".old"
	if err := os.RemoveAll(old); err != nil {
		return fail(fmt.Errorf("wasmstream: restore: %w", err))
	}
	hadDir := false
	if _, err := os.Stat(dir); err == nil {
		hadDir = true
		if err := os.Rename(dir, old); err != nil {
			return fail(fmt.Errorf("wasmstream: restore: moving the old state directory aside: %w", err))
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		if hadDir {
			_ = os.Rename(old, dir)
		}
		return fail(fmt.Errorf("wasmstream: restore: %w", err))
	}
	_ = syncDir(filepath.Dir(dir))
	if hadDir {
		_ = os.RemoveAll(old)
	}
	b, err := Open(dir, cfg, o)
	if err != nil {
		return nil, stats, err
	}
	return b, stats, nil
}

// download writes the content of f, read through src, to the new file dst
// and syncs it.
func download(ctx context.Context, src statestore.SnapshotSource, f statestore.FileHandle, dst string) error {
	rc, err := src.Open(ctx, f)
	if err != nil {
		return err
	}
	defer rc.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("wasmstream: restore: %w", err)
	}
	if _, err := io.Copy(out, rc); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("wasmstream: restore: %w", err)
	}
	return out.Close()
}

// localSet is what Restore can take from the local disk.
type localSet struct {
	shared  map[string]localFile // by shared name
	private map[string]localFile // by name and checksum
}

type localFile struct {
	path string
	size int64
}

func (l *localSet) find(f statestore.FileHandle) (string, bool) {
	var lf localFile
	var ok bool
	if f.Shared {
		lf, ok = l.shared[f.Name]
	} else {
		lf, ok = l.private[f.Name+"\x00"+f.SHA256]
	}
	if !ok || lf.size != f.Size {
		return "", false
	}
	if st, err := os.Stat(lf.path); err != nil || st.Size() != f.Size {
		return "", false
	}
	if !f.Shared {
		// Private files are small: check their content.
		if sum, err := fileSHA256(lf.path); err != nil || sum != f.SHA256 {
			return "", false
		}
	}
	return lf.path, true
}

// localFiles lists the files of the state directory dir and of its local
// snapshots that Restore may link instead of downloading.
func localFiles(dir string) *localSet {
	l := &localSet{shared: map[string]localFile{}, private: map[string]localFile{}}
	if data, err := os.ReadFile(filepath.Join(dir, InstanceFile)); err == nil {
		var inst instanceInfo
		if json.Unmarshal(data, &inst) == nil && inst.Instance != "" {
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if info, err := e.Info(); err == nil && e.Type().IsRegular() && isShared(e.Name()) {
					l.shared[inst.sharedName(e.Name())] = localFile{filepath.Join(dir, e.Name()), info.Size()}
				}
			}
		}
	}
	snaps, _ := os.ReadDir(SnapshotDir(dir))
	for _, s := range snaps {
		d := filepath.Join(SnapshotDir(dir), s.Name())
		data, err := os.ReadFile(filepath.Join(d, SnapshotHandleFile))
		if err != nil {
			continue
		}
		var h statestore.SnapshotHandle
		if json.Unmarshal(data, &h) != nil {
			continue
		}
		for _, f := range h.Files {
			lf := localFile{filepath.Join(d, f.LocalName()), f.Size}
			if f.Shared {
				l.shared[f.Name] = lf
			} else {
				l.private[f.Name+"\x00"+f.SHA256] = lf
			}
		}
	}
	return l
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func mustJSON(v any) []byte {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(err)
	}
	return append(data, '\n')
}

// writeFileAtomic writes path through a synced temporary file renamed over
// it, and syncs the directory.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// maxManifestBytes bounds Pebble's MANIFEST, which every snapshot stores.
const maxManifestBytes = 4 << 20

// Compact writes back the cache and compacts the whole database into its
// bottom level. A checkpoint taken after it stores one set of tables that
// later checkpoints share for as long as the keys in them do not change.
// No call on the backend may be in progress.
func (b *Backend) Compact(ctx context.Context) error {
	if err := b.Flush(); err != nil {
		return err
	}
	if err := b.db.Compact(ctx, []byte{0}, []byte{0xff, 0xff, 0xff}, true); err != nil {
		return fmt.Errorf("wasmstream: compacting state directory %s: %w", b.dir, err)
	}
	return nil
}
