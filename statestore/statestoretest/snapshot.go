package statestoretest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/statestore"
)

// Restorer opens a new backend for cfg holding the snapshot h, read
// through src; the test closes it.
type Restorer func(t *testing.T, cfg statestore.Config, h statestore.SnapshotHandle, src statestore.SnapshotSource) statestore.Backend

// RunSnapshots checks the snapshots of a backend that is a
// statestore.Snapshotter: captures stepped a little at a time while the
// captured key groups keep changing (values, lists, maps and timers,
// before and after each record is taken), by two captures of distinct key
// groups as two workers take them. The restored snapshot must equal the
// state at the barrier, and the live backend must hold every change made
// after it.
func RunSnapshots(t *testing.T, o Opener, r Restorer) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) { testSnapshotDuringChanges(t, o, r, seed) })
	}
}

// model is what a backend should hold: per key "st/key", the value, the
// list items or the map entries; and the live timers.
type model struct {
	vals   map[string]string
	lists  map[string][]string
	maps   map[string]map[string]string
	timers map[string]statestore.Timer // by timerString, with the key group
	tkg    map[string]uint16
}

func newModel() *model {
	return &model{vals: map[string]string{}, lists: map[string][]string{}, maps: map[string]map[string]string{},
		timers: map[string]statestore.Timer{}, tkg: map[string]uint16{}}
}

func (m *model) clone() *model {
	c := newModel()
	maps.Copy(c.vals, m.vals)
	for k, v := range m.lists {
		c.lists[k] = slices.Clone(v)
	}
	for k, v := range m.maps {
		c.maps[k] = maps.Clone(v)
	}
	maps.Copy(c.timers, m.timers)
	maps.Copy(c.tkg, m.tkg)
	return c
}

// snapFixture drives random changes to a backend and its model.
type snapFixture struct {
	t    *testing.T
	rng  *rand.Rand
	b    statestore.Backend
	ts   statestore.TimerStore
	m    *model
	keys []string
}

func (f *snapFixture) ok(err error) {
	f.t.Helper()
	if err != nil {
		f.t.Fatal(err)
	}
}

// change makes one random change to a random key.
func (f *snapFixture) change() {
	key := f.keys[f.rng.IntN(len(f.keys))]
	g := kg(key)
	k := []byte(key)
	switch op := f.rng.IntN(12); op {
	case 0, 1:
		v := fmt.Sprintf("v%d", f.rng.IntN(1000))
		f.ok(f.b.Put(g, stValue, k, []byte(v)))
		f.m.vals[key] = v
	case 2:
		f.ok(f.b.Delete(g, stValue, k))
		delete(f.m.vals, key)
	case 3, 4:
		it := fmt.Sprintf("i%d", f.rng.IntN(1000))
		f.ok(f.b.ListAdd(g, stList, k, []byte(it)))
		f.m.lists[key] = append(f.m.lists[key], it)
	case 5:
		f.ok(f.b.ListClear(g, stList, k))
		delete(f.m.lists, key)
	case 6, 7:
		uk, v := fmt.Sprintf("u%d", f.rng.IntN(8)), fmt.Sprintf("m%d", f.rng.IntN(1000))
		f.ok(f.b.MapPut(g, stMap, k, []byte(uk), []byte(v)))
		if f.m.maps[key] == nil {
			f.m.maps[key] = map[string]string{}
		}
		f.m.maps[key][uk] = v
	case 8:
		uk := fmt.Sprintf("u%d", f.rng.IntN(8))
		f.ok(f.b.MapDelete(g, stMap, k, []byte(uk)))
		delete(f.m.maps[key], uk)
		if len(f.m.maps[key]) == 0 {
			delete(f.m.maps, key)
		}
	case 9:
		x := tm(f.rng.IntN(2), int64(f.rng.IntN(1000)), key, fmt.Sprintf("p%d", f.rng.IntN(3)))
		added, err := f.ts.RegisterTimer(g, x)
		f.ok(err)
		_, had := f.m.timers[timerString(x)]
		if added == had {
			f.t.Fatalf("RegisterTimer(%s) = %v, the model has it: %v", timerString(x), added, had)
		}
		f.m.timers[timerString(x)], f.m.tkg[timerString(x)] = x, g
	case 10:
		// Delete a live timer of a random key group, if it has one.
		for s, x := range f.m.timers {
			removed, err := f.ts.DeleteTimer(f.m.tkg[s], x)
			f.ok(err)
			if !removed {
				f.t.Fatalf("DeleteTimer(%s) found nothing", s)
			}
			delete(f.m.timers, s)
			delete(f.m.tkg, s)
			break
		}
	case 11:
		d, upTo := f.rng.IntN(2), int64(f.rng.IntN(400))
		_, err := f.ts.PopTimers(g, d, upTo, 1+f.rng.IntN(4), func(x statestore.Timer) {
			s := timerString(x)
			if _, ok := f.m.timers[s]; !ok || f.m.tkg[s] != g || x.Time > upTo {
				f.t.Fatalf("PopTimers(%d, %d, %d) popped %s, which is not a live timer due then", g, d, upTo, s)
			}
			delete(f.m.timers, s)
			delete(f.m.tkg, s)
		})
		f.ok(err)
	}
}

// checkModel compares backend b with model m.
func checkModel(t *testing.T, what string, b statestore.Backend, m *model, keys []string) {
	t.Helper()
	for _, key := range keys {
		g, k := kg(key), []byte(key)
		v, ok, err := b.Get(g, stValue, k)
		if err != nil {
			t.Fatal(err)
		}
		if want, wok := m.vals[key]; ok != wok || string(v) != want {
			t.Fatalf("%s: value of %s = %q %v, want %q %v", what, key, v, ok, want, wok)
		}
		enc, err := b.ListAppendTo(nil, g, stList, k)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := items(t, enc), strings.Join(m.lists[key], ","); got != want {
			t.Fatalf("%s: list of %s = %q, want %q", what, key, got, want)
		}
		enc, err = b.MapAppendTo(nil, g, stMap, k, abi.IterEntries)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, uk := range slices.Sorted(maps.Keys(m.maps[key])) {
			want = append(want, uk, m.maps[key][uk])
		}
		if got := items(t, enc); got != strings.Join(want, ",") {
			t.Fatalf("%s: map of %s = %q, want %q", what, key, got, strings.Join(want, ","))
		}
	}
	ts, ok := b.(timerLister)
	if !ok {
		t.Fatalf("the backend %T cannot list its timers (AppendTimers)", b)
	}
	var got []string
	for g := range uint16(MaxParallelism) {
		for _, d := range []int{abi.TimeDomainEvent, abi.TimeDomainProcessing} {
			all, err := ts.AppendTimers(nil, g, d)
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range all {
				got = append(got, fmt.Sprintf("%d:%s", g, timerString(x)))
			}
		}
	}
	var want []string
	for s := range m.timers {
		want = append(want, fmt.Sprintf("%d:%s", m.tkg[s], s))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("%s: %d timers, want %d\ngot  %q\nwant %q", what, len(got), len(want), got, want)
	}
}

func testSnapshotDuringChanges(t *testing.T, o Opener, r Restorer, seed uint64) {
	f0 := open(t, o, plainStates())
	sn, ok := f0.b.(statestore.Snapshotter)
	if !ok {
		t.Skip("the backend takes no snapshots")
	}
	f := &snapFixture{t: t, rng: rand.New(rand.NewPCG(seed, 7)), b: f0.b, ts: f0.b.(statestore.TimerStore), m: newModel()}
	for i := range 200 {
		f.keys = append(f.keys, fmt.Sprintf("key%03d", i))
	}
	for range 4000 {
		f.change()
	}
	for round := range 3 {
		atBarrier := f.m.clone()
		s, err := sn.Snapshot()
		f.ok(err)
		// Two captures, as two workers with four key groups each; the
		// second starts after some changes.
		var caps []statestore.Capture
		c, err := s.Capture([]uint16{0, 1, 2, 3})
		f.ok(err)
		caps = append(caps, c)
		// Changes to key groups 4-7 before their capture belong to the
		// snapshot; to key groups 0-3, they do not.
		for range 100 {
			f.change()
		}
		atBarrier = mergeBarrier(atBarrier, f.m, 4)
		c, err = s.Capture([]uint16{4, 5, 6, 7})
		f.ok(err)
		caps = append(caps, c)
		for done := false; !done; {
			done = true
			for _, c := range caps {
				d, err := c.Step(1 + f.rng.IntN(4))
				f.ok(err)
				done = done && d
			}
			for range 5 {
				f.change()
			}
		}
		files := &memFiles{m: map[string][]byte{}}
		h, err := s.Write(context.Background(), files)
		f.ok(err)
		f.ok(s.Release())
		for range 300 {
			f.change()
		}
		restored := r(t, statestore.Config{States: plainStates(), MaxParallelism: MaxParallelism, Clock: f0.clock.Now}, h, files)
		checkModel(t, fmt.Sprintf("round %d: restored snapshot", round), restored, atBarrier, f.keys)
		f.ok(restored.Close())
		checkModel(t, fmt.Sprintf("round %d: live backend", round), f.b, f.m, f.keys)
	}
}

// mergeBarrier returns the state at the barriers: key groups below split
// from before, the others from now.
func mergeBarrier(before, now *model, split uint16) *model {
	out := before.clone()
	late := now.clone()
	takeLate(out.vals, late.vals, split)
	takeLate(out.lists, late.lists, split)
	takeLate(out.maps, late.maps, split)
	for s, g := range out.tkg {
		if g >= split {
			delete(out.timers, s)
			delete(out.tkg, s)
		}
	}
	for s, g := range late.tkg {
		if g >= split {
			out.timers[s], out.tkg[s] = late.timers[s], g
		}
	}
	return out
}

// timerLister is a timer store that lists its timers, as the backends do
// for checkpoints and tests.
type timerLister interface {
	AppendTimers(dst []statestore.Timer, kg uint16, domain int) ([]statestore.Timer, error)
}

// takeLate replaces the entries of dst whose key's key group is at or
// after split with those of late.
func takeLate[V any](dst, late map[string]V, split uint16) {
	for k := range dst {
		if kg(k) >= split {
			delete(dst, k)
		}
	}
	for k, v := range late {
		if kg(k) >= split {
			dst[k] = v
		}
	}
}

// memFiles is a snapshot target and source in memory.
type memFiles struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (f *memFiles) Known(string) (statestore.FileHandle, bool) { return statestore.FileHandle{}, false }

func (f *memFiles) Write(_ context.Context, name string, shared bool, r io.Reader) (statestore.FileHandle, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return statestore.FileHandle{}, err
	}
	f.mu.Lock()
	f.m[name] = data
	f.mu.Unlock()
	sum := sha256.Sum256(data)
	return statestore.FileHandle{Name: name, Shared: shared, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}, nil
}

func (f *memFiles) Open(_ context.Context, h statestore.FileHandle) (io.ReadCloser, error) {
	f.mu.Lock()
	data, ok := f.m[h.Name]
	f.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("no file %s", h.Name)
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}
