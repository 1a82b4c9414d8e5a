package tests

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmstream/wasmstream/examples/freqcap"
	"github.com/wasmstream/wasmstream/host/job"
	"github.com/wasmstream/wasmstream/host/runner"
	"github.com/wasmstream/wasmstream/internal/faultpoint"
	"github.com/wasmstream/wasmstream/internal/jsread"
)

// A NATS outage while a complete checkpoint's exactly-once records are
// being published delays them; it does not fail the job. The freqcap job
// (Wasm plugin, parallelism 2, both outputs exactly-once, checkpoints every
// 200ms with checkpoint.timeout 2s) runs in process against an embedded
// server while the events are published in paced batches. At a fault point
// (with an in-process hook) the server goes down for 4s, twice the
// timeout, and comes back on the same port and store:
//
//   - after-commit: right after the second checkpoint commits, before its
//     records are published (checkpoint.after-commit);
//   - mid-publish: half way through publishing the records of the third
//     checkpoint to the first sink (sink.mid-publish), whose first half is
//     then acknowledged and not sent again;
//   - stop: as after-commit, and the job is stopped (its context
//     cancelled) while it retries: it must return at once, without an
//     error, and a second run, restoring the checkpoint whose records are
//     not published yet, publishes them.
//
// The job must ride the outage out and read the rest of the stream, and in
// the end its sinks must hold exactly the oracle's records, none twice.
func TestNATSOutageWhilePublishing(t *testing.T) {
	wasm := freqcapWasm(t)
	for _, tc := range []struct {
		name  string
		point string
		hit   int32 // the pass of point that takes the server down
		stop  bool
	}{
		{"after-commit", "checkpoint.after-commit", 2, false},
		{"mid-publish", "sink.mid-publish", 5, false}, // checkpoint 3, sink capped
		{"stop", "checkpoint.after-commit", 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) { testOutageAt(t, wasm, tc.point, tc.hit, tc.stop) })
	}
}

func testOutageAt(t *testing.T, wasm []byte, point string, hit int32, stop bool) {
	const (
		n       = 20_000
		timeout = 2 * time.Second
		outage  = 4 * time.Second
	)
	srv := newCrashServer(t)

	cfg := freqcapJob(t, "out.capped", 2)
	for i := range cfg.Sinks { // capped and released: both exactly-once
		cfg.Sinks[i].Mode = job.ExactlyOnce
	}
	cfg.Checkpoint = job.Checkpoint{
		Interval: job.Duration(200 * time.Millisecond),
		Timeout:  job.Duration(timeout),
		Storage:  job.CheckpointStorage{Path: filepath.Join(t.TempDir(), "checkpoints")},
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	limit := jobCap(t, cfg)
	window, err := strconv.ParseInt(cfg.Plugin.Config["window_ms"], 10, 64)
	if err != nil {
		t.Fatalf("plugin.config.window_ms: %v", err)
	}
	bound := cfg.EventTime.MaxOutOfOrderness.D().Milliseconds()
	// Views 30s apart, so that the event-time timers of the window fire
	// while the job runs and every checkpoint has records to publish.
	data := freqcap.Generate(n, freqcap.GenOptions{Seed: 45, Users: 300, Ads: 30, StepMs: 30_000, Disorder: bound})

	ctx := testCtx(t)
	if _, err := srv.js.CreateStream(ctx, jetstream.StreamConfig{Name: cfg.Source.Stream, Subjects: cfg.Source.Subjects}); err != nil {
		t.Fatal(err)
	}
	pub := newPublisher(srv, "views.web", data, 400, 20*time.Millisecond)
	t.Cleanup(pub.stop)

	// The outage: the server goes down in the coordinator's goroutine, at
	// the hit-th pass of point; it comes back outage later. The publisher
	// waits meanwhile (pubMu). With stop, the job is stopped half a second
	// after its first attempt to publish has timed out.
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	var hits atomic.Int32
	var outageAt, stoppedAt time.Time
	var restarted sync.WaitGroup
	back := make(chan error, 1)
	remove := faultpoint.OnHit(point, func() {
		if hits.Add(1) != hit {
			return
		}
		srv.pubMu.Lock()
		srv.shutdown()
		outageAt = time.Now()
		t.Logf("NATS server down at pass %d of %s, for %s", hit, point, outage)
		if stop {
			time.AfterFunc(timeout+500*time.Millisecond, func() {
				stoppedAt = time.Now()
				stopRun()
			})
		}
		restarted.Add(1)
		go func() {
			defer restarted.Done()
			defer srv.pubMu.Unlock()
			time.Sleep(outage)
			back <- srv.start()
		}()
	})
	t.Cleanup(remove)
	t.Cleanup(restarted.Wait) // before the server's own cleanup

	var warnMu sync.Mutex
	var warnings []string
	opts := runner.Options{
		URL: srv.url, Wasm: wasm, UntilSeq: n, Logf: t.Logf,
		Warnf: func(format string, args ...any) {
			warnMu.Lock()
			warnings = append(warnings, fmt.Sprintf(format, args...))
			warnMu.Unlock()
			t.Logf(format, args...)
		},
	}
	j, err := runner.Prepare(ctx, cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close(context.Background())
	pub.upTo(n)
	start := time.Now()
	sum, err := j.Run(runCtx)
	if err != nil {
		t.Fatalf("the job failed %s after the NATS server went down for %s (checkpoint.timeout %s): %v", time.Since(outageAt).Round(time.Millisecond), outage, timeout, err)
	}
	t.Logf("run: %s (%s)", sum, time.Since(start).Round(time.Millisecond))
	if hits.Load() < hit {
		t.Fatalf("the job passed %s %d times: the outage never happened", point, hits.Load())
	}
	if stop {
		// Run returned before the server came back: the retries did not
		// hold the stop.
		select {
		case err := <-back:
			t.Errorf("the stopped job returned %s after its stop, after the NATS server came back (%v): a stop must end the retries", time.Since(stoppedAt).Round(time.Millisecond), err)
		default:
			t.Logf("the stopped job returned %s after its stop, while the NATS server was down", time.Since(stoppedAt).Round(time.Millisecond))
		}
	}
	if err := <-back; err != nil {
		t.Fatal(err)
	}
	if stop {
		j2, err := runner.Prepare(ctx, cfg, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer j2.Close(context.Background())
		sum, err := j2.Run(ctx)
		if err != nil {
			t.Fatalf("run 2: %v", err)
		}
		t.Logf("run 2: %s", sum)
	}
	if err := pub.waitAll(crashWait); err != nil {
		t.Fatal(err)
	}
	warnMu.Lock()
	retried := false
	for _, w := range warnings {
		if strings.Contains(w, "publishing its records") {
			retried = true
		}
	}
	warnMu.Unlock()
	if !retried {
		t.Errorf("no warning that publishing a checkpoint's records failed and is retried; warnings: %q", warnings)
	}

	// Exactly the oracle's records, each once, each with its message id.
	var want []string
	for _, r := range freqcap.Expect(data, freqcap.Params{Cap: limit, Window: window, MaxOutOfOrderness: bound}) {
		want = append(want, r.Output+" "+r.Key+" "+r.Value)
	}
	var got []string
	ids := map[string]bool{}
	for output, subject := range map[string]string{"capped": "out.capped", "released": "out.capped.released"} {
		recs, err := jsread.All(ctx, srv.js, subject)
		if err != nil {
			t.Fatalf("reading %s: %v", subject, err)
		}
		for _, r := range recs {
			got = append(got, output+" "+r.Key+" "+string(r.Data))
			id := nats.Header(r.Header).Get(nats.MsgIdHdr)
			if id == "" || ids[id] {
				t.Errorf("%s seq %d: %s %q: missing or repeated", subject, r.Seq, nats.MsgIdHdr, id)
			}
			ids[id] = true
		}
	}
	missing, foreign, dups := diffRecords(got, want)
	if len(missing) > 0 {
		t.Errorf("%d records of the oracle are missing, e.g. %q", len(missing), missing[:min(5, len(missing))])
	}
	if len(foreign) > 0 {
		t.Errorf("%d records the oracle does not have, e.g. %q", len(foreign), foreign[:min(5, len(foreign))])
	}
	if len(dups) > 0 {
		t.Errorf("%d records duplicated, e.g. %v", len(dups), dups[:min(5, len(dups))])
	}
	if len(want) < 100 {
		t.Errorf("the oracle has only %d records: the test shows little", len(want))
	}
	t.Logf("%d records compared with the oracle's %d", len(got), len(want))
}
