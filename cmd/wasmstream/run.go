package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/wasmstream/wasmstream/abi"
	"github.com/wasmstream/wasmstream/host/engine"
	"github.com/wasmstream/wasmstream/host/job"
	"github.com/wasmstream/wasmstream/host/natsembed"
	"github.com/wasmstream/wasmstream/host/runner"
)

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", stderr, "run -f job.yaml [flags]")
	file := fs.String("f", "", "job config file (YAML)")
	natsURL := fs.String("nats", "", "NATS server URL, e.g. nats://127.0.0.1:4222 (default: an embedded server)")
	dataDir := fs.String("data-dir", "wasmstream-data", "embedded server: JetStream data directory")
	listen := fs.String("listen", "127.0.0.1:4222", "embedded server: client listen address")
	untilCaughtUp := fs.Bool("until-caught-up", false, "exit after processing what the stream holds at start")
	untilSeq := fs.Uint64("until-seq", 0, "exit after processing the stream up to this sequence (0: no end)")
	statusEvery := fs.Duration("status", 5*time.Second, "status line interval (0 disables)")
	verbose := fs.Bool("v", false, "log engine and plugin messages")
	from := fs.Uint64("from", 0, "restore this checkpoint id instead of the latest (jobs with checkpoint.interval)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *file == "" {
		return fmt.Errorf("%w: run needs a job config: wasmstream run -f job.yaml", errUsage)
	}
	cfg, err := job.Load(*file)
	if err != nil {
		return err
	}
	if *from > 0 && !cfg.Checkpoint.Enabled() {
		return fmt.Errorf("%w: --from %d: job %s takes no checkpoints (set checkpoint.interval in %s)", errUsage, *from, cfg.Name, *file)
	}
	logf := quietLogf
	if *verbose {
		logf = log.New(stderr, "", log.LstdFlags).Printf
	}

	url := *natsURL
	if url == "" {
		srv, err := natsembed.Start(natsembed.Options{StoreDir: *dataDir, Listen: *listen})
		if err != nil {
			return fmt.Errorf("embedded NATS server: %w (use --listen to pick another address or --nats to use a running server)", err)
		}
		defer srv.Shutdown()
		url = srv.URL
		fmt.Fprintf(stderr, "embedded NATS server at %s, data in %s\n", url, *dataDir)
	}

	opts := runner.Options{
		URL:           url,
		UntilCaughtUp: *untilCaughtUp,
		UntilSeq:      *untilSeq,
		Logf:          logf,
		Warnf:         log.New(stderr, "", log.LstdFlags).Printf,
		RestoreFrom:   *from,
		Stdout:        stdout,
		OnBuild:       func(dir string) { fmt.Fprintf(stderr, "building plugin %s\n", dir) },
	}
	if *statusEvery > 0 {
		opts.StatusEvery = *statusEvery
		opts.Status = func(s engine.Status) { fmt.Fprintln(stderr, statusLine(s)) }
	}
	j, err := runner.Prepare(ctx, cfg, opts)
	if err != nil {
		return err
	}
	defer j.Close(context.Background())
	for _, w := range j.Warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	c := j.Plugin.Contract()
	state := cfg.State.Backend
	if state == job.BackendPebble {
		state += " in " + cfg.State.ResolvedDir(cfg.Dir)
	}
	fmt.Fprintf(stderr, "job %s: plugin %s (%s), parallelism %d, stream %s, state %s\n", cfg.Name, c.Name, j.Plugin.Hash()[:12], cfg.Parallelism, cfg.Source.Stream, state)
	if cp := cfg.Checkpoint; cp.Enabled() {
		where := "dir " + cp.Storage.ResolvedPath(cfg.Dir)
		if cp.Storage.Type == job.StorageObjectStore {
			where = "object store bucket " + cp.Storage.Bucket
		}
		fmt.Fprintf(stderr, "checkpoints every %s to %s, keeping %d\n", cp.Interval, where, cp.Retain)
	}
	sum, err := j.Run(ctx)
	fmt.Fprintln(stderr, sum.String())
	if err != nil && !(errors.Is(err, context.Canceled) && ctx.Err() != nil) {
		return err
	}
	return nil
}

// statusLine is the periodic one-line status of a running job: events,
// outputs, event time (watermark, late events, timers fired) and, per
// state, keys, bytes, the cache hit ratio of a backend with a cache, and
// the entries removed by TTL.
func statusLine(s engine.Status) string {
	line := fmt.Sprintf("%s: %d events, %.0f/s, seq %d", s.Job, s.EventsIn, s.EventsPerSec, s.LastSeq)
	for _, name := range slices.Sorted(maps.Keys(s.Outputs)) {
		line += fmt.Sprintf(", %s %d", name, s.Outputs[name])
	}
	if s.DeadLettered > 0 {
		line += fmt.Sprintf(", dead-lettered %d", s.DeadLettered)
	}
	line += ", watermark " + watermarkString(s.Watermark)
	line += fmt.Sprintf(", late %d, timers fired %d", s.Late, s.TimersFired)
	for _, st := range s.State {
		line += fmt.Sprintf(", state %s %d keys %s", st.Name, st.Keys, bytesString(st.Bytes))
		if st.CacheHits+st.CacheMisses > 0 {
			line += fmt.Sprintf(" hit %.1f%%", 100*st.HitRatio())
		}
		line += fmt.Sprintf(" expired %d", st.Expired)
	}
	if c := s.Checkpoints; c != nil {
		line += fmt.Sprintf(", checkpoints %d", c.Completed)
		if c.Failed > 0 {
			line += fmt.Sprintf(" (%d failed)", c.Failed)
		}
		if c.LastID > 0 {
			line += fmt.Sprintf(", last checkpoint %d in %s %s alignment %s capture %s pause p50 %s p99 %s",
				c.LastID, c.LastDuration.Round(time.Millisecond), bytesString(c.LastSize), c.LastAlignment.Round(time.Microsecond), c.LastCapture.Round(time.Microsecond),
				c.PauseP50.Round(time.Microsecond), c.PauseP99.Round(time.Microsecond))
		}
	}
	return line
}

// watermarkString shows a watermark as a UTC time, "-" before the first
// and "end" once a bounded run has ended.
func watermarkString(wm int64) string {
	switch {
	case wm == abi.NoWatermark:
		return "-"
	case wm == math.MaxInt64:
		return "end"
	}
	return time.UnixMilli(wm).UTC().Format("2006-01-02T15:04:05.000Z")
}

func quietLogf(string, ...any) {}

func bytesString(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
