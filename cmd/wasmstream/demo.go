package main

import (
	"context"
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
	state := fs.String("state", job.BackendMemory, "state backend: memory, or pebble (in a temporary directory)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *events < 1 || *limit < 1 || *parallelism < 1 || *users < 1 {
		return fmt.Errorf("%w: -events, -cap, -parallelism and -users must be positive", errUsage)
	}
	if *state != job.BackendMemory && *state != job.BackendPebble {
		return fmt.Errorf("%w: -state %q: use memory or pebble", errUsage, *state)
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
	if *state == job.BackendPebble {
		cfg.State = job.State{Backend: job.BackendPebble, Dir: filepath.Join(dir, "state")}
		cfg.ApplyDefaults()
		if err := cfg.Validate(); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "state in Pebble at %s\n", cfg.State.Dir)
	}
	srv, err := natsembed.Start(natsembed.Options{StoreDir: filepath.Join(dir, "jetstream")})
	if err != nil {
		return fmt.Errorf("embedded NATS server: %w", err)
	}
	defer srv.Shutdown()
	fmt.Fprintf(stderr, "embedded NATS server at %s (JetStream in %s)\n", srv.URL, filepath.Join(dir, "jetstream"))

	nc, err := nats.Connect(srv.URL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}

	// The plugin builds while the events are published. Views come 3 s
	// apart in event time (200,000 span about 7 days, more than the 5-day
	// window) and out of order by up to the job's max_out_of_orderness.
	data := freqcap.Generate(*events, freqcap.GenOptions{Seed: 1, Users: *users, StepMs: 3000, Disorder: freqcap.DefaultMaxOutOfOrderness})
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
	fmt.Fprintf(stdout, "\ncapped (user, ad) pairs, first %d of %d records, from subject freqcap.capped:\n", min(*show, len(capped)), len(capped))
	for _, r := range capped[:min(*show, len(capped))] {
		fmt.Fprintf(stdout, "  %s\n", r.Data)
	}

	released, err := jsread.All(ctx, js, "freqcap.released")
	if err != nil {
		return fmt.Errorf("read back freqcap.released: %w", err)
	}

	// Check the job against the same computation in plain Go: the same
	// records, each as often.
	want := freqcap.Expect(data, freqcap.Params{Cap: *limit, Window: freqcap.DefaultWindow, MaxOutOfOrderness: freqcap.DefaultMaxOutOfOrderness})
	count := map[string]int{}
	for _, r := range want {
		count[r.Output+" "+r.Key+" "+r.Value]++
	}
	for out, recs := range map[string][]jsread.Record{"capped": capped, "released": released} {
		for _, r := range recs {
			count[out+" "+r.Key+" "+string(r.Data)]--
		}
	}
	match := len(capped)+len(released) == len(want)
	for _, n := range count {
		match = match && n == 0
	}

	var keys int64
	for _, st := range sum.State {
		keys += st.Keys
	}
	fmt.Fprintf(stdout, "\nsummary\n")
	fmt.Fprintf(stdout, "  events      %d (%d dead-lettered)\n", sum.EventsIn, sum.DeadLettered)
	fmt.Fprintf(stdout, "  state       %s, %d users left (the run ends with every window closed)\n", sum.Backend, keys)
	fmt.Fprintf(stdout, "  outputs     %d capped, %d released (every window closes when the run ends)\n", sum.Outputs["capped"], sum.Outputs["released"])
	fmt.Fprintf(stdout, "  throughput  %.0f events/s with %d Wasm workers\n", sum.EventsPerSec, cfg.Parallelism)
	fmt.Fprintf(stdout, "  oracle      %d records computed in plain Go: %s\n", len(want), map[bool]string{true: "identical, no duplicates", false: "MISMATCH"}[match])
	fmt.Fprintf(stdout, "  total time  %.1fs\n", time.Since(start).Seconds())
	if !match {
		return fmt.Errorf("the job's capped and released records differ from the plain-Go oracle")
	}
	return nil
}
