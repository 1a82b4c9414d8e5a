package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmstream/wasmstream/examples/freqcap"
	"github.com/wasmstream/wasmstream/host/engine"
	"github.com/wasmstream/wasmstream/host/job"
	"github.com/wasmstream/wasmstream/host/natsembed"
	"github.com/wasmstream/wasmstream/host/runner"
	"github.com/wasmstream/wasmstream/internal/jsread"
	"github.com/wasmstream/wasmstream/internal/wasmbuild"
)

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr, "demo [flags]")
	events := fs.Int("events", 200_000, "number of generated view events")
	limit := fs.Int("cap", 3, "views of one ad by one user before it is capped")
	parallelism := fs.Int("parallelism", 2, "workers (one Wasm instance each)")
	users := fs.Int("users", 50_000, "distinct users (Zipf-distributed)")
	show := fs.Int("show", 10, "capped pairs to print")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *events < 1 || *limit < 1 || *parallelism < 1 || *users < 1 {
		return fmt.Errorf("%w: -events, -cap, -parallelism and -users must be positive", errUsage)
	}
	start := time.Now()
	root, err := wasmbuild.ModuleRoot()
	if err != nil {
		return fmt.Errorf("demo builds the example plugin from source: %w", err)
	}
	cfg, err := job.Load(filepath.Join(root, "examples", "freqcap", "job.yaml"))
	if err != nil {
		return err
	}
	cfg.Parallelism = *parallelism
	cfg.Plugin.Config["cap"] = strconv.Itoa(*limit)

	dir, err := os.MkdirTemp("", "wasmstream-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	srv, err := natsembed.Start(natsembed.Options{StoreDir: dir})
	if err != nil {
		return fmt.Errorf("embedded NATS server: %w", err)
	}
	defer srv.Shutdown()
	fmt.Fprintf(stderr, "embedded NATS server at %s (JetStream in %s)\n", srv.URL, dir)

	nc, err := nats.Connect(srv.URL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}

	// The plugin builds while the events are published.
	data := freqcap.Generate(*events, freqcap.GenOptions{Seed: 1, Users: *users})
	processing := newProgress(stderr, "processing", len(data))
	type prepared struct {
		j   *runner.Job
		err error
		d   time.Duration
	}
	ready := make(chan prepared, 1)
	go func() {
		t := time.Now()
		j, err := runner.Prepare(ctx, cfg, runner.Options{
			Conn: nc, UntilCaughtUp: true, Stdout: stdout,
			Status:      func(s engine.Status) { processing.set(int(s.EventsIn)) },
			StatusEvery: 200 * time.Millisecond,
		})
		ready <- prepared{j, err, time.Since(t)}
	}()
	fmt.Fprintf(stderr, "building the freqcap plugin from %s\n", filepath.Join("examples", "freqcap", "plugin"))

	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: cfg.Source.Stream, Subjects: cfg.Source.Subjects}); err != nil {
		return fmt.Errorf("create stream %s: %w", cfg.Source.Stream, err)
	}
	publishing := newProgress(stderr, "publishing", len(data))
	if err := freqcap.Publish(ctx, js, "views.web", data, publishing.set); err != nil {
		return err
	}
	publishing.done()

	p := <-ready
	if p.err != nil {
		return p.err
	}
	defer p.j.Close(context.Background())
	fmt.Fprintf(stderr, "plugin %s ready in %.1fs (sha256 %s)\n", p.j.Plugin.Contract().Name, p.d.Seconds(), p.j.Plugin.Hash()[:12])

	processing.begin()
	sum, err := p.j.Run(ctx)
	if err != nil {
		return err
	}
	processing.done()

	capped, err := jsread.All(ctx, js, "freqcap.capped")
	if err != nil {
		return fmt.Errorf("read back freqcap.capped: %w", err)
	}
	fmt.Fprintf(stdout, "\ncapped (user, ad) pairs, first %d of %d, from subject freqcap.capped:\n", min(*show, len(capped)), len(capped))
	for _, r := range capped[:min(*show, len(capped))] {
		fmt.Fprintf(stdout, "  %s\n", r.Data)
	}

	// Check the job against the same computation in plain Go.
	want := freqcap.Oracle(data, *limit)
	got := map[[2]int64]int{}
	for _, r := range capped {
		var v struct{ UserNo, DaID int64 }
		if err := json.Unmarshal(r.Data, &struct {
			UserNo *int64 `json:"user_no"`
			DaID   *int64 `json:"da_id"`
		}{&v.UserNo, &v.DaID}); err != nil {
			return fmt.Errorf("capped record %q: %w", r.Data, err)
		}
		got[[2]int64{v.UserNo, v.DaID}]++
	}
	match := len(got) == len(want) && len(capped) == len(want)
	for k := range want {
		if got[k] != 1 {
			match = false
		}
	}

	var keys int64
	for _, st := range sum.State {
		keys += st.Keys
	}
	fmt.Fprintf(stdout, "\nsummary\n")
	fmt.Fprintf(stdout, "  events      %d (%d dead-lettered)\n", sum.EventsIn, sum.DeadLettered)
	fmt.Fprintf(stdout, "  keys        %d users in state\n", keys)
	fmt.Fprintf(stdout, "  outputs     %d capped pairs\n", sum.Outputs["capped"])
	fmt.Fprintf(stdout, "  throughput  %.0f events/s with %d Wasm workers\n", sum.EventsPerSec, cfg.Parallelism)
	fmt.Fprintf(stdout, "  oracle      %d pairs computed in plain Go: %s\n", len(want), map[bool]string{true: "identical, no duplicates", false: "MISMATCH"}[match])
	fmt.Fprintf(stdout, "  total time  %.1fs\n", time.Since(start).Seconds())
	if !match {
		return fmt.Errorf("the job's capped pairs differ from the plain-Go oracle")
	}
	return nil
}
