package pebble_test

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

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

// timerLoad is BenchmarkTimers10M's workload: n timers of 1M keys over 128
// key groups, at times uniform over 24 hours.
type timerLoad struct {
	keys [][]byte
	kgs  []uint16 // per key
	key  []int32  // per timer
	time []int64  // per timer
}

const (
	timerBase   = 1_700_000_000_000
	timerSpan   = 24 * 3600_000
	timerMaxPar = 128
)

func newTimerLoad(n, nkeys int) *timerLoad {
	r := rand.New(rand.NewSource(7))
	l := &timerLoad{keys: make([][]byte, nkeys), kgs: make([]uint16, nkeys), key: make([]int32, n), time: make([]int64, n)}
	for i := range l.keys {
		l.keys[i] = fmt.Appendf(nil, "user-%07d", i)
		l.kgs[i] = statestore.KeyGroup(l.keys[i], timerMaxPar)
	}
	for i := range n {
		l.key[i] = int32(r.Intn(nkeys))
		l.time[i] = timerBase + r.Int63n(timerSpan)
	}
	return l
}

// kgTime is a key group's earliest due timer.
type kgTime struct {
	t  int64
	kg uint16
}

// fireMerged fires the timers of domain up to upTo in the key groups kgs as
// a worker of the engine does: merged across key groups in time order, each
// PopTimers call stopping where the next key group's timers begin, in
// batches of at most 1024.
func fireMerged(ts statestore.TimerStore, kgs []uint16, domain int, upTo int64, fn func(statestore.Timer)) (int, error) {
	h := make([]kgTime, 0, len(kgs))
	less := func(a, b kgTime) bool { return a.t < b.t || a.t == b.t && a.kg < b.kg }
	push := func(x kgTime) {
		h = append(h, x)
		for i := len(h) - 1; i > 0; {
			p := (i - 1) / 2
			if !less(h[i], h[p]) {
				break
			}
			h[i], h[p] = h[p], h[i]
			i = p
		}
	}
	pop := func() kgTime {
		top := h[0]
		h[0] = h[len(h)-1]
		h = h[:len(h)-1]
		for i := 0; ; {
			m, l, r := i, 2*i+1, 2*i+2
			if l < len(h) && less(h[l], h[m]) {
				m = l
			}
			if r < len(h) && less(h[r], h[m]) {
				m = r
			}
			if m == i {
				break
			}
			h[i], h[m] = h[m], h[i]
			i = m
		}
		return top
	}
	for _, kg := range kgs {
		t, ok, err := ts.NextTimer(kg, domain)
		if err != nil {
			return 0, err
		}
		if ok && t <= upTo {
			push(kgTime{t, kg})
		}
	}
	fired := 0
	for len(h) > 0 {
		for batch := 0; batch < 1024 && len(h) > 0; {
			top := pop()
			bound := upTo
			if len(h) > 0 && h[0].t < bound {
				bound = h[0].t
			}
			n, err := ts.PopTimers(top.kg, domain, bound, 1024-batch, fn)
			if err != nil {
				return fired, err
			}
			batch += n
			fired += n
			t, ok, err := ts.NextTimer(top.kg, domain)
			if err != nil {
				return fired, err
			}
			if ok && t <= upTo {
				push(kgTime{t, top.kg})
			}
		}
	}
	return fired, nil
}

// dirBytes returns the bytes of the tables in dir and of all its files.
func dirBytes(b *testing.B, dir string) (sst, all int64) {
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted meanwhile: an obsolete table or log
		}
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		all += fi.Size()
		if strings.HasSuffix(path, ".sst") {
			sst += fi.Size()
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return sst, all
}

// peakRSS is the process's peak resident set size in bytes, or 0 where
// /proc does not tell.
func peakRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func heapBytes() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

var timersN = flag.Int("timers", 10_000_000, "the number of timers BenchmarkTimers10M registers")

// BenchmarkTimers10M registers 10M event-time timers (1M keys, 128 key
// groups, times uniform over 24 hours) and fires them all as one engine
// worker advancing its watermark by a second at a time does. Run it with
// -benchtime 1x: each iteration is the whole workload. It reports
// registrations and firings per second and, for Pebble, the bytes per timer
// of the directory after Flush and a full compaction; for the memory store,
// the heap bytes per timer.
func BenchmarkTimers10M(b *testing.B) {
	n, nkeys := *timersN, 1_000_000
	l := newTimerLoad(n, nkeys)
	kgs := make([]uint16, timerMaxPar)
	for i := range kgs {
		kgs[i] = uint16(i)
	}
	cfg := statestore.Config{MaxParallelism: timerMaxPar}
	type store interface {
		statestore.Backend
		statestore.TimerStore
	}
	run := func(b *testing.B, open func() store, after func(be store, added int64)) {
		for b.Loop() {
			be := open()
			start := time.Now()
			var added int64
			for i := range n {
				k := l.key[i]
				ok, err := be.RegisterTimer(l.kgs[k], statestore.Timer{Domain: abi.TimeDomainEvent, Time: l.time[i], Key: l.keys[k]})
				if err != nil {
					b.Fatal(err)
				}
				if ok {
					added++
				}
			}
			reg := time.Since(start)
			start = time.Now()
			if err := be.Flush(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(time.Since(start).Seconds(), "flush-s")
			if be.TimerCount() != added {
				b.Fatalf("TimerCount %d, registered %d", be.TimerCount(), added)
			}
			after(be, added)
			start = time.Now()
			fired := 0
			var last int64
			fn := func(t statestore.Timer) {
				if t.Time < last {
					b.Fatalf("timer at %d fired after one at %d", t.Time, last)
				}
				last = t.Time
				fired++
			}
			for wm := int64(timerBase); wm < timerBase+timerSpan+1000; wm += 1000 {
				if _, err := fireMerged(be, kgs, abi.TimeDomainEvent, wm, fn); err != nil {
					b.Fatal(err)
				}
			}
			fire := time.Since(start)
			if int64(fired) != added || be.TimerCount() != 0 {
				b.Fatalf("fired %d of %d, %d left", fired, added, be.TimerCount())
			}
			if err := be.Close(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(added)/reg.Seconds(), "registers/s")
			b.ReportMetric(float64(fired)/fire.Seconds(), "fires/s")
			b.ReportMetric(float64(added), "timers")
			b.ReportMetric(float64(peakRSS())/(1<<20), "peak-RSS-MiB")
		}
	}
	b.Run("pebble", func(b *testing.B) {
		dir := b.TempDir()
		run(b, func() store {
			os.RemoveAll(dir)
			be, err := pebble.Open(dir, cfg, pebble.Options{})
			if err != nil {
				b.Fatal(err)
			}
			return be
		}, func(be store, added int64) {
			start := time.Now()
			if err := be.(*pebble.Backend).CompactAll(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(time.Since(start).Seconds(), "compact-s")
			sst, all := dirBytes(b, dir)
			b.ReportMetric(float64(sst)/float64(added), "sst-B/timer")
			b.ReportMetric(float64(all)/float64(added), "dir-B/timer")
		})
	})
	b.Run("memory", func(b *testing.B) {
		var base int64
		run(b, func() store {
			base = heapBytes()
			be, err := memory.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			return be
		}, func(be store, added int64) {
			b.ReportMetric(float64(heapBytes()-base)/float64(added), "heap-B/timer")
		})
	})
}
