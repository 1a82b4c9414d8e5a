package pebble_test

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/statestore"
	"github.com/wasmstream/wasmstream/statestore/memory"
	"github.com/wasmstream/wasmstream/statestore/pebble"
)

// zipfKeys returns n keys of 1M users drawn from a Zipf distribution
// (s = 1.1), with their key groups.
func zipfKeys(n, maxPar int) ([][]byte, []uint16) {
	r := rand.New(rand.NewSource(1))
	z := rand.NewZipf(r, 1.1, 1, 1_000_000-1)
	keys := make([][]byte, n)
	kgs := make([]uint16, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "%d", z.Uint64())
		kgs[i] = statestore.KeyGroup(keys[i], maxPar)
	}
	return keys, kgs
}

// BenchmarkZipfMapAdd is the freqcap state pattern: one MapAddInt64 per
// event on the event's user, users Zipf-distributed over 1M, ads over 64.
func BenchmarkZipfMapAdd(b *testing.B) {
	const maxPar = 128
	keys, kgs := zipfKeys(1<<20, maxPar)
	cfg := statestore.Config{States: []abi.StateDesc{{Name: "views", Kind: abi.KindMap}}, MaxParallelism: maxPar}
	run := func(b *testing.B, be statestore.Backend) {
		var uk [8]byte
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			j := i & (len(keys) - 1)
			uk[0] = byte(i % 64)
			if _, err := be.MapAddInt64(kgs[j], 0, keys[j], uk[:], 1); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.StopTimer()
		if err := be.Flush(); err != nil {
			b.Fatal(err)
		}
		s := be.Stats()[0]
		b.ReportMetric(s.HitRatio(), "hit-ratio")
	}
	b.Run("memory", func(b *testing.B) {
		be, _ := memory.New(cfg)
		run(b, be)
	})
	for _, mb := range []int64{256, 16} {
		b.Run(fmt.Sprintf("pebble/cache=%dMB", mb), func(b *testing.B) {
			be, err := pebble.Open(b.TempDir(), cfg, pebble.Options{CacheBytes: mb << 20})
			if err != nil {
				b.Fatal(err)
			}
			defer be.Close()
			run(b, be)
		})
	}
}
