package checkpoint

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmstream/wasmstream/statestore"
)

// Verify is how much of a checkpoint Store.Latest checks before it trusts
// it.
type Verify int

const (
	// VerifyChecksums reads every file and checks its size and SHA-256.
	VerifyChecksums Verify = iota
	// VerifySizes checks that every file exists with its size; the
	// checksums are then checked as a restore reads the files (see
	// Store.RestoreLatest).
	VerifySizes
)

// DefaultRetain is the number of complete checkpoints a Store keeps by
// default.
const DefaultRetain = 3

// Options configure a Store.
type Options struct {
	// Retain is how many complete checkpoints are kept; 0 means
	// DefaultRetain.
	Retain int
	// Verify is what Latest checks of a checkpoint.
	Verify Verify
	// Logf receives warnings (a damaged checkpoint skipped, a retention
	// that failed); nil drops them.
	Logf func(format string, args ...any)
}

// Store keeps the checkpoints of one job in a Storage, in the layout of the
// package documentation. It is safe for concurrent use; one process at a
// time may write a job's checkpoints.
type Store struct {
	st  Storage
	job string
	o   Options

	mu      sync.Mutex
	pending map[uint64]*Pending
	lastID  uint64
}

// ErrNoCheckpoint is returned by Latest and RestoreLatest when the job has
// no complete checkpoint that verifies.
var ErrNoCheckpoint = errors.New("checkpoint: no complete checkpoint")

const (
	metadataName = "_metadata"
	sharedDir    = "shared"
)

// NewStore returns the store of job's checkpoints in st.
func NewStore(st Storage, job string, o Options) (*Store, error) {
	if job == "" || strings.ContainsAny(job, "/\\") || job == "." || job == ".." || job == sharedDir {
		return nil, fmt.Errorf("checkpoint: job name %q cannot name a checkpoint folder: use a name without \"/\"", job)
	}
	if o.Retain < 0 {
		return nil, fmt.Errorf("checkpoint: retain %d checkpoints: must be at least 1 (0 means %d)", o.Retain, DefaultRetain)
	}
	if o.Retain == 0 {
		o.Retain = DefaultRetain
	}
	return &Store{st: st, job: job, o: o, pending: map[uint64]*Pending{}}, nil
}

// Storage returns the store's storage.
func (s *Store) Storage() Storage { return s.st }

func (s *Store) warnf(format string, args ...any) {
	if s.o.Logf != nil {
		s.o.Logf(format, args...)
	}
}

func (s *Store) chkDir(id uint64) string { return s.job + "/chk-" + strconv.FormatUint(id, 10) }

func (s *Store) metadataPath(id uint64) string { return s.chkDir(id) + "/" + metadataName }

func (s *Store) sharedPath(name string) string { return s.job + "/" + sharedDir + "/" + name }

func (s *Store) privatePath(id uint64, part, name string) string {
	return s.chkDir(id) + "/" + part + "/" + name
}

// objectPath returns where file f of part is stored in checkpoint id.
func (s *Store) objectPath(id uint64, part string, f statestore.FileHandle) string {
	if f.Shared {
		return s.sharedPath(f.Name)
	}
	return s.privatePath(id, part, f.Name)
}

// chkObjects are the objects of one checkpoint folder.
type chkObjects struct {
	id      uint64
	objects []ObjectInfo
	hasMeta bool
}

// scan lists the job's checkpoint folders by id and its shared files.
func (s *Store) scan(ctx context.Context) (map[uint64]*chkObjects, []ObjectInfo, error) {
	objs, err := s.st.List(ctx, s.job+"/")
	if err != nil {
		return nil, nil, err
	}
	chks := map[uint64]*chkObjects{}
	var shared []ObjectInfo
	for _, o := range objs {
		rest := strings.TrimPrefix(o.Name, s.job+"/")
		top, sub, _ := strings.Cut(rest, "/")
		if top == sharedDir {
			shared = append(shared, o)
			continue
		}
		idText, ok := strings.CutPrefix(top, "chk-")
		if !ok {
			continue
		}
		id, err := strconv.ParseUint(idText, 10, 64)
		if err != nil || strconv.FormatUint(id, 10) != idText {
			continue
		}
		c := chks[id]
		if c == nil {
			c = &chkObjects{id: id}
			chks[id] = c
		}
		c.objects = append(c.objects, o)
		if sub == metadataName {
			c.hasMeta = true
		}
	}
	return chks, shared, nil
}

// completeIDs returns the ids of the checkpoints with metadata, newest
// first.
func completeIDs(chks map[uint64]*chkObjects) []uint64 {
	var ids []uint64
	for id, c := range chks {
		if c.hasMeta {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	slices.Reverse(ids)
	return ids
}

// ----- writing a checkpoint

// Pending is a checkpoint being written: its snapshots are written through
// Target, then Store.Commit completes it or Abort drops it.
type Pending struct {
	s     *Store
	id    uint64
	start time.Time

	mu       sync.Mutex
	known    map[string]statestore.FileHandle // shared files stored already
	used     map[string]bool                  // shared files the checkpoint refers to
	private  map[string]statestore.FileHandle // "part/name" written
	written  []string                         // object names written
	stats    WriteStats
	finished bool
}

// WriteStats counts what a checkpoint stored.
type WriteStats struct {
	// Files and Bytes were written to the storage.
	Files int
	Bytes int64
	// ReusedFiles and ReusedBytes are shared files an earlier checkpoint
	// stored, referred to instead of written.
	ReusedFiles int
	ReusedBytes int64
}

// Begin starts checkpoint number one more than any checkpoint present,
// complete or not.
func (s *Store) Begin(ctx context.Context) (*Pending, error) {
	chks, _, err := s.scan(ctx)
	if err != nil {
		return nil, err
	}
	known := map[string]statestore.FileHandle{}
	for _, id := range completeIDs(chks) {
		m, err := s.readMetadata(ctx, id)
		if err != nil {
			continue // damaged: its shared files are not trusted
		}
		for _, p := range m.Parts {
			for _, f := range p.Snapshot.Files {
				if f.Shared {
					f.Local = ""
					known[f.Name] = f
				}
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.lastID + 1
	for cid := range chks {
		id = max(id, cid+1)
	}
	for pid := range s.pending {
		id = max(id, pid+1)
	}
	s.lastID = id
	p := &Pending{
		s: s, id: id, start: time.Now(),
		known:   known,
		used:    map[string]bool{},
		private: map[string]statestore.FileHandle{},
	}
	s.pending[id] = p
	return p, nil
}

// ID returns the checkpoint's id.
func (p *Pending) ID() uint64 { return p.id }

// Stats returns what the checkpoint stored so far.
func (p *Pending) Stats() WriteStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Target returns where the snapshot of part (a name without "/", unique in
// the checkpoint, e.g. "state" or "worker-3") is written. Its Metadata.Part
// must have the same name.
func (p *Pending) Target(part string) statestore.SnapshotTarget {
	return &target{p: p, part: part}
}

type target struct {
	p    *Pending
	part string
}

// Known implements statestore.SnapshotTarget.
func (t *target) Known(name string) (statestore.FileHandle, bool) {
	p := t.p
	p.mu.Lock()
	defer p.mu.Unlock()
	f, ok := p.known[name]
	if ok {
		p.used[name] = true
		p.stats.ReusedFiles++
		p.stats.ReusedBytes += f.Size
	}
	return f, ok
}

// Write implements statestore.SnapshotTarget.
func (t *target) Write(ctx context.Context, name string, shared bool, r io.Reader) (statestore.FileHandle, error) {
	p := t.p
	if err := checkPart(t.part); err != nil {
		return statestore.FileHandle{}, err
	}
	if name == "" || strings.Contains(name, "/") || name == "." || name == ".." || name == metadataName {
		return statestore.FileHandle{}, fmt.Errorf("checkpoint: snapshot file name %q: use a name without \"/\" other than %q", name, metadataName)
	}
	p.mu.Lock()
	finished := p.finished
	p.mu.Unlock()
	if finished {
		return statestore.FileHandle{}, fmt.Errorf("checkpoint %d is already committed or aborted: write its snapshots before Commit", p.id)
	}
	path := p.s.privatePath(p.id, t.part, name)
	if shared {
		path = p.s.sharedPath(name)
	}
	hr := &hashReader{r: r, h: sha256.New()}
	info, err := p.s.st.Put(ctx, path, hr)
	if err != nil {
		return statestore.FileHandle{}, err
	}
	if info.Size != hr.n {
		return statestore.FileHandle{}, fmt.Errorf("checkpoint: %s in %s: stored %d bytes of %d", path, p.s.st, info.Size, hr.n)
	}
	f := statestore.FileHandle{Name: name, Shared: shared, Size: hr.n, SHA256: hex.EncodeToString(hr.h.Sum(nil))}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.written = append(p.written, path)
	p.stats.Files++
	p.stats.Bytes += hr.n
	if shared {
		p.known[name] = f
		p.used[name] = true
	} else {
		p.private[t.part+"/"+name] = f
	}
	return f, nil
}

type hashReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (h *hashReader) Read(b []byte) (int, error) {
	n, err := h.r.Read(b)
	h.h.Write(b[:n])
	h.n += int64(n)
	return n, err
}

func checkPart(part string) error {
	if part == "" || strings.Contains(part, "/") || part == "." || part == ".." || part == metadataName {
		return fmt.Errorf("checkpoint: part name %q: use a name without \"/\" other than %q", part, metadataName)
	}
	return nil
}

// Commit completes checkpoint p with the metadata m: it fills in m's
// format, id, job, and (when zero) created time and duration, checks that
// every file m names was written or referred to through p's targets,
// writes the metadata, then applies retention. Once it returns nil the
// checkpoint is complete and durable.
func (s *Store) Commit(ctx context.Context, p *Pending, m *Metadata) error {
	if p.s != s {
		return fmt.Errorf("checkpoint: Commit of a checkpoint begun by another store")
	}
	p.mu.Lock()
	if p.finished {
		p.mu.Unlock()
		return fmt.Errorf("checkpoint %d is already committed or aborted", p.id)
	}
	seen := map[string]bool{}
	for _, part := range m.Parts {
		if err := checkPart(part.Name); err != nil {
			p.mu.Unlock()
			return err
		}
		if seen[part.Name] {
			p.mu.Unlock()
			return fmt.Errorf("checkpoint %d: two parts named %q: give each snapshot its own part name", p.id, part.Name)
		}
		seen[part.Name] = true
		for _, f := range part.Snapshot.Files {
			var ok bool
			if f.Shared {
				k, found := p.known[f.Name]
				ok = found && p.used[f.Name] && k.Size == f.Size && k.SHA256 == f.SHA256
			} else {
				w, found := p.private[part.Name+"/"+f.Name]
				ok = found && w.Size == f.Size && w.SHA256 == f.SHA256
			}
			if !ok {
				p.mu.Unlock()
				return fmt.Errorf("checkpoint %d: part %q names file %q that was not written through Target(%q) of this checkpoint: write every snapshot through its part's target before Commit", p.id, part.Name, f.Name, part.Name)
			}
		}
	}
	p.mu.Unlock()

	m.Format = FormatVersion
	m.ID = p.id
	m.Job = s.job
	if m.Created.IsZero() {
		m.Created = p.start
	}
	if m.Duration == 0 {
		m.Duration = time.Since(m.Created)
	}
	data, err := m.Encode()
	if err != nil {
		return err
	}
	if _, err := s.st.Put(ctx, s.metadataPath(p.id), bytes.NewReader(data)); err != nil {
		return fmt.Errorf("checkpoint %d: writing its metadata: %w", p.id, err)
	}
	p.mu.Lock()
	p.finished = true
	p.mu.Unlock()
	s.mu.Lock()
	delete(s.pending, p.id)
	s.mu.Unlock()
	if err := s.retain(ctx); err != nil {
		s.warnf("checkpoint: checkpoint %d is complete, but deleting old checkpoints failed (the next commit retries): %v", p.id, err)
	}
	return nil
}

// Abort drops the checkpoint: the files it wrote are deleted, shared files
// only when no complete checkpoint refers to them.
func (p *Pending) Abort(ctx context.Context) error {
	s := p.s
	p.mu.Lock()
	if p.finished {
		p.mu.Unlock()
		return nil
	}
	p.finished = true
	written := slices.Clone(p.written)
	p.mu.Unlock()
	s.mu.Lock()
	delete(s.pending, p.id)
	s.mu.Unlock()
	var errs []error
	for _, name := range written {
		if !strings.HasPrefix(name, s.chkDir(p.id)+"/") {
			continue // shared: below
		}
		if err := s.st.Delete(ctx, name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.gcShared(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ----- retention

// retain keeps the newest Retain complete checkpoints and deletes older
// ones, partial checkpoints older than the newest complete one, and shared
// files no kept or pending checkpoint refers to.
func (s *Store) retain(ctx context.Context) error {
	chks, _, err := s.scan(ctx)
	if err != nil {
		return err
	}
	kept := map[uint64]bool{}
	var newest uint64
	for _, id := range completeIDs(chks) {
		if len(kept) == s.o.Retain {
			break
		}
		if _, err := s.readMetadata(ctx, id); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				// A read that failed (storage down, deadline) says
				// nothing about the checkpoint: delete nothing now.
				return fmt.Errorf("checkpoint: retention skipped, reading checkpoint %d: %w", id, err)
			}
			s.warnf("checkpoint: checkpoint %d is damaged and not counted as kept: %v", id, err)
			continue
		}
		kept[id] = true
		newest = max(newest, id)
	}
	s.mu.Lock()
	pending := map[uint64]bool{}
	for id := range s.pending {
		pending[id] = true
	}
	s.mu.Unlock()
	var errs []error
	for id, c := range chks {
		if kept[id] || pending[id] || id >= newest {
			continue
		}
		// Metadata first: a crash half way leaves a partial checkpoint.
		if c.hasMeta {
			if err := s.st.Delete(ctx, s.metadataPath(id)); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		for _, o := range c.objects {
			if err := s.st.Delete(ctx, o.Name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := s.gcShared(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// gcShared deletes the shared files that no complete checkpoint and no
// pending one refers to.
func (s *Store) gcShared(ctx context.Context) error {
	chks, shared, err := s.scan(ctx)
	if err != nil {
		return err
	}
	refs := map[string]int{}
	for _, id := range completeIDs(chks) {
		m, err := s.readMetadata(ctx, id)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				// Its shared files may be needed: delete none now.
				return fmt.Errorf("checkpoint: shared files not collected, reading checkpoint %d: %w", id, err)
			}
			continue
		}
		for _, p := range m.Parts {
			for _, f := range p.Snapshot.Files {
				if f.Shared {
					refs[f.Name]++
				}
			}
		}
	}
	s.mu.Lock()
	for _, p := range s.pending {
		p.mu.Lock()
		for name := range p.used {
			refs[name]++
		}
		p.mu.Unlock()
	}
	s.mu.Unlock()
	var errs []error
	prefix := s.job + "/" + sharedDir + "/"
	for _, o := range shared {
		if refs[strings.TrimPrefix(o.Name, prefix)] > 0 {
			continue
		}
		if err := s.st.Delete(ctx, o.Name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ----- reading checkpoints

// readMetadata reads and decodes the metadata of checkpoint id.
func (s *Store) readMetadata(ctx context.Context, id uint64) (*Metadata, error) {
	name := s.metadataPath(id)
	rc, err := s.st.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("checkpoint: reading %s from %s: %w", name, s.st, err)
	}
	m, err := DecodeMetadata(data)
	if err != nil {
		return nil, fmt.Errorf("%s in %s: %w", name, s.st, err)
	}
	if m.ID != id || m.Job != s.job {
		return nil, fmt.Errorf("%w: %s in %s describes checkpoint %d of job %q", ErrCorrupt, name, s.st, m.ID, m.Job)
	}
	return m, nil
}

// Get returns the metadata of complete checkpoint id, its checksum
// verified (not its files: see Verify).
func (s *Store) Get(ctx context.Context, id uint64) (*Metadata, error) {
	return s.readMetadata(ctx, id)
}

// Verify checks that every file of checkpoint m exists with its size and,
// with VerifyChecksums, its SHA-256. The error names the first bad file.
func (s *Store) Verify(ctx context.Context, m *Metadata, v Verify) error {
	for _, part := range m.Parts {
		for _, f := range part.Snapshot.Files {
			name := s.objectPath(m.ID, part.Name, f)
			if v == VerifySizes {
				info, err := s.st.Stat(ctx, name)
				if err != nil {
					return err
				}
				if info.Size != f.Size {
					return fmt.Errorf("%w: %s in %s has %d bytes, the checkpoint's metadata says %d", ErrCorrupt, name, s.st, info.Size, f.Size)
				}
				continue
			}
			rc, err := s.Source(m, part.Name).Open(ctx, f)
			if err != nil {
				return err
			}
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// Latest returns the metadata of the newest complete checkpoint that
// verifies (Options.Verify). A damaged checkpoint is skipped with a warning
// naming the bad file, and the one before it is tried. With none it returns
// an error wrapping ErrNoCheckpoint.
func (s *Store) Latest(ctx context.Context) (*Metadata, error) {
	return s.RestoreLatest(ctx, nil)
}

// RestoreLatest calls restore with the newest complete checkpoint whose
// metadata verifies and whose files exist with their sizes (or, when
// restore is nil, that verifies as Options.Verify says). When the
// checkpoint is damaged, or restore fails with an error wrapping ErrCorrupt
// or ErrNotFound (a file read through Source failed its checksum or is
// missing), it warns, naming the file, and tries the checkpoint before. It
// returns the metadata of the checkpoint restored, or an error wrapping
// ErrNoCheckpoint when none is left; other errors of restore are returned
// as they are.
func (s *Store) RestoreLatest(ctx context.Context, restore func(*Metadata) error) (*Metadata, error) {
	chks, _, err := s.scan(ctx)
	if err != nil {
		return nil, err
	}
	ids := completeIDs(chks)
	skipped := 0
	for _, id := range ids {
		m, err := s.readMetadata(ctx, id)
		if err == nil {
			v := s.o.Verify
			if restore != nil {
				v = VerifySizes
			}
			err = s.Verify(ctx, m, v)
		}
		if err == nil && restore != nil {
			err = restore(m)
			if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNotFound) {
				return nil, err
			}
		}
		if err != nil {
			if IsFormatError(err) {
				return nil, fmt.Errorf("checkpoint %d: %w", id, err)
			}
			skipped++
			s.warnf("checkpoint: WARNING: skipping damaged checkpoint %d: %v; trying the checkpoint before it", id, err)
			continue
		}
		return m, nil
	}
	if skipped > 0 {
		return nil, fmt.Errorf("%w of job %q in %s: %d damaged checkpoints skipped (see the warnings)", ErrNoCheckpoint, s.job, s.st, skipped)
	}
	return nil, fmt.Errorf("%w of job %q in %s", ErrNoCheckpoint, s.job, s.st)
}

// Info summarises a checkpoint for listing.
type Info struct {
	ID       uint64
	Complete bool
	// Damaged holds why a checkpoint with metadata cannot be read.
	Damaged   string
	Created   time.Time
	Duration  time.Duration
	Stream    string
	Sequence  uint64
	Watermark int64
	// Size is the bytes of its state files, shared ones included; Own
	// the bytes stored under the checkpoint's folder (its private files
	// and metadata).
	Size int64
	Own  int64
}

// List returns the job's checkpoints, complete or not, oldest first.
func (s *Store) List(ctx context.Context) ([]Info, error) {
	chks, _, err := s.scan(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Info, 0, len(chks))
	for id, c := range chks {
		in := Info{ID: id}
		for _, o := range c.objects {
			in.Own += o.Size
		}
		if c.hasMeta {
			m, err := s.readMetadata(ctx, id)
			if err != nil {
				in.Damaged = err.Error()
			} else {
				in.Complete = true
				in.Created, in.Duration = m.Created, m.Duration
				in.Stream, in.Sequence, in.Watermark = m.Stream, m.Sequence, m.Watermark
				in.Size = m.Size()
			}
		}
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b Info) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out, nil
}

// ----- reading snapshot files

// Source returns where the files of part of checkpoint m are read from.
func (s *Store) Source(m *Metadata, part string) statestore.SnapshotSource {
	return &source{s: s, id: m.ID, part: part}
}

type source struct {
	s    *Store
	id   uint64
	part string
}

// Open implements statestore.SnapshotSource.
func (src *source) Open(ctx context.Context, f statestore.FileHandle) (io.ReadCloser, error) {
	name := src.s.objectPath(src.id, src.part, f)
	rc, err := src.s.st.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	return &verifyReader{rc: rc, f: f, name: name, where: src.s.st.String(), h: sha256.New()}, nil
}

// verifyReader checks a file's size and SHA-256 as it is read.
type verifyReader struct {
	rc    io.ReadCloser
	f     statestore.FileHandle
	name  string
	where string
	h     hash.Hash
	n     int64
	err   error
}

func (v *verifyReader) corrupt(format string, args ...any) error {
	v.err = fmt.Errorf("%w: %s in %s: %s", ErrCorrupt, v.name, v.where, fmt.Sprintf(format, args...))
	return v.err
}

func (v *verifyReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.rc.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.n > v.f.Size {
		return 0, v.corrupt("more than the %d bytes the checkpoint's metadata says", v.f.Size)
	}
	if err == io.EOF {
		if v.n != v.f.Size {
			return n, v.corrupt("%d bytes, the checkpoint's metadata says %d", v.n, v.f.Size)
		}
		if sum := hex.EncodeToString(v.h.Sum(nil)); sum != v.f.SHA256 {
			return n, v.corrupt("SHA-256 %.16s…, the checkpoint's metadata says %.16s…", sum, v.f.SHA256)
		}
		return n, io.EOF
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrDigestMismatch) {
			return n, v.corrupt("%v", err)
		}
		return n, fmt.Errorf("checkpoint: reading %s from %s: %w", v.name, v.where, err)
	}
	return n, nil
}

func (v *verifyReader) Close() error { return v.rc.Close() }
