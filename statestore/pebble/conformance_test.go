package pebble_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/wasmstream/wasmstream/statestore"
	"github.com/wasmstream/wasmstream/statestore/pebble"
	"github.com/wasmstream/wasmstream/statestore/statestoretest"
)

// openers open backends in temporary directories and reopen them.
type openers struct {
	o      pebble.Options
	mu     sync.Mutex
	opened map[statestore.Backend]opened
}

type opened struct {
	dir string
	cfg statestore.Config
}

func newOpeners(o pebble.Options) *openers {
	return &openers{o: o, opened: map[statestore.Backend]opened{}}
}

func (p *openers) openDir(t *testing.T, dir string, cfg statestore.Config) statestore.Backend {
	o := p.o
	o.Logf = t.Logf
	b, err := pebble.Open(dir, cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.opened[b] = opened{dir, cfg}
	p.mu.Unlock()
	return b
}

func (p *openers) open(t *testing.T, cfg statestore.Config) statestore.Backend {
	return p.openDir(t, t.TempDir(), cfg)
}

func (p *openers) reopen(t *testing.T, b statestore.Backend) statestore.Backend {
	p.mu.Lock()
	was, ok := p.opened[b]
	delete(p.opened, b)
	p.mu.Unlock()
	if !ok {
		t.Fatalf("reopen: backend %p was not opened by this test", b)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	return p.openDir(t, was.dir, was.cfg)
}

func run(t *testing.T, o pebble.Options) {
	p := newOpeners(o)
	statestoretest.Run(t, p.open)
	statestoretest.RunDurable(t, p.open, p.reopen)
	statestoretest.RunSnapshots(t, p.open, func(t *testing.T, cfg statestore.Config, h statestore.SnapshotHandle, src statestore.SnapshotSource) statestore.Backend {
		oo := o
		oo.Logf = t.Logf
		b, _, err := pebble.Restore(context.Background(), filepath.Join(t.TempDir(), "restored"), cfg, oo, h, src)
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

func TestConformance(t *testing.T) {
	run(t, pebble.Options{})
}

// TestConformanceSmallCache runs the suite with caches and buffers so small
// that records are written back and evicted, timer writes committed and
// timers read back from Pebble all the time.
func TestConformanceSmallCache(t *testing.T) {
	run(t, pebble.Options{CacheBytes: 1, Compression: "zstd", MemTableBytes: 1 << 20, BloomBitsPerKey: -1,
		TimerBatchBytes: 1, TimerCacheBytes: 1})
}

// TestConformanceSmallTimerCache keeps a few timers per key group and domain
// in memory, so they are read back from Pebble, through the uncommitted
// timer writes, all the time.
func TestConformanceSmallTimerCache(t *testing.T) {
	run(t, pebble.Options{TimerCacheBytes: 2 * statestoretest.MaxParallelism * 300, TimerBatchBytes: statestoretest.MaxParallelism * 2048})
}
