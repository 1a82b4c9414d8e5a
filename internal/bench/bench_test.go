package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var mu sync.Mutex
	var lines []string
	r, err := Run(ctx, Options{
		Events: 5_000, Users: 1_000, Rounds: 1, Parallelism: 2,
		Progress: func(format string, args ...any) {
			mu.Lock()
			lines = append(lines, fmt.Sprintf(format, args...))
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Events != 5_000 || r.Users != 1_000 || r.Parallelism != 2 || r.Rounds != 1 || r.State != "memory" {
		t.Errorf("result echoes options %+v", r)
	}
	if r.RawConsume <= 0 || r.Native <= 0 || r.Wasm <= 0 {
		t.Errorf("rates raw %v, native %v, wasm %v: want all positive", r.RawConsume, r.Native, r.Wasm)
	}
	if r.CappedWasm <= 0 || r.CappedNative != r.CappedWasm {
		t.Errorf("capped pairs: native %d, wasm %d; want equal and positive", r.CappedNative, r.CappedWasm)
	}
	if r.WasmOverNative != r.Wasm/r.Native || r.JobOverRaw != r.Wasm/r.RawConsume {
		t.Errorf("ratios wasm/native %v and job/raw %v do not match the rates %+v", r.WasmOverNative, r.JobOverRaw, r)
	}
	for _, step := range []string{"raw consume", "freqcap native", "freqcap wasm"} {
		n := 0
		for _, l := range lines {
			if strings.Contains(l, "round 1: "+step) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("progress reports round 1 of %s %d times, want once: %q", step, n, lines)
		}
	}
}

func TestRunPebble(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r, err := Run(ctx, Options{Events: 5_000, Users: 2_000, Parallelism: 2, State: "pebble", Uniform: 3_000, CacheMB: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r.State != "pebble" || r.CacheMB != 1 || r.Native != 0 {
		t.Errorf("result %+v: want pebble with cache_mb 1 and no native run", r)
	}
	if r.Wasm <= 0 || r.WasmPebble <= 0 || r.PebbleOverMemory != r.WasmPebble/r.Wasm {
		t.Errorf("rates memory %v, pebble %v, ratio %v: want positive rates and their ratio", r.Wasm, r.WasmPebble, r.PebbleOverMemory)
	}
	if r.CappedWasm <= 0 || r.CappedPebble != r.CappedWasm {
		t.Errorf("capped pairs: memory %d, pebble %d; want equal and positive", r.CappedWasm, r.CappedPebble)
	}
	u := r.Uniform
	if u == nil {
		t.Fatal("no uniform run")
	}
	// Each user's one view registers two timers; the run ends with every
	// window closed.
	if u.Keys != 3_000 || u.EventsPerSec <= 0 || u.TimersFired != 6_000 || u.PeakRSSBytes <= 0 || u.RSSScope != "bench" {
		t.Errorf("uniform run %+v", *u)
	}
}

func TestUniformEvents(t *testing.T) {
	for _, n := range []int{1, 7, 1000, 4096} {
		st := stride(n)
		seen := make(map[string]bool, n)
		for i := range n {
			ev := string(uniformEvent(nil, i, n, st))
			user := ev[len(`{"user_no":`):strings.Index(ev, ",")]
			if seen[user] {
				t.Fatalf("n=%d: user %s appears twice", n, user)
			}
			seen[user] = true
		}
	}
}
