package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/wasmstream/wasmstream/internal/bench"
)

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", stderr, "bench [flags]")
	var o bench.Options
	fs.IntVar(&o.Events, "events", 500_000, "generated events")
	fs.IntVar(&o.Users, "users", 100_000, "distinct users (Zipf-distributed)")
	fs.IntVar(&o.Parallelism, "parallelism", 1, "workers per job")
	fs.IntVar(&o.Rounds, "rounds", 1, "alternate the measurements this many times and keep each one's best")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	o.Progress = func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	r, err := bench.Run(ctx, o)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprintf(stdout, "freqcap on %d events, %d users, parallelism %d, %s state (best of %d)\n", r.Events, r.Users, r.Parallelism, r.State, r.Rounds)
	fmt.Fprintf(stdout, "  raw JetStream consume  %10.0f events/s\n", r.RawConsume)
	fmt.Fprintf(stdout, "  freqcap, native Go     %10.0f events/s\n", r.Native)
	fmt.Fprintf(stdout, "  freqcap, Wasm plugin   %10.0f events/s\n", r.Wasm)
	fmt.Fprintf(stdout, "  wasm / native          %10.2f\n", r.WasmOverNative)
	fmt.Fprintf(stdout, "  wasm job / raw consume %10.2f\n", r.JobOverRaw)
	return nil
}
