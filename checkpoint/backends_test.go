package checkpoint_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/wasmstream/wasmstream/checkpoint"
	"github.com/wasmstream/wasmstream/statestore"
	"github.com/wasmstream/wasmstream/statestore/memory"
	"github.com/wasmstream/wasmstream/statestore/pebble"
	"github.com/wasmstream/wasmstream/statestore/statestoretest"
)

// checkpointOf takes a snapshot of b, writes it as part "state" of a new
// checkpoint of store and commits it.
func checkpointOf(t testing.TB, store *checkpoint.Store, b statestore.Snapshotter, kind string, seq uint64) (*checkpoint.Metadata, checkpoint.WriteStats) {
	t.Helper()
	ctx := context.Background()
	p, err := store.Begin(ctx)
	must(t, err)
	snap, err := statestore.TakeSnapshot(b, nil)
	must(t, err)
	h, err := snap.Write(ctx, p.Target("state"))
	must(t, err)
	must(t, snap.Release())
	m := &checkpoint.Metadata{
		Stream: "EVENTS", Sequence: seq, Watermark: 49_000,
		PluginHash: "sha256:00", MaxParallelism: maxPar, Backend: kind,
		Parts: []checkpoint.Part{{Name: "state", Snapshot: h}},
	}
	must(t, store.Commit(ctx, p, m))
	return m, p.Stats()
}

func newStore(t testing.TB, st checkpoint.Storage, retain int) (*checkpoint.Store, *[]string) {
	var warnings []string
	store, err := checkpoint.NewStore(st, "job", checkpoint.Options{Retain: retain, Logf: func(f string, a ...any) {
		warnings = append(warnings, fmt.Sprintf(f, a...))
		t.Logf(f, a...)
	}})
	must(t, err)
	return store, &warnings
}

// TestMemoryRoundTrip checkpoints a memory backend with state of every
// kind, TTL metadata and timers, changes it, and restores the checkpoint.
func TestMemoryRoundTrip(t *testing.T) {
	ctx := context.Background()
	for name, open := range storages(t) {
		t.Run(name, func(t *testing.T) {
			clock := statestoretest.NewClock(0)
			b, err := memory.New(testConfig(clock))
			must(t, err)
			fill(t, b, clock, 300)
			want := dump(t, b, 300)
			store, _ := newStore(t, open(t), 2)
			m, _ := checkpointOf(t, store, b, memory.BackendKind, 42)
			// Changes after the snapshot are not in it.
			must(t, b.Put(kgOf(key(1)), stValue, key(1), []byte("after")))

			latest, err := store.Latest(ctx)
			must(t, err)
			if latest.ID != m.ID || latest.Sequence != 42 || latest.Parts[0].Snapshot.Backend != "memory" {
				t.Fatalf("Latest = %+v", latest)
			}
			r, err := memory.Restore(ctx, testConfig(clock), latest.Parts[0].Snapshot, store.Source(latest, "state"))
			must(t, err)
			if got := dump(t, r, 300); got != want {
				t.Fatalf("restored state differs: %s", diff(want, got))
			}
			checkTTL(t, r, clock, 300)
		})
	}
}

// TestMemoryPartialSnapshots snapshots the key groups of two workers
// separately and restores both parts into one backend.
func TestMemoryPartialSnapshots(t *testing.T) {
	ctx := context.Background()
	clock := statestoretest.NewClock(0)
	b, err := memory.New(testConfig(clock))
	must(t, err)
	fill(t, b, clock, 200)
	want := dump(t, b, 200)
	st, err := checkpoint.NewDirStorage(t.TempDir())
	must(t, err)
	store, _ := newStore(t, st, 1)
	p, err := store.Begin(ctx)
	must(t, err)
	var parts []checkpoint.Part
	for w, kgs := range [][]uint16{{0, 1, 2, 3, 4, 5, 6, 7}, {8, 9, 10, 11, 12, 13, 14, 15}} {
		snap, err := statestore.TakeSnapshot(b, kgs)
		must(t, err)
		name := fmt.Sprintf("worker-%d", w)
		h, err := snap.Write(ctx, p.Target(name))
		must(t, err)
		parts = append(parts, checkpoint.Part{Name: name, Snapshot: h})
	}
	must(t, store.Commit(ctx, p, &checkpoint.Metadata{Backend: "memory", MaxParallelism: maxPar, Parts: parts}))
	m, err := store.Latest(ctx)
	must(t, err)
	r, err := memory.New(testConfig(clock))
	must(t, err)
	for _, part := range m.Parts {
		must(t, r.Restore(ctx, part.Snapshot, store.Source(m, part.Name)))
	}
	if got := dump(t, r, 200); got != want {
		t.Fatalf("restored state differs: %s", diff(want, got))
	}
}

// TestPebbleRoundTrip checkpoints a Pebble backend to the object store,
// restores it into a new directory (downloading every file), and restores
// it into the original directory, where every file is found locally.
func TestPebbleRoundTrip(t *testing.T) {
	ctx := context.Background()
	clock := statestoretest.NewClock(0)
	dir := filepath.Join(t.TempDir(), "state")
	b, err := pebble.Open(dir, testConfig(clock), pebble.Options{})
	must(t, err)
	fill(t, b, clock, 300)
	want := dump(t, b, 300)
	store, _ := newStore(t, objectStorage(t), 2)
	m, _ := checkpointOf(t, store, b, pebble.BackendKind, 42)
	must(t, b.Put(kgOf(key(1)), stValue, key(1), []byte("after")))
	_, err = b.RegisterTimer(0, statestore.Timer{Time: 1, Key: []byte("after")})
	must(t, err)
	must(t, b.Close())

	latest, err := store.Latest(ctx)
	must(t, err)
	h := latest.Parts[0].Snapshot
	if latest.ID != m.ID || h.Backend != "pebble" || h.Instance == "" {
		t.Fatalf("Latest = %+v", latest)
	}

	// Into a new directory: everything is downloaded.
	dir2 := filepath.Join(t.TempDir(), "state")
	r, stats, err := pebble.Restore(ctx, dir2, testConfig(clock), pebble.Options{}, h, store.Source(latest, "state"))
	must(t, err)
	if stats.Downloaded != len(h.Files) || stats.Linked != 0 {
		t.Fatalf("restore into a new directory: %+v, want all %d files downloaded", stats, len(h.Files))
	}
	if r.Instance() == h.Instance {
		t.Fatalf("the restored database kept instance %s", h.Instance)
	}
	if got := dump(t, r, 300); got != want {
		t.Fatalf("restored state differs: %s", diff(want, got))
	}
	must(t, r.Close())

	// Local recovery: the original directory holds every file.
	clock.Advance(10_500 - clock.Now())
	r, stats, err = pebble.Restore(ctx, dir, testConfig(clock), pebble.Options{}, h, store.Source(latest, "state"))
	must(t, err)
	if stats.Downloaded != 0 || stats.Linked != len(h.Files) {
		t.Fatalf("local recovery: %+v, want all %d files linked", stats, len(h.Files))
	}
	if got := dump(t, r, 300); got != want {
		t.Fatalf("locally recovered state differs: %s", diff(want, got))
	}
	checkTTL(t, r, clock, 300)
	must(t, r.Close())
}

// TestPebbleIncremental checks that a checkpoint stores only the Pebble
// files the previous one does not have, and that a database restored from
// a checkpoint goes on sharing the files it inherited.
func TestPebbleIncremental(t *testing.T) {
	ctx := context.Background()
	clock := statestoretest.NewClock(0)
	dir := filepath.Join(t.TempDir(), "state")
	b, err := pebble.Open(dir, testConfig(clock), pebble.Options{})
	must(t, err)
	// Values only, compacted into the bottom level: the second checkpoint
	// adds one table to L0, too few for Pebble to compact anything, so
	// which tables exist is known.
	for i := range 3000 {
		must(t, b.Put(kgOf(key(i)), stValue, key(i), fmt.Appendf(nil, "value-%d-%0100d", i, i)))
	}
	must(t, b.Compact(ctx))
	st, err := checkpoint.NewDirStorage(t.TempDir())
	must(t, err)
	store, _ := newStore(t, st, 3)
	m1, s1 := checkpointOf(t, store, b, "pebble", 1)
	h1 := m1.Parts[0].Snapshot
	if s1.ReusedFiles != 0 || s1.Files != len(h1.Files) {
		t.Fatalf("first checkpoint: %+v, want every one of %d files written", s1, len(h1.Files))
	}

	// Change 10 keys.
	for i := range 10 {
		must(t, b.Put(kgOf(key(i)), stValue, key(i), []byte("changed")))
	}
	m2, s2 := checkpointOf(t, store, b, "pebble", 2)
	h2 := m2.Parts[0].Snapshot
	old := map[string]bool{}
	for _, n := range names(h1.Files, true) {
		old[n] = true
	}
	var newShared, reused int
	var newBytes, privBytes int64
	for _, f := range h2.Files {
		switch {
		case !f.Shared:
			privBytes += f.Size
		case old[f.Name]:
			reused++
		default:
			newShared++
			newBytes += f.Size
		}
	}
	if s2.ReusedFiles != reused || s2.Files != newShared+len(h2.Files)-len(names(h2.Files, true)) || s2.Bytes != newBytes+privBytes {
		t.Fatalf("second checkpoint wrote %+v; its handle has %d new shared files (%d bytes), %d reused, %d private bytes", s2, newShared, newBytes, reused, privBytes)
	}
	if reused == 0 || s2.ReusedBytes <= newBytes {
		t.Fatalf("second checkpoint reused %d files (%d bytes) and wrote %d new ones (%d bytes): a small change should reuse most of the state", reused, s2.ReusedBytes, newShared, newBytes)
	}
	t.Logf("checkpoint 1: %+v; checkpoint 2 after changing 10 keys: %+v", s1, s2)
	must(t, b.Close())

	// A restored database refers to its inherited files by their shared
	// names and names its own files by its new instance. (Whether Pebble
	// compacts the inherited files away before the next checkpoint is up
	// to Pebble.)
	dir2 := filepath.Join(t.TempDir(), "state")
	r, _, err := pebble.Restore(ctx, dir2, testConfig(clock), pebble.Options{}, h2, store.Source(m2, "state"))
	must(t, err)
	data, err := os.ReadFile(filepath.Join(dir2, pebble.InstanceFile))
	must(t, err)
	var inst struct {
		Instance  string
		Inherited map[string]string
	}
	must(t, json.Unmarshal(data, &inst))
	if inst.Instance != r.Instance() || inst.Instance == h2.Instance {
		t.Fatalf("restored instance %q (backend says %q), original %q", inst.Instance, r.Instance(), h2.Instance)
	}
	for _, f := range h2.Files {
		if f.Shared && inst.Inherited[f.Local] != f.Name {
			t.Fatalf("inherited file %s maps to %q, want %q", f.Local, inst.Inherited[f.Local], f.Name)
		}
	}
	must(t, r.Put(kgOf(key(1)), stValue, key(1), []byte("again")))
	m3, s3 := checkpointOf(t, store, r, "pebble", 3)
	h3 := m3.Parts[0].Snapshot
	inherited := 0
	for _, f := range h3.Files {
		switch {
		case !f.Shared:
		case slices.Contains(names(h2.Files, true), f.Name):
			inherited++
		case !strings.HasPrefix(f.Name, r.Instance()+"-"):
			t.Fatalf("file %s of the restored database is named neither by an inherited file nor by its instance %s", f.Name, r.Instance())
		}
	}
	if s3.ReusedFiles != inherited {
		t.Fatalf("the restored database's first checkpoint reused %d files (%+v), want its %d inherited ones", s3.ReusedFiles, s3, inherited)
	}
	must(t, r.Close())
	must(t, store.Verify(ctx, m3, checkpoint.VerifyChecksums))
}

// TestPebbleSnapshotNotWritten checks that a snapshot released without
// being written leaves no local directory.
func TestPebbleSnapshotNotWritten(t *testing.T) {
	clock := statestoretest.NewClock(0)
	dir := filepath.Join(t.TempDir(), "state")
	b, err := pebble.Open(dir, testConfig(clock), pebble.Options{})
	must(t, err)
	defer b.Close()
	fill(t, b, clock, 10)
	snap, err := statestore.TakeSnapshot(b, nil)
	must(t, err)
	must(t, snap.Release())
	entries, _ := os.ReadDir(pebble.SnapshotDir(dir))
	if len(entries) != 0 {
		t.Fatalf("released snapshot left %d entries in %s", len(entries), pebble.SnapshotDir(dir))
	}
	part, err := statestore.TakeSnapshot(b, []uint16{0, 1})
	must(t, err)
	defer part.Release()
	if _, err := part.Write(context.Background(), nopTarget{}); err == nil || !strings.Contains(err.Error(), "not captured") {
		t.Fatalf("a pebble snapshot of some key groups was written (err %v)", err)
	}
}

// nopTarget is a snapshot target that stores nothing.
type nopTarget struct{}

func (nopTarget) Known(string) (statestore.FileHandle, bool) { return statestore.FileHandle{}, false }

func (nopTarget) Write(_ context.Context, name string, _ bool, r io.Reader) (statestore.FileHandle, error) {
	n, err := io.Copy(io.Discard, r)
	return statestore.FileHandle{Name: name, Size: n}, err
}
