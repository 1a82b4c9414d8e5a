package tests

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/examples/freqcap"
	"github.com/wasmstream/wasmstream/host/engine"
	"github.com/wasmstream/wasmstream/host/job"
	"github.com/wasmstream/wasmstream/host/runner"
	"github.com/wasmstream/wasmstream/internal/wasmbuild"
	"github.com/wasmstream/wasmstream/statestore"
	"github.com/wasmstream/wasmstream/statestore/pebble"
)

// The state backends end to end: the freqcap example job (Wasm plugin,
// event-time timers, map state) with state.backend memory and pebble, a
// Pebble state directory that outlives its run, and one that belongs to
// another job shape.

// withPebble sets cfg's state to Pebble in dir.
func withPebble(t *testing.T, cfg *job.Config, dir string) {
	t.Helper()
	cfg.State = job.State{Backend: job.BackendPebble, Dir: dir}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

// oracleLines is the oracle's records for data as "output key value" lines.
func oracleLines(data [][]byte, p freqcap.Params) []string {
	var want []string
	for _, r := range freqcap.Expect(data, p) {
		want = append(want, r.Output+" "+r.Key+" "+r.Value)
	}
	return want
}

func TestBackendsSameOutput(t *testing.T) {
	const (
		n      = 20_000
		window = 24 * 3600 * 1000 // a day: windows slide within the stream
	)
	e := newEnv(t)
	cfg := exampleJob(t, "freqcap", 2)
	bound := maxOutOfOrderness(t, cfg)
	// 30 s apart: the stream spans about 7 days.
	data := freqcap.Generate(n, freqcap.GenOptions{Seed: 33, Users: 300, Ads: 30, StepMs: 30_000, Disorder: bound})
	e.publish(t, cfg.Source.Stream, "views.>", "views.web", data)
	want := oracleLines(data, freqcap.Params{Cap: jobCap(t, cfg), Window: window, MaxOutOfOrderness: bound})
	if len(want) < 1000 {
		t.Fatalf("the oracle has %d records: the stream does not exercise the window", len(want))
	}

	wasm := wasmbuild.ForTest(t, "examples/freqcap/plugin")
	got := map[string][]string{}
	for _, backend := range []string{job.BackendMemory, job.BackendPebble} {
		c := exampleJob(t, "freqcap", 2)
		c.Plugin.Config["window_ms"] = strconv.Itoa(window)
		for i := range c.Sinks {
			c.Sinks[i].Subject += "." + backend
		}
		if backend == job.BackendPebble {
			withPebble(t, c, t.TempDir())
		}
		sum := runBounded(t, e, c, wasm, nil)
		checkOnTime(t, sum, n)
		if sum.Backend != backend {
			t.Errorf("summary names the backend %q, want %q", sum.Backend, backend)
		}
		for _, st := range sum.State {
			if st.Keys != 0 {
				t.Errorf("%s: state %s holds %d keys after every window closed", backend, st.Name, st.Keys)
			}
		}
		got[backend] = stored(t, e, c, "capped", "released")
		sameRecords(t, "freqcap with "+backend+" state", got[backend], want)
	}
	sameRecords(t, "freqcap with pebble state against memory state", got[job.BackendPebble], got[job.BackendMemory])
}

// TestPebbleStateOutlivesRun stops a run on Pebble state once every event
// is processed, with 5-day windows still open: the state and the expiry
// timers are then in the directory. A second run on the same directory,
// reading only events published after the first run, ends by closing every
// window: it releases exactly the pairs the first run capped, so the two
// runs together store what the oracle computes for one bounded run.
func TestPebbleStateOutlivesRun(t *testing.T) {
	const n = 5_000
	e := newEnv(t)
	cfg := exampleJob(t, "freqcap", 2)
	bound := maxOutOfOrderness(t, cfg)
	// 30 s apart: the stream spans under 2 days, inside the 5-day window.
	data := freqcap.Generate(n, freqcap.GenOptions{Seed: 34, Users: 200, Ads: 20, StepMs: 30_000, Disorder: bound})
	e.publish(t, cfg.Source.Stream, "views.>", "views.web", data)
	want := oracleLines(data, freqcap.Params{Cap: jobCap(t, cfg), Window: freqcap.DefaultWindow, MaxOutOfOrderness: bound})
	if len(want) < 100 {
		t.Fatalf("the oracle has %d records: too few to compare", len(want))
	}
	dir := filepath.Join(t.TempDir(), "state")
	wasm := wasmbuild.ForTest(t, "examples/freqcap/plugin")

	// Run 1: unbounded, stopped once it has processed every event.
	withPebble(t, cfg, dir)
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	j, err := runner.Prepare(ctx, cfg, runner.Options{
		Conn: e.nc, Wasm: wasm, Logf: t.Logf, StatusEvery: 5 * time.Millisecond,
		Status: func(s engine.Status) {
			if s.TotalProcessed() >= n {
				cancel()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	sum1, err := j.Run(ctx)
	j.Close(context.Background())
	if err != nil {
		t.Fatalf("run 1: %v", err)
	}
	t.Logf("run 1: %s", sum1)
	if sum1.TotalProcessed() != n || sum1.Outputs["released"] != 0 || sum1.Outputs["capped"] == 0 {
		t.Fatalf("run 1 processed %d of %d events, capped %d, released %d: want all, some capped, none released (windows are open)",
			sum1.TotalProcessed(), n, sum1.Outputs["capped"], sum1.Outputs["released"])
	}
	if len(sum1.State) != 1 || sum1.State[0].Keys == 0 {
		t.Fatalf("run 1 ends with state %+v: want the users' open windows", sum1.State)
	}

	// The directory holds what run 1 left: reopen it directly.
	b, err := pebble.Open(dir, statestore.Config{States: freqcap.Contract().States, MaxParallelism: cfg.MaxParallelism}, pebble.Options{})
	if err != nil {
		t.Fatalf("reopening the state directory: %v", err)
	}
	st := b.Stats()
	if len(st) != 1 || st[0].Keys != sum1.State[0].Keys || st[0].Bytes != sum1.State[0].Bytes {
		t.Errorf("reopened state %+v, run 1 ended with %+v", st, sum1.State)
	}
	if b.TimerCount() == 0 {
		t.Error("reopened state holds no timers: the windows' expiry timers are lost")
	}
	// The most frequent user has views counted in its map.
	user := []byte("1")
	kg := statestore.KeyGroup(user, cfg.MaxParallelism)
	views, err := b.MapAppendTo(nil, kg, freqcap.ViewsState, user, abi.IterEntries)
	if err != nil || len(views) == 0 {
		t.Errorf("user 1's views map: %d bytes, %v: want entries", len(views), err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// Run 2: one more event, which the plugin rejects (no integer da_id),
	// so the run reads only it and then closes every window.
	if err := freqcap.Publish(testCtx(t), e.js, "views.web", [][]byte{[]byte(`{"user_no":1,"da_id":"none","log_time":1}`)}, nil); err != nil {
		t.Fatal(err)
	}
	cfg2 := exampleJob(t, "freqcap", 2)
	cfg2.Source.Start = strconv.Itoa(n + 1)
	withPebble(t, cfg2, dir)
	sum2 := runBounded(t, e, cfg2, wasm, nil)
	if sum2.EventsIn != 1 || sum2.DeadLettered+sum2.Late != 1 {
		t.Errorf("run 2 read %d events (dead-lettered %d, late %d), want the one new event, not processed", sum2.EventsIn, sum2.DeadLettered, sum2.Late)
	}
	if sum2.Outputs["released"] != sum1.Outputs["capped"]+sum2.Outputs["capped"] {
		t.Errorf("run 2 released %d pairs; run 1 capped %d and run 2 %d: every capped pair must be released once", sum2.Outputs["released"], sum1.Outputs["capped"], sum2.Outputs["capped"])
	}
	for _, s := range sum2.State {
		if s.Keys != 0 {
			t.Errorf("state %s holds %d keys after run 2 closed every window", s.Name, s.Keys)
		}
	}
	sameRecords(t, "freqcap over two runs on one Pebble directory", stored(t, e, cfg2, "capped", "released"), want)
}

// TestPebbleDirOfAnotherJob runs the freqcap job on Pebble directories
// written for another max_parallelism and for other states: the runner
// returns the backend's error and the job processes nothing.
func TestPebbleDirOfAnotherJob(t *testing.T) {
	e := newEnv(t)
	cfg := exampleJob(t, "freqcap", 1)
	e.publish(t, cfg.Source.Stream, "views.>", "views.web", freqcap.Generate(10, freqcap.GenOptions{Seed: 35}))
	wasm := wasmbuild.ForTest(t, "examples/freqcap/plugin")

	otherStates := t.TempDir()
	b, err := pebble.Open(otherStates, statestore.Config{States: []abi.StateDesc{{Name: "count", Kind: abi.KindValue}}, MaxParallelism: cfg.MaxParallelism}, pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	otherMaxPar := t.TempDir()
	b, err = pebble.Open(otherMaxPar, statestore.Config{States: freqcap.Contract().States, MaxParallelism: cfg.MaxParallelism * 2}, pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, dir string
		want      []string
	}{
		{"states", otherStates, []string{otherStates, `holds state 0 as "count:value"`, `"views:map"`, "states may only be added at the end"}},
		{"max_parallelism", otherMaxPar, []string{otherMaxPar, "written with max_parallelism " + strconv.Itoa(cfg.MaxParallelism*2), "the job has " + strconv.Itoa(cfg.MaxParallelism)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := exampleJob(t, "freqcap", 1)
			withPebble(t, c, tc.dir)
			ctx := testCtx(t)
			j, err := runner.Prepare(ctx, c, runner.Options{Conn: e.nc, UntilCaughtUp: true, Wasm: wasm, Logf: t.Logf})
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close(context.Background())
			sum, err := j.Run(ctx)
			if err == nil {
				t.Fatalf("the job ran on a state directory of another job shape: %s", sum)
			}
			for _, w := range append(tc.want, "state.backend pebble") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if sum.EventsIn != 0 {
				t.Errorf("the refused job read %d events", sum.EventsIn)
			}
		})
	}
}
