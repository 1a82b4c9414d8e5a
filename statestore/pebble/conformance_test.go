package pebble_test

import (
	"testing"

	"github.com/wasmstream/wasmstream/statestore"
	"github.com/wasmstream/wasmstream/statestore/pebble"
	"github.com/wasmstream/wasmstream/statestore/statestoretest"
)

func opener(o pebble.Options) statestoretest.Opener {
	return func(t *testing.T, cfg statestore.Config) statestore.Backend {
		o.Logf = t.Logf
		b, err := pebble.Open(t.TempDir(), cfg, o)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

func TestConformance(t *testing.T) {
	statestoretest.Run(t, opener(pebble.Options{}))
}

// TestConformanceSmallCache runs the suite with a cache so small that
// records are written back and evicted all the time.
func TestConformanceSmallCache(t *testing.T) {
	statestoretest.Run(t, opener(pebble.Options{CacheBytes: 1, Compression: "zstd", MemTableBytes: 1 << 20, BloomBitsPerKey: -1}))
}
