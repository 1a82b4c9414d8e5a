// Package bench measures, on one generated stream in one run: raw JetStream
// consumption (no processing), the frequency-capping job with a native Go
// operator, and the same job with the Wasm plugin. The three share the
// embedded server, the stream and the engine, so their ratios are fair even on
// a noisy machine.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmstream/wasmstream/examples/freqcap"
	"github.com/wasmstream/wasmstream/host/job"
	"github.com/wasmstream/wasmstream/host/natsembed"
	"github.com/wasmstream/wasmstream/host/process"
	"github.com/wasmstream/wasmstream/host/runner"
	"github.com/wasmstream/wasmstream/internal/wasmbuild"
)

// Options shape a benchmark run.
type Options struct {
	Events      int // default 500000
	Users       int // default 100000, Zipf-distributed
	Parallelism int // default 1
	Cap         int // default 3
	// Rounds repeats the three measurements, alternating, and keeps each
	// one's best (default 1).
	Rounds int
	// Progress receives one line per step.
	Progress func(format string, args ...any)
}

// Result is what a run measured.
type Result struct {
	Events      int     `json:"events"`
	Users       int     `json:"users"`
	Parallelism int     `json:"parallelism"`
	Rounds      int     `json:"rounds"`
	State       string  `json:"state"`
	RawConsume  float64 `json:"raw_consume_events_per_sec"`
	Native      float64 `json:"native_events_per_sec"`
	Wasm        float64 `json:"wasm_events_per_sec"`
	// WasmOverNative is Wasm / Native; JobOverRaw is Wasm / RawConsume.
	WasmOverNative float64 `json:"wasm_over_native"`
	JobOverRaw     float64 `json:"job_over_raw_consume"`
	CappedNative   int64   `json:"capped_native"`
	CappedWasm     int64   `json:"capped_wasm"`
}

const (
	stream  = "BENCH"
	subject = "bench.views"
)

// Run performs the benchmark. It needs a wasmstream checkout (the plugin is
// built from examples/freqcap/plugin).
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Events <= 0 {
		o.Events = 500_000
	}
	if o.Users <= 0 {
		o.Users = 100_000
	}
	if o.Parallelism <= 0 {
		o.Parallelism = 1
	}
	if o.Cap <= 0 {
		o.Cap = 3
	}
	if o.Rounds <= 0 {
		o.Rounds = 1
	}
	progress := o.Progress
	if progress == nil {
		progress = func(string, ...any) {}
	}
	res := Result{Events: o.Events, Users: o.Users, Parallelism: o.Parallelism, Rounds: o.Rounds, State: "memory"}

	root, err := wasmbuild.ModuleRoot()
	if err != nil {
		return res, fmt.Errorf("bench builds the example plugin from source: %w", err)
	}
	dir, err := os.MkdirTemp("", "wasmstream-bench-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	srv, err := natsembed.Start(natsembed.Options{StoreDir: dir})
	if err != nil {
		return res, err
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.URL)
	if err != nil {
		return res, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return res, err
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{subject}}); err != nil {
		return res, err
	}

	cfg, err := jobConfig(root, o)
	if err != nil {
		return res, err
	}
	progress("building and loading the freqcap plugin")
	wasmJob, err := runner.Prepare(ctx, cfg, runner.Options{Conn: nc, UntilCaughtUp: true, Stdout: io.Discard})
	if err != nil {
		return res, err
	}
	defer wasmJob.Close(context.Background())
	nativeJob, err := runner.PrepareNative(cfg, freqcap.Contract(), func(int) (process.Function, error) { return freqcap.NewNative(), nil }, runner.Options{Conn: nc, UntilCaughtUp: true, Stdout: io.Discard})
	if err != nil {
		return res, err
	}

	progress("publishing %d events (%d Zipf-distributed users)", o.Events, o.Users)
	t := time.Now()
	if err := freqcap.Publish(ctx, js, subject, freqcap.Generate(o.Events, freqcap.GenOptions{Seed: 7, Users: o.Users}), nil); err != nil {
		return res, err
	}
	progress("published in %.1fs", time.Since(t).Seconds())

	for round := 1; round <= o.Rounds; round++ {
		eps, err := rawConsume(ctx, js, o.Events)
		if err != nil {
			return res, fmt.Errorf("raw consume: %w", err)
		}
		res.RawConsume = max(res.RawConsume, eps)
		progress("round %d: raw consume      %9.0f events/s", round, eps)

		sum, err := nativeJob.Run(ctx)
		if err != nil {
			return res, fmt.Errorf("native job: %w", err)
		}
		if sum.EventsIn != int64(o.Events) {
			return res, fmt.Errorf("native job read %d events, want %d", sum.EventsIn, o.Events)
		}
		res.Native = max(res.Native, sum.EventsPerSec)
		res.CappedNative = sum.Outputs["capped"]
		progress("round %d: freqcap native   %9.0f events/s", round, sum.EventsPerSec)

		sum, err = wasmJob.Run(ctx)
		if err != nil {
			return res, fmt.Errorf("wasm job: %w", err)
		}
		if sum.EventsIn != int64(o.Events) {
			return res, fmt.Errorf("wasm job read %d events, want %d", sum.EventsIn, o.Events)
		}
		res.Wasm = max(res.Wasm, sum.EventsPerSec)
		res.CappedWasm = sum.Outputs["capped"]
		progress("round %d: freqcap wasm     %9.0f events/s", round, sum.EventsPerSec)
	}
	if res.CappedNative != res.CappedWasm {
		return res, fmt.Errorf("native and wasm jobs disagree: %d vs %d capped pairs", res.CappedNative, res.CappedWasm)
	}
	res.WasmOverNative = res.Wasm / res.Native
	res.JobOverRaw = res.Wasm / res.RawConsume
	return res, nil
}

// jobConfig is the example job pointed at the bench stream. Capped pairs go
// to a stdout sink that writes to io.Discard, so repeated runs do not grow an
// output stream; each run starts with empty state.
func jobConfig(root string, o Options) (*job.Config, error) {
	yaml := fmt.Sprintf(`name: bench
source: {stream: %s, subjects: [%q]}
key: {field: user_no}
plugin:
  path: %s
  config: {cap: %d}
parallelism: %d
sinks:
  - {output: capped, type: stdout}
`, stream, subject, strconv.Quote(filepath.Join(root, "examples", "freqcap", "plugin")), o.Cap, o.Parallelism)
	cfg, err := job.Parse([]byte(yaml))
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

// rawConsume reads n messages with the same consumer settings as the
// engine's source and nothing else.
func rawConsume(ctx context.Context, js jetstream.JetStream, n int) (float64, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return 0, err
	}
	it, err := c.Messages(jetstream.PullMaxMessages(1024))
	if err != nil {
		return 0, err
	}
	defer it.Stop()
	var bytes int
	for i := 0; i < n; {
		m, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrNoHeartbeat) {
				continue
			}
			return 0, err
		}
		bytes += len(m.Data())
		i++
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
