package checkpoint_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/checkpoint"
	"github.com/wasmstream/wasmstream/statestore"
	"github.com/wasmstream/wasmstream/statestore/memory"
	"github.com/wasmstream/wasmstream/statestore/statestoretest"
)

// commitFiles commits a checkpoint whose part "state" has the private file
// "own" and the shared files shared: those the store knows are referred
// to, the others written with content "content of <name>".
func commitFiles(t *testing.T, store *checkpoint.Store, shared ...string) *checkpoint.Metadata {
	t.Helper()
	ctx := context.Background()
	p, err := store.Begin(ctx)
	must(t, err)
	tg := p.Target("state")
	h := statestore.SnapshotHandle{Backend: "test", Format: 1}
	f, err := tg.Write(ctx, "own", false, strings.NewReader(fmt.Sprintf("checkpoint %d", p.ID())))
	must(t, err)
	h.Files = append(h.Files, f)
	for _, name := range shared {
		f, ok := tg.Known(name)
		if !ok {
			f, err = tg.Write(ctx, name, true, strings.NewReader("content of "+name))
			must(t, err)
		}
		h.Files = append(h.Files, f)
	}
	m := &checkpoint.Metadata{Stream: "S", Sequence: p.ID() * 10, Parts: []checkpoint.Part{{Name: "state", Snapshot: h}}}
	must(t, store.Commit(ctx, p, m))
	return m
}

func objectNames(t *testing.T, st checkpoint.Storage, prefix string) []string {
	t.Helper()
	l, err := st.List(context.Background(), prefix)
	must(t, err)
	var out []string
	for _, o := range l {
		out = append(out, o.Name)
	}
	return out
}

// TestRetention keeps the newest two checkpoints and every shared file they
// refer to, and deletes the rest.
func TestRetention(t *testing.T) {
	ctx := context.Background()
	for name, open := range storages(t) {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			store, _ := newStore(t, st, 2)
			commitFiles(t, store, "a", "b") // 1
			commitFiles(t, store, "a", "c") // 2: a reused
			if got, want := objectNames(t, st, "job/shared/"), []string{"job/shared/a", "job/shared/b", "job/shared/c"}; !slices.Equal(got, want) {
				t.Fatalf("shared after 2 checkpoints = %v, want %v", got, want)
			}
			commitFiles(t, store, "c", "d") // 3: checkpoint 1 goes, b with it; a stays for 2
			if got, want := objectNames(t, st, "job/shared/"), []string{"job/shared/a", "job/shared/c", "job/shared/d"}; !slices.Equal(got, want) {
				t.Fatalf("shared after 3 checkpoints = %v, want %v", got, want)
			}
			commitFiles(t, store, "d") // 4: checkpoint 2 goes, a with it; c stays for 3
			if got, want := objectNames(t, st, "job/shared/"), []string{"job/shared/c", "job/shared/d"}; !slices.Equal(got, want) {
				t.Fatalf("shared after 4 checkpoints = %v, want %v", got, want)
			}
			if got, want := objectNames(t, st, "job/chk-"), []string{"job/chk-3/_metadata", "job/chk-3/state/own", "job/chk-4/_metadata", "job/chk-4/state/own"}; !slices.Equal(got, want) {
				t.Fatalf("checkpoint objects = %v, want %v", got, want)
			}
			infos, err := store.List(ctx)
			must(t, err)
			if len(infos) != 2 || infos[0].ID != 3 || infos[1].ID != 4 || !infos[0].Complete || infos[1].Sequence != 40 || infos[0].Size == 0 {
				t.Fatalf("List = %+v", infos)
			}
			// Every kept checkpoint verifies in full.
			for _, id := range []uint64{3, 4} {
				m, err := store.Get(ctx, id)
				must(t, err)
				must(t, store.Verify(ctx, m, checkpoint.VerifyChecksums))
			}
		})
	}
}

// TestCorruptFallsBack damages the newest checkpoint in several ways; Latest
// then returns the one before, with a warning naming the bad file.
func TestCorruptFallsBack(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name, file string
		damage     func(st checkpoint.Storage, name string) error
	}{
		{"flipped byte", "job/chk-2/state/own", func(st checkpoint.Storage, name string) error {
			_, err := st.Put(ctx, name, strings.NewReader("checkpoint 9")) // same size
			return err
		}},
		{"truncated", "job/shared/b", func(st checkpoint.Storage, name string) error {
			_, err := st.Put(ctx, name, strings.NewReader("content"))
			return err
		}},
		{"missing", "job/shared/b", func(st checkpoint.Storage, name string) error { return st.Delete(ctx, name) }},
		{"metadata", "job/chk-2/_metadata", func(st checkpoint.Storage, name string) error {
			rc, err := st.Get(ctx, name)
			if err != nil {
				return err
			}
			data, _ := io.ReadAll(rc)
			rc.Close()
			data = bytes.Replace(data, []byte(`"sequence": 20`), []byte(`"sequence": 99`), 1)
			_, err = st.Put(ctx, name, bytes.NewReader(data))
			return err
		}},
	}
	for sname, open := range storages(t) {
		for _, c := range cases {
			t.Run(sname+"/"+c.name, func(t *testing.T) {
				st := open(t)
				store, warnings := newStore(t, st, 3)
				commitFiles(t, store, "a")
				commitFiles(t, store, "a", "b")
				must(t, c.damage(st, c.file))
				m, err := store.Latest(ctx)
				must(t, err)
				if m.ID != 1 {
					t.Fatalf("Latest = checkpoint %d, want 1", m.ID)
				}
				if len(*warnings) != 1 || !strings.Contains((*warnings)[0], c.file) || !strings.Contains((*warnings)[0], "checkpoint 2") {
					t.Fatalf("warnings %q, want one naming checkpoint 2 and %s", *warnings, c.file)
				}
			})
		}
	}
}

// TestRestoreLatestFallsBack damages the snapshot file of the newest
// checkpoint without changing its size: the size check passes, the restore
// fails on the checksum as it reads the file, and RestoreLatest restores the
// checkpoint before.
func TestRestoreLatestFallsBack(t *testing.T) {
	ctx := context.Background()
	clock := statestoretest.NewClock(0)
	b, err := memory.New(testConfig(clock))
	must(t, err)
	fill(t, b, clock, 50)
	want := dump(t, b, 50)
	st, err := checkpoint.NewDirStorage(t.TempDir())
	must(t, err)
	store, warnings := newStore(t, st, 3)
	checkpointOf(t, store, b, "memory", 1)
	must(t, b.Put(kgOf(key(1)), stValue, key(1), []byte("later")))
	checkpointOf(t, store, b, "memory", 2)

	bad := filepath.Join(st.Root(), "job", "chk-2", "state", memory.SnapshotFile)
	data, err := os.ReadFile(bad)
	must(t, err)
	data[len(data)/2] ^= 0xff
	must(t, os.WriteFile(bad, data, 0o644))

	var r *memory.Backend
	m, err := store.RestoreLatest(ctx, func(m *checkpoint.Metadata) error {
		var err error
		r, err = memory.Restore(ctx, testConfig(clock), m.Parts[0].Snapshot, store.Source(m, "state"))
		return err
	})
	must(t, err)
	if m.ID != 1 || m.Sequence != 1 {
		t.Fatalf("restored checkpoint %d (sequence %d), want 1", m.ID, m.Sequence)
	}
	if got := dump(t, r, 50); got != want {
		t.Fatalf("restored state differs: %s", diff(want, got))
	}
	if len(*warnings) != 1 || !strings.Contains((*warnings)[0], "job/chk-2/state/memory.wsm") {
		t.Fatalf("warnings %q, want one naming job/chk-2/state/memory.wsm", *warnings)
	}
	// Other errors of the restore are not taken for damage.
	_, err = store.RestoreLatest(ctx, func(*checkpoint.Metadata) error { return errors.New("plugin refused") })
	if err == nil || err.Error() != "plugin refused" {
		t.Fatalf("RestoreLatest returned %v, want the restore's own error", err)
	}
}

// TestPartialIgnored leaves a checkpoint without metadata, as a crash
// during a checkpoint does: Latest ignores it, the next checkpoint takes a
// higher id, and retention deletes it.
func TestPartialIgnored(t *testing.T) {
	ctx := context.Background()
	for name, open := range storages(t) {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			store, _ := newStore(t, st, 2)
			commitFiles(t, store, "a")
			p, err := store.Begin(ctx)
			must(t, err)
			_, err = p.Target("state").Write(ctx, "own", false, strings.NewReader("never committed"))
			must(t, err)
			_, err = p.Target("state").Write(ctx, "z", true, strings.NewReader("orphan"))
			must(t, err)

			// A new process: a new store over the same storage.
			store2, _ := newStore(t, st, 2)
			m, err := store2.Latest(ctx)
			must(t, err)
			if m.ID != 1 {
				t.Fatalf("Latest = %d, want 1", m.ID)
			}
			infos, err := store2.List(ctx)
			must(t, err)
			if len(infos) != 2 || infos[1].ID != 2 || infos[1].Complete {
				t.Fatalf("List = %+v, want checkpoint 2 listed as partial", infos)
			}
			m3 := commitFiles(t, store2, "a")
			if m3.ID != 3 {
				t.Fatalf("next checkpoint got id %d, want 3", m3.ID)
			}
			if got := objectNames(t, st, "job/chk-2/"); len(got) != 0 {
				t.Fatalf("partial checkpoint left %v", got)
			}
			if got, want := objectNames(t, st, "job/shared/"), []string{"job/shared/a"}; !slices.Equal(got, want) {
				t.Fatalf("shared = %v, want %v (the orphan deleted)", got, want)
			}
		})
	}
}

// TestAbort deletes what an aborted checkpoint wrote, and only that.
func TestAbort(t *testing.T) {
	ctx := context.Background()
	st, err := checkpoint.NewDirStorage(t.TempDir())
	must(t, err)
	store, _ := newStore(t, st, 2)
	commitFiles(t, store, "a")
	p, err := store.Begin(ctx)
	must(t, err)
	tg := p.Target("state")
	_, ok := tg.Known("a")
	if !ok {
		t.Fatal("shared file a of checkpoint 1 is not known")
	}
	_, err = tg.Write(ctx, "own", false, strings.NewReader("x"))
	must(t, err)
	_, err = tg.Write(ctx, "new", true, strings.NewReader("y"))
	must(t, err)
	must(t, p.Abort(ctx))
	if got, want := objectNames(t, st, "job/"), []string{"job/chk-1/_metadata", "job/chk-1/state/own", "job/shared/a"}; !slices.Equal(got, want) {
		t.Fatalf("after abort: %v, want %v", got, want)
	}
	if err := store.Commit(ctx, p, &checkpoint.Metadata{}); err == nil {
		t.Fatal("Commit after Abort succeeded")
	}
	// Commit refuses files not written through the checkpoint.
	p, err = store.Begin(ctx)
	must(t, err)
	err = store.Commit(ctx, p, &checkpoint.Metadata{Parts: []checkpoint.Part{{Name: "state", Snapshot: statestore.SnapshotHandle{
		Files: []statestore.FileHandle{{Name: "ghost", Size: 1, SHA256: "00"}}}}}})
	if err == nil || !strings.Contains(err.Error(), "ghost") {
		t.Fatalf("Commit with an unwritten file: %v", err)
	}
	must(t, p.Abort(ctx))
}

// TestMetadata round-trips the metadata and refuses a tampered or newer one.
func TestMetadata(t *testing.T) {
	m := &checkpoint.Metadata{
		Format: checkpoint.FormatVersion, ID: 7, Job: "freqcap", Stream: "EVENTS", Sequence: 1234, Watermark: -5,
		PluginHash: "sha256:ab", MaxParallelism: 128, Backend: "pebble",
		Contract: abi.Contract{ABI: abi.Version, Name: "freqcap", States: []abi.StateDesc{{Name: "n", Kind: abi.KindValue, TTL: &abi.TTL{Millis: 5}}}},
		Parts: []checkpoint.Part{{Name: "state", Snapshot: statestore.SnapshotHandle{Backend: "pebble", Files: []statestore.FileHandle{
			{Name: "i-000001.sst", Shared: true, Local: "000001.sst", Size: 10, SHA256: "aa"}}}}},
		Sinks: map[string]json.RawMessage{"out": json.RawMessage(`{"epoch": 3, "staged": ["a<b"]}`)},
	}
	data, err := m.Encode()
	must(t, err)
	got, err := checkpoint.DecodeMetadata(data)
	must(t, err)
	again, err := got.Encode()
	must(t, err)
	if !bytes.Equal(data, again) {
		t.Fatalf("metadata changed in a round trip:\n%s\n%s", data, again)
	}
	if got.Contract.States[0].TTL.Millis != 5 || string(got.Sinks["out"]) != `{"epoch":3,"staged":["a\u003cb"]}` || got.Parts[0].Snapshot.Files[0].Local != "000001.sst" {
		t.Fatalf("decoded %+v", got)
	}
	tampered := bytes.Replace(data, []byte(`1234`), []byte(`1235`), 1)
	if _, err := checkpoint.DecodeMetadata(tampered); !errors.Is(err, checkpoint.ErrCorrupt) {
		t.Fatalf("tampered metadata: %v", err)
	}
	newer := bytes.Replace(data, []byte(`"format": 1`), []byte(`"format": 2`), 1)
	if _, err := checkpoint.DecodeMetadata(newer); !checkpoint.IsFormatError(err) {
		t.Fatalf("newer metadata: %v", err)
	}
}

// unavailableStorage fails reads of checkpoint metadata while down is set,
// as a storage that is briefly unreachable does.
type unavailableStorage struct {
	checkpoint.Storage
	down atomic.Bool
}

func (s *unavailableStorage) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if s.down.Load() && strings.HasSuffix(name, "/_metadata") {
		return nil, errors.New("storage unavailable")
	}
	return s.Storage.Get(ctx, name)
}

// TestRetentionKeepsOnReadFailure: while checkpoint metadata cannot be read
// (not damaged, just unreachable), retention deletes nothing, neither old
// checkpoints nor the shared files they refer to; it catches up later.
func TestRetentionKeepsOnReadFailure(t *testing.T) {
	dir, err := checkpoint.NewDirStorage(t.TempDir())
	must(t, err)
	st := &unavailableStorage{Storage: dir}
	store, _ := newStore(t, st, 2)
	commitFiles(t, store, "a", "b") // 1
	commitFiles(t, store, "a", "c") // 2
	st.down.Store(true)
	commitFiles(t, store, "c", "d") // 3: retention cannot read 1 and 2
	if got, want := objectNames(t, st, "job/shared/"), []string{"job/shared/a", "job/shared/b", "job/shared/c", "job/shared/d"}; !slices.Equal(got, want) {
		t.Fatalf("shared files while metadata is unreadable = %v, want all of %v", got, want)
	}
	if got := objectNames(t, st, "job/chk-1/"); len(got) == 0 {
		t.Fatal("checkpoint 1 was deleted while its metadata could not be read")
	}
	st.down.Store(false)
	commitFiles(t, store, "d") // 4: retention catches up
	if got, want := objectNames(t, st, "job/shared/"), []string{"job/shared/c", "job/shared/d"}; !slices.Equal(got, want) {
		t.Fatalf("shared after the storage is back = %v, want %v", got, want)
	}
}
