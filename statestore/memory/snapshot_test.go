package memory_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/statestore"
	"github.com/wasmstream/wasmstream/statestore/memory"
)

// files is a snapshot target and source in memory. Its Open does not check
// checksums, so the tests reach the format's own checks.
type files map[string][]byte

func (f files) Known(string) (statestore.FileHandle, bool) { return statestore.FileHandle{}, false }

func (f files) Write(_ context.Context, name string, shared bool, r io.Reader) (statestore.FileHandle, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return statestore.FileHandle{}, err
	}
	f[name] = data
	sum := sha256.Sum256(data)
	return statestore.FileHandle{Name: name, Shared: shared, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}, nil
}

func (f files) Open(_ context.Context, h statestore.FileHandle) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(f[h.Name])), nil
}

var snapStates = []abi.StateDesc{{Name: "v", Kind: abi.KindValue}, {Name: "m", Kind: abi.KindMap}}

func snapshotOf(t *testing.T) (files, statestore.SnapshotHandle) {
	t.Helper()
	b, err := memory.New(statestore.Config{States: snapStates, MaxParallelism: 4})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		k := []byte{byte('a' + i)}
		if err := b.Put(uint16(i), 0, k, []byte("value")); err != nil {
			t.Fatal(err)
		}
		if err := b.MapPut(uint16(i), 1, k, []byte("uk"), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := statestore.TakeSnapshot(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	fs := files{}
	h, err := snap.Write(context.Background(), fs)
	if err != nil {
		t.Fatal(err)
	}
	return fs, h
}

func restore(states []abi.StateDesc, maxPar int, h statestore.SnapshotHandle, fs files) (*memory.Backend, error) {
	return memory.Restore(context.Background(), statestore.Config{States: states, MaxParallelism: maxPar}, h, fs)
}

func TestSnapshotDamagedSection(t *testing.T) {
	fs, h := snapshotOf(t)
	data := fs[memory.SnapshotFile]
	i := bytes.LastIndex(data, []byte("value"))
	data[i] ^= 0x20
	_, err := restore(snapStates, 4, h, fs)
	if !errors.Is(err, statestore.ErrSnapshotCorrupt) || !strings.Contains(err.Error(), "key group 3") || !strings.Contains(err.Error(), memory.SnapshotFile) {
		t.Fatalf("restore of a damaged section: %v, want ErrSnapshotCorrupt naming key group 3 and the file", err)
	}
	fs[memory.SnapshotFile] = data[:len(data)-3]
	if _, err := restore(snapStates, 4, h, fs); !errors.Is(err, statestore.ErrSnapshotCorrupt) {
		t.Fatalf("restore of a truncated file: %v", err)
	}
}

func TestSnapshotRefusals(t *testing.T) {
	fs, h := snapshotOf(t)
	if _, err := restore(snapStates, 8, h, fs); err == nil || !strings.Contains(err.Error(), "max_parallelism 4") {
		t.Fatalf("restore with other key groups: %v", err)
	}
	renamed := []abi.StateDesc{{Name: "v", Kind: abi.KindValue}, {Name: "m2", Kind: abi.KindMap}}
	if _, err := restore(renamed, 4, h, fs); err == nil || !strings.Contains(err.Error(), `"m:map"`) {
		t.Fatalf("restore with a renamed state: %v", err)
	}
	newer := h
	newer.Format = memory.SnapshotFormat + 1
	if _, err := restore(snapStates, 4, newer, fs); err == nil || !strings.Contains(err.Error(), "format version") {
		t.Fatalf("restore of a newer format: %v", err)
	}
	other := h
	other.Backend = "pebble"
	if _, err := restore(snapStates, 4, other, fs); err == nil {
		t.Fatal("restore of a pebble snapshot into memory succeeded")
	}
	// A state added at the end is fine.
	added := append(append([]abi.StateDesc{}, snapStates...), abi.StateDesc{Name: "l", Kind: abi.KindList})
	b, err := restore(added, 4, h, fs)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok, err := b.Get(2, 0, []byte("c")); string(v) != "value" || !ok || err != nil {
		t.Fatalf("restored value = %q %v %v", v, ok, err)
	}
}

// TestSnapshotTimersAtBarrier checks that timer changes after Snapshot, while
// the snapshot is not yet written, do not reach it.
func TestSnapshotTimersAtBarrier(t *testing.T) {
	b, err := memory.New(statestore.Config{States: snapStates, MaxParallelism: 2})
	if err != nil {
		t.Fatal(err)
	}
	tm := func(d int, at int64, key, payload string) statestore.Timer {
		return statestore.Timer{Domain: d, Time: at, Key: []byte(key), Payload: []byte(payload)}
	}
	var want []statestore.Timer
	for i := range 200 {
		d := i % 2
		x := tm(d, int64(1000-i), string(rune('a'+i%26)), string(rune('A'+i%7)))
		if ok, err := b.RegisterTimer(1, x); err != nil {
			t.Fatal(err)
		} else if ok && i%3 == 0 {
			if _, err := b.DeleteTimer(1, x); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, d := range []int{abi.TimeDomainEvent, abi.TimeDomainProcessing} {
		if want, err = b.AppendTimers(want, 1, d); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := statestore.TakeSnapshot(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Changes after the barrier: pop, delete, register.
	if _, err := b.PopTimers(1, abi.TimeDomainEvent, 900, 0, func(statestore.Timer) {}); err != nil {
		t.Fatal(err)
	}
	for _, x := range want[len(want)-10:] {
		if _, err := b.DeleteTimer(1, x); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 {
		if _, err := b.RegisterTimer(1, tm(i%2, int64(5000+i), "new", "p")); err != nil {
			t.Fatal(err)
		}
	}
	fs := files{}
	h, err := snap.Write(context.Background(), fs)
	if err != nil {
		t.Fatal(err)
	}
	r, err := restore(snapStates, 2, h, fs)
	if err != nil {
		t.Fatal(err)
	}
	var got []statestore.Timer
	for _, d := range []int{abi.TimeDomainEvent, abi.TimeDomainProcessing} {
		if got, err = r.AppendTimers(got, 1, d); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("restored %d timers, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].Domain != want[i].Domain || got[i].Time != want[i].Time || !bytes.Equal(got[i].Key, want[i].Key) || !bytes.Equal(got[i].Payload, want[i].Payload) {
			t.Fatalf("restored timer %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}
