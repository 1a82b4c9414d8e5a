package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/wasmstream/wasmstream/host/job"
	"github.com/wasmstream/wasmstream/internal/bench"
)

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", stderr, "bench [flags]")
	var o bench.Options
	fs.IntVar(&o.Events, "events", 500_000, "generated events")
	fs.IntVar(&o.Users, "users", 0, "distinct users, Zipf-distributed (default 100000; 1000000 with --state pebble)")
	fs.IntVar(&o.Parallelism, "parallelism", 1, "workers per job")
	fs.IntVar(&o.Cap, "cap", 3, "views of one ad by one user before it is capped")
	fs.IntVar(&o.Rounds, "rounds", 1, "alternate the measurements this many times and keep each one's best")
	fs.StringVar(&o.State, "state", job.BackendMemory, "memory: raw consume, native and Wasm with memory state; pebble: the Wasm job with memory and with Pebble state (temporary directories), then the uniform run")
	fs.IntVar(&o.Uniform, "uniform", 10_000_000, "with --state pebble: distinct users, one event each, of the uniform run (0 skips it)")
	fs.IntVar(&o.CacheMB, "cache-mb", 64, "with --state pebble: the Pebble jobs' state.cache_mb, the write-back cache budget (0: the job default)")
	phase := fs.String("phase", "", "internal: run one phase of a benchmark (uniform: the uniform run's job, against --nats) and print its result as JSON")
	natsURL := fs.String("nats", "", "internal: with --phase, the NATS server holding the stream")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	progress := func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	switch *phase {
	case "":
	case "uniform":
		if *natsURL == "" {
			return fmt.Errorf("%w: --phase uniform needs --nats", errUsage)
		}
		u, err := bench.RunUniform(ctx, bench.PhaseOptions{URL: *natsURL, Keys: o.Uniform, Parallelism: o.Parallelism, Cap: o.Cap, CacheMB: o.CacheMB, Progress: progress})
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(u)
	default:
		return fmt.Errorf("%w: --phase %q: the only phase is uniform", errUsage, *phase)
	}
	if o.State != job.BackendMemory && o.State != job.BackendPebble {
		return fmt.Errorf("%w: --state %q: use memory or pebble", errUsage, o.State)
	}
	if o.State == job.BackendPebble && o.Uniform > 0 {
		// The uniform run's job runs in a child process, so that its peak
		// RSS is its own.
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("bench: finding the wasmstream executable for the uniform run: %w", err)
		}
		o.Exe = exe
	}
	o.Progress = progress
	r, err := bench.Run(ctx, o)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprintf(stdout, "freqcap on %d events, %d Zipf-distributed users, parallelism %d (best of %d)\n", r.Events, r.Users, r.Parallelism, r.Rounds)
	fmt.Fprintf(stdout, "  raw JetStream consume        %10.0f events/s\n", r.RawConsume)
	if r.State == job.BackendMemory {
		fmt.Fprintf(stdout, "  freqcap, native Go           %10.0f events/s\n", r.Native)
		fmt.Fprintf(stdout, "  freqcap, Wasm plugin         %10.0f events/s\n", r.Wasm)
		fmt.Fprintf(stdout, "  wasm / native                %10.2f\n", r.WasmOverNative)
		fmt.Fprintf(stdout, "  wasm job / raw consume       %10.2f\n", r.JobOverRaw)
		return nil
	}
	fmt.Fprintf(stdout, "  freqcap Wasm, memory state   %10.0f events/s\n", r.Wasm)
	fmt.Fprintf(stdout, "  freqcap Wasm, Pebble state   %10.0f events/s (state.cache_mb %d)\n", r.WasmPebble, r.CacheMB)
	fmt.Fprintf(stdout, "  pebble / memory              %10.2f\n", r.PebbleOverMemory)
	fmt.Fprintf(stdout, "  wasm job (memory) / raw      %10.2f\n", r.JobOverRaw)
	if u := r.Uniform; u != nil {
		fmt.Fprintf(stdout, "uniform: %d users, one event each, freqcap Wasm with Pebble state, parallelism %d\n", u.Keys, r.Parallelism)
		fmt.Fprintf(stdout, "  throughput                   %10.0f events/s (%.1fs)\n", u.EventsPerSec, u.Seconds)
		fmt.Fprintf(stdout, "  peak state keys              %10d\n", u.PeakStateKeys)
		fmt.Fprintf(stdout, "  timers fired                 %10d\n", u.TimersFired)
		fmt.Fprintf(stdout, "  peak RSS (%s process)     %10.0f MiB\n", u.RSSScope, float64(u.PeakRSSBytes)/(1<<20))
	}
	return nil
}
