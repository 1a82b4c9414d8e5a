package plugin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/wasmstream/wasmstream/host/process"
	"github.com/wasmstream/wasmstream/internal/wasmbuild"
	"github.com/wasmstream/wasmstream/statestore"
	"github.com/wasmstream/wasmstream/statestore/memory"
)

const benchBatch = 256

// freqcapBatch returns a batch over 1000 users and 10 campaigns.
func freqcapBatch() []process.Event {
	evs := make([]process.Event, benchBatch)
	for i := range evs {
		evs[i] = event(fmt.Sprintf("user-%d", i*7919%1000), fmt.Sprintf("camp-%d", i%10))
	}
	return evs
}

type nopCollector struct{ n int }

func (c *nopCollector) Emit(port int, seq uint64, key, value []byte) { c.n++ }
func (c *nopCollector) Reject(ev *process.Event, reason string)      {}

func benchProcess(b *testing.B, p *Plugin, config map[string]string) {
	h, err := tryOpen(b, p, config)
	if err != nil {
		b.Fatal(err)
	}
	defer h.f.Close(context.Background())
	evs := freqcapBatch()
	c := &nopCollector{}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := h.f.ProcessBatch(ctx, evs, c); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatch), "ns/event")
}

// BenchmarkProcessBatch runs the freqcap guest (one map_add_i64 per event)
// on batches of 256 events, without and with a call timeout.
func BenchmarkProcessBatch(b *testing.B) {
	b.Run("timeout=off", func(b *testing.B) { benchProcess(b, shared(b, "freqcap"), nil) })
	b.Run("timeout=10s", func(b *testing.B) {
		p := load(b, "freqcap", Options{CallTimeout: 10 * time.Second})
		defer p.Close(context.Background())
		benchProcess(b, p, nil)
	})
}

// BenchmarkHostCall adds 16 now_ms calls per event to the freqcap guest:
// the difference to calls=0, divided by 16, is the cost of one host call.
func BenchmarkHostCall(b *testing.B) {
	for _, n := range []string{"0", "16"} {
		b.Run("calls="+n, func(b *testing.B) {
			benchProcess(b, shared(b, "freqcap"), map[string]string{"now_calls": n})
		})
	}
}

// BenchmarkNativeBaseline does the freqcap work in Go against the same
// backend, to separate the Wasm boundary from the state backend.
func BenchmarkNativeBaseline(b *testing.B) {
	st, _ := memory.New(statestore.Config{States: shared(b, "freqcap").Contract().States, MaxParallelism: testMaxParallelism})
	evs := freqcapBatch()
	c := &nopCollector{}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		for j := range evs {
			e := &evs[j]
			n, err := st.MapAddInt64(e.KeyGroup, 0, e.Key, e.Value, 1)
			if err != nil {
				b.Fatal(err)
			}
			if n == 3 {
				c.Emit(0, e.Seq, e.Key, e.Value)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatch), "ns/event")
}

var sinkInstance *instance

// BenchmarkInstanceLookup compares ways a host function can find its
// instance.
func BenchmarkInstanceLookup(b *testing.B) {
	in := &instance{}
	base, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	cc := &callCtx{Context: base, in: in}
	b.Run("callCtx-assert", func(b *testing.B) {
		var ctx context.Context = cc
		for i := 0; i < b.N; i++ {
			sinkInstance = instanceOf(ctx)
		}
	})
	b.Run("callCtx-value", func(b *testing.B) {
		var ctx context.Context = cc
		for i := 0; i < b.N; i++ {
			sinkInstance = ctx.Value(instKey{}).(*instance)
		}
	})
	b.Run("withValue-under-timeout", func(b *testing.B) {
		ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), instKey{}, in), time.Hour)
		defer cancel()
		for i := 0; i < b.N; i++ {
			sinkInstance = ctx.Value(instKey{}).(*instance)
		}
	})
	b.Run("syncMap-by-module-name", func(b *testing.B) {
		var m sync.Map
		for i := 0; i < 64; i++ {
			m.Store(fmt.Sprintf("freqcap#%d", i), &instance{})
		}
		m.Store("freqcap#7", in)
		name := "freqcap#7"
		for i := 0; i < b.N; i++ {
			v, _ := m.Load(name)
			sinkInstance = v.(*instance)
		}
	})
}

// BenchmarkLoad measures Load of the ops guest with an empty compilation
// cache directory (cold) and with a populated one read by a new cache, as a
// new process would (warm).
func BenchmarkLoad(b *testing.B) {
	wasm := wasmbuild.ForTest(b, "host/plugin/testdata/ops")
	ctx := context.Background()
	b.Run("cold", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			dir := b.TempDir()
			p, err := Load(ctx, "ops", wasm, Options{CacheDir: dir})
			if err != nil {
				b.Fatal(err)
			}
			p.Close(ctx)
		}
	})
	b.Run("warm", func(b *testing.B) {
		dir := b.TempDir()
		p, err := Load(ctx, "ops", wasm, Options{CacheDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		p.Close(ctx)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			// A distinct spelling of the directory gets a new cache object,
			// so the compiled code comes from the files.
			alias := filepath.Join(dir, fmt.Sprintf("x%d", i), "..")
			os.MkdirAll(filepath.Join(dir, fmt.Sprintf("x%d", i)), 0o755)
			p, err := Load(ctx, "ops", wasm, Options{CacheDir: alias})
			if err != nil {
				b.Fatal(err)
			}
			p.Close(ctx)
		}
	})
}
