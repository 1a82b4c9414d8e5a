package pebble_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	cpebble "github.com/cockroachdb/pebble/v2"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/statestore"
	"github.com/wasmstream/wasmstream/statestore/pebble"
	"github.com/wasmstream/wasmstream/statestore/statestoretest"
)

const maxPar = 16

var states = []abi.StateDesc{
	{Name: "v", Kind: abi.KindValue},
	{Name: "l", Kind: abi.KindList},
	{Name: "m", Kind: abi.KindMap},
	{Name: "t", Kind: abi.KindValue, TTL: &abi.TTL{Millis: 1000}},
}

func openDir(t *testing.T, dir string, sts []abi.StateDesc, clock *statestoretest.Clock, o pebble.Options) *pebble.Backend {
	t.Helper()
	o.Logf = t.Logf
	b, err := pebble.Open(dir, statestore.Config{States: sts, MaxParallelism: maxPar, Clock: clock.Now}, o)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func kg(key string) uint16 { return statestore.KeyGroup([]byte(key), maxPar) }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestReopen writes every kind of state, closes the directory and finds
// the state, its statistics and its TTL intact when opening it again.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	clock := statestoretest.NewClock(10_000)
	b := openDir(t, dir, states, clock, pebble.Options{})
	for i := range 200 {
		k := fmt.Appendf(nil, "k%d", i)
		g := kg(string(k))
		must(t, b.Put(g, 0, k, k))
		must(t, b.ListAdd(g, 1, k, []byte("a")))
		must(t, b.ListAdd(g, 1, k, []byte("b")))
		_, err := b.MapAddInt64(g, 2, k, []byte("n"), int64(i))
		must(t, err)
		must(t, b.Put(g, 3, k, []byte("ttl")))
	}
	before := b.Stats()
	must(t, b.Close())

	b = openDir(t, dir, states, clock, pebble.Options{})
	defer b.Close()
	after := b.Stats()
	for i := range before {
		if before[i].Keys != after[i].Keys || before[i].Bytes != after[i].Bytes {
			t.Errorf("state %d: %+v before close, %+v after reopen", i, before[i], after[i])
		}
	}
	for i := range 200 {
		k := fmt.Appendf(nil, "k%d", i)
		g := kg(string(k))
		if v, ok, err := b.Get(g, 0, k); string(v) != string(k) || !ok || err != nil {
			t.Fatalf("value %s = %q %v %v", k, v, ok, err)
		}
		enc, err := b.ListAppendTo(nil, g, 1, k)
		must(t, err)
		if string(enc) != string(abi.AppendItem(abi.AppendItem(nil, []byte("a")), []byte("b"))) {
			t.Fatalf("list %s = %q", k, enc)
		}
		must(t, b.ListAdd(g, 1, k, []byte("c")))
		if n, err := b.MapAddInt64(g, 2, k, []byte("n"), 1); n != int64(i)+1 || err != nil {
			t.Fatalf("map %s = %d %v", k, n, err)
		}
	}
	// The TTL survived: everything of state t expires 1s after its write.
	clock.Advance(1000)
	removed := 0
	for g := range maxPar {
		n, err := b.CleanupExpired(uint16(g), 1000)
		must(t, err)
		removed += n
	}
	if removed != 200 {
		t.Fatalf("cleanup after reopen removed %d, want 200", removed)
	}
	if s := b.Stats()[3]; s.Keys != 0 || s.Expired != 200 || s.ExpiryVisited > 400 {
		t.Fatalf("ttl state after cleanup: %+v", s)
	}
}

func TestRefusesUnknownFormatVersion(t *testing.T) {
	dir := t.TempDir()
	clock := statestoretest.NewClock(0)
	must(t, openDir(t, dir, states, clock, pebble.Options{}).Close())
	db, err := cpebble.Open(dir, &cpebble.Options{Logger: quiet{}})
	must(t, err)
	must(t, db.Set([]byte("\xff\xffformat"), []byte("7"), cpebble.Sync))
	must(t, db.Close())
	_, err = pebble.Open(dir, statestore.Config{States: states, MaxParallelism: maxPar}, pebble.Options{Logf: t.Logf})
	if err == nil || !strings.Contains(err.Error(), `format version "7"`) || !strings.Contains(err.Error(), "supports format version 1") {
		t.Fatalf("opening a format 7 directory: %v", err)
	}
}

func TestRefusesForeignDirectory(t *testing.T) {
	dir := t.TempDir()
	db, err := cpebble.Open(dir, &cpebble.Options{Logger: quiet{}})
	must(t, err)
	must(t, db.Set([]byte("something"), []byte("else"), cpebble.Sync))
	must(t, db.Close())
	_, err = pebble.Open(dir, statestore.Config{States: states, MaxParallelism: maxPar}, pebble.Options{Logf: t.Logf})
	if err == nil || !strings.Contains(err.Error(), "no wasmstream format version") {
		t.Fatalf("opening a foreign Pebble directory: %v", err)
	}
}

func TestRefusesOtherKeyGroupsAndStates(t *testing.T) {
	dir := t.TempDir()
	clock := statestoretest.NewClock(0)
	must(t, openDir(t, dir, states, clock, pebble.Options{}).Close())
	_, err := pebble.Open(dir, statestore.Config{States: states, MaxParallelism: maxPar * 2}, pebble.Options{Logf: t.Logf})
	if err == nil || !strings.Contains(err.Error(), "max_parallelism 16") {
		t.Fatalf("other max parallelism: %v", err)
	}
	renamed := append([]abi.StateDesc{{Name: "other", Kind: abi.KindValue}}, states[1:]...)
	_, err = pebble.Open(dir, statestore.Config{States: renamed, MaxParallelism: maxPar}, pebble.Options{Logf: t.Logf})
	if err == nil || !strings.Contains(err.Error(), `holds state 0 as "v:value"`) {
		t.Fatalf("renamed state: %v", err)
	}
	// Adding a state at the end is fine.
	more := append(append([]abi.StateDesc(nil), states...), abi.StateDesc{Name: "new", Kind: abi.KindMap})
	must(t, openDir(t, dir, more, clock, pebble.Options{}).Close())
}

func TestBadOptions(t *testing.T) {
	cfg := statestore.Config{States: states, MaxParallelism: maxPar}
	for _, o := range []pebble.Options{{Compression: "lz4"}, {CacheBytes: -1}, {BlockCacheBytes: -5}, {MemTableBytes: 8 << 30}} {
		if _, err := pebble.Open(t.TempDir(), cfg, o); err == nil {
			t.Errorf("Open with %+v succeeded", o)
		}
	}
}

// TestTTLAddedAndRemoved reopens a directory with TTL removed from a state
// and then added to another: stored values decode either way.
func TestTTLAddedAndRemoved(t *testing.T) {
	dir := t.TempDir()
	clock := statestoretest.NewClock(10_000)
	b := openDir(t, dir, states, clock, pebble.Options{})
	must(t, b.Put(kg("x"), 3, []byte("x"), []byte("with ttl")))
	must(t, b.Put(kg("x"), 0, []byte("x"), []byte("without")))
	must(t, b.Close())

	swapped := append([]abi.StateDesc(nil), states...)
	swapped[0].TTL = &abi.TTL{Millis: 500}
	swapped[3].TTL = nil
	clock.Advance(5000)
	b = openDir(t, dir, swapped, clock, pebble.Options{})
	if v, ok, err := b.Get(kg("x"), 3, []byte("x")); string(v) != "with ttl" || !ok || err != nil {
		t.Fatalf("value stored with a TTL, read without = %q %v %v", v, ok, err)
	}
	if v, ok, err := b.Get(kg("x"), 0, []byte("x")); string(v) != "without" || !ok || err != nil {
		t.Fatalf("value stored without a TTL, read with one = %q %v %v", v, ok, err)
	}
	// Written again, it expires under its new TTL.
	must(t, b.Put(kg("x"), 0, []byte("x"), []byte("again")))
	for g := range maxPar {
		_, err := b.CleanupExpired(uint16(g), 100)
		must(t, err)
	}
	must(t, b.Close())
	clock.Advance(500)
	b = openDir(t, dir, swapped, clock, pebble.Options{})
	defer b.Close()
	if _, ok, _ := b.Get(kg("x"), 0, []byte("x")); ok {
		t.Fatal("value written under the new TTL did not expire")
	}
	if v, ok, _ := b.Get(kg("x"), 3, []byte("x")); !ok || string(v) != "with ttl" {
		t.Fatal("value of a state whose TTL was removed expired")
	}
}

// TestEvictionAndConcurrency writes from one goroutine per worker, each
// owning its key groups, through a cache small enough to evict, then
// checks every value.
func TestEvictionAndConcurrency(t *testing.T) {
	clock := statestoretest.NewClock(0)
	b := openDir(t, t.TempDir(), states, clock, pebble.Options{CacheBytes: 64 << 10})
	defer b.Close()
	const workers, keys = 4, 4000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range 3 {
				for i := range keys {
					k := fmt.Appendf(nil, "k%d", i)
					g := kg(string(k))
					if statestore.WorkerOf(g, maxPar, workers) != w {
						continue
					}
					if _, err := b.MapAddInt64(g, 2, k, []byte("n"), 1); err != nil {
						t.Error(err)
						return
					}
					if _, _, err := b.MapGet(g, 2, k, []byte("n")); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	for i := range keys {
		k := fmt.Appendf(nil, "k%d", i)
		v, ok, err := b.MapGet(kg(string(k)), 2, k, []byte("n"))
		if !ok || err != nil || v[0] != 3 {
			t.Fatalf("%s = %v %v %v, want 3", k, v, ok, err)
		}
	}
	s := b.Stats()[2]
	if s.CacheMisses == 0 || s.CacheHits == 0 || s.Keys != keys {
		t.Fatalf("map stats %+v: want hits, misses and %d keys", s, keys)
	}
}

func TestCheckpoint(t *testing.T) {
	clock := statestoretest.NewClock(0)
	b := openDir(t, t.TempDir(), states, clock, pebble.Options{})
	must(t, b.Put(kg("k"), 0, []byte("k"), []byte("v")))
	must(t, b.Flush())
	dest := t.TempDir() + "/cp"
	must(t, b.Checkpoint(dest))
	must(t, b.Put(kg("k"), 0, []byte("k"), []byte("later")))
	must(t, b.Close())
	c := openDir(t, dest, states, clock, pebble.Options{})
	defer c.Close()
	if v, _, _ := c.Get(kg("k"), 0, []byte("k")); string(v) != "v" {
		t.Fatalf("checkpoint holds %q", v)
	}
}

type quiet struct{}

func (quiet) Infof(string, ...any)  {}
func (quiet) Errorf(string, ...any) {}
func (quiet) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}
